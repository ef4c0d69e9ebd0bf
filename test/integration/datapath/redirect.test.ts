// L7 redirection into the node proxy on the real kernel (docs/redirect.md). A stand-in proxy (a
// small TCP server in the node namespace, in a cgroup beside the hooked pods cgroup) accepts what
// the datapath steers to it, reports each accepted socket's addresses, and on command answers or
// opens an upstream connection from a port the test registered (or did not).
//   1. one node: client-side redirect at connect() (record, getpeername, egress/ingress
//      directions), no redirect without the flag, upstream identity at the pod's ingress, an
//      unregistered upstream port dropped, a hook-bypassing connection to an L7 port dropped;
//   2. two nodes over VXLAN: a connection from the other node to an L7-policed pod lands on the
//      proxy through bpf_sk_assign with localAddress = the pod; upstream identity in the VNI.
// Run: node --import tsx --test test/integration/datapath/redirect.test.ts

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { DropReason } from "../../../src/datapath/drop-reasons.ts";
import { type DatapathEvent, decodeEvent, EventType, Verdict } from "../../../src/datapath/events.ts";
import { loadSockDatapath, registerNetns } from "../../../src/datapath/lb-sync.ts";
import {
  attachTc,
  type LoadedObject,
  loadObject,
  objectPath,
  openRingBuffer,
  pins,
  programOf,
  type RingBufferReader,
  writeMaps,
} from "../../../src/datapath/loader.ts";
import { ENDPOINTS_MAP, encodeEndpointKey, encodeEndpointValue } from "../../../src/datapath/maps/endpoints.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../../../src/datapath/maps/events.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { BE_LOCAL, backendKey, backendValue, LB_MAPS, serviceKey, serviceValue, slotValue } from "../../../src/datapath/maps/lb.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import { EV_F_FROM_PROXY } from "../../../src/datapath/maps/redirect.ts";
import { attachRedirect, enableRedirect, lookupOrigin, readProxyConfig, registerUpstream } from "../../../src/datapath/redirect.ts";
import { removeProxyRouting, setupProxyRouting } from "../../../src/datapath/redirect-net.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { createSandbox, removeStale, type Sandbox, type SandboxPod } from "../../harness/sandbox.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PROXY_PORT = 15001;

// Backend: answers "hi <the peer it sees>" and ends. Bounded in time.
const SERVER = `
const net = require("node:net");
setTimeout(() => process.exit(3), 180000).unref();
const ports = process.argv.slice(1).map(Number);
let pending = ports.length;
for (const p of ports) net.createServer((s) => s.end("hi " + s.remoteAddress)).listen(p, "0.0.0.0", () => { if (--pending === 0) process.stdout.write("ready\\n"); });
process.stdin.on("end", () => process.exit(0)).resume();
`;

// Client: one connection; prints what it read, the peer getpeername shows, or the error.
const CLIENT = `
const net = require("node:net");
const [host, port, ms] = process.argv.slice(1);
const done = (r) => { process.stdout.write(JSON.stringify(r) + "\\n"); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), Number(ms)).unref();
let data = "", peer = "";
const s = net.connect(Number(port), host);
s.on("connect", () => { peer = s.remoteAddress + ":" + s.remotePort; });
s.on("data", (d) => (data += d)).on("end", () => done({ ok: true, data, peer })).on("error", (e) => done({ ok: false, error: e.code }));
`;

