// Safety: bringing a cluster up and down leaves the root network namespace and the root cgroup's
// BPF attachments exactly as they were, and nothing routes between the root namespace and pods.

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runSync } from "../../src/core/run.ts";
import { REPO, TestCluster } from "../harness/cluster.ts";

/** Drops the blocks of cgroups under a weft folder: tests running beside this one attach there. */
function rootCgroupAttachments(text: string): string {
  const out: string[] = [];
  let skip = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("/")) skip = line.includes("/weft");
    if (!skip) out.push(line);
  }
  return out.join("\n").trimEnd();
}

function snapshot(): Record<string, string> {
  const tryCmd = (cmd: string, args: string[]) => {
    try {
      return runSync(cmd, args);
    } catch (err) {
      return `unavailable: ${(err as Error).message}`;
    }
  };
  return {
    "ip rule": tryCmd("ip", ["rule"]),
    "ip -6 rule": tryCmd("ip", ["-6", "rule"]),
    "ip route (all tables)": tryCmd("ip", ["route", "show", "table", "all"]),
    "ip -6 route (all tables)": tryCmd("ip", ["-6", "route", "show", "table", "all"]),
    "ip addr": tryCmd("ip", ["addr"]),
    "ip link": tryCmd("ip", ["-d", "link"]).replace(/\s+(gso_max|gro_max|tso_max)\S*\s+\d+/g, ""),
    "nft ruleset": tryCmd("nft", ["list", "ruleset"]),
    iptables: tryCmd("iptables-save", [])
      .replace(/^#.*$/gm, "")
      .replace(/\[\d+:\d+\]/g, ""),
    "tc qdisc": tryCmd("tc", ["qdisc", "show"]),
    "tc filter ingress/egress": ["ingress", "egress"]
      .map((d) => tryCmd("sh", ["-c", `for i in $(ls /sys/class/net); do tc filter show dev $i ${d}; done`]))
      .join("\n"),
    "bpftool cgroup tree": rootCgroupAttachments(tryCmd("bpftool", ["cgroup", "tree", "/sys/fs/cgroup/unified"])),
    "bpftool net": tryCmd("bpftool", ["net"]),
  };
}

describe("root namespace", () => {
  it("is unchanged by up and down, and unchanged while the cluster runs", async () => {
    const before = snapshot();
    const c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    try {
      const during = snapshot();
      for (const key of Object.keys(before)) assert.equal(during[key], before[key], `${key} changed while the cluster runs`);
      // No route from the root namespace into the cluster: a pod IP resolves to no cluster device.
      // (Only the routing decision is checked: nothing is sent to an address outside our namespaces.)
      const pods = await c.pods();
      const ip = pods[0]?.status.podIP as string;
      assert.match(ip, /^10\.200\./);
      let route = "";
      try {
        route = runSync("ip", ["route", "get", ip]);
      } catch (err) {
        route = `no route: ${(err as Error).message}`;
      }
      assert.doesNotMatch(route, /dev (lxc\w+|vx0|ul0|br0)\b/);
    } finally {
      await c.down();
    }
    const after = snapshot();
    for (const key of Object.keys(before)) assert.equal(after[key], before[key], `${key} changed by up/down`);
  });
});
