// The embedded local cluster end to end: two nodes from examples/, pod-to-pod across nodes by pod
// IP, kubectl-like output, and a `down` that leaves nothing behind.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cgroupTreeProcs } from "../../src/cluster/cgroup.ts";
import { bpfPinDir, cgroupDir } from "../../src/cluster/config.ts";
import { listNetns } from "../../src/cluster/net.ts";
import { type PodJson, REPO, TestCluster } from "../harness/cluster.ts";

describe("local cluster from examples/", () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
  });
  after(async () => {
    await c?.down();
  });

  it("lists every example pod with its node and IP, all Running and Ready", async () => {
    const r = await c.cli(["get", "pods", "-o", "wide"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines[0]?.split(/\s+/), ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]);
    const rows = lines.slice(1).map((l) => l.split(/\s+/));
    assert.equal(rows.length, 5, r.stdout);
    for (const row of rows) {
      assert.equal(row[1], "1/1", row.join(" "));
      assert.equal(row[2], "Running", row.join(" "));
      assert.match(row[5] ?? "", /^10\.200\.[12]\.\d+$/);
      assert.match(row[6] ?? "", /^node-[12]$/);
      // A pod's IP lies in its node's pod CIDR.
      assert.equal(row[5]?.split(".")[2], row[6]?.split("-")[1]);
    }
    const echoNodes = new Set(rows.filter((x) => x[0]?.startsWith("echo-")).map((x) => x[6]));
    assert.deepEqual([...echoNodes].sort(), ["node-1", "node-2"], "replicas spread over both nodes");
  });

  it("gives kubectl-shaped JSON", async () => {
    const pods = await c.pods();
    const client = pods.find((p) => p.metadata.name === "client-1") as PodJson;
    assert.equal(client.spec.nodeName, "node-1");
    assert.equal(client.status.phase, "Running");
    assert.equal(client.status.conditions.find((x) => x.type === "Ready")?.status, "True");
    assert.equal(client.metadata.labels.app, "client");
    assert.ok(client.status.containerStatuses[0]?.state.running);
  });

  it("reaches a pod on the other node by pod IP from inside a pod", async () => {
    const pods = await c.pods();
    const target = pods.find((p) => p.metadata.name.startsWith("echo-") && p.spec.nodeName === "node-2") as PodJson;
    const r = await c.exec("client-1", ["curl", "-sS", "--max-time", "5", `http://${target.status.podIP}:8080/hello/world?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { pod: string; method: string; path: string; node: string; remote: string };
    assert.equal(body.pod, target.metadata.name);
    assert.equal(body.node, "node-2");
    assert.equal(body.method, "GET");
    assert.equal(body.path, "/hello/world?x=1");
    const client = pods.find((p) => p.metadata.name === "client-1") as PodJson;
    assert.equal(body.remote.split(":")[0], client.status.podIP, "no NAT between pods");
  });

  it("runs exec where the pod runs: its network namespace and resolv.conf", async () => {
    const r = await c.exec("client-2", ["sh", "-c", "ip -4 -o addr show dev eth0; cat /etc/resolv.conf; cat /proc/self/cgroup"]);
    assert.equal(r.code, 0, r.stderr);
    const pods = await c.pods();
    const ip = pods.find((p) => p.metadata.name === "client-2")?.status.podIP as string;
    assert.match(r.stdout, new RegExp(`inet ${ip.replace(/\./g, "\\.")}/32`));
    assert.match(r.stdout, /nameserver 10\.96\.0\.10/);
    assert.match(r.stdout, /search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/);
    assert.match(r.stdout, new RegExp(`/weft/${c.name}/node-2/pods/`));
  });

  it("reports every node component healthy", async () => {
    const r = await c.cli(["status", "-o", "json"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const s = JSON.parse(r.stdout) as { nodes: { node: string; kubelet: string; agent: string; proxySupervisor: string }[] };
    assert.deepEqual(
      s.nodes.map((n) => [n.node, n.kubelet, n.agent, n.proxySupervisor]),
      [
        ["node-1", "ok", "ok", "ok"],
        ["node-2", "ok", "ok", "ok"],
      ],
    );
  });

  it("down leaves no namespace, cgroup, pin, veth or process behind", async () => {
    const procs = cgroupTreeProcs(cgroupDir(c.name));
    assert.ok(procs.length >= 2 * 3 + 5, `expected kubelets, agents, supervisors and pods, got ${procs.length} processes`);
    const r = await c.down();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (await listNetns()).filter((n) => n.startsWith(`weft-${c.name}-`)),
      [],
    );
    assert.equal(existsSync(cgroupDir(c.name)), false);
    assert.equal(existsSync(bpfPinDir(c.name)), false);
    assert.equal(existsSync(`/etc/netns/weft-${c.name}-underlay`), false);
    const alive = () =>
      procs.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
    // Killed processes may stay zombies for a moment until their new parent reaps them.
    for (let i = 0; i < 50 && alive().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(alive(), []);
  });
});

describe("weft down after a crash of weft up", () => {
  it("removes a half-built cluster", async () => {
    const { spawn } = await import("node:child_process");
    const { TEST_STATE_ROOT, WEFT } = await import("../harness/cluster.ts");
    const name = `tcrash${process.pid % 10000}`;
    const child = spawn(process.execPath, [WEFT, "up", "--cluster", name, "--manifests", join(REPO, "examples")], {
      env: { ...process.env, WEFT_STATE_DIR: TEST_STATE_ROOT },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    // Kill it once the network is half built.
    for (let i = 0; i < 200 && !out.includes("network: node-1"); i++) await new Promise((r) => setTimeout(r, 25));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    assert.ok(
      (await listNetns()).some((n) => n.startsWith(`weft-${name}-`)),
      `something was left to clean: ${out}`,
    );
    const { weft } = await import("../harness/cluster.ts");
    const r = await weft(["down", "--cluster", name]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (await listNetns()).filter((n) => n.startsWith(`weft-${name}-`)),
      [],
    );
    assert.equal(existsSync(cgroupDir(name)), false);
    assert.equal(existsSync(join(TEST_STATE_ROOT, name)), false);
  });
});