// Stand-in proxy. Listens on PORT (or on the inherited fd LISTEN_FD, made IP_TRANSPARENT by the
// launcher below); prints {"accept":id,...addresses} per connection; stdin commands, one JSON a line:
//   {"id":N,"answer":"text"}                                  write text to connection N and end it
//   {"id":N,"upstream":{host,port,localAddress,localPort}}     connect bound, pipe; prints {"upstream":N,"ok":...}
const PROXY = `
const net = require("node:net"), readline = require("node:readline");
setTimeout(() => process.exit(3), 180000).unref();
const out = (x) => process.stdout.write(JSON.stringify(x) + "\\n");
const conns = new Map(); let n = 0;
const srv = net.createServer({ pauseOnConnect: true }, (s) => {
  const id = ++n; conns.set(id, s); s.on("error", () => {});
  out({ accept: id, remoteAddress: s.remoteAddress, remotePort: s.remotePort, localAddress: s.localAddress, localPort: s.localPort });
});
const fd = process.env.LISTEN_FD;
srv.listen(fd ? { fd: Number(fd) } : { port: Number(process.argv[1]), host: "0.0.0.0" }, () => out({ ready: true }));
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line), s = conns.get(c.id);
  if (!s) return;
  if (c.answer !== undefined) { s.end(c.answer); return; }
  const up = net.connect({ ...c.upstream, timeout: 1500 });
  up.on("timeout", () => { out({ upstream: c.id, ok: false, error: "timeout" }); up.destroy(); s.destroy(); });
  up.on("error", (e) => { out({ upstream: c.id, ok: false, error: e.code }); s.destroy(); });
  up.on("connect", () => { up.setTimeout(0); out({ upstream: c.id, ok: true }); s.pipe(up); up.pipe(s); s.resume(); });
});
process.stdin.on("end", () => process.exit(0));
`;

// Makes the listener IP_TRANSPARENT (a socket accepted for a pod's address must answer from it;
// Node cannot set the option) and hands it to the stand-in proxy as LISTEN_FD.
const TRANSPARENT_LAUNCHER = `
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
s.set_inheritable(True)
os.environ["LISTEN_FD"] = str(s.fileno())
os.execvp(sys.argv[2], sys.argv[2:])
`;

interface Accepted {
  accept: number;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}
interface ClientResult {
  ok: boolean;
  data?: string;
  peer?: string;
  error?: string;
}

