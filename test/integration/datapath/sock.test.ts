// The socket-level service load balancer (bpf/sock.c, lib/lb.h) on the real kernel: in a
// throwaway netns + child cgroup, backends listen on 127.0.0.2-5 and clients placed in the cgroup
// connect or send to service VIPs. Asserts the backend reached (its greeting), the peer the app
// sees, errors and their timing, and the kernel's map entries.
// Run: node --import tsx --test test/integration/datapath/sock.test.ts

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { lbRows } from "../../../src/cli/operator.ts";
import { loadSockDatapath, readLbContents, registerNetns, ServiceSync, unregisterNetns } from "../../../src/datapath/lb-sync.ts";
import { createMap, dumpMap, loadObject, objectPath, pins, removePins, writeMaps } from "../../../src/datapath/loader.ts";
import { flowHash, maglevTable } from "../../../src/datapath/maglev.ts";
import {
  backendKey,
  backendValue,
  cookieKey,
  LB_MAPS,
  LB4_SERVICE_IDS_ONLY_SIZE,
  lb4Backend,
  lb4ConnRevnat,
  lb4Key,
  lb4Revnat,
  lb4RevnatKey,
  lb4Service,
  netnsValue,
  REVNAT_CONN_SLOTS,
  revnatConnSlot,
  serviceKey,
} from "../../../src/datapath/maps/lb.ts";
import { desiredLb, type EndpointSliceInput, lbContents, type ServiceInput } from "../../../src/datapath/services.ts";
import { firstLine, JsonLines } from "../../harness/child-lines.ts";
import { freshSandbox, type Sandbox } from "../../harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const NODE = process.execPath;
const BACKENDS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
/** A service wider than one lb4_services entry (8 backends): its backends 9-12 are in entry 1. */
const WIDE = Array.from({ length: 12 }, (_, i) => `127.0.1.${i + 1}`);
const TCP_PORT = 8080;
const UDP_PORT = 5353;
const MAGLEV_SIZE = 251;

// One script for every role, run with `node --input-type=module -e`; each role bounds itself in time.
//   serve ADDRS TCP UDP        TCP: writes "ADDR:TCP\n" then ends; UDP: answers "ADDR:UDP"; prints {"ready":true}
//   tcp HOST PORT N            N sequential connects; counts greetings and the peers getpeername shows
//   tcp-bound HOST PORT SRC P..  one connect per source port P, bound to SRC:P; prints the backend of each
//   refused HOST PORT          one connect; prints the error code and how long it took
//   udp HOST PORT N            N datagrams from one unconnected socket; counts replies and their sources
//   udp-connected HOST PORT    connect(), then one datagram; prints remoteAddress() and the reply's source
const SCRIPT = `
import dgram from "node:dgram";
import net from "node:net";
const [mode, ...a] = process.argv.slice(1);
setTimeout(() => { process.stderr.write("timeout\\n"); process.exit(3); }, mode === "serve" ? 120000 : 20000).unref();
const out = (x) => process.stdout.write(JSON.stringify(x) + "\\n");
const bump = (m, k) => { m[k] = (m[k] ?? 0) + 1; };
function connectOnce(host, port, local) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host, port, ...(local ?? {}) });
    let data = "", peer = "";
    s.on("connect", () => { peer = s.remoteAddress + ":" + s.remotePort; });
    s.on("data", (d) => { data += d; });
    s.on("end", () => s.end());
    s.on("error", (e) => resolve({ error: e.code, ms: performance.now() - t0 }));
    s.on("close", () => resolve({ backend: data.trim(), peer, ms: performance.now() - t0 }));
  });
}
if (mode === "serve") {
  const [addrs, tcp, udp] = [a[0].split(","), Number(a[1]), Number(a[2])];
  let pending = addrs.length * 2;
  const ready = () => { if (--pending === 0) out({ ready: true }); };
  for (const addr of addrs) {
    net.createServer((s) => s.end(addr + ":" + tcp + "\\n")).listen(tcp, addr, ready);
    const u = dgram.createSocket("udp4");
    u.on("message", (_m, r) => u.send(addr + ":" + udp, r.port, r.address));
    u.bind(udp, addr, ready);
  }
  process.stdin.on("end", () => process.exit(0)).resume();
} else if (mode === "tcp") {
  const counts = {}, peers = {}, errors = {};
  for (let i = 0; i < Number(a[2]); i++) {
    const r = await connectOnce(a[0], Number(a[1]));
    if (r.error) bump(errors, r.error); else { bump(counts, r.backend); bump(peers, r.peer); }
  }
  out({ counts, peers, errors });
} else if (mode === "tcp-bound") {
  const backends = {};
  for (const p of a.slice(3)) {
    const r = await connectOnce(a[0], Number(a[1]), { localAddress: a[2], localPort: Number(p) });
    backends[p] = r.backend ?? r.error;
  }
  out({ backends });
} else if (mode === "refused") {
  out(await connectOnce(a[0], Number(a[1])));
} else if (mode === "udp") {
  const s = dgram.createSocket("udp4");
  const counts = {}, sources = {};
  for (let i = 0; i < Number(a[2]); i++) {
    const reply = new Promise((resolve) => s.once("message", (m, r) => resolve([String(m), r.address + ":" + r.port])));
    const sent = await new Promise((resolve) => s.send("x", Number(a[1]), a[0], (e) => resolve(e ? e.code : "ok")));
    if (sent !== "ok") { bump(counts, sent); s.removeAllListeners("message"); continue; }
    const [m, src] = await reply;
    bump(counts, m); bump(sources, src);
  }
  s.close();
  out({ counts, sources });
} else if (mode === "udp-connected") {
  const s = dgram.createSocket("udp4");
  await new Promise((resolve) => s.connect(Number(a[1]), a[0], resolve));
  const remote = s.remoteAddress();
  const reply = new Promise((resolve) => s.once("message", (m, r) => resolve([String(m), r.address + ":" + r.port])));
  s.send("x");
  const [m, src] = await reply;
  s.close();
  out({ remote: remote.address + ":" + remote.port, backend: m, source: src });
}
`;

