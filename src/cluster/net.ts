// Network plumbing of the local cluster: the underlay bridge, the outside namespace, node namespaces
// joined by VXLAN, and pod sandboxes wired to their node by veth. Works only inside namespaces whose
// names carry the cluster's prefix: it never adds a route, address or device in the root namespace.

import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { ipIn, run, tryRun } from "../core/run.ts";
import { setupProxyRouting } from "../datapath/redirect-net.ts";
import { type ClusterConfig, type NodeConfig, netnsPrefix, VXLAN_PORT } from "./config.ts";

export const POD_MTU = 1450; // room for the VXLAN header on the 1500-byte underlay

export async function sysctlIn(netns: string, key: string, value: string): Promise<void> {
  await run("nsenter", [`--net=/run/netns/${netns}`, "sysctl", "-qw", `${key}=${value}`]);
}

export async function listNetns(): Promise<string[]> {
  const out = await run("ip", ["netns", "list"]);
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter(Boolean);
}

async function addNetns(name: string): Promise<void> {
  await run("ip", ["netns", "add", name]);
  await ipIn(name, "link", "set", "lo", "up");
}

export async function buildClusterNetwork(cfg: ClusterConfig, progress: (msg: string) => void): Promise<void> {
  const ul = cfg.underlayNetns;
  await addNetns(ul);
  await ipIn(ul, "link", "add", "br0", "type", "bridge");
  await ipIn(ul, "link", "set", "br0", "up");

  await addNetns(cfg.outsideNetns);
  await ipIn(ul, "link", "add", "outside", "type", "veth", "peer", "name", "eth0", "netns", cfg.outsideNetns);
  await ipIn(ul, "link", "set", "outside", "master", "br0", "up");
  await ipIn(cfg.outsideNetns, "addr", "add", `${cfg.outsideIP}/24`, "dev", "eth0");
  await ipIn(cfg.outsideNetns, "link", "set", "eth0", "up");
  progress(`network: underlay bridge and outside namespace (${cfg.outsideIP})`);

  for (const node of cfg.nodes) {
    await buildNode(cfg, node);
    progress(`network: ${node.name} (underlay ${node.underlayIP}, pods ${node.podCIDR})`);
  }
}

async function buildNode(cfg: ClusterConfig, node: NodeConfig): Promise<void> {
  const ns = node.netns;
  await addNetns(ns);
  for (const [k, v] of [
    ["net.ipv4.ip_forward", "1"],
    ["net.ipv4.conf.all.rp_filter", "0"],
    ["net.ipv4.conf.default.rp_filter", "0"],
    ["net.ipv6.conf.all.disable_ipv6", "1"],
    ["net.ipv6.conf.default.disable_ipv6", "1"],
  ] as const) {
    await sysctlIn(ns, k, v);
  }
  await ipIn(cfg.underlayNetns, "link", "add", node.name, "type", "veth", "peer", "name", "ul0", "netns", ns);
  await ipIn(cfg.underlayNetns, "link", "set", node.name, "master", "br0", "up");
  await ipIn(ns, "addr", "add", `${node.underlayIP}/24`, "dev", "ul0");
  await ipIn(ns, "link", "set", "ul0", "up");

  // Pods reach the world (the outside namespace) with the node's address, as Cilium's masquerading
  // does. Interim: an nft rule inside the node namespace until the BPF egress SNAT lands.
  const masquerade = `table ip weft {\n  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr 10.200.0.0/16 ip daddr != { 10.200.0.0/16, ${cfg.serviceCIDR} } oifname "ul0" masquerade\n  }\n}\n`;
  await run("ip", ["netns", "exec", ns, "nft", "-f", "-"], { input: masquerade });

  // Packets the datapath hands to the proxy (bpf_sk_assign) are delivered locally (fwmark rule).
  await setupProxyRouting(ns);

  // The node's own address in its pod CIDR, every pod's gateway (answered by ARP on each veth).
  // (On lo: this kernel has no dummy device.)
  await ipIn(ns, "addr", "add", `${node.gatewayIP}/32`, "dev", "lo");

  // VXLAN in external (collect_metadata) mode: the agent's BPF program on vx0 egress picks the
  // remote node from the ipcache and puts the sender's identity in the VNI; the one on ingress
  // reads it back. Until the agent has loaded them, nothing crosses between nodes.
  await ipIn(ns, "link", "add", "vx0", "address", vxlanMac(node.index), "type", "vxlan", "external", "dstport", String(VXLAN_PORT));
  await ipIn(ns, "addr", "add", `${node.overlayIP}/24`, "dev", "vx0");
  await ipIn(ns, "link", "set", "vx0", "up");
  for (const peer of cfg.nodes) {
    if (peer.name === node.name) continue;
    await ipIn(ns, "neigh", "add", peer.overlayIP, "lladdr", vxlanMac(peer.index), "dev", "vx0", "nud", "permanent");
    await ipIn(ns, "route", "add", peer.podCIDR, "via", peer.overlayIP, "dev", "vx0", "onlink");
  }
}

