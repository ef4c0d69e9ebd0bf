// xDS resource builders: every builder's output encodes to protobuf Any with Envoy's own protos and
// decodes back equal; the compiler's L7 sets survive the trip through Weft's L7Policy resource.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { L7Set } from "../../../src/policy/compile.ts";
import { compileHttpRule } from "../../../src/policy/l7/http-match.ts";
import { decodeAny, decodeMessage, encodeAny } from "../../../src/xds/codec.ts";
import {
  cluster,
  clusterLoadAssignment,
  duration,
  type L7Policy,
  l7Policies,
  l7PolicyName,
  l7SetOf,
  listener,
  refs,
  resourceName,
  routeConfiguration,
  TYPE,
  type XdsResource,
} from "../../../src/xds/resources.ts";

const cases: { name: string; r: XdsResource; typeName: string }[] = [
  {
    name: "HTTP listener: connection manager with RDS over ADS and the router filter, path normalisation set",
    typeName: "envoy.config.listener.v3.Listener",
    r: {
      typeUrl: TYPE.listener,
      message: listener({
        name: "http-80",
        address: "127.0.0.1",
        port: 10080,
        http: { routeConfigName: "routes-80", normalizePath: true, mergeSlashes: true, escapedSlashes: "UNESCAPE_AND_FORWARD" },
      }),
    },
  },
  {
    name: "TCP proxy listener",
    typeName: "envoy.config.listener.v3.Listener",
    r: { typeUrl: TYPE.listener, message: listener({ name: "tcp-5432", address: "127.0.0.1", port: 15432, tcp: { cluster: "db" } }) },
  },
  {
    name: "routes by prefix, exact path, regex and headers; timeout, retries, weights, hash by header and cookie",
    typeName: "envoy.config.route.v3.RouteConfiguration",
    r: {
      typeUrl: TYPE.route,
      message: routeConfiguration("routes-80", [
        {
          name: "shop",
          domains: ["shop.example", "shop.example:80"],
          routes: [
            { path: "/healthz", cluster: "health" },
            { regex: "/api/v[0-9]+/.*", headers: [{ name: "x-canary", exact: "1" }], cluster: "api-canary", timeoutMs: 1500 },
            { prefix: "/api", headers: [{ name: "x-debug", present: true, invert: true }], cluster: "api", retry: { numRetries: 3, perTryTimeoutMs: 250 } },
            { prefix: "/cart", cluster: "cart", hash: [{ header: "x-user" }, { cookie: "session", ttlMs: 60_000 }] },
            {
              prefix: "/",
              weightedClusters: [
                { name: "web-v1", weight: 90 },
                { name: "web-v2", weight: 10 },
              ],
            },
          ],
        },
      ]),
    },
  },
  {
    name: "round-robin EDS cluster with defaults",
    typeName: "envoy.config.cluster.v3.Cluster",
    r: { typeUrl: TYPE.cluster, message: cluster({ name: "web" }) },
  },
  {
    name: "least-request cluster, power of two choices, outlier detection and circuit breakers",
    typeName: "envoy.config.cluster.v3.Cluster",
    r: {
      typeUrl: TYPE.cluster,
      message: cluster({
        name: "api",
        lbPolicy: "LEAST_REQUEST",
        choiceCount: 2,
        connectTimeoutMs: 250,
        outlier: { consecutive5xx: 5, intervalMs: 1000, baseEjectionMs: 30_000, maxEjectionPercent: 50 },
        circuitBreakers: { maxConnections: 100, maxPendingRequests: 10, maxRequests: 200, maxRetries: 3 },
      }),
    },
  },
  {
    name: "ring hash cluster with ring bounds and an EDS service name",
    typeName: "envoy.config.cluster.v3.Cluster",
    r: {
      typeUrl: TYPE.cluster,
      message: cluster({ name: "cart", lbPolicy: "RING_HASH", ringSize: { min: 1024, max: 8_388_608 }, edsServiceName: "cart-eps" }),
    },
  },
  {
    name: "Maglev cluster with its table size",
    typeName: "envoy.config.cluster.v3.Cluster",
    r: { typeUrl: TYPE.cluster, message: cluster({ name: "maglev", lbPolicy: "MAGLEV", maglevTableSize: 65537 }) },
  },
  {
    name: "endpoints with weights and health",
    typeName: "envoy.config.endpoint.v3.ClusterLoadAssignment",
    r: {
      typeUrl: TYPE.endpoint,
      message: clusterLoadAssignment("web", [
        { address: "10.0.1.5", port: 8080, weight: 3 },
        { address: "10.0.2.7", port: 8080, weight: 1, health: "HEALTHY" },
        { address: "10.0.2.8", port: 8080, health: "DRAINING" },
      ]),
    },
  },
  {
    name: "no endpoints",
    typeName: "envoy.config.endpoint.v3.ClusterLoadAssignment",
    r: { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("empty", []) },
  },
];

