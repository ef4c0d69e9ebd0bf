// NodePort from outside the node into the node proxy (docs/redirect.md, "NodePort from outside"):
// an outside namespace and two nodes on an underlay bridge (vx0 VXLAN between them), one pod per
// node, lxc.o and host.o attached as the agent attaches them, a stand-in proxy per node holding an
// IP_TRANSPARENT listener (the loader helper's listen-exec). Outside → nodeIP:nodePort toward a
// pod port whose ingress entry redirects lands on the proxy with localAddress = the pod and a
// record {world, ingress, tc}; the proxy's answer reaches the client from nodeIP:nodePort; without
// the flag the pod answers itself; no listener → dropped; a remote backend (SNAT, VXLAN) is handed
// over by the other node's vx0 with identity remote-node; a CIDR identity of the client is kept.
// Run: node --import tsx --test test/integration/datapath/redirect-nodeport.test.ts

import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { ServiceSync } from "../../../src/datapath/lb-sync.ts";
import { pins, writeMaps } from "../../../src/datapath/loader.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { enableRedirect, lookupOrigin, registerUpstream } from "../../../src/datapath/redirect.ts";
import { setupProxyRouting } from "../../../src/datapath/redirect-net.ts";
import type { EndpointSliceInput, ServiceInput } from "../../../src/datapath/services.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { untilReady } from "../../harness/child-lines.ts";
import { type ClientResult, runClient } from "../../harness/l4-client.ts";
import { ID, setUpNodePortNode } from "../../harness/node-datapath.ts";
import { buildTwoNodes, type ClusterNode, freshSandbox, type Sandbox, type UnderlayNode } from "../../harness/sandbox.ts";
import { type Accepted, type StandInProxy, startStandInProxy } from "../../harness/stand-in-proxy.ts";

const OUTSIDE = "10.254.0.2";
const PROXY_PORT = 15001;
const N1: UnderlayNode = { name: "n1", underlay: "10.254.0.11", overlay: "10.253.0.11", mac: "02:78:00:00:00:01", gw: "10.200.1.1", cidr: "10.200.1.0/24" };
const N2: UnderlayNode = { name: "n2", underlay: "10.254.0.12", overlay: "10.253.0.12", mac: "02:78:00:00:00:02", gw: "10.200.2.1", cidr: "10.200.2.0/24" };
const P1 = { ip: "10.200.1.10", id: 1000 }; // on n1
const P2 = { ip: "10.200.2.10", id: 2000 }; // on n2
const CIDR_ID = (1 << 24) + 1; // a node-local CIDR identity the last test gives the outside client

// The pods: every port answers with the pod's name and the peer it saw.
const SERVER = `
const net = require("node:net");
setTimeout(() => process.exit(3), 300000).unref();
const [name, ...ports] = process.argv.slice(1);
let pending = ports.length;
for (const p of ports) net.createServer((s) => s.end(JSON.stringify({ pod: name, peer: s.remoteAddress + ":" + s.remotePort })))
  .listen(Number(p), "0.0.0.0", () => { if (--pending === 0) process.stdout.write("ready\\n"); });
process.stdin.on("end", () => process.exit(0)).resume();
`;

function entry(identity: number, dport: number, opts: { redirect?: boolean; proxyPort?: number; prefixlen?: number; protocol?: number } = {}): PolicyEntry {
  return {
    key: { identity, direction: "ingress", protocol: opts.protocol ?? 6, dport, prefixlen: opts.prefixlen ?? 64 },
    value: { deny: false, redirect: opts.redirect ?? false, audit: false, proxyPort: opts.proxyPort ?? 0, cookie: 9 },
    origins: [],
  };
}

function service(name: string, nodePort: number, targetPort: number): ServiceInput {
  return {
    metadata: { namespace: "default", name },
    spec: { type: "NodePort", clusterIP: `10.96.1.${nodePort - 30000}`, ports: [{ port: 80, targetPort, nodePort, protocol: "TCP" }] },
  };
}

function slice(name: string, ep: { ip: string; node: string }, port: number): EndpointSliceInput {
  return {
    metadata: { namespace: "default", name: `${name}-1`, labels: { "kubernetes.io/service-name": name } },
    addressType: "IPv4",
    endpoints: [{ addresses: [ep.ip], nodeName: ep.node }],
    ports: [{ name: "", port, protocol: "TCP" }],
  };
}

