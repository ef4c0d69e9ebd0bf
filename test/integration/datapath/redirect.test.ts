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
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { DropReason } from "../../../src/datapath/drop-reasons.ts";
import { EventType, Verdict } from "../../../src/datapath/events.ts";
import { loadSockDatapath, registerNetns } from "../../../src/datapath/lb-sync.ts";
import { pins, writeMaps } from "../../../src/datapath/loader.ts";
import { BE_LOCAL, LB_MAPS, serviceKey, serviceValue } from "../../../src/datapath/maps/lb.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import { EV_F_FROM_PROXY } from "../../../src/datapath/maps/redirect.ts";
import { attachRedirect, enableRedirect, lookupOrigin, readProxyConfig, registerUpstream } from "../../../src/datapath/redirect.ts";
import { removeProxyRouting, setupProxyRouting } from "../../../src/datapath/redirect-net.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { untilReady } from "../../harness/child-lines.ts";
import { EventLog } from "../../harness/event-log.ts";
import { type ClientResult, runClient } from "../../harness/l4-client.ts";
import { attachLxc, endpointWrite, ipcacheWrite } from "../../harness/node-datapath.ts";
import { buildTwoNodes, freshSandbox, type Sandbox, type SandboxPod, type UnderlayNode } from "../../harness/sandbox.ts";
import { type Accepted, type StandInProxy, startStandInProxy } from "../../harness/stand-in-proxy.ts";

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

async function startServer(sb: Sandbox, netns: string, ports: number[]): Promise<ChildProcess> {
  const server = sb.spawnIn(netns, ["node", "-e", SERVER, ...ports.map(String)]);
  await untilReady(server);
  return server;
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
  let proxy: StandInProxy;
  let log: EventLog;
  let root: string;

  const setPolicy = (egressRedirect: boolean, ingressRedirect: boolean) =>
    writeMaps([
      ...policyWrites(root, CLI.id, [entry(SRV.id, "egress", 8080, { redirect: egressRedirect }), entry(1, "egress", PROXY_PORT)]),
      ...policyWrites(root, SRV.id, [entry(CLI.id, "ingress", 8080, { redirect: ingressRedirect }), HOST_ALLOW]),
    ]);
  const accepts = () => proxy.accepts();

  before(async () => {
    sb = await freshSandbox("redir");
    root = sb.pinRoot;
    podsCg = sb.addCgroup("pods");
    const proxyCg = sb.addCgroup("proxy");
    srv = await sb.addPod("srv", { ip: SRV.ip, hostIf: "lxcsrv", gateway: GW });
    cli = await sb.addPod("cli", { ip: CLI.ip, hostIf: "lxccli", gateway: GW });

    await attachLxc(root, sb.netns, { pods: [srv, cli] });
    await loadSockDatapath(root, podsCg);
    await attachRedirect(root, podsCg);
    await registerNetns(root, cli.netns, CLI.id);
    await ensureSubjectMap(root, SRV.id);
    await ensureSubjectMap(root, CLI.id);
    const ep = (p: { ip: string; id: number }, pod: SandboxPod) => endpointWrite(root, p, pod, { enforceIngress: true, enforceEgress: true });
    const ipc = (cidr: string, identity: number) => ipcacheWrite(root, cidr, identity);
    const lb = (map: string, key: Buffer, value: Buffer) => ({ op: "update" as const, map: pins.map(root, map), key, value });
    const frontend = { address: VIP, port: 80, proto: "TCP" as const };
    await writeMaps([
      ep(SRV, srv),
      ep(CLI, cli),
      ipc(`${SRV.ip}/32`, SRV.id),
      ipc(`${CLI.ip}/32`, CLI.id),
      ipc(`${GW}/32`, 1),
      lb(
        LB_MAPS.services,
        serviceKey(frontend, 0),
        serviceValue({
          serviceId: 7,
          count: 1,
          affinityTimeout: 0,
          maglevSize: 0,
          flags: 0,
          backendIds: [70],
          backends: [{ address: SRV.ip, port: 8080, flags: BE_LOCAL }],
        }),
      ),
    ]);
    await setPolicy(true, false);
    log = await EventLog.open(root);
    server = await startServer(sb, srv.netns, [8080]);
    proxy = await startStandInProxy(sb, proxyCg, sb.netns, { port: PROXY_PORT, transparent: false });
    const cfg = await enableRedirect(root, { address: GW, port: PROXY_PORT, cgroup: proxyCg });
    assert.deepEqual(await readProxyConfig(root), cfg);
  });

  after(async () => {
    server?.stdin?.end();
    proxy?.stop();
    await log?.close();
    await sb?.dispose();
  });

  /** Starts the client, waits for the proxy's accept, returns both. */
  async function viaProxy(): Promise<{ acc: Accepted; client: Promise<ClientResult> }> {
    const before = accepts();
    const client = runClient(sb, cli.netns, VIP, 80, { cgroup: podsCg, ms: 4000 });
    const acc = await proxy.accepted(before);
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
    const ev = await log.wait((e) => e.type === EventType.policyVerdict && e.saddr === GW && e.sport === 40001 && e.daddr === SRV.ip);
    assert.ok(ev, "a policy verdict at the backend's ingress");
    assert.equal(ev.srcIdentity, CLI.id, "the client's identity, not the host's");
    assert.equal(ev.verdict, Verdict.forwarded);
    assert.equal(ev.flags & EV_F_FROM_PROXY, EV_F_FROM_PROXY);
    const egress = await log.wait((e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.sport === acc.remotePort);
    assert.equal(egress?.daddr, SRV.ip, "the client's egress decided toward the backend");
    assert.equal(egress?.dstIdentity, SRV.id);
    assert.equal(egress?.proxyPort, PROXY_PORT);
  });

  it("an upstream connection from an unregistered port is dropped (171), even though host is allowed", async () => {
    const { acc, client } = await viaProxy();
    proxy.send({ id: acc.accept, upstream: { host: SRV.ip, port: 8080, localAddress: GW, localPort: 40002 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: false, error: "timeout" });
    assert.equal((await client).data ?? "", "", "nothing from the backend reached the client");
    const ev = await log.wait((e) => e.saddr === GW && e.sport === 40002 && e.verdict === Verdict.dropped);
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
    const ev = await log.wait((e) => e.saddr === CLI.ip && e.daddr === SRV.ip && e.verdict === Verdict.dropped);
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
    const acc = await proxy.accepted(before);
    assert.equal(await lookupOrigin(root, acc), undefined);
    proxy.send({ id: acc.accept, answer: "" });
    await client;
    assert.equal(log.lost, 0);
  });
});

