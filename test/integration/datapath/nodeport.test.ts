// NodePort from outside the node with real traffic: an underlay bridge joining an "outside"
// namespace and two node namespaces (ul0 on the bridge, vx0 VXLAN in external mode between them),
// one pod behind a veth on each node; lxc.o and host.o attached as the agent attaches them,
// service maps written by ServiceSync. TCP and UDP from the outside to nodeIP:nodePort reach a
// local backend (client address kept) and a remote one (through VXLAN, SNAT to the node), replies
// come from nodeIP:nodePort; externalTrafficPolicy Local keeps the client's address and refuses on
// a node without a local backend; the pod's ingress policy sees the outside as world.
// Run: node --import tsx --test test/integration/datapath/nodeport.test.ts

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { type DatapathEvent, EventType, Verdict } from "../../../src/datapath/events.ts";
import { ServiceSync } from "../../../src/datapath/lb-sync.ts";
import { dumpMap, pins } from "../../../src/datapath/loader.ts";
import { decodeNat, NODEPORT_NAT_MAP } from "../../../src/datapath/maps/nodeport.ts";
import type { EndpointSliceInput, ServiceInput } from "../../../src/datapath/services.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { untilReady } from "../../harness/child-lines.ts";
import { EventLog } from "../../harness/event-log.ts";
import { type ClientResult, runClient } from "../../harness/l4-client.ts";
import { ID, setUpNodePortNode } from "../../harness/node-datapath.ts";
import { buildTwoNodes, type ClusterNode, freshSandbox, type Sandbox, type UnderlayNode } from "../../harness/sandbox.ts";

