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
import { fileURLToPath } from "node:url";
import { type DatapathEvent, decodeEvent, EventType, Verdict } from "../../../src/datapath/events.ts";
import { ServiceSync } from "../../../src/datapath/lb-sync.ts";
import { attachTc, dumpMap, loadObject, objectPath, openRingBuffer, pins, programOf, type RingBufferReader, writeMaps } from "../../../src/datapath/loader.ts";
import { ENDPOINTS_MAP, encodeEndpointKey, encodeEndpointValue } from "../../../src/datapath/maps/endpoints.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../../../src/datapath/maps/events.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { decodeNat, NODEPORT_NAT_MAP } from "../../../src/datapath/maps/nodeport.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import { loadNodePortDatapath } from "../../../src/datapath/nodeport-sync.ts";
import type { EndpointSliceInput, ServiceInput } from "../../../src/datapath/services.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { buildUnderlay, createSandbox, removeStale, type Sandbox, type SandboxPod, type UnderlayNode } from "../../harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const OUTSIDE = "10.254.0.2";
const N1: UnderlayNode = { name: "n1", underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:77:00:00:00:01", gw: "10.200.1.1", cidr: "10.200.1.0/24" };
const N2: UnderlayNode = { name: "n2", underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:77:00:00:00:02", gw: "10.200.2.1", cidr: "10.200.2.0/24" };
const P1 = { ip: "10.200.1.10", id: 1000 }; // on n1
const P2 = { ip: "10.200.2.10", id: 2000 }; // on n2
const ID = { host: 1, world: 2, remoteNode: 6 };

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
// The outside client: one TCP connection or UDP datagram, or `n` sequential TCP connections timed.
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const [kind, host, port, ms, n] = process.argv.slice(1);
const done = (r) => { process.stdout.write(JSON.stringify(r) + "\\n"); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), Number(ms)).unref();
if (kind === "tcp") {
  let data = "";
  const s = net.connect(Number(port), host);
  s.on("data", (d) => (data += d)).on("end", () => done({ ok: true, body: JSON.parse(data), from: s.remoteAddress + ":" + s.remotePort }))
   .on("error", (e) => done({ ok: false, error: e.code }));
} else if (kind === "udp") {
  const u = dgram.createSocket("udp4");
  u.on("message", (m, r) => done({ ok: true, body: JSON.parse(String(m)), from: r.address + ":" + r.port }));
  u.send("ping", Number(port), host);
} else {
  const times = [];
  const one = (i) => {
    if (i === Number(n)) return done({ ok: true, times });
    const t0 = process.hrtime.bigint();
    const s = net.connect(Number(port), host);
    s.on("data", () => {}).on("end", () => { times.push(Number(process.hrtime.bigint() - t0) / 1e6); one(i + 1); })
     .on("error", (e) => done({ ok: false, error: e.code, after: i }));
  };
  one(0);
}
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

interface Result {
  ok: boolean;
  body?: { pod: string; peer: string; data?: string };
  from?: string;
  error?: string;
  times?: number[];
}

describe("NodePort from outside the node, real traffic over an underlay and VXLAN", () => {
  let sb: Sandbox;
  let outside: string;
  const nodes: Record<"n1" | "n2", { ns: string; root: string; pod?: SandboxPod }> = {
    n1: { ns: "", root: "" },
    n2: { ns: "", root: "" },
  };
  const servers: ChildProcess[] = [];
  const rings: RingBufferReader[] = [];
  const reading: Promise<void>[] = [];
  const events: Record<"n1" | "n2", DatapathEvent[]> = { n1: [], n2: [] };

  before(async () => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    await removeStale("nodeport");
    sb = await createSandbox("nodeport");
    // The local cluster's wiring: underlay bridge, outside, two nodes joined by external VXLAN.
    const topo = await buildUnderlay(sb, OUTSIDE, [N1, N2]);
    outside = topo.outside;
    nodes.n1 = { ...nodes.n1, ns: topo.nodes.n1 as string, root: sb.pinRoot };
    nodes.n2 = { ...nodes.n2, ns: topo.nodes.n2 as string, root: sb.pinRoot.replace(/\/n1$/, "/n2") };
    nodes.n1.pod = await sb.addPod("p1", { ip: P1.ip, hostIf: "lxcp1", gateway: N1.gw, node: nodes.n1.ns });
    nodes.n2.pod = await sb.addPod("p2", { ip: P2.ip, hostIf: "lxcp2", gateway: N2.gw, node: nodes.n2.ns });

    for (const [n, self, peer, pod] of [
      [nodes.n1, N1, N2, P1],
      [nodes.n2, N2, N1, P2],
    ] as const) {
      const { ns, root } = n;
      const podIf = n.pod as SandboxPod;
      // lxc.o as the agent attaches it: vx0 both ways, the pod's veth both ways.
      const lxc = await loadObject(objectPath("lxc"), root);
      const prog = (name: string) => programOf(lxc, name).pin;
      await attachTc(prog("vxlan_from_overlay"), ns, "vx0", "ingress", pins.link(root, "vx0-ingress"));
      await attachTc(prog("vxlan_to_overlay"), ns, "vx0", "egress", pins.link(root, "vx0-egress"));
      await attachTc(prog("lxc_from_endpoint"), ns, podIf.hostIf, "ingress", pins.link(root, "lxc-from"));
      await attachTc(prog("lxc_to_endpoint"), ns, podIf.hostIf, "egress", pins.link(root, "lxc-to"));
      // host.o: the function the agent calls.
      const t0 = performance.now();
      const loaded = await loadNodePortDatapath(root, { netns: ns, nodeIP: self.underlay });
      assert.equal(loaded.links.length, 2);
      process.stdout.write(`# loadNodePortDatapath ${self.name}: ${(performance.now() - t0).toFixed(0)} ms\n`);
      // ipcache and endpoints as the agent writes them (src/agent/view.ts).
      const ipc = (cidr: string, identity: number, extra: { tunnelEndpoint?: string; flags?: number } = {}) => ({
        op: "update" as const,
        map: pins.map(root, IPCACHE_MAP),
        key: encodeIpcacheKey(cidr),
        value: encodeIpcacheValue({ cidr, identity, ...extra }),
      });
      const peerPod = pod === P1 ? P2 : P1;
      await ensureSubjectMap(root, pod.id);
      await writeMaps([
        ipc("0.0.0.0/0", ID.world),
        ...[self.underlay, self.overlay, self.gw].map((a) => ipc(`${a}/32`, ID.host)),
        ...[peer.underlay, peer.overlay, peer.gw].map((a) => ipc(`${a}/32`, ID.remoteNode)),
        ipc(peer.cidr, ID.world, { tunnelEndpoint: peer.underlay }),
        ipc(`${pod.ip}/32`, pod.id, { flags: 1 }),
        ipc(`${peerPod.ip}/32`, peerPod.id, { tunnelEndpoint: peer.underlay }),
        {
          op: "update",
          map: pins.map(root, ENDPOINTS_MAP),
          key: encodeEndpointKey(pod.ip),
          value: encodeEndpointValue({ ip: pod.ip, identity: pod.id, ifindex: podIf.hostIfindex, endpointId: 1, enforceIngress: true, enforceEgress: false }),
        },
        // Ingress: the world (outside clients) and the other node (SNATed NodePort traffic).
        ...policyWrites(root, pod.id, [entry(ID.world, 6, 8080), entry(ID.world, 17, 5353), entry(ID.remoteNode, 6, 8080), entry(ID.remoteNode, 17, 5353)]),
      ]);
      const report = await new ServiceSync(root, self.name).sync(SERVICES, SLICES);
      assert.deepEqual(report.problems, []);
      const ring = await openRingBuffer(pins.map(root, EVENTS_MAP), { lostMap: pins.map(root, EVENTS_LOST_MAP) });
      rings.push(ring);
      const sink = events[self.name as "n1" | "n2"];
      reading.push(
        (async () => {
          for await (const batch of ring) for (const r of batch) sink.push(decodeEvent(Buffer.from(r)));
        })(),
      );
      const server = sb.spawnIn(podIf.netns, ["node", "-e", SERVER, self.name === "n1" ? "p1" : "p2"]);
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        let out = "";
        server.stdout?.on("data", (d: Buffer) => {
          out += d;
          if (out.includes("ready")) resolve();
        });
        server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
      });
    }
  });

  after(async () => {
    for (const s of servers) s.stdin?.end();
    for (const r of rings) await r.close();
    await Promise.all(reading.map((p) => p.catch(() => undefined)));
    await sb?.dispose();
  });

  function client(kind: "tcp" | "udp" | "bench", host: string, port: number, ms = 2000, n = 0): Promise<Result> {
    const child = sb.spawnIn(outside, ["node", "-e", CLIENT, kind, host, String(port), String(ms), String(n)]);
    return new Promise((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d;
      });
      child.once("close", () => {
        try {
          resolve(JSON.parse(out) as Result);
        } catch {
          reject(new Error(`client printed ${JSON.stringify(out)}`));
        }
      });
    });
  }

  async function eventFor(node: "n1" | "n2", pred: (e: DatapathEvent) => boolean): Promise<DatapathEvent | undefined> {
    const deadline = Date.now() + 3000;
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      const ev = events[node].find(pred);
      if (ev) return ev;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  it("TCP to n1:30081 (backend on n1): answered by p1, which saw the client's address; the reply is from n1:30081", async (t) => {
    const t0 = performance.now();
    const r = await client("tcp", N1.underlay, 30081);
    t.diagnostic(`${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p1");
    assert.match(r.body?.peer ?? "", new RegExp(`^${OUTSIDE}:\\d+$`));
    assert.equal(r.from, `${N1.underlay}:30081`);
    const ev = await eventFor("n1", (e) => e.type === EventType.policyVerdict && e.saddr === OUTSIDE && e.daddr === P1.ip && e.dport === 8080);
    assert.equal(ev?.verdict, Verdict.forwarded);
    assert.equal(ev?.srcIdentity, ID.world, "p1's ingress policy sees the outside client as world");
  });

  it("TCP to n1:30082 (backend on n2): through VXLAN with SNAT, p2 saw n1's address, the reply is from n1:30082", async () => {
    const r = await client("tcp", N1.underlay, 30082);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p2");
    assert.match(r.body?.peer ?? "", new RegExp(`^${N1.underlay.replaceAll(".", "\\.")}:6\\d{4}$`), "the SNAT source: n1 and a NAT port");
    assert.equal(r.from, `${N1.underlay}:30082`);
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
    assert.equal(local.from, `${N1.underlay}:30053`);
    const remote = await client("udp", N1.underlay, 30054);
    assert.equal(remote.ok, true, JSON.stringify(remote));
    assert.equal(remote.body?.pod, "p2");
    assert.match(remote.body?.peer ?? "", new RegExp(`^${N1.underlay.replaceAll(".", "\\.")}:`));
    assert.equal(remote.from, `${N1.underlay}:30054`);
  });

  it("the same services through n2: the roles swap (p2 local, p1 remote)", async () => {
    const a = await client("tcp", N2.underlay, 30082);
    assert.deepEqual([a.ok, a.body?.pod, a.from], [true, "p2", `${N2.underlay}:30082`]);
    assert.match(a.body?.peer ?? "", new RegExp(`^${OUTSIDE}:`));
    const b = await client("tcp", N2.underlay, 30081);
    assert.deepEqual([b.ok, b.body?.pod, b.from], [true, "p1", `${N2.underlay}:30081`]);
    assert.match(b.body?.peer ?? "", new RegExp(`^${N2.underlay.replaceAll(".", "\\.")}:`));
  });

  it("externalTrafficPolicy Local: n1 (has the backend) keeps the client's address", async () => {
    const r = await client("tcp", N1.underlay, 30085);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.body?.pod, "p1");
    assert.match(r.body?.peer ?? "", new RegExp(`^${OUTSIDE}:\\d+$`));
    assert.equal(r.from, `${N1.underlay}:30085`);
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
    assert.equal(r.from, "192.0.2.50:80");
    const viaNodePort = await client("tcp", N1.underlay, 30086);
    assert.deepEqual([viaNodePort.ok, viaNodePort.body?.pod, viaNodePort.from], [true, "p2", `${N1.underlay}:30086`]);
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
    for (const r of rings) assert.equal(r.lost, 0);
  });
});