describe("xDS builders encode to Any and decode back equal", () => {
  for (const c of cases)
    it(c.name, () => {
      const any = encodeAny(c.r);
      assert.equal(any.type_url, c.r.typeUrl);
      assert.ok(any.value.length > 0, "encoded bytes");
      const back = decodeAny(any);
      assert.equal(back.typeUrl, `type.googleapis.com/${c.typeName}`);
      assert.deepStrictEqual(back.message, c.r.message);
    });

  it("a nested Any (the connection manager inside the listener) is Envoy's own message, decodable on its own", () => {
    const l = listener({ name: "l", address: "127.0.0.1", port: 1, http: { routeConfigName: "r" } });
    const any = encodeAny({ typeUrl: TYPE.listener, message: l });
    const decoded = decodeAny<{ filter_chains: { filters: { typed_config: Record<string, unknown> }[] }[] }>(any).message;
    const hcm = decoded.filter_chains[0]?.filters[0]?.typed_config;
    assert.equal(hcm?.["@type"], l.filter_chains[0]?.filters[0]?.typed_config["@type"]);
    assert.deepEqual(hcm?.rds, {
      config_source: { ads: {}, resource_api_version: "V3" },
      route_config_name: "r",
    });
  });

  it("a field of the wrong type is refused at encoding with WEFT_XDS naming the resource", () => {
    const bad = { typeUrl: TYPE.cluster, message: { name: "c", type: "EDS", connect_timeout: 5 } } as unknown as XdsResource;
    assert.throws(() => encodeAny(bad), /WEFT_XDS: Cluster "c": does not encode: .*connect_timeout: object expected/);
  });
});

describe("durations", () => {
  const table: [number, object][] = [
    [0, {}],
    [250, { nanos: 250_000_000 }],
    [1000, { seconds: 1 }],
    [1500, { seconds: 1, nanos: 500_000_000 }],
    [60_000, { seconds: 60 }],
  ];
  for (const [ms, want] of table)
    it(`${ms} ms → ${JSON.stringify(want)} and through google.protobuf.Duration unchanged`, () => {
      assert.deepStrictEqual(duration(ms), want);
      const r = listener({ name: "x", address: "127.0.0.1", port: 1, tcp: { cluster: "c" } });
      assert.ok(r);
      const c = cluster({ name: "c", connectTimeoutMs: ms });
      assert.deepStrictEqual(decodeAny(encodeAny({ typeUrl: TYPE.cluster, message: c })).message, c);
    });
});

