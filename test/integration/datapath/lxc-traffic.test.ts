// bpf/lxc.c with real traffic: a node namespace and three pod namespaces joined by veth pairs (as
// the local cluster wires pods), lxc_from_endpoint/lxc_to_endpoint attached with tcx on the node
// side, identities, endpoints and policy written through the mirrors. Allowed TCP/UDP/ICMP gets
// its answer (replies pass by conntrack: every direction is default-deny); denied traffic times
// out and its drop event (reason 133) arrives through the ring buffer.
// Run: node --import tsx --test test/integration/datapath/lxc-traffic.test.ts

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { DropReason } from "../../../src/datapath/drop-reasons.ts";
import { type DatapathEvent, decodeEvent, EventType, monotonicToDate, Verdict } from "../../../src/datapath/events.ts";
import { attachTc, loadObject, objectPath, openRingBuffer, pins, programOf, type RingBufferReader, writeMaps } from "../../../src/datapath/loader.ts";
import { ENDPOINTS_MAP, encodeEndpointKey, encodeEndpointValue } from "../../../src/datapath/maps/endpoints.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../../../src/datapath/maps/events.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import { flowFromEvent } from "../../../src/observe/flow.ts";
import { FlowRing } from "../../../src/observe/flow-ring.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { createSandbox, removeStale, type Sandbox, type SandboxPod } from "../../harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const GW = "10.200.1.1";
const A = { ip: "10.200.1.10", id: 1000 }; // server
const B = { ip: "10.200.1.20", id: 2000 }; // client the server's policy allows
const C = { ip: "10.200.1.30", id: 3000 }; // client nothing allows

