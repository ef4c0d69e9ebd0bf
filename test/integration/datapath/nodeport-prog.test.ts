// bpf/host.c on crafted packets (BPF_PROG_TEST_RUN): the DNAT of a new flow to a local or remote
// backend (SNAT to the node, TTL, next-hop MACs), the same flow's later packets, the reverse
// rewrites of replies, UDP with and without a checksum, eTP Local without a local backend,
// ExternalIPs, Maglev (= the TypeScript reference) and ClientIP affinity — every rewritten frame
// with valid IPv4 and TCP/UDP checksums, and the NAT table holding exactly the pair of entries.
// The helper runs inside the sandbox's namespace, so FIB lookups see its routes and neighbours.
// Run: node --import tsx --test test/integration/datapath/nodeport-prog.test.ts

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { ServiceSync } from "../../../src/datapath/lb-sync.ts";
import { dumpMap, loadObject, objectPath, pins, programOf, runProgram, writeMaps } from "../../../src/datapath/loader.ts";
import { flowHash, maglevTable } from "../../../src/datapath/maglev.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { decodeNat, NAT_PORT_MAX, NAT_PORT_MIN, NODEPORT_NAT_MAP, nodeIpConstant } from "../../../src/datapath/maps/nodeport.ts";
import { HOST_PROGRAMS } from "../../../src/datapath/nodeport-sync.ts";
import type { EndpointSliceInput, ServiceInput } from "../../../src/datapath/services.ts";
import { checksumsOk, type L3, readFrame, TCP, tcp, udp, withL4Checksum } from "../../harness/packets.ts";
import { freshSandbox, helperInNetns, type Sandbox } from "../../harness/sandbox.ts";

const OK = 0;
const SHOT = 2;
const REDIRECT = 7; // TC_ACT_REDIRECT: bpf_redirect / bpf_redirect_neigh

const NODE = "10.254.0.11";
const PEER_NODE = { ip: "10.254.0.12", mac: "02:00:00:00:00:12" };
const CLIENT = { ip: "10.254.0.2", mac: "02:00:00:00:00:02" };
const LOCAL_BE = "10.200.1.10";
const LOCAL_BE2 = "10.200.1.11";
const REMOTE_BE = "10.200.2.10";

function service(name: string, spec: NonNullable<ServiceInput["spec"]>, annotations?: Record<string, string>): ServiceInput {
  return { metadata: { namespace: "default", name, ...(annotations ? { annotations } : {}) }, spec };
}

function slice(name: string, eps: { ip: string; node: string }[], port = 8080, protocol = "TCP"): EndpointSliceInput {
  return {
    metadata: { namespace: "default", name: `${name}-1`, labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node })),
    ports: [{ name: "", port, protocol }],
  };
}

const SERVICES: ServiceInput[] = [
  service("local", { type: "NodePort", clusterIP: "10.96.0.10", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] }),
  service("remote", { type: "NodePort", clusterIP: "10.96.0.11", ports: [{ port: 80, targetPort: 8080, nodePort: 30081 }] }),
  service("udp", { type: "NodePort", clusterIP: "10.96.0.12", ports: [{ port: 53, targetPort: 5353, protocol: "UDP", nodePort: 30053 }] }),
  service("only-remote-local", {
    type: "NodePort",
    clusterIP: "10.96.0.13",
    externalTrafficPolicy: "Local",
    ports: [{ port: 80, targetPort: 8080, nodePort: 30083 }],
  }),
  service("ext", { clusterIP: "10.96.0.14", externalIPs: ["192.0.2.10"], ports: [{ port: 80, targetPort: 8080 }] }),
  service(
    "maglev",
    { type: "NodePort", clusterIP: "10.96.0.15", ports: [{ port: 80, targetPort: 8080, nodePort: 30085 }] },
    { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "251" },
  ),
  service("sticky", {
    type: "NodePort",
    clusterIP: "10.96.0.16",
    sessionAffinity: "ClientIP",
    ports: [{ port: 80, targetPort: 8080, nodePort: 30086 }],
  }),
];

