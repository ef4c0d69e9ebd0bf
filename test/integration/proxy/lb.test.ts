// L7 load balancing from xDS clusters and endpoints, counted at the backends: weighted round robin
// (exact shares), least request (a slow host gets less), ring hash by header and Maglev by cookie
// (a key sticks to one host, keys spread), outlier ejection (a failing host stops receiving), retries
// past a failing host, the route timeout, and the circuit breaker's fail-fast.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import {
  type ClusterSpec,
  cluster,
  clusterLoadAssignment,
  listener,
  type RouteSpec,
  routeConfiguration,
  TYPE,
  type XdsResource,
} from "../../../src/xds/resources.ts";
import { EchoBackend, get, httpPolicy, type ProxyEnv, record, startProxy } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;

interface Case {
  client: string;
  vip: string;
  cluster: ClusterSpec;
  endpoints: { b: EchoBackend; weight?: number }[];
  route?: Partial<RouteSpec>;
}

describe("proxy: L7 load balancing", () => {
  let env: ProxyEnv;
  const n = [new EchoBackend("n1"), new EchoBackend("n2"), new EchoBackend("n3")];
  const bad = new EchoBackend("bad");
  const slow = new EchoBackend("slow");
  let cases: Record<string, Case>;

  before(async () => {
    for (const b of [...n, bad, slow]) await b.start();
    bad.status = 500;
    slow.delayMs = 300;
    const [n1, n2, n3] = n as [EchoBackend, EchoBackend, EchoBackend];
    cases = {
      rr: {
        client: "127.0.0.10",
        vip: "10.96.2.1",
        cluster: { name: "rr", lbPolicy: "ROUND_ROBIN" },
        endpoints: [
          { b: n1, weight: 1 },
          { b: n2, weight: 2 },
          { b: n3, weight: 3 },
        ],
      },
      lr: { client: "127.0.0.11", vip: "10.96.2.2", cluster: { name: "lr", lbPolicy: "LEAST_REQUEST" }, endpoints: [{ b: n1 }, { b: n2 }, { b: slow }] },
      ring: {
        client: "127.0.0.12",
        vip: "10.96.2.3",
        cluster: { name: "ring", lbPolicy: "RING_HASH" },
        endpoints: [{ b: n1 }, { b: n2 }, { b: n3 }],
        route: { hash: [{ header: "x-user" }] },
      },
      maglev: {
        client: "127.0.0.13",
        vip: "10.96.2.4",
        cluster: { name: "maglev", lbPolicy: "MAGLEV" },
        endpoints: [{ b: n1 }, { b: n2 }, { b: n3 }],
        route: { hash: [{ cookie: "session" }] },
      },
      outlier: {
        client: "127.0.0.14",
        vip: "10.96.2.5",
        cluster: {
          name: "outlier",
          lbPolicy: "ROUND_ROBIN",
          outlier: { consecutive5xx: 3, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 50 },
        },
        endpoints: [{ b: n1 }, { b: n2 }, { b: bad }],
      },
      retry: {
        client: "127.0.0.15",
        vip: "10.96.2.6",
        cluster: { name: "retry", lbPolicy: "ROUND_ROBIN" },
        endpoints: [{ b: bad }, { b: n1 }],
        route: { retry: { retryOn: "5xx", numRetries: 2 } },
      },
      timeout: { client: "127.0.0.16", vip: "10.96.2.7", cluster: { name: "timeout" }, endpoints: [{ b: slow }], route: { timeoutMs: 100 } },
      breaker: { client: "127.0.0.17", vip: "10.96.2.8", cluster: { name: "breaker", circuitBreakers: { maxRequests: 1 } }, endpoints: [{ b: slow }] },
    };
    const resources: XdsResource[] = [];
    const records = [];
    for (const c of Object.values(cases)) {
      const first = c.endpoints[0]?.b as EchoBackend;
      resources.push(
        { typeUrl: TYPE.cluster, message: cluster(c.cluster) },
        {
          typeUrl: TYPE.endpoint,
          message: clusterLoadAssignment(
            c.cluster.name,
            c.endpoints.map((e) => ({ address: "127.0.0.1", port: e.b.port, ...(e.weight ? { weight: e.weight } : {}) })),
          ),
        },
        { typeUrl: TYPE.listener, message: listener({ name: c.cluster.name, address: c.vip, port: 80, http: { routeConfigName: c.cluster.name } }) },
        { typeUrl: TYPE.route, message: routeConfiguration(c.cluster.name, [{ name: "all", routes: [{ prefix: "/", cluster: c.cluster.name, ...c.route }] }]) },
      );
      records.push({ remote: c.client, ...record(c.vip, 80, "127.0.0.1", first.port, CLIENT, SERVER) });
    }
    for (const b of [...n, bad, slow]) resources.push(httpPolicy(SERVER, b.port, 0, null));
    env = await startProxy({ workers: 2, resources, records });
  });

  after(async () => {
    await env?.stop();
    for (const b of [...n, bad, slow]) await b.stop();
  });

  /** Which backend answered each of `count` requests, sequentially on one keep-alive connection. */
  async function spread(c: Case, count: number, headers: (i: number) => Record<string, string> = () => ({})): Promise<string[]> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: c.client });
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const r = await get(env.port, `/lb/${i}`, { agent, localAddress: c.client, headers: headers(i) });
      out.push(r.status === 200 ? String(r.headers["x-backend"]) : `status-${r.status}`);
    }
    agent.destroy();
    return out;
  }
  const counts = (xs: string[]) => {
    const m: Record<string, number> = {};
    for (const x of xs) m[x] = (m[x] ?? 0) + 1;
    return m;
  };

  it("weighted round robin 1:2:3 gives exactly 100/200/300 of 600", async () => {
    const t0 = performance.now();
    const c = counts(await spread(cases.rr as Case, 600));
    console.log(`# 600 sequential requests in ${(performance.now() - t0).toFixed(0)} ms: ${JSON.stringify(c)}`);
    assert.deepEqual(c, { n1: 100, n2: 200, n3: 300 });
  });

  it("least request (P2C) sends less to a host that holds requests longer", async () => {
    const c = cases.lr as Case;
    const agents = [0, 1, 2, 3, 4, 5].map(() => new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: c.client }));
    const got: string[] = [];
    await Promise.all(
      agents.map(async (agent) => {
        for (let i = 0; i < 15; i++) {
          const r = await get(env.port, "/lr", { agent, localAddress: c.client });
          got.push(String(r.headers["x-backend"]));
        }
      }),
    );
    for (const a of agents) a.destroy();
    const k = counts(got);
    console.log(`# least request over 90 requests, 6 clients: ${JSON.stringify(k)}`);
    assert.equal(got.length, 90);
    assert.ok((k.slow ?? 0) < (k.n1 ?? 0) && (k.slow ?? 0) < (k.n2 ?? 0), JSON.stringify(k));
  });

  for (const [name, key] of [
    ["ring", (u: number) => ({ "x-user": `user-${u}` })],
    ["maglev", (u: number) => ({ cookie: `theme=dark; session=s-${u}` })],
  ] as const) {
    it(`${name === "ring" ? "ring hash by header" : "Maglev by cookie"}: a key always reaches one host; keys spread`, async () => {
      const got = await spread(cases[name] as Case, 120, (i) => key(i % 40));
      const byKey = new Map<number, Set<string>>();
      got.forEach((b, i) => {
        const s = byKey.get(i % 40) ?? new Set();
        s.add(b);
        byKey.set(i % 40, s);
      });
      for (const [k, s] of byKey) assert.equal(s.size, 1, `key ${k} went to ${[...s]}`);
      const hosts = counts(got);
      console.log(`# ${name}: 40 keys × 3 → ${JSON.stringify(hosts)}`);
      assert.equal(Object.keys(hosts).length, 3, "40 keys use every host");
    });
  }

  it("outlier detection ejects a host after 3 consecutive 5xx: it receives nothing afterwards", async () => {
    const before = bad.seen.length;
    const got = await spread(cases.outlier as Case, 60);
    const k = counts(got);
    console.log(`# outlier: ${JSON.stringify(k)}`);
    assert.equal(bad.seen.length - before, 3, "exactly consecutive_5xx requests reached the failing host");
    assert.equal(k["status-500"], 3);
    assert.equal((k.n1 ?? 0) + (k.n2 ?? 0), 57);
    assert.ok(
      got.slice(-40).every((b) => b !== "status-500"),
      "no 5xx once ejected",
    );
  });

  it("retries (retry_on 5xx) take a failing host's requests to a healthy one", async () => {
    const before = bad.seen.length;
    const got = await spread(cases.retry as Case, 20);
    assert.deepEqual(counts(got), { n1: 20 });
    assert.ok(bad.seen.length - before >= 5, "the failing host was tried");
    const s = await env.stats();
    assert.ok((s.total.upstream_rq_retry ?? 0) >= 5);
  });

  it("the route timeout answers 504 without waiting for a slow host", async () => {
    const t0 = performance.now();
    const r = await get(env.port, "/slow", { localAddress: (cases.timeout as Case).client });
    const ms = performance.now() - t0;
    console.log(`# 504 after ${ms.toFixed(0)} ms (timeout 100 ms, host 300 ms)`);
    assert.equal(r.status, 504);
    assert.ok(ms < 290, `${ms} ms`);
  });

  it("the circuit breaker fails fast (503) over max_requests", async () => {
    const c = cases.breaker as Case;
    const rs = await Promise.all(Array.from({ length: 8 }, () => get(env.port, "/cb", { localAddress: c.client })));
    const k = counts(rs.map((r) => String(r.status)));
    console.log(`# breaker (max_requests 1 per worker, 8 at once): ${JSON.stringify(k)}`);
    assert.ok((k["503"] ?? 0) >= 1 && (k["200"] ?? 0) >= 1, JSON.stringify(k));
    assert.ok(rs.filter((r) => r.status === 503).every((r) => r.body === "upstream overflow\r\n"));
  });
});