/** A child's stdout as JSON lines, with a waiter for the next line that matches. */
class Lines {
  readonly seen: Record<string, unknown>[] = [];
  private waiters: { pred: (x: Record<string, unknown>) => boolean; resolve: (x: Record<string, unknown>) => void }[] = [];
  constructor(readonly child: ChildProcess) {
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const x = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        this.seen.push(x);
        const hit = this.waiters.filter((w) => w.pred(x));
        this.waiters = this.waiters.filter((w) => !hit.includes(w));
        for (const w of hit) w.resolve(x);
      }
    });
  }
  next<T>(pred: (x: Record<string, unknown>) => boolean, ms = 5000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line in ${ms} ms; seen ${JSON.stringify(this.seen)}`)), ms);
      this.waiters.push({
        pred,
        resolve: (x) => {
          clearTimeout(timer);
          resolve(x as T);
        },
      });
    });
  }
  send(cmd: unknown): void {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }
}

function entry(
  identity: number,
  direction: "ingress" | "egress",
  dport: number,
  opts: { redirect?: boolean; prefixlen?: number; protocol?: number } = {},
): PolicyEntry {
  return {
    key: { identity, direction, protocol: opts.protocol ?? 6, dport, prefixlen: opts.prefixlen ?? 64 },
    value: { deny: false, redirect: opts.redirect ?? false, audit: false, proxyPort: 0, cookie: 7 },
    origins: [],
  };
}

/** The agent's allow-localhost entry: identity 1 (host), every protocol and port. */
const HOST_ALLOW = entry(1, "ingress", 0, { prefixlen: 40, protocol: 0 });

function runClient(sb: Sandbox, netns: string, host: string, port: number, opts: { cgroup?: string; ms?: number } = {}): Promise<ClientResult> {
  const argv = ["node", "-e", CLIENT, host, String(port), String(opts.ms ?? 2000)];
  const child = opts.cgroup ? sb.spawnInCgroupAt(opts.cgroup, netns, argv) : sb.spawnIn(netns, argv);
  return new Lines(child).next<ClientResult>(() => true, (opts.ms ?? 2000) + 5000);
}

async function startServer(sb: Sandbox, netns: string, ports: number[]): Promise<ChildProcess> {
  const server = sb.spawnIn(netns, ["node", "-e", SERVER, ...ports.map(String)]);
  await new Promise<void>((resolve, reject) => {
    let out = "";
    server.stdout?.on("data", (d: Buffer) => {
      out += d;
      if (out.includes("ready")) resolve();
    });
    server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return server;
}

async function startProxy(sb: Sandbox, cgroup: string, netns: string, transparent: boolean): Promise<Lines> {
  const argv = transparent ? ["python3", "-c", TRANSPARENT_LAUNCHER, String(PROXY_PORT), "node", "-e", PROXY] : ["node", "-e", PROXY, String(PROXY_PORT)];
  const proxy = new Lines(sb.spawnInCgroupAt(cgroup, netns, argv));
  await proxy.next((x) => x.ready === true);
  return proxy;
}

function readEvents(ring: RingBufferReader, into: DatapathEvent[]): Promise<void> {
  return (async () => {
    for await (const batch of ring) for (const r of batch) into.push(decodeEvent(Buffer.from(r)));
  })();
}

async function waitEvent(events: DatapathEvent[], pred: (e: DatapathEvent) => boolean, ms = 3000): Promise<DatapathEvent | undefined> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    const e = events.find(pred);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

describe("client-side redirect at connect(), upstream identity (one node)", () => {
  const GW = "10.200.1.1";
  const SRV = { ip: "10.200.1.10", id: 1000 };
  const CLI = { ip: "10.200.1.20", id: 2000 };
  const VIP = "10.96.0.10";
  let sb: Sandbox;
  let srv: SandboxPod;
  let cli: SandboxPod;
  let podsCg: string;
  let server: ChildProcess;
  let proxy: Lines;
  let ring: RingBufferReader;
  let reading: Promise<void>;
  const events: DatapathEvent[] = [];
  let root: string;

  const setPolicy = (egressRedirect: boolean, ingressRedirect: boolean) =>
    writeMaps([
      ...policyWrites(root, CLI.id, [entry(SRV.id, "egress", 8080, { redirect: egressRedirect }), entry(1, "egress", PROXY_PORT)]),
      ...policyWrites(root, SRV.id, [entry(CLI.id, "ingress", 8080, { redirect: ingressRedirect }), HOST_ALLOW]),
    ]);
  const accepts = () => proxy.seen.filter((x) => x.accept !== undefined).length;

  before(async () => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    await removeStale("redir");
    sb = await createSandbox("redir");
    root = sb.pinRoot;
    podsCg = sb.addCgroup("pods");
    const proxyCg = sb.addCgroup("proxy");
    srv = await sb.addPod("srv", { ip: SRV.ip, hostIf: "lxcsrv", gateway: GW });
    cli = await sb.addPod("cli", { ip: CLI.ip, hostIf: "lxccli", gateway: GW });

    const lxc: LoadedObject = await loadObject(objectPath("lxc"), root);
    for (const pod of [srv, cli]) {
      await attachTc(programOf(lxc, "lxc_from_endpoint").pin, sb.netns, pod.hostIf, "ingress", pins.link(root, `tc-${pod.hostIf}-from`));
      await attachTc(programOf(lxc, "lxc_to_endpoint").pin, sb.netns, pod.hostIf, "egress", pins.link(root, `tc-${pod.hostIf}-to`));
    }
    await loadSockDatapath(root, podsCg);
    await attachRedirect(root, podsCg);
    await registerNetns(root, cli.netns, CLI.id);
    await ensureSubjectMap(root, SRV.id);
    await ensureSubjectMap(root, CLI.id);
    const ep = (p: { ip: string; id: number }, pod: SandboxPod) => ({
      op: "update" as const,
      map: pins.map(root, ENDPOINTS_MAP),
      key: encodeEndpointKey(p.ip),
      value: encodeEndpointValue({ ip: p.ip, identity: p.id, ifindex: pod.hostIfindex, endpointId: 1, enforceIngress: true, enforceEgress: true }),
    });
    const ipc = (cidr: string, identity: number) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(cidr),
      value: encodeIpcacheValue({ cidr, identity }),
    });
    const lb = (map: string, key: Buffer, value: Buffer) => ({ op: "update" as const, map: pins.map(root, map), key, value });
    const frontend = { address: VIP, port: 80, proto: "TCP" as const };
    await writeMaps([
      ep(SRV, srv),
      ep(CLI, cli),
      ipc(`${SRV.ip}/32`, SRV.id),
      ipc(`${CLI.ip}/32`, CLI.id),
      ipc(`${GW}/32`, 1),
      lb(LB_MAPS.backends, backendKey(70), backendValue({ address: SRV.ip, port: 8080, proto: "TCP", flags: BE_LOCAL, serviceId: 7 })),
      lb(LB_MAPS.services, serviceKey(frontend, 1), slotValue(7, 70)),
      lb(LB_MAPS.services, serviceKey(frontend, 0), serviceValue({ serviceId: 7, count: 1, affinityTimeout: 0, maglevSize: 0, flags: 0 })),
    ]);
    await setPolicy(true, false);
    ring = await openRingBuffer(pins.map(root, EVENTS_MAP), { lostMap: pins.map(root, EVENTS_LOST_MAP) });
    reading = readEvents(ring, events);
    server = await startServer(sb, srv.netns, [8080]);
    proxy = await startProxy(sb, proxyCg, sb.netns, false);
    const cfg = await enableRedirect(root, { address: GW, port: PROXY_PORT, cgroup: proxyCg });
    assert.deepEqual(await readProxyConfig(root), cfg);
  });

  after(async () => {
    server?.stdin?.end();
    proxy?.child.stdin?.end();
    await ring?.close();
    await reading?.catch(() => undefined);
    await sb?.dispose();
  });

  /** Starts the client, waits for the proxy's accept, returns both. */
  async function viaProxy(): Promise<{ acc: Accepted; client: Promise<ClientResult> }> {
    const before = accepts();
    const client = runClient(sb, cli.netns, VIP, 80, { cgroup: podsCg, ms: 4000 });
    const acc = await proxy.next<Accepted>((x) => x.accept === before + 1);
    return { acc, client };
  }

  it("egress L7: connect(VIP) lands on the proxy with a record {VIP, backend, identity}; getpeername shows the VIP; the upstream carries the client's identity", async (t) => {
    const t0 = performance.now();
    const { acc, client } = await viaProxy();
    assert.equal(acc.localAddress, GW, "the proxy's listener on the gateway, not loopback");
    assert.equal(acc.localPort, PROXY_PORT);
    assert.equal(acc.remoteAddress, CLI.ip);
    const rec = await lookupOrigin(root, acc);
    assert.ok(rec, "a record for the accepted socket's 4-tuple");
    assert.deepEqual(
      { ...rec, netnsCookie: rec.netnsCookie > 0n },
      {
        origAddress: VIP,
        origPort: 80,
        backendAddress: SRV.ip,
        backendPort: 8080,
        srcIdentity: CLI.id,
        dstIdentity: SRV.id,
        serviceId: 7,
        backendId: 70,
        egressCookie: 7,
        ingressCookie: 0,
        egress: true,
        ingress: false,
        via: "sock",
        protocol: "TCP",
        netnsCookie: true,
      },
    );
    await registerUpstream(root, { address: GW, port: 40001 }, rec.srcIdentity);
    proxy.send({ id: acc.accept, upstream: { host: rec.backendAddress, port: rec.backendPort, localAddress: GW, localPort: 40001 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: true });
    assert.deepEqual(await client, { ok: true, data: `hi ${GW}`, peer: `${VIP}:80` });
    t.diagnostic(`redirected round trip ${(performance.now() - t0).toFixed(1)} ms`);
    const ev = await waitEvent(events, (e) => e.type === EventType.policyVerdict && e.saddr === GW && e.sport === 40001 && e.daddr === SRV.ip);
    assert.ok(ev, "a policy verdict at the backend's ingress");
    assert.equal(ev.srcIdentity, CLI.id, "the client's identity, not the host's");
    assert.equal(ev.verdict, Verdict.forwarded);
    assert.equal(ev.flags & EV_F_FROM_PROXY, EV_F_FROM_PROXY);
    const egress = await waitEvent(events, (e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.sport === acc.remotePort);
    assert.equal(egress?.daddr, SRV.ip, "the client's egress decided toward the backend");
    assert.equal(egress?.dstIdentity, SRV.id);
    assert.equal(egress?.proxyPort, PROXY_PORT);
  });

  it("an upstream connection from an unregistered port is dropped (171), even though host is allowed", async () => {
    const { acc, client } = await viaProxy();
    proxy.send({ id: acc.accept, upstream: { host: SRV.ip, port: 8080, localAddress: GW, localPort: 40002 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: false, error: "timeout" });
    assert.equal((await client).data ?? "", "", "nothing from the backend reached the client");
    const ev = await waitEvent(events, (e) => e.saddr === GW && e.sport === 40002 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.INVALID_IDENTITY);
  });

  it("ingress L7 of a pod on this node: redirected in one pass (directions: ingress only)", async () => {
    await setPolicy(false, true);
    const { acc, client } = await viaProxy();
    const rec = await lookupOrigin(root, acc);
    assert.equal(rec?.egress, false);
    assert.equal(rec?.ingress, true);
    assert.equal(rec?.ingressCookie, 7);
    assert.equal(rec?.dstIdentity, SRV.id);
    await registerUpstream(root, { address: GW, port: 40003 }, CLI.id);
    proxy.send({ id: acc.accept, upstream: { host: SRV.ip, port: 8080, localAddress: GW, localPort: 40003 } });
    assert.deepEqual(await client, { ok: true, data: `hi ${GW}`, peer: `${VIP}:80` });
  });

  it("a connection that bypassed the socket hook to an L7 port is dropped at the pod (133), not let through", async () => {
    // Same pod namespace, but a process outside the hooked cgroup: no redirect happened.
    assert.deepEqual(await runClient(sb, cli.netns, SRV.ip, 8080, { ms: 1500 }), { ok: false, error: "timeout" });
    const ev = await waitEvent(events, (e) => e.saddr === CLI.ip && e.daddr === SRV.ip && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.POLICY);
    assert.equal((ev?.flags ?? 0) & 2, 2, "the event says the proxy was wanted");
  });

  it("without the redirect flag the connection goes straight to the backend: the proxy accepts nothing", async () => {
    await setPolicy(false, false);
    const before = accepts();
    assert.deepEqual(await runClient(sb, cli.netns, VIP, 80, { cgroup: podsCg }), { ok: true, data: `hi ${CLI.ip}`, peer: `${VIP}:80` });
    assert.equal(accepts(), before);
  });

  it("a pod connecting to the proxy's port itself has no record: the proxy must refuse it", async () => {
    const before = accepts();
    const client = runClient(sb, cli.netns, GW, PROXY_PORT, { cgroup: podsCg, ms: 1500 });
    const acc = await proxy.next<Accepted>((x) => x.accept === before + 1);
    assert.equal(await lookupOrigin(root, acc), undefined);
    proxy.send({ id: acc.accept, answer: "" });
    await client;
    assert.equal(ring.lost, 0);
  });
});

// Two nodes joined by an underlay veth, vx0 in external mode on both (as lxc-traffic.test.ts).
describe("server-side redirect through vx0 with bpf_sk_assign; upstream identity in the VNI (two nodes)", () => {
  const N1 = { underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:00:00:00:00:11", gw: "10.200.1.1" };
  const N2 = { underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:00:00:00:00:12", gw: "10.200.2.1" };
  const SRV = { ip: "10.200.1.10", id: 1000 }; // node 1
  const CLI = { ip: "10.200.2.40", id: 4000 }; // node 2; also serves 9000 for the upstream test
  const UPSTREAM_ID = 5555; // only identity node 2's pod admits on 9000
  let sb: Sandbox;
  let node2: string;
  let srv: SandboxPod;
  let cli: SandboxPod;
  let servers: ChildProcess[] = [];
  let proxy: Lines;
  let ring: RingBufferReader;
  let reading: Promise<void>;
  const events: DatapathEvent[] = [];
  const roots = { n1: "", n2: "" };

  before(async () => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    await removeStale("redirvx");
    sb = await createSandbox("redirvx");
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
    await setupProxyRouting(sb.netns);
    await setupProxyRouting(sb.netns); // idempotent

    roots.n1 = sb.pinRoot;
    roots.n2 = sb.pinRoot.replace(/\/n1$/, "/n2");
    for (const [node, ns, root, pod] of [
      ["n1", sb.netns, roots.n1, srv],
      ["n2", node2, roots.n2, cli],
    ] as const) {
      const loaded = await loadObject(objectPath("lxc"), root);
      const prog = (name: string) => programOf(loaded, name).pin;
      await attachTc(prog("vxlan_from_overlay"), ns, "vx0", "ingress", pins.link(root, `tc-${node}-vx0-ingress`));
      await attachTc(prog("vxlan_to_overlay"), ns, "vx0", "egress", pins.link(root, `tc-${node}-vx0-egress`));
      await attachTc(prog("lxc_from_endpoint"), ns, pod.hostIf, "ingress", pins.link(root, `tc-${node}-pod-ingress`));
      await attachTc(prog("lxc_to_endpoint"), ns, pod.hostIf, "egress", pins.link(root, `tc-${node}-pod-egress`));
    }
    const ipc = (root: string, cidr: string, identity: number, tunnelEndpoint?: string) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(cidr),
      value: encodeIpcacheValue({ cidr, identity, ...(tunnelEndpoint ? { tunnelEndpoint } : {}) }),
    });
    const ep = (root: string, p: { ip: string; id: number }, pod: SandboxPod) => ({
      op: "update" as const,
      map: pins.map(root, ENDPOINTS_MAP),
      key: encodeEndpointKey(p.ip),
      value: encodeEndpointValue({ ip: p.ip, identity: p.id, ifindex: pod.hostIfindex, endpointId: 1, enforceIngress: true, enforceEgress: false }),
    });
    await ensureSubjectMap(roots.n1, SRV.id);
    await ensureSubjectMap(roots.n2, CLI.id);
    await writeMaps([
      ep(roots.n1, SRV, srv),
      ipc(roots.n1, `${SRV.ip}/32`, SRV.id),
      ipc(roots.n1, `${N1.gw}/32`, 1),
      ipc(roots.n1, "10.200.2.0/24", 2, N2.underlay), // node 1 knows node 2's pods only as world
      ep(roots.n2, CLI, cli),
      ipc(roots.n2, `${CLI.ip}/32`, CLI.id),
      ipc(roots.n2, "10.200.1.0/24", 2, N1.underlay),
      ...policyWrites(roots.n1, SRV.id, [entry(CLI.id, "ingress", 8080, { redirect: true }), entry(CLI.id, "ingress", 8081), HOST_ALLOW]),
      ...policyWrites(roots.n2, CLI.id, [entry(UPSTREAM_ID, "ingress", 9000)]),
    ]);
    ring = await openRingBuffer(pins.map(roots.n1, EVENTS_MAP), { lostMap: pins.map(roots.n1, EVENTS_LOST_MAP) });
    reading = readEvents(ring, events);
    servers = [await startServer(sb, srv.netns, [8080, 8081]), await startServer(sb, cli.netns, [9000])];
    const proxyCg = sb.addCgroup("proxy");
    proxy = await startProxy(sb, proxyCg, sb.netns, true); // without IP_TRANSPARENT the SYN-ACK from the pod address cannot be routed
    await enableRedirect(roots.n1, { address: N1.gw, port: PROXY_PORT, cgroup: proxyCg });
  });

  after(async () => {
    for (const s of servers) s.stdin?.end();
    proxy?.child.stdin?.end();
    await ring?.close();
    await reading?.catch(() => undefined);
    await removeProxyRouting(sb.netns).catch(() => undefined);
    await sb?.dispose();
  });

  it("TCP 8080 (ingress L7) from the other node: the proxy accepts it with localAddress = the pod, and a record with the tunnel's identity", async () => {
    const before = proxy.seen.filter((x) => x.accept !== undefined).length;
    const client = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc = await proxy.next<Accepted>((x) => x.accept === before + 1);
    assert.deepEqual({ local: `${acc.localAddress}:${acc.localPort}`, remote: acc.remoteAddress }, { local: `${SRV.ip}:8080`, remote: CLI.ip });
    const rec = await lookupOrigin(roots.n1, acc);
    assert.ok(rec, "a record for the accepted socket");
    assert.deepEqual(
      [rec.via, rec.srcIdentity, rec.dstIdentity, rec.ingress, rec.egress, rec.origAddress, rec.origPort],
      ["tc", CLI.id, SRV.id, true, false, SRV.ip, 8080],
    );
    proxy.send({ id: acc.accept, answer: "from the proxy" });
    assert.deepEqual(await client, { ok: true, data: "from the proxy", peer: `${SRV.ip}:8080` });
    const ev = await waitEvent(events, (e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.dport === 8080);
    assert.equal((ev?.flags ?? 0) & 3, 3, "identity from the tunnel, redirected");
    assert.equal(ev?.proxyPort, PROXY_PORT);
  });

  it("TCP 8081 (L3/L4 only) from the other node goes straight to the pod", async () => {
    const before = proxy.seen.filter((x) => x.accept !== undefined).length;
    assert.deepEqual(await runClient(sb, cli.netns, SRV.ip, 8081), { ok: true, data: `hi ${CLI.ip}`, peer: `${SRV.ip}:8081` });
    assert.equal(proxy.seen.filter((x) => x.accept !== undefined).length, before);
  });

  it("the proxy's upstream to the other node carries the registered identity in the VNI; an unregistered port is dropped at vx0", async () => {
    // Use a connection to the proxy as the downstream side of the upstream command.
    const before = proxy.seen.filter((x) => x.accept !== undefined).length;
    const client = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc = await proxy.next<Accepted>((x) => x.accept === before + 1);
    await registerUpstream(roots.n1, { address: N1.gw, port: 40010 }, UPSTREAM_ID);
    proxy.send({ id: acc.accept, upstream: { host: CLI.ip, port: 9000, localAddress: N1.gw, localPort: 40010 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: true });
    assert.deepEqual(await client, { ok: true, data: `hi ${N1.gw}`, peer: `${SRV.ip}:8080` });

    const client2 = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc2 = await proxy.next<Accepted>((x) => x.accept === before + 2);
    proxy.send({ id: acc2.accept, upstream: { host: CLI.ip, port: 9000, localAddress: N1.gw, localPort: 40011 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc2.accept), { upstream: acc2.accept, ok: false, error: "timeout" });
    await client2;
    const ev = await waitEvent(events, (e) => e.saddr === N1.gw && e.sport === 40011 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.INVALID_IDENTITY);
    assert.equal(ring.lost, 0);
  });
});