// Servers and clients, inline (node -e); every process bounds itself in time.
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
setTimeout(() => process.exit(3), 120000).unref();
let pending = 0;
const ready = () => { if (--pending === 0) process.stdout.write("ready\\n"); };
for (const p of [8080, 8081]) { pending++; net.createServer((s) => s.end("hi")).listen(p, "0.0.0.0", ready); }
for (const p of [9090, 9091]) { pending++; const u = dgram.createSocket("udp4"); u.on("message", (m, r) => u.send(m, r.port, r.address)); u.bind(p, "0.0.0.0", ready); }
process.stdin.on("end", () => process.exit(0)).resume();
`;
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const [kind, host, port, ms] = process.argv.slice(1);
const done = (r) => { process.stdout.write(JSON.stringify(r) + "\\n"); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), Number(ms)).unref();
if (kind === "tcp") {
  let data = "";
  const s = net.connect(Number(port), host);
  s.on("data", (d) => (data += d)).on("end", () => done({ ok: true, data })).on("error", (e) => done({ ok: false, error: e.code }));
} else {
  const u = dgram.createSocket("udp4");
  u.on("message", (m) => done({ ok: true, data: String(m) }));
  u.send("ping", Number(port), host);
}
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
  let ring: RingBufferReader;
  let reading: Promise<void>;
  const events: DatapathEvent[] = [];
  const flows = new FlowRing(1024);

  before(async () => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    await removeStale("lxctraffic");
    sb = await createSandbox("lxctraffic");
    pods = {
      a: await sb.addPod("a", { ip: A.ip, hostIf: "lxca", gateway: GW }),
      b: await sb.addPod("b", { ip: B.ip, hostIf: "lxcb", gateway: GW }),
      c: await sb.addPod("c", { ip: C.ip, hostIf: "lxcc", gateway: GW }),
    };
    const root = sb.pinRoot;
    const loaded = await loadObject(objectPath("lxc"), root);
    const from = programOf(loaded, "lxc_from_endpoint").pin;
    const to = programOf(loaded, "lxc_to_endpoint").pin;
    const ep = (p: { ip: string; id: number }, pod: SandboxPod, endpointId: number, enforce: boolean) => ({
      op: "update" as const,
      map: pins.map(root, ENDPOINTS_MAP),
      key: encodeEndpointKey(p.ip),
      value: encodeEndpointValue({ ip: p.ip, identity: p.id, ifindex: pod.hostIfindex, endpointId, enforceIngress: enforce, enforceEgress: enforce }),
    });
    const ipc = (p: { ip: string; id: number }) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(p.ip),
      value: encodeIpcacheValue({ cidr: p.ip, identity: p.id }),
    });
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
    for (const [name, pod] of Object.entries(pods)) {
      await attachTc(from, sb.netns, pod.hostIf, "ingress", pins.link(root, `tc-${name}-ingress`));
      await attachTc(to, sb.netns, pod.hostIf, "egress", pins.link(root, `tc-${name}-egress`));
    }
    ring = await openRingBuffer(pins.map(root, EVENTS_MAP), { lostMap: pins.map(root, EVENTS_LOST_MAP) });
    reading = (async () => {
      for await (const batch of ring) {
        for (const r of batch) {
          const ev = decodeEvent(Buffer.from(r));
          events.push(ev);
          flows.push(
            flowFromEvent(ev, {
              nodeName: "n1",
              timeOf: (ns) => monotonicToDate(ns),
              endpointOf: (identity, ip) => ({ identity, pod_name: { [A.ip]: "a", [B.ip]: "b", [C.ip]: "c" }[ip] }),
            }),
          );
        }
      }
    })();
    server = sb.spawnIn(pods.a.netns, ["node", "-e", SERVER]);
    await new Promise<void>((resolve, reject) => {
      let out = "";
      server.stdout?.on("data", (d: Buffer) => {
        out += d;
        if (out.includes("ready")) resolve();
      });
      server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
  });

  after(async () => {
    server?.stdin?.end();
    await ring?.close();
    await reading?.catch(() => undefined);
    await sb?.dispose();
  });

  function client(pod: SandboxPod, kind: "tcp" | "udp", port: number, ms = 1500): Promise<{ ok: boolean; data?: string; error?: string }> {
    const child = sb.spawnIn(pod.netns, ["node", "-e", CLIENT, kind, A.ip, String(port), String(ms)]);
    return new Promise((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d;
      });
      child.once("close", () => {
        try {
          resolve(JSON.parse(out));
        } catch {
          reject(new Error(`client printed ${JSON.stringify(out)}`));
        }
      });
    });
  }

  function ping(pod: SandboxPod): Promise<boolean> {
    const child = sb.spawnIn(pod.netns, ["ping", "-c", "1", "-W", "1", A.ip]);
    return new Promise((resolve) => child.once("close", (code) => resolve(code === 0)));
  }

  async function waitEvent(pred: (e: DatapathEvent) => boolean, ms = 3000): Promise<DatapathEvent | undefined> {
    const deadline = Date.now() + ms;
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const e = events.find(pred);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  }

  const toA = (proto: number, dport: number, src: string) => (e: DatapathEvent) =>
    e.daddr === A.ip && e.saddr === src && e.proto === proto && e.dport === dport;

  it("TCP 8080 from B (allowed): connects, the answer comes back through conntrack", async () => {
    assert.deepEqual(await client(pods.b, "tcp", 8080), { ok: true, data: "hi" });
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
    assert.deepEqual(await client(pods.b, "udp", 9090), { ok: true, data: "ping" });
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
    const fromA = events.filter((e) => e.saddr === A.ip && e.type === EventType.policyVerdict);
    assert.deepEqual(
      fromA.map((e) => e.toJSON()),
      [],
    );
    assert.ok(
      events.some((e) => e.saddr === A.ip && e.type === EventType.trace && e.ctState === 2),
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
    t.diagnostic(`events: ${events.length}, flows: ${flows.size}, lost: ${ring.lost}`);
    assert.equal(ring.lost, 0);
  });
});

// Two nodes joined by an underlay veth, each with vx0 in external (collect_metadata) mode:
// vxlan_to_overlay puts the sender's identity into the VNI, vxlan_from_overlay hands it to
// lxc_to_endpoint in skb->mark. The receiving node's ipcache only knows the remote pod CIDR as
// world, so the allow proves the identity came through the tunnel.
describe("identity across nodes in the VXLAN tunnel key", () => {
  const N1 = { underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:00:00:00:00:11", gw: "10.200.1.1" };
  const N2 = { underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:00:00:00:00:12", gw: "10.200.2.1" };
  const SRV = { ip: "10.200.1.10", id: 1000 }; // on node 1, allows only identity 4000 on TCP 8080
  const CLI = { ip: "10.200.2.40", id: 4000 }; // on node 2
  let sb: Sandbox;
  let node2: string;
  let srv: SandboxPod;
  let cli: SandboxPod;
  let server: ChildProcess;
  let ring: RingBufferReader;
  let reading: Promise<void>;
  const events: DatapathEvent[] = [];

  before(async () => {
    await removeStale("lxcvx");
    sb = await createSandbox("lxcvx");
    node2 = await sb.addNetns("node2");
    const ip = (ns: string, ...args: string[]) => execFileSync("ip", ["-n", ns, ...args]);
    ip(sb.netns, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", node2);
    for (const [ns, n, peer] of [
      [sb.netns, N1, N2],
      [node2, N2, N1],
    ] as const) {
      ip(ns, "addr", "add", `${n.underlay}/24`, "dev", "ul0");
      ip(ns, "link", "set", "ul0", "up");
      ip(ns, "link", "add", "vx0", "address", n.mac, "type", "vxlan", "external", "dstport", "8472");
      ip(ns, "addr", "add", `${n.overlay}/32`, "dev", "vx0");
      ip(ns, "link", "set", "vx0", "up");
      ip(ns, "neigh", "add", peer.overlay, "lladdr", peer.mac, "dev", "vx0", "nud", "permanent");
      ip(ns, "route", "add", `${peer.gw.replace(/\.1$/, ".0")}/24`, "via", peer.overlay, "dev", "vx0", "onlink");
    }
    srv = await sb.addPod("srv", { ip: SRV.ip, hostIf: "lxcsrv", gateway: N1.gw });
    cli = await sb.addPod("cli", { ip: CLI.ip, hostIf: "lxccli", gateway: N2.gw, node: node2 });

    const roots = { n1: sb.pinRoot, n2: sb.pinRoot.replace(/\/n1$/, "/n2") };
    for (const [node, ns, root] of [
      ["n1", sb.netns, roots.n1],
      ["n2", node2, roots.n2],
    ] as const) {
      const loaded = await loadObject(objectPath("lxc"), root);
      const prog = (name: string) => programOf(loaded, name).pin;
      await attachTc(prog("vxlan_from_overlay"), ns, "vx0", "ingress", pins.link(root, `tc-${node}-vx0-ingress`));
      await attachTc(prog("vxlan_to_overlay"), ns, "vx0", "egress", pins.link(root, `tc-${node}-vx0-egress`));
      const pod = node === "n1" ? srv : cli;
      await attachTc(prog("lxc_from_endpoint"), ns, pod.hostIf, "ingress", pins.link(root, `tc-${node}-pod-ingress`));
      await attachTc(prog("lxc_to_endpoint"), ns, pod.hostIf, "egress", pins.link(root, `tc-${node}-pod-egress`));
    }
    const ipc = (root: string, cidr: string, identity: number, tunnelEndpoint?: string) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(cidr),
      value: encodeIpcacheValue({ cidr, identity, ...(tunnelEndpoint ? { tunnelEndpoint } : {}) }),
    });
    const ep = (root: string, p: { ip: string; id: number }, pod: SandboxPod, enforce: boolean) => ({
      op: "update" as const,
      map: pins.map(root, ENDPOINTS_MAP),
      key: encodeEndpointKey(p.ip),
      value: encodeEndpointValue({ ip: p.ip, identity: p.id, ifindex: pod.hostIfindex, endpointId: 1, enforceIngress: enforce, enforceEgress: enforce }),
    });
    await ensureSubjectMap(roots.n1, SRV.id);
    await writeMaps([
      ep(roots.n1, SRV, srv, true),
      ipc(roots.n1, `${SRV.ip}/32`, SRV.id),
      ipc(roots.n1, "10.200.2.0/24", 2, N2.underlay), // node 1 knows node 2's pods only as world
      ep(roots.n2, CLI, cli, false),
      ipc(roots.n2, `${CLI.ip}/32`, CLI.id),
      ipc(roots.n2, "10.200.1.0/24", 2, N1.underlay),
      ...policyWrites(roots.n1, SRV.id, [entry(CLI.id, "ingress", 6, 8080)]),
    ]);
    ring = await openRingBuffer(pins.map(roots.n1, EVENTS_MAP), { lostMap: pins.map(roots.n1, EVENTS_LOST_MAP) });
    reading = (async () => {
      for await (const batch of ring) for (const r of batch) events.push(decodeEvent(Buffer.from(r)));
    })();
    server = sb.spawnIn(srv.netns, ["node", "-e", SERVER]);
    await new Promise<void>((resolve, reject) => {
      let out = "";
      server.stdout?.on("data", (d: Buffer) => {
        out += d;
        if (out.includes("ready")) resolve();
      });
      server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
  });

  after(async () => {
    server?.stdin?.end();
    await ring?.close();
    await reading?.catch(() => undefined);
    await sb?.dispose();
  });

  function connect(port: number): Promise<{ ok: boolean; data?: string; error?: string }> {
    const child = sb.spawnIn(cli.netns, ["node", "-e", CLIENT, "tcp", SRV.ip, String(port), "1500"]);
    return new Promise((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d;
      });
      child.once("close", () => {
        try {
          resolve(JSON.parse(out));
        } catch {
          reject(new Error(`client printed ${JSON.stringify(out)}`));
        }
      });
    });
  }

  async function eventFor(pred: (e: DatapathEvent) => boolean): Promise<DatapathEvent | undefined> {
    const deadline = Date.now() + 3000;
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      const ev = events.find(pred);
      if (ev) return ev;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  it("TCP 8080 from the other node's pod: allowed by the identity in the VNI, the reply tunnels back", async () => {
    assert.deepEqual(await connect(8080), { ok: true, data: "hi" });
    const ev = await eventFor((e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.dport === 8080);
    assert.ok(ev, "a policy verdict on node 1");
    assert.equal(ev.srcIdentity, CLI.id);
    assert.equal(ev.verdict, Verdict.forwarded);
    assert.equal(ev.flags & 1, 1, "identity marked as coming from the tunnel");
  });

  it("TCP 8081 from the same pod: denied (133), still with the tunnel's identity", async () => {
    assert.deepEqual(await connect(8081), { ok: false, error: "timeout" });
    const ev = await eventFor((e) => e.saddr === CLI.ip && e.dport === 8081 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.POLICY);
    assert.equal(ev?.srcIdentity, CLI.id);
    assert.equal(ring.lost, 0);
  });
});