// A client that keeps its sockets open and reports their cookies (SO_COOKIE: Node cannot getsockopt)
// and peers. argv: VIP TCP_PORT UDP_PORT. Prints {tcp: {cookie, peer, backend}, udp: {cookie, peer}};
// then per stdin line "peer": {peer, udpPeer}; "direct HOST PORT": a new socket's peer; "end" exits.
const PEER_CLIENT = `
import json, socket, struct, sys, signal
signal.alarm(60)
SO_COOKIE = 57
def out(x): print(json.dumps(x), flush=True)
def peer(s): return "%s:%d" % s.getpeername()
def cookie(s): return str(struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0])
vip, tport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = socket.create_connection((vip, tport), timeout=5)
backend = t.recv(100).decode().strip()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((vip, uport))
out({"tcp": {"cookie": cookie(t), "peer": peer(t), "backend": backend}, "udp": {"cookie": cookie(u), "peer": peer(u)}})
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd == "peer":
        out({"peer": peer(t), "udpPeer": peer(u)})
    elif cmd[0] == "direct":
        d = socket.create_connection((cmd[1], int(cmd[2])), timeout=5)
        out({"direct": peer(d), "greeting": d.recv(100).decode().strip()})
        d.close()  # after reading: closing with unread data would reset the server's socket
    else:
        break
`;

/** The lb4_revnat_conn slot of a cookie (bpftool: one lookup, not a dump of the whole array). */
function connSlot(root: string, cookie: bigint) {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(revnatConnSlot(cookie));
  const argv = ["map", "lookup", "pinned", pins.map(root, LB_MAPS.revnatConn), "key", "hex", ...[...key].map((b) => b.toString(16).padStart(2, "0")), "-j"];
  const r = JSON.parse(execFileSync("bpftool", argv, { encoding: "utf8" })) as { value: string[] };
  const c = lb4ConnRevnat.decode(Buffer.from(r.value.map((h) => Number.parseInt(h, 16))));
  return { ...c, rev: lb4Revnat.decode(c.rev) };
}

/** What the roles print (each role fills its own fields). */
interface ClientResult {
  counts: Record<string, number>;
  peers: Record<string, number>;
  errors: Record<string, number>;
  sources: Record<string, number>;
  backends: Record<string, string>;
  error?: string;
  ms: number;
  remote: string;
  source: string;
  backend: string;
}

/** The child's first stdout line, as JSON. */
async function lineFrom(child: ChildProcess, timeoutMs: number): Promise<unknown> {
  return JSON.parse(await firstLine(child, timeoutMs));
}

