// bpf/lxc.c with real traffic: a node namespace and three pod namespaces joined by veth pairs (as
// the local cluster wires pods), lxc_from_endpoint/lxc_to_endpoint attached with tcx on the node
// side, identities, endpoints and policy written through the mirrors. Allowed TCP/UDP/ICMP gets
// its answer (replies pass by conntrack: every direction is default-deny); denied traffic times
// out and its drop event (reason 133) arrives through the ring buffer.
// Run: node --import tsx --test test/integration/datapath/lxc-traffic.test.ts

import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { DropReason } from "../../../src/datapath/drop-reasons.ts";
import { type DatapathEvent, EventType, monotonicToDate, Verdict } from "../../../src/datapath/events.ts";
import { writeMaps } from "../../../src/datapath/loader.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import { flowFromEvent } from "../../../src/observe/flow.ts";
import { FlowRing } from "../../../src/observe/flow-ring.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { untilReady } from "../../harness/child-lines.ts";
import { EventLog } from "../../harness/event-log.ts";
import { runClient } from "../../harness/l4-client.ts";
import { attachLxc, endpointWrite, ipcacheWrite } from "../../harness/node-datapath.ts";
import { buildTwoNodes, createSandbox, freshSandbox, removeStale, type Sandbox, type SandboxPod, type UnderlayNode } from "../../harness/sandbox.ts";

const GW = "10.200.1.1";
const A = { ip: "10.200.1.10", id: 1000 }; // server
const B = { ip: "10.200.1.20", id: 2000 }; // client the server's policy allows
const C = { ip: "10.200.1.30", id: 3000 }; // client nothing allows