// Two nodes on the local cluster's underlay (buildUnderlay), vx0 in external mode on both (as lxc-traffic.test.ts).
describe("server-side redirect through vx0 with bpf_sk_assign; upstream identity in the VNI (two nodes)", () => {
  const N1: UnderlayNode = { name: "n1", underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:00:00:00:00:11", gw: "10.200.1.1", cidr: "10.200.1.0/24" };
  const N2: UnderlayNode = { name: "n2", underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:00:00:00:00:12", gw: "10.200.2.1", cidr: "10.200.2.0/24" };
  const SRV = { ip: "10.200.1.10", id: 1000 }; // node 1
  const CLI = { ip: "10.200.2.40", id: 4000 }; // node 2; also serves 9000 for the upstream test
  const UPSTREAM_ID = 5555; // only identity node 2's pod admits on 9000
  let sb: Sandbox;
  let node1 = "";
  let srv: SandboxPod;
  let cli: SandboxPod;
  let servers: ChildProcess[] = [];
  let proxy: StandInProxy;
  let log: EventLog;
  const roots = { n1: "", n2: "" };

  before(async () => {
    sb = await freshSandbox("redirvx");
    const { nodes } = await buildTwoNodes(sb, "10.254.0.2", [N1, N2], [SRV.ip, CLI.ip]); // its outside namespace stays idle here
    node1 = nodes.n1.ns;
    srv = nodes.n1.pod;
    cli = nodes.n2.pod;
    await setupProxyRouting(node1);
    await setupProxyRouting(node1); // idempotent

    roots.n1 = nodes.n1.root;
    roots.n2 = nodes.n2.root;
    await attachLxc(roots.n1, node1, { pods: [srv], vxlan: true });
    await attachLxc(roots.n2, nodes.n2.ns, { pods: [cli], vxlan: true });
    const ep = (root: string, p: { ip: string; id: number }, pod: SandboxPod) => endpointWrite(root, p, pod, { enforceIngress: true, enforceEgress: false });
    await ensureSubjectMap(roots.n1, SRV.id);
    await ensureSubjectMap(roots.n2, CLI.id);
    await writeMaps([
      ep(roots.n1, SRV, srv),
      ipcacheWrite(roots.n1, `${SRV.ip}/32`, SRV.id),
      ipcacheWrite(roots.n1, `${N1.gw}/32`, 1),
      ipcacheWrite(roots.n1, N2.cidr, 2, { tunnelEndpoint: N2.underlay }), // node 1 knows node 2's pods only as world
      ep(roots.n2, CLI, cli),
      ipcacheWrite(roots.n2, `${CLI.ip}/32`, CLI.id),
      ipcacheWrite(roots.n2, N1.cidr, 2, { tunnelEndpoint: N1.underlay }),
      ...policyWrites(roots.n1, SRV.id, [entry(CLI.id, "ingress", 8080, { redirect: true }), entry(CLI.id, "ingress", 8081), HOST_ALLOW]),
      ...policyWrites(roots.n2, CLI.id, [entry(UPSTREAM_ID, "ingress", 9000)]),
    ]);
    log = await EventLog.open(roots.n1);
    servers = [await startServer(sb, srv.netns, [8080, 8081]), await startServer(sb, cli.netns, [9000])];
    const proxyCg = sb.addCgroup("proxy");
    // Without IP_TRANSPARENT the SYN-ACK from the pod address cannot be routed.
    proxy = await startStandInProxy(sb, proxyCg, node1, { port: PROXY_PORT, transparent: true });
    await enableRedirect(roots.n1, { address: N1.gw, port: PROXY_PORT, cgroup: proxyCg });
  });

  after(async () => {
    for (const s of servers) s.stdin?.end();
    proxy?.stop();
    await log?.close();
    if (node1) await removeProxyRouting(node1).catch(() => undefined);
    await sb?.dispose();
  });

  it("TCP 8080 (ingress L7) from the other node: the proxy accepts it with localAddress = the pod, and a record with the tunnel's identity", async () => {
    const before = proxy.accepts();
    const client = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc = await proxy.accepted(before);
    assert.deepEqual({ local: `${acc.localAddress}:${acc.localPort}`, remote: acc.remoteAddress }, { local: `${SRV.ip}:8080`, remote: CLI.ip });
    const rec = await lookupOrigin(roots.n1, acc);
    assert.ok(rec, "a record for the accepted socket");
    assert.deepEqual(
      [rec.via, rec.srcIdentity, rec.dstIdentity, rec.ingress, rec.egress, rec.origAddress, rec.origPort],
      ["tc", CLI.id, SRV.id, true, false, SRV.ip, 8080],
    );
    proxy.send({ id: acc.accept, answer: "from the proxy" });
    assert.deepEqual(await client, { ok: true, data: "from the proxy", peer: `${SRV.ip}:8080` });
    const ev = await log.wait((e) => e.type === EventType.policyVerdict && e.saddr === CLI.ip && e.dport === 8080);
    assert.equal((ev?.flags ?? 0) & 3, 3, "identity from the tunnel, redirected");
    assert.equal(ev?.proxyPort, PROXY_PORT);
  });

  it("TCP 8081 (L3/L4 only) from the other node goes straight to the pod", async () => {
    const before = proxy.accepts();
    assert.deepEqual(await runClient(sb, cli.netns, SRV.ip, 8081), { ok: true, data: `hi ${CLI.ip}`, peer: `${SRV.ip}:8081` });
    assert.equal(proxy.accepts(), before);
  });

  it("the proxy's upstream to the other node carries the registered identity in the VNI; an unregistered port is dropped at vx0", async () => {
    // Use a connection to the proxy as the downstream side of the upstream command.
    const before = proxy.accepts();
    const client = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc = await proxy.accepted(before);
    await registerUpstream(roots.n1, { address: N1.gw, port: 40010 }, UPSTREAM_ID);
    proxy.send({ id: acc.accept, upstream: { host: CLI.ip, port: 9000, localAddress: N1.gw, localPort: 40010 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: true });
    assert.deepEqual(await client, { ok: true, data: `hi ${N1.gw}`, peer: `${SRV.ip}:8080` });

    const client2 = runClient(sb, cli.netns, SRV.ip, 8080, { ms: 4000 });
    const acc2 = await proxy.accepted(before + 1);
    proxy.send({ id: acc2.accept, upstream: { host: CLI.ip, port: 9000, localAddress: N1.gw, localPort: 40011 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc2.accept), { upstream: acc2.accept, ok: false, error: "timeout" });
    await client2;
    const ev = await log.wait((e) => e.saddr === N1.gw && e.sport === 40011 && e.verdict === Verdict.dropped);
    assert.equal(ev?.dropReason, DropReason.INVALID_IDENTITY);
    assert.equal(log.lost, 0);
  });
});