describe("Weft's L7Policy resource carries the compiler's L7 sets", () => {
  const http = (doc: Parameters<typeof compileHttpRule>[0]) => compileHttpRule(doc);
  const sets: L7Set[] = [
    {
      proto: 6,
      port: 80,
      kind: "http",
      entries: [
        {
          scope: 256,
          allowAll: false,
          rule: "CiliumNetworkPolicy default/api spec.ingress[0]",
          l7: {
            kind: "http",
            rules: [
              http({ method: "GET", path: "/public/.*" }),
              http({
                method: "POST",
                path: "/api",
                host: "api\\.example",
                headers: ["X-Token: abc", "X-Trace"],
                headerMatches: [{ name: "X-Env", value: "prod" }],
              }),
            ],
          },
        },
        { scope: 0, allowAll: true, rule: "CiliumNetworkPolicy default/open spec.ingress[1]", l7: null },
      ],
    },
    {
      proto: 6,
      port: 9092,
      kind: "kafka",
      entries: [
        {
          scope: 300,
          allowAll: false,
          rule: "r",
          l7: {
            kind: "kafka",
            rules: [
              { role: "consume", topic: "orders" },
              { apiKey: "produce", clientID: "c1" },
            ],
          },
        },
      ],
    },
    { proto: 17, port: 53, kind: "dns", entries: [{ scope: 2, allowAll: false, rule: "r", l7: { kind: "dns", rules: [{ matchPattern: "*.example.com" }] } }] },
    { proto: 6, port: 8080, kind: "conflict", entries: [] },
  ];

  const policies = l7Policies(256, "ingress", sets);

  it("one resource per (identity, direction, protocol, port), named for them", () => {
    assert.deepEqual(
      policies.map((p) => p.name),
      ["256/ingress/tcp/80", "256/ingress/tcp/9092", "256/ingress/udp/53", "256/ingress/tcp/8080"],
    );
    assert.equal(l7PolicyName(7, "egress", 132, 36412), "7/egress/sctp/36412");
  });

  for (const p of policies)
    it(`${p.name} (${p.kind}) decodes back equal and turns back into the same rule documents`, () => {
      const any = encodeAny({ typeUrl: TYPE.l7policy, message: p });
      assert.equal(any.type_url, "type.googleapis.com/weft.l7policy.v1.L7Policy");
      const back = decodeAny(any).message;
      assert.deepStrictEqual(back, p);
      const set = l7SetOf(back as unknown as typeof p);
      const orig = sets.find((s) => s.port === p.port && s.proto === p.protocol);
      assert.ok(orig);
      assert.equal(set.kind, orig.kind);
      assert.deepEqual(
        set.entries.map((e) => ({ scope: e.scope, allowAll: e.allowAll, rule: e.rule, docs: e.l7?.rules.map((r) => ("doc" in r ? r.doc : r)) })),
        orig.entries.map((e) => ({ scope: e.scope, allowAll: e.allowAll, rule: e.rule, docs: e.l7?.rules.map((r) => ("doc" in r ? r.doc : r)) })),
      );
    });

  it("HTTP rules come back compiled: the regexes match as the policy's did", () => {
    const set = l7SetOf(decodeAny<L7Policy>(encodeAny({ typeUrl: TYPE.l7policy, message: policies[0]! })).message);
    const r = set.entries[0]?.l7;
    assert.equal(r?.kind, "http");
    if (r?.kind !== "http") return;
    assert.equal(r.rules[0]?.path?.matches("/public/a/b"), true);
    assert.equal(r.rules[0]?.path?.matches("/private"), false);
    assert.deepEqual(r.rules[1]?.headers, [{ name: "x-token", value: "abc" }, { name: "x-trace" }, { name: "x-env", value: "prod" }]);
  });

  it('an absent optional field stays absent and an empty one stays empty ("path": "" is not "any path")', () => {
    const p = l7Policies(1, "egress", [
      { proto: 6, port: 80, kind: "http", entries: [{ scope: 0, allowAll: false, rule: "", l7: { kind: "http", rules: [http({ path: "" })] } }] },
    ])[0]!;
    const back = decodeMessage<{ entries: { http: Record<string, unknown>[] }[] }>(
      "weft.l7policy.v1.L7Policy",
      encodeAny({ typeUrl: TYPE.l7policy, message: p }).value,
    );
    assert.deepEqual(back.entries[0]?.http[0], { path: "" });
  });
});

describe("references and names", () => {
  const table: { name: string; r: XdsResource; want: { typeUrl: string; name: string }[]; resName: string }[] = [
    {
      name: "an EDS cluster needs its endpoints",
      r: { typeUrl: TYPE.cluster, message: cluster({ name: "web" }) },
      want: [{ typeUrl: TYPE.endpoint, name: "web" }],
      resName: "web",
    },
    {
      name: "an EDS cluster with a service name needs that assignment",
      r: { typeUrl: TYPE.cluster, message: cluster({ name: "web", edsServiceName: "web-eps" }) },
      want: [{ typeUrl: TYPE.endpoint, name: "web-eps" }],
      resName: "web",
    },
    {
      name: "routes need their clusters, weighted ones too",
      r: {
        typeUrl: TYPE.route,
        message: routeConfiguration("r", [{ name: "v", routes: [{ prefix: "/a", cluster: "a" }, { weightedClusters: [{ name: "b", weight: 1 }] }] }]),
      },
      want: [
        { typeUrl: TYPE.cluster, name: "a" },
        { typeUrl: TYPE.cluster, name: "b" },
      ],
      resName: "r",
    },
    {
      name: "a TCP proxy listener needs its cluster",
      r: { typeUrl: TYPE.listener, message: listener({ name: "t", address: "127.0.0.1", port: 1, tcp: { cluster: "db" } }) },
      want: [{ typeUrl: TYPE.cluster, name: "db" }],
      resName: "t",
    },
    {
      name: "an HTTP listener needs nothing before it (its routes follow it)",
      r: { typeUrl: TYPE.listener, message: listener({ name: "h", address: "127.0.0.1", port: 1, http: { routeConfigName: "r" } }) },
      want: [],
      resName: "h",
    },
    { name: "an assignment is named by its cluster", r: { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("web", []) }, want: [], resName: "web" },
  ];
  for (const c of table)
    it(c.name, () => {
      assert.deepEqual(refs(c.r.typeUrl, c.r.message), c.want);
      assert.equal(resourceName(c.r.typeUrl, c.r.message), c.resName);
    });
});