/** A fixed, locally administered MAC per node, so peers can hold permanent neighbour entries. */
export function vxlanMac(index: number): string {
  return `02:77:00:00:${((index >> 8) & 0xff).toString(16).padStart(2, "0")}:${(index & 0xff).toString(16).padStart(2, "0")}`;
}

export interface PodSandbox {
  netns: string;
  veth: string;
  ip: string;
}

/** Creates a pod's namespace, veth pair, address, routes and resolv.conf. */
export async function createPodSandbox(cfg: ClusterConfig, node: NodeConfig, sandbox: PodSandbox, dns: { namespace: string; hostname: string }): Promise<void> {
  const { netns, veth, ip } = sandbox;
  await tryRun("ip", ["netns", "del", netns]); // a leftover of a crashed kubelet
  await addNetns(netns);
  await ipIn(node.netns, "link", "add", veth, "mtu", String(POD_MTU), "type", "veth", "peer", "name", "eth0", "netns", netns);
  await ipIn(node.netns, "link", "set", veth, "up");
  await ipIn(netns, "link", "set", "eth0", "mtu", String(POD_MTU));
  await ipIn(netns, "addr", "add", `${ip}/32`, "dev", "eth0");
  await ipIn(netns, "link", "set", "eth0", "up");
  await ipIn(netns, "route", "add", node.gatewayIP, "dev", "eth0", "scope", "link");
  await ipIn(netns, "route", "add", "default", "via", node.gatewayIP, "dev", "eth0");
  await ipIn(node.netns, "route", "replace", `${ip}/32`, "dev", veth);

  const etc = `/etc/netns/${netns}`;
  mkdirSync(etc, { recursive: true });
  const search = [`${dns.namespace}.svc.cluster.local`, "svc.cluster.local", "cluster.local"].join(" ");
  writeFileSync(`${etc}/resolv.conf`, `nameserver ${cfg.clusterDNS}\nsearch ${search}\noptions ndots:5\n`);
  writeFileSync(`${etc}/hosts`, `127.0.0.1\tlocalhost\n${ip}\t${dns.hostname}\n`);
  writeFileSync(`${etc}/hostname`, `${dns.hostname}\n`);
}

export async function deletePodSandbox(node: NodeConfig, sandbox: PodSandbox): Promise<void> {
  await tryRun("ip", ["-n", node.netns, "route", "del", `${sandbox.ip}/32`, "dev", sandbox.veth]);
  await tryRun("ip", ["netns", "del", sandbox.netns]);
  rmSync(`/etc/netns/${sandbox.netns}`, { recursive: true, force: true });
}

/** Removes every namespace and /etc/netns folder of a cluster, whatever state it was left in. */
export async function removeClusterNetwork(cluster: string): Promise<string[]> {
  const prefix = netnsPrefix(cluster);
  const names = (await listNetns()).filter((n) => n.startsWith(prefix));
  // Pods first, then nodes, then the underlay: each veth pair goes with the first namespace deleted.
  names.sort((a, b) => b.length - a.length);
  for (const n of names) await tryRun("ip", ["netns", "del", n]);
  try {
    for (const d of readdirSync("/etc/netns")) {
      if (d.startsWith(prefix)) rmSync(`/etc/netns/${d}`, { recursive: true, force: true });
    }
  } catch {}
  return names;
}