const OUTSIDE = "10.254.0.2";
const N1: UnderlayNode = { name: "n1", underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:77:00:00:00:01", gw: "10.200.1.1", cidr: "10.200.1.0/24" };
const N2: UnderlayNode = { name: "n2", underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:77:00:00:00:02", gw: "10.200.2.1", cidr: "10.200.2.0/24" };
const P1 = { ip: "10.200.1.10", id: 1000 }; // on n1
const P2 = { ip: "10.200.2.10", id: 2000 }; // on n2

// The backends: TCP answers with the peer it saw, UDP echoes the peer it saw.
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
setTimeout(() => process.exit(3), 300000).unref();
let pending = 2;
const ready = () => { if (--pending === 0) process.stdout.write("ready\\n"); };
net.createServer((s) => s.end(JSON.stringify({ pod: process.argv[1], peer: s.remoteAddress + ":" + s.remotePort }))).listen(8080, "0.0.0.0", ready);
const u = dgram.createSocket("udp4");
u.on("message", (m, r) => u.send(JSON.stringify({ pod: process.argv[1], peer: r.address + ":" + r.port, data: String(m) }), r.port, r.address));
u.bind(5353, "0.0.0.0", ready);
process.stdin.on("end", () => process.exit(0)).resume();
`;
function entry(identity: number, protocol: number, dport: number): PolicyEntry {
  return {
    key: { identity, direction: "ingress", protocol, dport, prefixlen: 64 },
    value: { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: identity },
    origins: [],
  };
}

function service(name: string, spec: NonNullable<ServiceInput["spec"]>): ServiceInput {
  return { metadata: { namespace: "default", name }, spec };
}

function slice(name: string, eps: { ip: string; node: string }[], port: number, protocol = "TCP"): EndpointSliceInput {
  return {
    metadata: { namespace: "default", name: `${name}-1`, labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node })),
    ports: [{ name: "", port, protocol }],
  };
}

const P1EP = { ip: P1.ip, node: "n1" };
const P2EP = { ip: P2.ip, node: "n2" };
const np = (port: number, nodePort: number, protocol = "TCP") => ({ port, targetPort: port === 53 ? 5353 : 8080, nodePort, protocol });
const SERVICES: ServiceInput[] = [
  service("on-n1", { type: "NodePort", clusterIP: "10.96.0.11", ports: [np(80, 30081)] }),
  service("on-n2", { type: "NodePort", clusterIP: "10.96.0.12", ports: [np(80, 30082)] }),
  service("udp-n1", { type: "NodePort", clusterIP: "10.96.0.13", ports: [np(53, 30053, "UDP")] }),
  service("udp-n2", { type: "NodePort", clusterIP: "10.96.0.14", ports: [np(53, 30054, "UDP")] }),
  service("local", { type: "NodePort", clusterIP: "10.96.0.15", externalTrafficPolicy: "Local", ports: [np(80, 30085)] }),
  service("lb", {
    type: "LoadBalancer",
    clusterIP: "10.96.0.16",
    ports: [np(80, 30086)],
  }),
];
SERVICES[5] = { ...(SERVICES[5] as ServiceInput), status: { loadBalancer: { ingress: [{ ip: "192.0.2.50" }] } } };
const SLICES: EndpointSliceInput[] = [
  slice("on-n1", [P1EP], 8080),
  slice("on-n2", [P2EP], 8080),
  slice("udp-n1", [P1EP], 5353, "UDP"),
  slice("udp-n2", [P2EP], 5353, "UDP"),
  slice("local", [P1EP], 8080),
  slice("lb", [P2EP], 8080),
];

/** What the outside client (harness/l4-client.ts) got, with the backend's JSON answer parsed. */
interface Result extends ClientResult {
  body?: { pod: string; peer: string; data?: string };
}

describe("NodePort from outside the node, real traffic over an underlay and VXLAN", () => {
  let sb: Sandbox;
  let outside: string;
  let nodes: Record<"n1" | "n2", ClusterNode>;
  const servers: ChildProcess[] = [];
  const logs: Partial<Record<"n1" | "n2", EventLog>> = {};

  before(async () => {
    sb = await freshSandbox("nodeport");
    // The local cluster's wiring: underlay bridge, outside, two nodes joined by external VXLAN, a pod each.
    ({ outside, nodes } = await buildTwoNodes(sb, OUTSIDE, [N1, N2], [P1.ip, P2.ip]));

    for (const [n, self, peer, pod] of [
      [nodes.n1, N1, N2, P1],
      [nodes.n2, N2, N1, P2],
    ] as const) {
      const { root, pod: podIf } = n;
      // lxc.o and host.o as the agent attaches them; ipcache and endpoints as it writes them
      // (src/agent/view.ts). Ingress: the world (outside clients) and the other node (SNATed
      // NodePort traffic).
      const { nodePort, loadMs } = await setUpNodePortNode(n, self, peer, { pod, peerPod: pod === P1 ? P2 : P1 }, [
        entry(ID.world, 6, 8080),
        entry(ID.world, 17, 5353),
        entry(ID.remoteNode, 6, 8080),
        entry(ID.remoteNode, 17, 5353),
      ]);
      assert.equal(nodePort.links.length, 2);
      process.stdout.write(`# loadNodePortDatapath ${self.name}: ${loadMs.toFixed(0)} ms\n`);
      const report = await new ServiceSync(root, self.name).sync(SERVICES, SLICES);
      assert.deepEqual(report.problems, []);
      logs[self.name] = await EventLog.open(root);
      const server = sb.spawnIn(podIf.netns, ["node", "-e", SERVER, self.name === "n1" ? "p1" : "p2"]);
      servers.push(server);
      await untilReady(server);
    }
  });

  after(async () => {
    for (const s of servers) s.stdin?.end();
    for (const l of Object.values(logs)) await l.close();
    await sb?.dispose();
  });

  async function client(kind: "tcp" | "udp" | "bench", host: string, port: number, ms = 2000, n = 0): Promise<Result> {
    const r = await runClient(sb, outside, host, port, { kind, ms, n });
    return r.ok && r.data !== undefined ? { ...r, body: JSON.parse(r.data) } : r;
  }

  const eventFor = (node: "n1" | "n2", pred: (e: DatapathEvent) => boolean) => (logs[node] as EventLog).wait(pred);

  it("TCP to n1:30081 (backend on n1): answered by p1, which saw the client's address; the reply is from n1:30081", async (t) => {
    const t0 = performance.now();
    const r = await client("tcp", N1.underlay, 30081);
    t.diagnostic(`${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p1");
    assert.match(r.body?.peer ?? "", new RegExp(`^${OUTSIDE}:\\d+$`));
    assert.equal(r.peer, `${N1.underlay}:30081`);
    const ev = await eventFor("n1", (e) => e.type === EventType.policyVerdict && e.saddr === OUTSIDE && e.daddr === P1.ip && e.dport === 8080);
    assert.equal(ev?.verdict, Verdict.forwarded);
    assert.equal(ev?.srcIdentity, ID.world, "p1's ingress policy sees the outside client as world");
  });

  it("TCP to n1:30082 (backend on n2): through VXLAN with SNAT, p2 saw n1's address, the reply is from n1:30082", async () => {
    const r = await client("tcp", N1.underlay, 30082);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p2");
    assert.match(r.body?.peer ?? "", new RegExp(`^${N1.underlay.replaceAll(".", "\\.")}:6\\d{4}$`), "the SNAT source: n1 and a NAT port");
    assert.equal(r.peer, `${N1.underlay}:30082`);
    const flows = (await dumpMap(pins.map(nodes.n1.root, NODEPORT_NAT_MAP))).entries.map((e) => decodeNat(e.key, e.value));
    assert.ok(flows.some((f) => f.dir === "original" && f.snat && f.newTo === `${P2.ip}:8080`));
  });

  it("the SNATed flow reaches p2's policy as remote-node (6, from the VNI host.c set), never as host", async () => {
    const ev = await eventFor("n2", (e) => e.type === EventType.policyVerdict && e.saddr === N1.underlay && e.daddr === P2.ip && e.dport === 8080);
    assert.ok(ev, "a policy verdict on n2");
    assert.equal(ev.flags & 1, 1, "identity from the tunnel key");
    assert.equal(ev.srcIdentity, ID.remoteNode);
    assert.equal(ev.verdict, Verdict.forwarded);
  });

  it("UDP to n1:30053 (backend on n1) and n1:30054 (backend on n2): echoes come back from the node's NodePort", async () => {
    const local = await client("udp", N1.underlay, 30053);
    assert.equal(local.ok, true, JSON.stringify(local));
    assert.equal(local.body?.pod, "p1");
    assert.match(local.body?.peer ?? "", new RegExp(`^${OUTSIDE}:`));
    assert.equal(local.peer, `${N1.underlay}:30053`);
    const remote = await client("udp", N1.underlay, 30054);
    assert.equal(remote.ok, true, JSON.stringify(remote));
    assert.equal(remote.body?.pod, "p2");
    assert.match(remote.body?.peer ?? "", new RegExp(`^${N1.underlay.replaceAll(".", "\\.")}:`));
    assert.equal(remote.peer, `${N1.underlay}:30054`);
  });

  it("the same services through n2: the roles swap (p2 local, p1 remote)", async () => {
    const a = await client("tcp", N2.underlay, 30082);
    assert.deepEqual([a.ok, a.body?.pod, a.peer], [true, "p2", `${N2.underlay}:30082`]);
    assert.match(a.body?.peer ?? "", new RegExp(`^${OUTSIDE}:`));
    const b = await client("tcp", N2.underlay, 30081);
    assert.deepEqual([b.ok, b.body?.pod, b.peer], [true, "p1", `${N2.underlay}:30081`]);
    assert.match(b.body?.peer ?? "", new RegExp(`^${N2.underlay.replaceAll(".", "\\.")}:`));
  });

  it("externalTrafficPolicy Local: n1 (has the backend) keeps the client's address", async () => {
    const r = await client("tcp", N1.underlay, 30085);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p1");
    assert.match(r.body?.peer ?? "", new RegExp(`^${OUTSIDE}:\\d+$`));
    assert.equal(r.peer, `${N1.underlay}:30085`);
  });

  it("externalTrafficPolicy Local: n2 (no local backend) refuses — nothing answers", async () => {
    const r = await client("tcp", N2.underlay, 30085, 1500);
    assert.deepEqual(r, { ok: false, error: "timeout" });
  });

  it("a LoadBalancer IP routed to n1: served like the NodePort (backend on n2, SNAT)", async () => {
    execFileSync("ip", ["-n", outside, "route", "replace", "192.0.2.50/32", "via", N1.underlay]);
    const r = await client("tcp", "192.0.2.50", 80);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p2");
    assert.equal(r.peer, "192.0.2.50:80");
    const viaNodePort = await client("tcp", N1.underlay, 30086);
    assert.deepEqual([viaNodePort.ok, viaNodePort.body?.pod, viaNodePort.peer], [true, "p2", `${N1.underlay}:30086`]);
  });

  it("100 sequential connections each way: none fails (connect+answer time printed)", async (t) => {
    for (const [label, port] of [
      ["local backend", 30081],
      ["remote backend (VXLAN, SNAT)", 30082],
    ] as const) {
      const r = await client("bench", N1.underlay, port, 60_000, 100);
      assert.equal(r.ok, true, JSON.stringify(r));
      const times = (r.times ?? []).sort((a, b) => a - b);
      assert.equal(times.length, 100);
      const p50 = times[50] as number;
      const p99 = times[98] as number;
      t.diagnostic(`${label}: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
      assert.ok(p99 < 1000, `p99 ${p99} ms`);
    }
    for (const l of Object.values(logs)) assert.equal(l.lost, 0);
  });
});