function svc(name: string, clusterIP: string, extra: Partial<NonNullable<ServiceInput["spec"]>> = {}, annotations?: Record<string, string>): ServiceInput {
  return {
    metadata: { namespace: "default", name, ...(annotations ? { annotations } : {}) },
    spec: {
      clusterIP,
      ports: [
        { name: "http", port: 80, targetPort: TCP_PORT, protocol: "TCP" },
        { name: "dns", port: 53, targetPort: UDP_PORT, protocol: "UDP" },
      ],
      ...extra,
    },
  };
}

function slice(service: string, endpoints: { ip: string; terminating?: boolean }[]): EndpointSliceInput {
  return {
    metadata: { namespace: "default", name: `${service}-0`, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: !e.terminating, serving: true, terminating: !!e.terminating },
      nodeName: "n1",
    })),
    ports: [
      { name: "http", port: TCP_PORT, protocol: "TCP" },
      { name: "dns", port: UDP_PORT, protocol: "UDP" },
    ],
  };
}

const all = BACKENDS.map((ip) => ({ ip }));
const SERVICES: ServiceInput[] = [
  svc("web", "10.96.0.50", { externalIPs: ["192.0.2.10"] }),
  svc("empty", "10.96.0.51"),
  svc("wide", "10.96.0.56"),
  svc("sticky", "10.96.0.52", { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } } }),
  svc("mag", "10.96.0.53", {}, { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": String(MAGLEV_SIZE) }),
  svc("draining", "10.96.0.54"),
  svc(
    "sticky-mag",
    "10.96.0.55",
    { sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } } },
    { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": String(MAGLEV_SIZE) },
  ),
];
const SLICES: EndpointSliceInput[] = [
  slice("web", all),
  slice("empty", []),
  slice(
    "wide",
    WIDE.map((ip) => ({ ip })),
  ),
  slice("sticky", all),
  slice("mag", all),
  slice("draining", [{ ip: "127.0.0.2" }, { ip: "127.0.0.3", terminating: true }]),
  slice("sticky-mag", all),
];

/** The backend the kernel must pick for a bound TCP flow to a Maglev service (TypeScript reference). */
function expectedMaglev(vip: string, sport: number): string {
  const table = maglevTable(
    BACKENDS.map((ip) => ({ name: `${ip}:${TCP_PORT}` })),
    MAGLEV_SIZE,
  );
  const i = table[flowHash({ saddr: "127.0.0.1", sport, daddr: vip, dport: 80, proto: 6 }) % MAGLEV_SIZE] as number;
  return `${BACKENDS[i]}:${TCP_PORT}`;
}