const MAGLEV_BES = ["10.200.1.20", "10.200.1.21", "10.200.1.22", "10.200.1.23"];
const STICKY_BES = ["10.200.1.30", "10.200.1.31", "10.200.1.32", "10.200.1.33"];
const SLICES: EndpointSliceInput[] = [
  slice("local", [{ ip: LOCAL_BE, node: "n1" }]),
  slice("remote", [{ ip: REMOTE_BE, node: "n2" }]),
  slice("udp", [{ ip: LOCAL_BE, node: "n1" }], 5353, "UDP"),
  slice("only-remote-local", [{ ip: REMOTE_BE, node: "n2" }]),
  slice("ext", [{ ip: LOCAL_BE2, node: "n1" }]),
  slice(
    "maglev",
    MAGLEV_BES.map((ip) => ({ ip, node: "n1" })),
  ),
  slice(
    "sticky",
    STICKY_BES.map((ip) => ({ ip, node: "n1" })),
  ),
];

describe("host.c on crafted packets: NodePort DNAT/SNAT and reverse NAT", () => {
  let sb: Sandbox;
  let helper: { path: string; remove(): void };
  let savedHelper: string | undefined;
  let from: string;
  let to: string;

  const fromOutside = (dst: string, sport: number, dport: number, flags: number = TCP.SYN, src = CLIENT.ip) =>
    withL4Checksum(tcp({ src, dst } as L3, sport, dport, flags, Buffer.from("payload!")));

  before(async () => {
    sb = await freshSandbox("npprog");
    // The "node": its underlay on a veth, a route to node 2's pods via node 2 and
    // permanent neighbours, so FIB lookups answer with MACs.
    const ip = (...args: string[]) => execFileSync("ip", ["-n", sb.netns, ...args]);
    ip("link", "add", "ul0", "address", "02:00:00:00:00:11", "type", "veth", "peer", "name", "ulpeer");
    ip("addr", "add", `${NODE}/24`, "dev", "ul0");
    ip("link", "set", "ulpeer", "up");
    ip("link", "set", "ul0", "up");
    ip("neigh", "add", PEER_NODE.ip, "lladdr", PEER_NODE.mac, "dev", "ul0", "nud", "permanent");
    ip("neigh", "add", CLIENT.ip, "lladdr", CLIENT.mac, "dev", "ul0", "nud", "permanent");
    ip("route", "add", "10.200.2.0/24", "via", PEER_NODE.ip, "dev", "ul0");
    execFileSync("ip", ["netns", "exec", sb.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    const root = sb.pinRoot;
    const loaded = await loadObject(objectPath("host"), root, { constants: { weft_node_ipv4: nodeIpConstant(NODE) } });
    from = programOf(loaded, HOST_PROGRAMS.ingress).pin;
    to = programOf(loaded, HOST_PROGRAMS.egress).pin;
    const report = await new ServiceSync(root, "n1").sync(SERVICES, SLICES);
    assert.deepEqual(report.problems, []);
    const ipc = (cidr: string, identity: number, tunnelEndpoint?: string) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(cidr),
      value: encodeIpcacheValue({ cidr, identity, ...(tunnelEndpoint ? { tunnelEndpoint } : {}) }),
    });
    await writeMaps([ipc("0.0.0.0/0", 2), ipc(`${NODE}/32`, 1), ipc("10.200.2.0/24", 2, PEER_NODE.ip), ipc(`${LOCAL_BE}/32`, 1000)]);
    helper = helperInNetns(sb.netns);
    savedHelper = process.env.WEFT_BPF_HELPER;
    process.env.WEFT_BPF_HELPER = helper.path;
  });

  after(async () => {
    if (savedHelper === undefined) delete process.env.WEFT_BPF_HELPER;
    else process.env.WEFT_BPF_HELPER = savedHelper;
    helper?.remove();
    await sb?.dispose();
  });

  async function run(prog: string, pkt: Buffer): Promise<{ ret: number; out: Buffer }> {
    const r = await runProgram(prog, { data: pkt });
    return { ret: r.retval, out: r.dataOut ?? Buffer.alloc(0) };
  }

  async function natFlows() {
    return (await dumpMap(pins.map(sb.pinRoot, NODEPORT_NAT_MAP))).entries.map((e) => decodeNat(e.key, e.value));
  }

  it("SYN to nodeIP:30080 (local backend): DNAT to the pod, client kept, stack delivers (TC_ACT_OK), checksums valid", async (t) => {
    const t0 = performance.now();
    const { ret, out } = await run(from, fromOutside(NODE, 40000, 30080));
    t.diagnostic(`run: ${(performance.now() - t0).toFixed(1)} ms`);
    assert.equal(ret, OK);
    const f = readFrame(out);
    assert.deepEqual([f.src, f.sport, f.dst, f.dport, f.ttl], [CLIENT.ip, 40000, LOCAL_BE, 8080, 64]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
    const flows = (await natFlows()).filter((x) => x.from === `${CLIENT.ip}:40000` || x.to === `${CLIENT.ip}:40000`);
    assert.deepEqual(flows.map((x) => `${x.dir} ${x.from}→${x.to} ⇒ ${x.newFrom}→${x.newTo}${x.snat ? " snat" : ""}`).sort(), [
      `original ${CLIENT.ip}:40000→${NODE}:30080 ⇒ ${CLIENT.ip}:40000→${LOCAL_BE}:8080`,
      `reply ${LOCAL_BE}:8080→${CLIENT.ip}:40000 ⇒ ${NODE}:30080→${CLIENT.ip}:40000`,
    ]);
  });

  it("the flow's next packet (ACK) takes the same translation", async () => {
    const { ret, out } = await run(from, fromOutside(NODE, 40000, 30080, TCP.ACK));
    assert.equal(ret, OK);
    const f = readFrame(out);
    assert.deepEqual([f.dst, f.dport], [LOCAL_BE, 8080]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
  });

  it("the pod's reply leaving the device (egress): source becomes nodeIP:30080, checksums valid", async () => {
    const reply = withL4Checksum(tcp({ src: LOCAL_BE, dst: CLIENT.ip }, 8080, 40000, TCP.SYN | TCP.ACK, Buffer.from("answer")));
    const { ret, out } = await run(to, reply);
    assert.equal(ret, OK);
    const f = readFrame(out);
    assert.deepEqual([f.src, f.sport, f.dst, f.dport], [NODE, 30080, CLIENT.ip, 40000]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
  });

  it("egress traffic of no translated flow is untouched", async () => {
    const pkt = withL4Checksum(tcp({ src: LOCAL_BE, dst: CLIENT.ip }, 8080, 40999, TCP.ACK));
    const { ret, out } = await run(to, pkt);
    assert.equal(ret, OK);
    assert.ok(out.equals(pkt));
  });

  let natPort = 0;
  it("SYN to nodeIP:30081 (backend on node 2): SNAT to nodeIP:6xxxx, DNAT, TTL-1, next hop's MAC, redirected", async () => {
    const { ret, out } = await run(from, fromOutside(NODE, 40001, 30081));
    assert.equal(ret, REDIRECT);
    const f = readFrame(out);
    assert.equal(f.src, NODE);
    assert.ok(f.sport >= NAT_PORT_MIN && f.sport <= NAT_PORT_MAX, `NAT port ${f.sport}`);
    assert.deepEqual([f.dst, f.dport, f.ttl, f.dmac, f.smac], [REMOTE_BE, 8080, 63, PEER_NODE.mac, "02:00:00:00:00:11"]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
    natPort = f.sport;
    const flows = (await natFlows()).filter((x) => x.snat);
    assert.deepEqual(flows.map((x) => `${x.dir} ${x.from}→${x.to} ⇒ ${x.newFrom}→${x.newTo}`).sort(), [
      `original ${CLIENT.ip}:40001→${NODE}:30081 ⇒ ${NODE}:${natPort}→${REMOTE_BE}:8080`,
      `reply ${REMOTE_BE}:8080→${NODE}:${natPort} ⇒ ${NODE}:30081→${CLIENT.ip}:40001`,
    ]);
  });

  it("the remote backend's reply arriving at the device: back to the client from nodeIP:30081, redirected out", async () => {
    const reply = withL4Checksum(tcp({ src: REMOTE_BE, dst: NODE, ttl: 63 }, 8080, natPort, TCP.SYN | TCP.ACK));
    const { ret, out } = await run(from, reply);
    assert.equal(ret, REDIRECT);
    const f = readFrame(out);
    assert.deepEqual([f.src, f.sport, f.dst, f.dport, f.ttl, f.dmac], [NODE, 30081, CLIENT.ip, 40001, 62, CLIENT.mac]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
  });

  it("a second client on the same source port gets a NAT port of its own", async () => {
    const { ret, out } = await run(from, fromOutside(NODE, 40001, 30081, TCP.SYN, "10.254.0.3"));
    assert.equal(ret, REDIRECT);
    assert.notEqual(readFrame(out).sport, natPort);
  });

  it("UDP to nodeIP:30053: DNAT with a valid UDP checksum; a datagram without one keeps 0", async () => {
    const withSum = withL4Checksum(udp({ src: CLIENT.ip, dst: NODE }, 41000, 30053, Buffer.from("query")));
    const a = await run(from, withSum);
    assert.equal(a.ret, OK);
    assert.deepEqual([readFrame(a.out).dst, readFrame(a.out).dport], [LOCAL_BE, 5353]);
    assert.deepEqual(checksumsOk(a.out), { ip: true, l4: true });
    assert.notEqual(readFrame(a.out).l4csum, 0);
    const noSum = udp({ src: CLIENT.ip, dst: NODE }, 41001, 30053, Buffer.from("query"));
    const b = await run(from, noSum);
    assert.equal(b.ret, OK);
    assert.deepEqual([readFrame(b.out).dport, readFrame(b.out).l4csum], [5353, 0]);
    assert.deepEqual(checksumsOk(b.out), { ip: true, l4: true });
    const reply = await run(to, withL4Checksum(udp({ src: LOCAL_BE, dst: CLIENT.ip }, 5353, 41000, Buffer.from("answer"))));
    assert.deepEqual([readFrame(reply.out).src, readFrame(reply.out).sport], [NODE, 30053]);
    assert.deepEqual(checksumsOk(reply.out), { ip: true, l4: true });
  });

  it("externalTrafficPolicy Local without a backend on this node: dropped", async () => {
    assert.equal((await run(from, fromOutside(NODE, 40002, 30083))).ret, SHOT);
  });

  it("an ExternalIP (eTP Cluster) from outside: served by its internal entry", async () => {
    const { ret, out } = await run(from, fromOutside("192.0.2.10", 40003, 80));
    assert.equal(ret, OK);
    assert.deepEqual([readFrame(out).dst, readFrame(out).dport], [LOCAL_BE2, 8080]);
    assert.deepEqual(checksumsOk(out), { ip: true, l4: true });
  });

  it("not a frontend: a node port nothing listens on, a NodePort number on a foreign address, a ClusterIP", async () => {
    for (const pkt of [fromOutside(NODE, 40004, 22), fromOutside("10.254.0.99", 40004, 30080), fromOutside("10.96.0.10", 40004, 80)]) {
      const { ret, out } = await run(from, pkt);
      assert.equal(ret, OK);
      assert.ok(out.equals(pkt), "unchanged");
    }
  });

  it("Maglev: the backend is the TypeScript table's entry for the packet's flow hash", async () => {
    const table = maglevTable(
      MAGLEV_BES.map((ip) => ({ name: `${ip}:8080` })),
      251,
    );
    const seen = new Set<string>();
    for (let sport = 42000; sport < 42016; sport++) {
      const { ret, out } = await run(from, fromOutside(NODE, sport, 30085));
      assert.equal(ret, OK);
      const want = MAGLEV_BES[table[flowHash({ saddr: CLIENT.ip, sport, daddr: NODE, dport: 30085, proto: 6 }) % 251] as number];
      assert.equal(readFrame(out).dst, want, `sport ${sport}`);
      seen.add(readFrame(out).dst);
    }
    assert.ok(seen.size > 1, "flows spread over several backends");
  });

  it("ClientIP affinity: every connection of one client lands on one backend", async () => {
    const seen = new Set<string>();
    for (let sport = 43000; sport < 43012; sport++) seen.add(readFrame((await run(from, fromOutside(NODE, sport, 30086))).out).dst);
    assert.equal(seen.size, 1);
    assert.ok(STICKY_BES.includes([...seen][0] as string));
  });

  it("a RST closes both entries of its flow (10 s lifetime); a new SYN on the tuple is decided afresh", async () => {
    await run(from, fromOutside(NODE, 44000, 30080));
    await run(from, fromOutside(NODE, 44000, 30080, TCP.RST | TCP.ACK));
    const flows = (await natFlows()).filter((x) => x.from === `${CLIENT.ip}:44000` || x.to === `${CLIENT.ip}:44000`);
    assert.equal(flows.length, 2);
    assert.ok(flows.every((x) => x.closing));
    const { ret, out } = await run(from, fromOutside(NODE, 44000, 30080));
    assert.equal(ret, OK);
    assert.equal(readFrame(out).dst, LOCAL_BE);
  });

  it("cost of a tracked packet: BPF_PROG_TEST_RUN mean over 10k runs", async (t) => {
    const r = await runProgram(from, { data: fromOutside(NODE, 40000, 30080, TCP.ACK), repeat: 10_000 });
    t.diagnostic(`host_from_netdev, established flow: ${r.durationNs} ns/packet`);
    assert.equal(r.retval, OK);
    assert.ok(r.durationNs < 50_000, `${r.durationNs} ns`);
  });
});