// 30081 → p1:8080 (L7), 30083 → p1:8081 (L3/L4 only), 30084 → p1:8082 (L7 on a proxy port nobody
// listens on), 30082 → p2:8080 (L7, on the other node).
const SERVICES = [service("l7", 30081, 8080), service("plain", 30083, 8081), service("noproxy", 30084, 8082), service("l7-n2", 30082, 8080)];
const SLICES = [
  slice("l7", { ip: P1.ip, node: "n1" }, 8080),
  slice("plain", { ip: P1.ip, node: "n1" }, 8081),
  slice("noproxy", { ip: P1.ip, node: "n1" }, 8082),
  slice("l7-n2", { ip: P2.ip, node: "n2" }, 8080),
];

describe("NodePort from outside to an L7-policed pod: handed to the node proxy (bpf_sk_assign)", () => {
  let sb: Sandbox;
  let outside: string;
  let nodes: Record<"n1" | "n2", ClusterNode & { proxy?: StandInProxy }>;
  const servers: ChildProcess[] = [];

  before(async () => {
    sb = await freshSandbox("redirnp");
    // The local cluster's wiring: underlay bridge, outside, two nodes joined by external VXLAN, a pod each.
    ({ outside, nodes } = await buildTwoNodes(sb, OUTSIDE, [N1, N2], [P1.ip, P2.ip]));

    for (const [n, self, peer, pod] of [
      [nodes.n1, N1, N2, P1],
      [nodes.n2, N2, N1, P2],
    ] as const) {
      const { ns, root, pod: podIf } = n;
      await setUpNodePortNode(n, self, peer, { pod, peerPod: pod === P1 ? P2 : P1 }, [
        entry(ID.world, 8080, { redirect: true }),
        entry(ID.world, 8081),
        entry(ID.world, 8082, { redirect: true, proxyPort: 15999 }),
        entry(ID.remoteNode, 8080, { redirect: true }),
        entry(CIDR_ID, 8080, { redirect: true }),
        entry(ID.host, 0, { prefixlen: 40, protocol: 0 }), // the agent's allow-localhost
      ]);
      const report = await new ServiceSync(root, self.name).sync(SERVICES, SLICES);
      assert.deepEqual(report.problems, []);
      const server = sb.spawnIn(podIf.netns, ["node", "-e", SERVER, pod === P1 ? "p1" : "p2", "8080", "8081", "8082"]);
      servers.push(server);
      await untilReady(server);
      await setupProxyRouting(ns);
      const proxyCg = sb.addCgroup(`proxy${self.name}`);
      n.proxy = await startStandInProxy(sb, proxyCg, ns, { port: PROXY_PORT, transparent: true });
      await enableRedirect(root, { address: self.gw, port: PROXY_PORT, cgroup: proxyCg });
    }
  });

  after(async () => {
    for (const s of servers) s.stdin?.end();
    for (const n of Object.values(nodes ?? {})) n.proxy?.stop();
    await sb?.dispose();
  });

  const client = (host: string, port: number, ms = 4000) => runClient(sb, outside, host, port, { ms });

  async function viaProxy(node: "n1" | "n2", host: string, port: number): Promise<{ acc: Accepted; result: Promise<ClientResult>; proxy: StandInProxy }> {
    const proxy = nodes[node].proxy as StandInProxy;
    const before = proxy.accepts();
    const result = client(host, port);
    const acc = await proxy.accepted(before);
    return { acc, result, proxy };
  }

  it("local backend: outside → n1:30081 lands on n1's proxy with localAddress = the pod, a record {world, ingress, tc}; the answer comes from n1:30081", async (t) => {
    const t0 = performance.now();
    const { acc, result, proxy } = await viaProxy("n1", N1.underlay, 30081);
    assert.deepEqual({ local: `${acc.localAddress}:${acc.localPort}`, remote: acc.remoteAddress }, { local: `${P1.ip}:8080`, remote: OUTSIDE });
    const rec = await lookupOrigin(nodes.n1.root, acc);
    assert.ok(rec, "a record for the accepted socket's 4-tuple");
    assert.deepEqual(
      [
        rec.via,
        rec.srcIdentity,
        rec.dstIdentity,
        rec.ingress,
        rec.egress,
        rec.origAddress,
        rec.origPort,
        rec.backendAddress,
        rec.backendPort,
        rec.ingressCookie,
      ],
      ["tc", ID.world, P1.id, true, false, P1.ip, 8080, P1.ip, 8080, 9],
    );
    proxy.send({ id: acc.accept, answer: "from the proxy" });
    assert.deepEqual(await result, { ok: true, data: "from the proxy", peer: `${N1.underlay}:30081` });
    const ms = performance.now() - t0;
    t.diagnostic(`outside → proxy → answer: ${ms.toFixed(1)} ms (record lookup through dumpMap included)`);
    assert.ok(ms < 10_000, `${ms} ms`);
  });

  it("local backend: the proxy's upstream, registered as world, reaches the pod; the pod's answer returns to the client", async () => {
    const { acc, result, proxy } = await viaProxy("n1", N1.underlay, 30081);
    await registerUpstream(nodes.n1.root, { address: N1.gw, port: 40021 }, ID.world);
    proxy.send({ id: acc.accept, upstream: { host: P1.ip, port: 8080, localAddress: N1.gw, localPort: 40021 } });
    assert.deepEqual(await proxy.next((x) => x.upstream === acc.accept), { upstream: acc.accept, ok: true });
    const r = await result;
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(JSON.parse(r.data ?? "{}"), { pod: "p1", peer: `${N1.gw}:40021` });
    assert.equal(r.peer, `${N1.underlay}:30081`);
  });

  it("without the redirect flag (n1:30083 → p1:8081) the pod answers itself, seeing the client; the proxy accepts nothing", async () => {
    const proxy = nodes.n1.proxy as StandInProxy;
    const before = proxy.accepts();
    const r = await client(N1.underlay, 30083);
    assert.equal(r.ok, true, JSON.stringify(r));
    const body = JSON.parse(r.data ?? "{}") as { pod: string; peer: string };
    assert.equal(body.pod, "p1");
    assert.match(body.peer, new RegExp(`^${OUTSIDE.replaceAll(".", "\\.")}:\\d+$`));
    assert.equal(r.peer, `${N1.underlay}:30083`);
    assert.equal(proxy.accepts(), before);
  });

  it("L7 entry naming a proxy port with no listener (n1:30084): dropped, never a bypass to the pod", async () => {
    const proxy = nodes.n1.proxy as StandInProxy;
    const before = proxy.accepts();
    assert.deepEqual(await client(N1.underlay, 30084, 1500), { ok: false, error: "timeout" });
    assert.equal(proxy.accepts(), before);
  });

  it("remote backend (n1:30082 → p2 on n2, SNAT + VXLAN): n2's vx0 hands it to n2's proxy with identity remote-node (6); the answer comes from n1:30082", async () => {
    const { acc, result, proxy } = await viaProxy("n2", N1.underlay, 30082);
    assert.equal(`${acc.localAddress}:${acc.localPort}`, `${P2.ip}:8080`);
    assert.equal(acc.remoteAddress, N1.underlay, "the SNAT source: n1");
    const rec = await lookupOrigin(nodes.n2.root, acc);
    assert.ok(rec, "a record on n2");
    assert.deepEqual([rec.via, rec.srcIdentity, rec.dstIdentity, rec.ingress, rec.egress], ["tc", ID.remoteNode, P2.id, true, false]);
    proxy.send({ id: acc.accept, answer: "from n2's proxy" });
    assert.deepEqual(await result, { ok: true, data: "from n2's proxy", peer: `${N1.underlay}:30082` });
  });

  it("an outside client with a CIDR identity in the ipcache: the record carries that identity, not world", async () => {
    const cidr = `${OUTSIDE}/32`;
    const map = pins.map(nodes.n1.root, IPCACHE_MAP);
    await writeMaps([{ op: "update", map, key: encodeIpcacheKey(cidr), value: encodeIpcacheValue({ cidr, identity: CIDR_ID }) }]);
    try {
      const { acc, result, proxy } = await viaProxy("n1", N1.underlay, 30081);
      const rec = await lookupOrigin(nodes.n1.root, acc);
      assert.deepEqual([rec?.srcIdentity, rec?.dstIdentity, rec?.ingress], [CIDR_ID, P1.id, true]);
      proxy.send({ id: acc.accept, answer: "cidr" });
      assert.deepEqual(await result, { ok: true, data: "cidr", peer: `${N1.underlay}:30081` });
    } finally {
      await writeMaps([{ op: "delete", map, key: encodeIpcacheKey(cidr) }]);
    }
  });
});