describe("socket load balancer (real BPF, throwaway netns + child cgroup)", { timeout: 180_000 }, () => {
  let sb: Sandbox;
  let sync: ServiceSync;
  let cookie: bigint;

  const client = (...args: string[]) => lineFrom(sb.spawnInCgroup([NODE, "--input-type=module", "-e", SCRIPT, ...args]), 25_000) as Promise<ClientResult>;
  const outsider = (...args: string[]) => lineFrom(sb.spawnInNetns([NODE, "--input-type=module", "-e", SCRIPT, ...args]), 25_000) as Promise<ClientResult>;

  before(async () => {
    sb = await freshSandbox("sock");
    const server = sb.spawnInNetns([NODE, "--input-type=module", "-e", SCRIPT, "serve", [...BACKENDS, ...WIDE].join(","), String(TCP_PORT), String(UDP_PORT)]);
    await lineFrom(server, 10_000);
    await loadSockDatapath(sb.pinRoot, sb.cgroup);
    cookie = await registerNetns(sb.pinRoot, sb.netns, 4242);
    sync = new ServiceSync(sb.pinRoot, "n1");
    const report = await sync.sync(SERVICES, SLICES);
    assert.deepEqual(report.problems, []);
  });

  after(async () => {
    await sb?.dispose();
  });

  it("refuses to attach to a root cgroup", async () => {
    await assert.rejects(loadSockDatapath(sb.pinRoot, "/sys/fs/cgroup/unified"), /root cgroup/);
  });

  /**
   * `n` new TCP connections to vip:80 reach every one of `backends`, each within about 5 sd of its
   * binomial mean, and getpeername shows the VIP on every one.
   */
  async function spreads(vip: string, backends: readonly string[], n: number): Promise<void> {
    const r = await client("tcp", vip, "80", String(n));
    assert.deepEqual(r.errors, {});
    assert.deepEqual(Object.keys(r.counts).sort(), backends.map((b) => `${b}:${TCP_PORT}`).sort());
    const p = 1 / backends.length;
    const [mean, sd] = [n * p, Math.sqrt(n * p * (1 - p))];
    for (const [b, got] of Object.entries(r.counts)) assert.ok(Math.abs(got - mean) <= 5 * sd, `${b}: ${got} of ${n} (mean ${mean})`);
    assert.deepEqual(r.peers, { [`${vip}:80`]: n });
  }

  it("spreads 200 new TCP connections over every backend; getpeername shows the VIP", async () => {
    await spreads("10.96.0.50", BACKENDS, 200); // Binomial(200, 1/4): 50 ± 31
  });

  it("a service of 12 backends (two lb4_services entries): 480 new connections reach every one", async () => {
    await spreads("10.96.0.56", WIDE, 480); // Binomial(480, 1/12): 40 ± 30; backends 9-12 are in entry 1
  });

  it("weft bpf lb list's rows: every frontend with its backends in slot order, from both entries of a wide service", async () => {
    const rows = await lbRows(sb.pinRoot);
    const row = (frontend: string) => rows.find((r) => r.frontend === frontend);
    assert.deepEqual(
      row("10.96.0.56:80/TCP")?.backends,
      WIDE.map((ip) => `${ip}:${TCP_PORT}`),
    );
    assert.deepEqual(
      row("10.96.0.50:80/TCP")?.backends,
      BACKENDS.map((ip) => `${ip}:${TCP_PORT}`),
    );
    assert.equal(row("10.96.0.50:80/TCP")?.flags, "ClusterIP");
    assert.equal(row("192.0.2.10:80/TCP")?.flags, "External");
    assert.deepEqual(row("10.96.0.51:80/TCP")?.backends, []);
    assert.deepEqual(row("10.96.0.54:80/TCP")?.backends, [`127.0.0.2:${TCP_PORT}`]);
    assert.match(row("10.96.0.53:80/TCP")?.flags ?? "", /maglev 251/);
  });

  it("translates an ExternalIP like the ClusterIP", async () => {
    const r = await client("tcp", "192.0.2.10", "80", "8");
    assert.deepEqual(r.errors, {});
    assert.deepEqual(r.peers, { "192.0.2.10:80": 8 });
  });

  it("UDP: datagrams to the VIP reach the backends and replies come from the VIP", async () => {
    const r = await client("udp", "10.96.0.50", "53", "40");
    assert.equal(Object.keys(r.counts).length, 4, JSON.stringify(r.counts));
    assert.deepEqual(r.sources, { "10.96.0.50:53": 40 });
  });

  it("UDP: a connected socket sees the VIP as its peer and as the reply's source", async () => {
    const r = await client("udp-connected", "10.96.0.50", "53");
    assert.equal(r.remote, "10.96.0.50:53");
    assert.equal(r.source, "10.96.0.50:53");
    assert.ok(BACKENDS.map((b) => `${b}:${UDP_PORT}`).includes(r.backend));
  });

  it("a service without ready backends refuses at once (ECONNREFUSED, TCP and UDP)", async () => {
    const r = await client("refused", "10.96.0.51", "80");
    assert.equal(r.error, "ECONNREFUSED");
    assert.ok(r.ms < 1000, `${r.ms} ms`);
    const u = await client("udp", "10.96.0.51", "53", "1");
    assert.deepEqual(u.counts, { ECONNREFUSED: 1 });
  });

  it("never picks a terminating backend for a new connection; only the ready one is in the slots", async () => {
    const r = await client("tcp", "10.96.0.54", "80", "30");
    assert.deepEqual(r.counts, { [`127.0.0.2:${TCP_PORT}`]: 30 });
    const row = (await lbRows(sb.pinRoot)).find((x) => x.frontend === "10.96.0.54:80/TCP");
    assert.deepEqual(row?.backends, [`127.0.0.2:${TCP_PORT}`]);
  });

  it("Maglev: the backend of each bound flow is the one the TypeScript table names", async () => {
    const ports = Array.from({ length: 40 }, (_, i) => String(41000 + i));
    const r = await client("tcp-bound", "10.96.0.53", "80", "127.0.0.1", ...ports);
    const want = Object.fromEntries(ports.map((p) => [p, expectedMaglev("10.96.0.53", Number(p))]));
    assert.deepEqual(r.backends, want);
    assert.ok(new Set(Object.values(want)).size > 1, "the flows cover more than one backend");
  });

  it("ClientIP affinity pins a client to one backend", async () => {
    const r = await client("tcp", "10.96.0.52", "80", "20");
    assert.deepEqual(r.errors, {});
    assert.equal(Object.keys(r.counts).length, 1, JSON.stringify(r.counts));
  });

  it("ClientIP affinity outlives other choices within the timeout and expires after it", async () => {
    // With Maglev under affinity, the choice without affinity is known for each source port.
    const vip = "10.96.0.55";
    const p1 = 42000;
    const first = expectedMaglev(vip, p1);
    let p2 = 42001;
    while (expectedMaglev(vip, p2) === first && p2 < 42100) p2++;
    const second = expectedMaglev(vip, p2);
    assert.notEqual(first, second);
    const a = await client("tcp-bound", vip, "80", "127.0.0.1", String(p1), String(p2));
    assert.deepEqual(a.backends, { [p1]: first, [p2]: first }, "within the timeout the pinned backend wins");
    await new Promise((r) => setTimeout(r, 2_300));
    const b = await client("tcp-bound", vip, "80", "127.0.0.1", String(p2 + 200));
    const p3 = p2 + 200;
    assert.deepEqual(b.backends, { [p3]: expectedMaglev(vip, p3) }, "after the timeout the choice is made afresh");
    const c = await client("tcp-bound", vip, "80", "127.0.0.1", String(p2 + 300));
    assert.deepEqual(c.backends, { [p2 + 300]: expectedMaglev(vip, p3) }, "and pinned again");
  });

  it("a connected socket's record is in its lb4_revnat_conn slot (TCP and UDP); getpeername checks its cookie and peer", async () => {
    const c = new JsonLines(sb.spawnInCgroup(["python3", "-c", PEER_CLIENT, "10.96.0.50", "80", "53"]));
    try {
      const first = await c.next<{ tcp: { cookie: string; peer: string; backend: string }; udp: { cookie: string; peer: string } }>((x) => "tcp" in x, 15_000);
      assert.equal(first.tcp.peer, "10.96.0.50:80");
      assert.equal(first.udp.peer, "10.96.0.50:53");
      const cookie = BigInt(first.tcp.cookie);
      const rec = connSlot(sb.pinRoot, cookie);
      assert.equal(rec.sock_cookie, cookie);
      assert.equal(`${rec.peer_address}:${rec.peer_port}`, first.tcp.backend, "the peer is the backend the greeting came from");
      assert.deepEqual({ address: rec.rev.address, port: rec.rev.port, proto: rec.rev.proto }, { address: "10.96.0.50", port: 80, proto: 6 });
      assert.ok(rec.rev.service_id > 0);
      const udp = connSlot(sb.pinRoot, BigInt(first.udp.cookie));
      assert.equal(udp.sock_cookie, BigInt(first.udp.cookie));
      assert.deepEqual({ address: udp.rev.address, port: udp.rev.port, proto: udp.rev.proto }, { address: "10.96.0.50", port: 53, proto: 17 });
      // Connected sockets no longer write the LRU.
      const lru = (await dumpMap(pins.map(sb.pinRoot, LB_MAPS.revnat))).entries.map((e) => lb4RevnatKey.decode(e.key).sock_cookie);
      assert.ok(!lru.includes(cookie) && !lru.includes(BigInt(first.udp.cookie)), "no lb4_revnat entry for connected sockets");

      // A later socket taking the slot over (cookie + slots) with another VIP: this socket must not
      // show that VIP; it shows its real peer, the backend.
      const slotKey = Buffer.alloc(4);
      slotKey.writeUInt32LE(revnatConnSlot(cookie));
      const write = (sockCookie: bigint, vip: string) =>
        writeMaps([
          {
            op: "update",
            map: pins.map(sb.pinRoot, LB_MAPS.revnatConn),
            key: slotKey,
            value: lb4ConnRevnat.encode({
              sock_cookie: sockCookie,
              peer_address: rec.peer_address,
              peer_port: rec.peer_port,
              pad: 0,
              rev: lb4Revnat.encode({ address: vip, port: 80, proto: 6, pad: 0, service_id: rec.rev.service_id }),
              pad2: 0,
            }),
          },
        ]);
      await write(cookie + BigInt(REVNAT_CONN_SLOTS), "10.96.0.99");
      c.send("peer");
      const taken = await c.next<{ peer: string }>((x) => "peer" in x);
      assert.equal(taken.peer, first.tcp.backend, "a slot taken over by another socket is never shown as this socket's peer");
      await write(cookie, "10.96.0.99");
      c.send("peer");
      const own = await c.next<{ peer: string; udpPeer: string }>((x) => "peer" in x && x.peer !== first.tcp.backend);
      assert.equal(own.peer, "10.96.0.99:80", "getpeername reads the socket's slot");
      assert.equal(own.udpPeer, "10.96.0.50:53");

      // A socket connected straight to a backend has no record: its peer is the backend.
      c.send(["direct", "127.0.0.2", String(TCP_PORT)]);
      const direct = await c.next<{ direct: string; greeting: string }>((x) => "direct" in x);
      assert.equal(direct.direct, `127.0.0.2:${TCP_PORT}`);
      assert.equal(direct.greeting, `127.0.0.2:${TCP_PORT}`);
    } finally {
      c.send("end");
    }
  });

  it("leaves a process outside the cgroup untouched", async () => {
    const r = await outsider("refused", "10.96.0.50", "80");
    assert.equal(r.error, "ENETUNREACH");
  });

  it("leaves an unmanaged namespace untouched", async () => {
    await unregisterNetns(sb.pinRoot, cookie);
    try {
      const r = await client("refused", "10.96.0.50", "80");
      assert.equal(r.error, "ENETUNREACH");
    } finally {
      await writeMaps([{ op: "update", map: pins.map(sb.pinRoot, LB_MAPS.netns), key: cookieKey(cookie), value: netnsValue(4242) }]);
    }
    const r = await client("tcp", "10.96.0.50", "80", "1");
    assert.deepEqual(r.errors, {});
  });

  it("a backend removed from the service gets no new connection", async () => {
    const fewer = SLICES.map((s) => (s.metadata.name === "web-0" ? slice("web", all.slice(0, 3)) : s));
    const report = await sync.sync(SERVICES, fewer);
    // The entries of its four frontends (ClusterIP and ExternalIP, TCP and UDP) lose the slot; it
    // picks at random, so there is no lb4_backends record to delete.
    assert.deepEqual(report.writes, { updated: 4, deleted: 0, absent: 0 });
    const r = await client("tcp", "10.96.0.50", "80", "60");
    assert.deepEqual(
      Object.keys(r.counts).sort(),
      BACKENDS.slice(0, 3).map((b) => `${b}:${TCP_PORT}`),
    );
    await sync.sync(SERVICES, SLICES);
  });

  it("a fresh process reconciles from the pinned maps without writing or flushing anything", async () => {
    const before = await dumpMap(pins.map(sb.pinRoot, LB_MAPS.services));
    const script = `
      import { loadSockDatapath, ServiceSync } from "${REPO}src/datapath/lb-sync.ts";
      const input = JSON.parse(process.argv[1]);
      const d = await loadSockDatapath(input.root, input.cgroup);
      const r = await new ServiceSync(input.root, "n1").sync(input.services, input.slices);
      process.stdout.write(JSON.stringify({ adopted: d.links.map((l) => l.adopted), writes: r.writes, fromPinned: r.fromPinned }) + "\\n");
    `;
    const input = JSON.stringify({ root: sb.pinRoot, cgroup: sb.cgroup, services: SERVICES, slices: SLICES });
    const child = spawn(NODE, ["--import", "tsx", "--input-type=module", "-e", script, input], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    const r = (await lineFrom(child, 30_000)) as { adopted: boolean[]; writes: unknown; fromPinned: boolean };
    assert.deepEqual(r.adopted, [true, true, true, true]);
    assert.equal(r.fromPinned, true);
    assert.deepEqual(r.writes, { updated: 0, deleted: 0, absent: 0 });
    const afterDump = await dumpMap(pins.map(sb.pinRoot, LB_MAPS.services));
    assert.deepEqual(afterDump.entries, before.entries);
    const t = await client("tcp", "10.96.0.50", "80", "8");
    assert.deepEqual(t.peers, { "10.96.0.50:80": 8 });
  });
});

/** max_entries, map_flags and kernel memory of a pinned map, as bpftool shows them. */
function mapShow(pin: string): { max_entries: number; flags: number; bytes_memlock: number } {
  return JSON.parse(execFileSync("bpftool", ["map", "show", "pinned", pin, "-j"], { encoding: "utf8" }));
}

describe("an agent upgrade that finds service maps of the layout before (ids only in lb4_services)", { timeout: 120_000 }, () => {
  let sb: Sandbox;
  const client = (...args: string[]) => lineFrom(sb.spawnInCgroup([NODE, "--input-type=module", "-e", SCRIPT, ...args]), 25_000) as Promise<ClientResult>;
  const services = [svc("web", "10.96.0.60"), svc("sticky", "10.96.0.61", { sessionAffinity: "ClientIP" })];
  const slices = [slice("web", all), slice("sticky", all)];

  before(async () => {
    sb = await freshSandbox("sock-upgrade");
    const server = sb.spawnInNetns([NODE, "--input-type=module", "-e", SCRIPT, "serve", BACKENDS.join(","), String(TCP_PORT), String(UDP_PORT)]);
    await lineFrom(server, 10_000);
  });

  after(async () => {
    await sb?.dispose();
  });

  it("rebuilds lb4_services with each backend's address before the new hooks are attached: connects reach the backends before any sync, and the first sync only drops the records nothing needs now", async () => {
    // The maps as the agent before wrote them: 52-byte entries of ids, every backend in lb4_backends.
    const want = desiredLb(services, slices, { node: "n1" }).state;
    const now = lbContents(want);
    const sPin = pins.map(sb.pinRoot, LB_MAPS.services);
    const bPin = pins.map(sb.pinRoot, LB_MAPS.backends);
    await createMap(sPin, { type: "hash", keySize: lb4Key.size, valueSize: LB4_SERVICE_IDS_ONLY_SIZE, maxEntries: 1024 });
    await createMap(bPin, { type: "hash", keySize: 4, valueSize: lb4Backend.size, maxEntries: 1024 });
    await writeMaps([
      ...want.backends.map((b) => ({ op: "update" as const, map: bPin, key: backendKey(b.id), value: backendValue(b) })),
      ...[...now.services].map(([k, v]) => ({ op: "update" as const, map: sPin, key: Buffer.from(k, "hex"), value: v.subarray(0, LB4_SERVICE_IDS_ONLY_SIZE) })),
    ]);
    const t0 = performance.now();
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 1024 });
    console.log(`# upgrade load with the service maps rebuilt: ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok(!existsSync(`${sPin}-prev`) && !existsSync(`${bPin}-prev`), "the maps set aside are removed once the hooks are attached");
    const after = await readLbContents(sb.pinRoot);
    assert.equal(after.services.size, now.services.size);
    for (const [k, v] of now.services) assert.ok(after.services.get(k)?.equals(v), "each entry as this version writes it");
    await registerNetns(sb.pinRoot, sb.netns, 4243);
    for (const vip of ["10.96.0.60", "10.96.0.61"]) {
      const r = await client("tcp", vip, "80", "12");
      assert.deepEqual(r.errors, {});
      assert.equal(
        Object.values(r.counts).reduce((a, b) => a + b, 0),
        12,
      );
      for (const b of Object.keys(r.counts)) assert.ok(BACKENDS.map((x) => `${x}:${TCP_PORT}`).includes(b), b);
      assert.deepEqual(r.peers, { [`${vip}:80`]: 12 });
    }
    // The agent's first sync: nothing to update; web's backend records (8: TCP and UDP) go.
    const report = await new ServiceSync(sb.pinRoot, "n1").sync(services, slices);
    assert.deepEqual(report.writes, { updated: 0, deleted: 8, absent: 0 });
    const synced = await readLbContents(sb.pinRoot);
    assert.deepEqual(synced, now);
  });

  it("a layout it does not know is refused by name before any hook changes; the map set aside stays for the programs still using it", async () => {
    await removePins(sb.pinRoot);
    const sPin = pins.map(sb.pinRoot, LB_MAPS.services);
    await createMap(sPin, { type: "hash", keySize: lb4Key.size, valueSize: 40, maxEntries: 1024 });
    await writeMaps([{ op: "update", map: sPin, key: serviceKey({ address: "10.96.0.60", port: 80, proto: "TCP" }, 0), value: Buffer.alloc(40, 1) }]);
    await assert.rejects(
      loadSockDatapath(sb.pinRoot, sb.cgroup),
      /lb4_services: the pinned map's entries \(key 12, value 40 bytes\) have a layout this version cannot carry over/,
    );
    assert.ok(existsSync(`${sPin}-prev`));
    assert.equal((await dumpMap(`${sPin}-prev`)).entries.length, 1);
    // A later load (the same version again) still finds it set aside, and still refuses.
    await assert.rejects(loadSockDatapath(sb.pinRoot, sb.cgroup), /cannot carry over/);
    await removePins(sb.pinRoot);
  });
});

describe("service map sizes (lbMapMax): set at creation, rebuilt on change, full maps reported", { timeout: 120_000 }, () => {
  let sb: Sandbox;

  before(async () => {
    sb = await freshSandbox("sock-size");
  });

  after(async () => {
    await sb?.dispose();
  });

  it("an object that does not rebuild the service maps refuses a pinned one of other flags, naming the map and both shapes", async () => {
    const pin = pins.map(sb.pinRoot, LB_MAPS.services);
    await createMap(pin, { type: "hash", keySize: lb4Key.size, valueSize: lb4Service.size, maxEntries: 65536, flags: 1 });
    await assert.rejects(loadObject(objectPath("host"), sb.pinRoot), /map lb4_services pinned at .*map_flags 0x1 pinned, 0x0 wanted/);
    // sock.o (loadSockDatapath) rebuilds it preallocated, and nothing is left beside it.
    await loadSockDatapath(sb.pinRoot, sb.cgroup);
    assert.equal(mapShow(pin).flags, 0);
    assert.ok(!existsSync(`${pin}-prev`));
    await removePins(sb.pinRoot);
  });

  it("creates the maps preallocated at the size asked; another size later rebuilds them, entries kept; objects sharing them adopt it", async () => {
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 1024 });
    for (const m of [LB_MAPS.services, LB_MAPS.backends]) {
      const info = mapShow(pins.map(sb.pinRoot, m));
      assert.equal(info.max_entries, 1024, m);
      assert.equal(info.flags, 0, `${m} is preallocated (no BPF_F_NO_PREALLOC)`);
    }
    const sticky = svc("sticky", "10.96.0.70", { sessionAffinity: "ClientIP" });
    await new ServiceSync(sb.pinRoot, "n1").sync([sticky], [slice("sticky", all)]);
    const before = await readLbContents(sb.pinRoot);
    assert.equal(before.backends.size, 8, "affinity: its backends (4, TCP and UDP) are in lb4_backends");
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 2048 });
    for (const m of [LB_MAPS.services, LB_MAPS.backends]) assert.equal(mapShow(pins.map(sb.pinRoot, m)).max_entries, 2048, m);
    assert.deepEqual(await readLbContents(sb.pinRoot), before, "every entry carried over");
    await assert.rejects(loadObject(objectPath("host"), sb.pinRoot, { maxEntries: { [LB_MAPS.services]: 4096 } }), /max_entries 2048 pinned, 4096 wanted/);
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 2048 }); // the same size again: reused
    const host = await loadObject(objectPath("host"), sb.pinRoot); // no size given: the pinned one
    assert.ok(host.maps.find((m) => m.name === LB_MAPS.services)?.reused);
    assert.equal(mapShow(pins.map(sb.pinRoot, LB_MAPS.services)).max_entries, 2048);
    await removePins(sb.pinRoot);
    await loadSockDatapath(sb.pinRoot, sb.cgroup, { lbMapMax: 1024 }); // (the next case's maps)
  });

  it("a sync that does not fit reports the full map by name and the setting, and a later one that fits succeeds", async () => {
    const fleet = (n: number, endpoints: number) => {
      const services: ServiceInput[] = [];
      const slices: EndpointSliceInput[] = [];
      for (let i = 1; i <= n; i++) {
        services.push({
          metadata: { namespace: "size", name: `s${i}` },
          spec: { clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: TCP_PORT }] },
        });
        slices.push({
          metadata: { namespace: "size", name: `s${i}-0`, labels: { "kubernetes.io/service-name": `s${i}` } },
          endpoints: BACKENDS.slice(0, endpoints).map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
          ports: [{ port: TCP_PORT, protocol: "TCP" }],
        });
      }
      return { services, slices };
    };
    const sync = new ServiceSync(sb.pinRoot);
    const big = fleet(1100, 0); // 1,100 entries (a service with no endpoint is one entry, no backend) > 1024
    await assert.rejects(sync.sync(big.services, big.slices), /lb4_services: service map is full.*lbMapMax/);
    // Updates go before deletes, so a change must fit beside what is pinned: fewer services fit
    // once the partial writes are gone.
    const cleared = await sync.sync([], []);
    assert.equal(cleared.fromPinned, true, "after a failed write the sync starts again from the pins");
    const fits = fleet(300, 2); // 300 entries, each holding its 2 backends (random picks: no lb4_backends records)
    await sync.sync(fits.services, fits.slices);
    assert.equal((await dumpMap(pins.map(sb.pinRoot, LB_MAPS.services))).entries.length, 300);
    assert.equal((await dumpMap(pins.map(sb.pinRoot, LB_MAPS.backends))).entries.length, 0);
  });
});