// The server, inline (node -e; clients: harness/l4-client.ts); every process bounds itself in time.
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
setTimeout(() => process.exit(3), 120000).unref();
let pending = 0;
const ready = () => { if (--pending === 0) process.stdout.write("ready\\n"); };
for (const p of [8080, 8081]) { pending++; net.createServer((s) => s.end("hi")).listen(p, "0.0.0.0", ready); }
for (const p of [9090, 9091]) { pending++; const u = dgram.createSocket("udp4"); u.on("message", (m, r) => u.send(m, r.port, r.address)); u.bind(p, "0.0.0.0", ready); }
process.stdin.on("end", () => process.exit(0)).resume();
`;

function entry(identity: number, direction: "ingress" | "egress", protocol: number, dport: number): PolicyEntry {
  return {
    key: { identity, direction, protocol, dport, prefixlen: 64 },
    value: { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 1 },
    origins: [],
  };
}

describe("lxc programs with real traffic between pod namespaces", () => {
  let sb: Sandbox;
  let pods: Record<"a" | "b" | "c", SandboxPod>;
  let server: ChildProcess;
  let log: EventLog;
  const flows = new FlowRing(1024);

  before(async () => {
    sb = await freshSandbox("lxctraffic");
    pods = {
      a: await sb.addPod("a", { ip: A.ip, hostIf: "lxca", gateway: GW }),
      b: await sb.addPod("b", { ip: B.ip, hostIf: "lxcb", gateway: GW }),
      c: await sb.addPod("c", { ip: C.ip, hostIf: "lxcc", gateway: GW }),
    };
    const root = sb.pinRoot;
    await attachLxc(root, sb.netns, { pods: Object.values(pods) });
    const ep = (p: { ip: string; id: number }, pod: SandboxPod, endpointId: number, enforce: boolean) =>
      endpointWrite(root, p, pod, { endpointId, enforceIngress: enforce, enforceEgress: enforce });
    const ipc = (p: { ip: string; id: number }) => ipcacheWrite(root, p.ip, p.id);
    await ensureSubjectMap(root, A.id);
    await ensureSubjectMap(root, B.id);
    await writeMaps([
      // A and B are default-deny both ways, so every reply below passes by conntrack alone.
      ep(A, pods.a, 1, true),
      ep(B, pods.b, 2, true),
      ep(C, pods.c, 3, false),
      ipc(A),
      ipc(B),
      ipc(C),
      ...policyWrites(root, A.id, [entry(B.id, "ingress", 6, 8080), entry(B.id, "ingress", 17, 9090), entry(B.id, "ingress", 1, 8)]),
      ...policyWrites(
        root,
        B.id,
        [6, 17].flatMap((proto) => [8080, 8081, 9090, 9091].map((port) => entry(A.id, "egress", proto, port))).concat([entry(A.id, "egress", 1, 8)]),
      ),
    ]);
    log = await EventLog.open(root, (ev) =>
      flows.push(
        flowFromEvent(ev, {
          nodeName: "n1",
          timeOf: (ns) => monotonicToDate(ns),
          endpointOf: (identity, ip) => ({ identity, pod_name: { [A.ip]: "a", [B.ip]: "b", [C.ip]: "c" }[ip] }),
        }),
      ),
    );
    server = sb.spawnIn(pods.a.netns, ["node", "-e", SERVER]);
    await untilReady(server);
  });

  after(async () => {
    server?.stdin?.end();
    await log?.close();
    await sb?.dispose();
  });

  const client = (pod: SandboxPod, kind: "tcp" | "udp", port: number, ms = 1500) => runClient(sb, pod.netns, A.ip, port, { kind, ms });

  function ping(pod: SandboxPod): Promise<boolean> {
    const child = sb.spawnIn(pod.netns, ["ping", "-c", "1", "-W", "1", A.ip]);
    return new Promise((resolve) => child.once("close", (code) => resolve(code === 0)));
  }

  const waitEvent = (pred: (e: DatapathEvent) => boolean) => log.wait(pred);
  const toA = (proto: number, dport: number, src: string) => (e: DatapathEvent) =>
    e.daddr === A.ip && e.saddr === src && e.proto === proto && e.dport === dport;

  it("TCP 8080 from B (allowed): connects, the answer comes back through conntrack", async () => {
    assert.deepEqual(await client(pods.b, "tcp", 8080), { ok: true, data: "hi", peer: `${A.ip}:8080` });
    const ev = await waitEvent((e) => toA(6, 8080, B.ip)(e) && e.type === EventType.policyVerdict);
    assert.equal(ev?.verdict, Verdict.forwarded);
    assert.equal(ev?.srcIdentity, B.id);
    assert.equal(ev?.dstIdentity, A.id);
  });

  it("TCP 8081 from B (no ingress rule): times out, drop event with reason 133", async () => {
    assert.deepEqual(await client(pods.b, "tcp", 8081), { ok: false, error: "timeout" });
    const ev = await waitEvent((e) => toA(6, 8081, B.ip)(e) && e.verdict === Verdict.dropped);
    assert.ok(ev, "a drop event");
    assert.equal(ev.dropReason, DropReason.POLICY);
    assert.equal(ev.dropReasonDesc, "Policy denied");
    assert.equal(ev.direction, "ingress");
  });

  it("UDP 9090 from B (allowed): the echo comes back", async () => {
    assert.deepEqual(await client(pods.b, "udp", 9090), { ok: true, data: "ping", peer: `${A.ip}:9090` });
  });

  it("UDP 9091 from B (no ingress rule): no answer, drop event 133", async () => {
    assert.deepEqual(await client(pods.b, "udp", 9091, 1000), { ok: false, error: "timeout" });
    const ev = await waitEvent((e) => toA(17, 9091, B.ip)(e) && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.POLICY);
  });

  it("ICMP echo from B (type 8 allowed): the reply passes", async () => {
    assert.equal(await ping(pods.b), true);
  });

  it("ICMP echo from C (nothing allows C): lost, drop event 133", async () => {
    assert.equal(await ping(pods.c), false);
    const ev = await waitEvent((e) => e.daddr === A.ip && e.saddr === C.ip && e.proto === 1 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.POLICY);
    assert.equal(ev?.icmpType, 8);
    assert.equal(ev?.srcIdentity, C.id);
  });

  it("TCP 8080 from C: times out, drop event 133", async () => {
    assert.deepEqual(await client(pods.c, "tcp", 8080), { ok: false, error: "timeout" });
    assert.ok(await waitEvent((e) => toA(6, 8080, C.ip)(e) && e.dropReason === DropReason.POLICY));
  });

  it("replies were decided by conntrack, never by a policy verdict in the reverse direction", () => {
    // A enforces egress with no egress rules: any policy decision on A's traffic would be a drop.
    const fromA = log.events.filter((e) => e.saddr === A.ip && e.type === EventType.policyVerdict);
    assert.deepEqual(
      fromA.map((e) => e.toJSON()),
      [],
    );
    assert.ok(
      log.events.some((e) => e.saddr === A.ip && e.type === EventType.trace && e.ctState === 2),
      "a reply trace from A",
    );
  });

  it("events become Hubble-shaped flows in the ring; none were lost", (t) => {
    const dropped = flows.query({ verdict: ["DROPPED"] });
    assert.ok(dropped.length >= 4, `dropped flows: ${dropped.length}`);
    const f = dropped.find((x) => x.IP.source === B.ip && "TCP" in (x.l4 ?? {}));
    assert.ok(f);
    assert.equal(f.drop_reason_desc, "POLICY_DENIED");
    assert.equal(f.traffic_direction, "INGRESS");
    assert.equal(f.destination.pod_name, "a");
    assert.equal(f.source.identity, B.id);
    assert.ok(Math.abs(Date.parse(f.time) - Date.now()) < 60_000, "flow time is wall-clock time");
    t.diagnostic(`events: ${log.events.length}, flows: ${flows.size}, lost: ${log.lost}`);
    assert.equal(log.lost, 0);
  });
});

// Two nodes on the local cluster's underlay (buildUnderlay), each with vx0 in external
// (collect_metadata) mode: vxlan_to_overlay puts the sender's identity into the VNI,
// vxlan_from_overlay hands it to lxc_to_endpoint in skb->mark. The receiving node's ipcache only
// knows the remote pod CIDR as world, so the allow proves the identity came through the tunnel.
describe("identity across nodes in the VXLAN tunnel key", () => {
  const N1: UnderlayNode = { name: "n1", underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:00:00:00:00:11", gw: "10.200.1.1", cidr: "10.200.1.0/24" };
  const N2: UnderlayNode = { name: "n2", underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:00:00:00:00:12", gw: "10.200.2.1", cidr: "10.200.2.0/24" };
  const SRV = { ip: "10.200.1.10", id: 1000 }; // on node 1, allows only identity 4000 on TCP 8080
  const CLI = { ip: "10.200.2.40", id: 4000 }; // on node 2
  let sb: Sandbox;
  let srv: SandboxPod;
  let cli: SandboxPod;
  let server: ChildProcess;
  let log: EventLog;

  before(async () => {
    await removeStale("lxcvx");
    sb = await createSandbox("lxcvx");
    const { nodes } = await buildTwoNodes(sb, "10.254.0.2", [N1, N2], [SRV.ip, CLI.ip]); // its outside namespace stays idle here
    srv = nodes.n1.pod;
    cli = nodes.n2.pod;
    const roots = { n1: nodes.n1.root, n2: nodes.n2.root };
    await attachLxc(roots.n1, nodes.n1.ns, { pods: [srv], vxlan: true });
    await attachLxc(roots.n2, nodes.n2.ns, { pods: [cli], vxlan: true });
    const enforce = (on: boolean) => ({ enforceIngress: on, enforceEgress: on });
    await ensureSubjectMap(roots.n1, SRV.id);
    await writeMaps([
      endpointWrite(roots.n1, SRV, srv, enforce(true)),
      ipcacheWrite(roots.n1, `${SRV.ip}/32`, SRV.id),
      ipcacheWrite(roots.n1, N2.cidr, 2, { tunnelEndpoint: N2.underlay }), // node 1 knows node 2's pods only as world
      endpointWrite(roots.n2, CLI, cli, enforce(false)),
      ipcacheWrite(roots.n2, `${CLI.ip}/32`, CLI.id),
      ipcacheWrite(roots.n2, N1.cidr, 2, { tunnelEndpoint: N1.underlay }),
      ...policyWrites(roots.n1, SRV.id, [entry(CLI.id, "ingress", 6, 8080)]),
    ]);
    log = await EventLog.open(roots.n1);
    server = sb.spawnIn(srv.netns, ["node", "-e", SERVER]);
    await untilReady(server);
  });

  after(async () => {
    server?.stdin?.end();
    await log?.close();
    await sb?.dispose();
  });

  const connect = (port: number) => runClient(sb, cli.netns, SRV.ip, port, { ms: 1500 });

  it("TCP 8080 from the other node's pod: allowed by the identity in the VNI, the reply tunnels back", async () => {
    assert.deepEqual(await connect(8080), { ok: true, data: "hi", peer: `${SRV.ip}:8080` });
    const ev = await log.wait((e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.dport === 8080);
    assert.ok(ev, "a policy verdict on node 1");
    assert.equal(ev.srcIdentity, CLI.id);
    assert.equal(ev.verdict, Verdict.forwarded);
    assert.equal(ev.flags & 1, 1, "identity marked as coming from the tunnel");
  });

  it("TCP 8081 from the same pod: denied (133), still with the tunnel's identity", async () => {
    assert.deepEqual(await connect(8081), { ok: false, error: "timeout" });
    const ev = await log.wait((e) => e.saddr === CLI.ip && e.dport === 8081 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.POLICY);
    assert.equal(ev?.srcIdentity, CLI.id);
    assert.equal(log.lost, 0);
  });
});
