// Services with L7 load-balancing annotations + EndpointSlices → the xDS resources the proxy routes
// by (src/agent/l7lb.ts): a table of annotation sets and what each must become, the endpoint
// selection, the problems that refuse a service, and the proxy's own validation of the output.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { L7_ANNOTATIONS as A, l7LbClusterName, l7LbConfig, l7LbResources, parseDurationMs } from "../../../src/agent/l7lb.ts";
import { SVC_L7 } from "../../../src/datapath/maps/lb.ts";
import { desiredLb, type EndpointSliceInput, LbModel, type ServiceInput } from "../../../src/datapath/services.ts";
import { ClusterRegistry, ProxySnapshot } from "../../../src/proxy/config.ts";
import type { XdsConfig } from "../../../src/xds/client.ts";
import { type Cluster, type ClusterLoadAssignment, type Listener, type RouteConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";

function svc(annotations: Record<string, string>, extra: Partial<NonNullable<ServiceInput["spec"]>> = {}): ServiceInput {
  return {
    metadata: { namespace: "demo", name: "echo", annotations },
    spec: { clusterIP: "10.96.0.20", ports: [{ name: "http", port: 80, targetPort: 8080 }], ...extra },
  };
}

function slice(endpoints: EndpointSliceInput["endpoints"], port = 8080, service = "echo"): EndpointSliceInput {
  return {
    metadata: { namespace: "demo", name: `${service}-abc`, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    endpoints,
    ports: [{ name: "http", port, protocol: "TCP" }],
  };
}

const THREE = slice([{ addresses: ["10.0.1.5"] }, { addresses: ["10.0.1.6"] }, { addresses: ["10.0.2.7"] }]);
const NAME = l7LbClusterName("demo", "echo", 80);

function of<T>(rs: XdsResource[], type: string): T[] {
  return rs.filter((r) => r.typeUrl === type).map((r) => r.message as T);
}

describe("l7LbConfig: annotations → Cluster / Route settings", () => {
  const cases: { name: string; ann: Record<string, string>; cluster: Partial<Cluster>; route: Record<string, unknown> }[] = [
    { name: "round-robin", ann: { [A.lb]: "round-robin" }, cluster: { lb_policy: "ROUND_ROBIN" }, route: {} },
    { name: "least-request", ann: { [A.lb]: "least-request" }, cluster: { lb_policy: "LEAST_REQUEST" }, route: {} },
    {
      name: "ring-hash by header",
      ann: { [A.lb]: "ring-hash", [A.hashHeader]: "X-User" },
      cluster: { lb_policy: "RING_HASH" },
      route: { hash_policy: [{ header: { header_name: "x-user" } }] },
    },
    {
      name: "maglev by cookie",
      ann: { [A.lb]: "maglev", [A.hashCookie]: "session" },
      cluster: { lb_policy: "MAGLEV" },
      route: { hash_policy: [{ cookie: { name: "session" } }] },
    },
    {
      name: "retries, per-try timeout, request timeout",
      ann: { [A.lb]: "round-robin", [A.retries]: "2", [A.perTryTimeout]: "250ms", [A.timeout]: "3s" },
      cluster: { lb_policy: "ROUND_ROBIN" },
      route: { timeout: { seconds: 3 }, retry_policy: { retry_on: "5xx,reset,connect-failure", num_retries: { value: 2 }, per_try_timeout: { nanos: 250e6 } } },
    },
    {
      name: "outlier detection and circuit breakers",
      ann: {
        [A.lb]: "round-robin",
        [A.outlier5xx]: "3",
        [A.outlierBaseEjection]: "1m",
        [A.outlierMaxPercent]: "50",
        [A.maxRequests]: "100",
        [A.maxPending]: "10",
      },
      cluster: {
        lb_policy: "ROUND_ROBIN",
        outlier_detection: { consecutive_5xx: { value: 3 }, base_ejection_time: { seconds: 60 }, max_ejection_percent: { value: 50 } },
        circuit_breakers: { thresholds: [{ priority: "DEFAULT", max_pending_requests: { value: 10 }, max_requests: { value: 100 } }] },
      },
      route: {},
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      const { resources, problems } = l7LbConfig([svc(c.ann)], [THREE]);
      assert.deepEqual(problems, []);
      const [cl] = of<Cluster>(resources, TYPE.cluster);
      assert.ok(cl);
      assert.equal(cl.name, NAME);
      assert.equal(cl.type, "EDS");
      for (const [k, v] of Object.entries(c.cluster)) assert.deepEqual(cl[k as keyof Cluster], v, k);
      if (!c.cluster.outlier_detection) assert.equal(cl.outlier_detection, undefined);
      const [rc] = of<RouteConfiguration>(resources, TYPE.route);
      const action = rc?.virtual_hosts[0]?.routes[0]?.route;
      assert.equal(action?.cluster, NAME);
      assert.deepEqual(rc?.virtual_hosts[0]?.routes[0]?.match, { prefix: "/" });
      for (const [k, v] of Object.entries(c.route)) assert.deepEqual(action?.[k as keyof typeof action], v, k);
    });
});

describe("l7LbConfig: listeners and endpoints", () => {
  it("one listener per frontend address on the service port, naming the route", () => {
    const rs = l7LbResources([svc({ [A.lb]: "round-robin" }, { externalIPs: ["192.0.2.10"] })], [THREE]);
    const ls = of<Listener>(rs, TYPE.listener);
    assert.deepEqual(
      ls.map((l) => `${l.address.socket_address?.address}:${l.address.socket_address?.port_value}`),
      ["10.96.0.20:80", "192.0.2.10:80"],
    );
    const hcm = ls[0]?.filter_chains[0]?.filters[0]?.typed_config as { rds?: { route_config_name: string } };
    assert.equal(hcm.rds?.route_config_name, NAME);
  });

  it("endpoints: ready only, resolved target port, deduplicated; terminating and not-ready left out", () => {
    const s = slice([
      { addresses: ["10.0.1.5"] },
      { addresses: ["10.0.1.6"], conditions: { ready: false } },
      { addresses: ["10.0.1.7"], conditions: { ready: false, serving: true, terminating: true } },
      { addresses: ["10.0.1.5"] },
      { addresses: ["10.0.2.8"], conditions: { ready: true } },
    ]);
    const [cla] = of<ClusterLoadAssignment>(l7LbResources([svc({ [A.lb]: "least-request" })], [s]), TYPE.endpoint);
    assert.equal(cla?.cluster_name, NAME);
    assert.deepEqual(
      cla?.endpoints?.[0]?.lb_endpoints.map((e) => `${e.endpoint.address.socket_address?.address}:${e.endpoint.address.socket_address?.port_value}`),
      ["10.0.1.5:8080", "10.0.2.8:8080"],
    );
  });

  it("a slice of another service or namespace is not used; no endpoints → an empty assignment", () => {
    const other = slice([{ addresses: ["10.0.9.9"] }], 8080, "other");
    const [cla] = of<ClusterLoadAssignment>(l7LbResources([svc({ [A.lb]: "round-robin" })], [other]), TYPE.endpoint);
    assert.deepEqual(cla, { cluster_name: NAME });
  });

  it("services without the annotation, headless services and UDP ports get nothing", () => {
    assert.deepEqual(l7LbResources([svc({})], [THREE]), []);
    assert.deepEqual(l7LbResources([svc({ [A.lb]: "round-robin" }, { ports: [{ name: "dns", port: 53, protocol: "UDP" }] })], [THREE]), []);
    const headless = l7LbConfig([svc({ [A.lb]: "round-robin" }, { clusterIP: "None" })], [THREE]);
    assert.deepEqual(headless.resources, []);
    assert.equal(headless.problems.length, 1);
  });
});

describe("l7LbConfig: problems refuse the service, never half of it", () => {
  const bad: [string, Record<string, string>, string][] = [
    ["unknown algorithm", { [A.lb]: "random" }, A.lb],
    ["hash without a hash policy", { [A.lb]: "round-robin", [A.hashHeader]: "x-user" }, A.hashHeader],
    ["bad header name", { [A.lb]: "ring-hash", [A.hashHeader]: "x user" }, A.hashHeader],
    ["retries not a count", { [A.lb]: "round-robin", [A.retries]: "many" }, A.retries],
    ["retries too many", { [A.lb]: "round-robin", [A.retries]: "11" }, A.retries],
    ["per-try timeout without retries", { [A.lb]: "round-robin", [A.perTryTimeout]: "1s" }, A.perTryTimeout],
    ["timeout without a unit", { [A.lb]: "round-robin", [A.timeout]: "15" }, A.timeout],
    ["outlier 0", { [A.lb]: "round-robin", [A.outlier5xx]: "0" }, A.outlier5xx],
    ["ejection time without outlier", { [A.lb]: "round-robin", [A.outlierBaseEjection]: "10s" }, A.outlierBaseEjection],
    ["max requests 0", { [A.lb]: "round-robin", [A.maxRequests]: "0" }, A.maxRequests],
  ];
  for (const [name, ann, annotation] of bad)
    it(name, () => {
      const { resources, problems } = l7LbConfig([svc(ann)], [THREE]);
      assert.deepEqual(resources, []);
      assert.equal(problems[0]?.service, "demo/echo");
      assert.equal(problems[0]?.annotation, annotation);
    });

  it("durations", () => {
    assert.equal(parseDurationMs("250ms"), 250);
    assert.equal(parseDurationMs("1.5s"), 1500);
    assert.equal(parseDurationMs("2m"), 120_000);
    assert.equal(parseDurationMs("2h"), undefined);
    assert.equal(parseDurationMs("-1s"), undefined);
  });
});

describe("the proxy consumes what l7LbConfig builds", () => {
  it("the original VIP:port routes to the service's cluster with its endpoints", () => {
    const rs = l7LbResources([svc({ [A.lb]: "ring-hash", [A.hashHeader]: "x-user" })], [THREE]);
    const listeners = new Map<string, Listener>();
    const routes = new Map<string, RouteConfiguration>();
    const clusters = new Map<string, Cluster>();
    const endpoints = new Map<string, ClusterLoadAssignment>();
    for (const r of rs) {
      if (r.typeUrl === TYPE.listener) listeners.set(r.message.name, r.message);
      if (r.typeUrl === TYPE.route) routes.set(r.message.name, r.message);
      if (r.typeUrl === TYPE.cluster) clusters.set(r.message.name, r.message);
      if (r.typeUrl === TYPE.endpoint) endpoints.set(r.message.cluster_name, r.message);
    }
    const cfg: XdsConfig = { listeners, routes, clusters, endpoints, l7policies: new Map(), versions: {} };
    const reg = new ClusterRegistry();
    reg.apply(cfg);
    const snap = new ProxySnapshot(1, cfg, reg);
    const l = snap.listener("10.96.0.20", 80);
    assert.ok(l);
    const r = snap.route(l.routeConfig, "echo.demo", "/x", { get: () => undefined });
    assert.deepEqual(
      r?.clusters.map((c) => c.name),
      [NAME],
    );
    assert.deepEqual(r?.hash, [{ header: "x-user" }]);
    const c = reg.get(NAME);
    assert.deepEqual(c?.hosts.map((h) => h.address).sort(), ["10.0.1.5:8080", "10.0.1.6:8080", "10.0.2.7:8080"]);
    assert.equal(snap.listener("10.96.0.20", 81), undefined);
    for (const x of reg.all()) x.close();
  });
});

describe("datapath flag (services.ts): SVC_L7 on the TCP frontends of an L7-LB service", () => {
  it("set with a known algorithm, not without, not for an unknown one", () => {
    const flagsOf = (ann: Record<string, string>) => desiredLb([svc(ann)], [THREE]).state.frontends.map((f) => f.flags & SVC_L7);
    assert.deepEqual(flagsOf({ [A.lb]: "round-robin" }), [SVC_L7]);
    assert.deepEqual(flagsOf({}), [0]);
    assert.deepEqual(flagsOf({ [A.lb]: "bogus" }), [0]);
  });
});

describe("incremental service sync sees the L7 annotation change", () => {
  it("adding, then removing, service.weft.io/l7-lb recomputes the service and flips SVC_L7", () => {
    const m = new LbModel();
    const s = svc({});
    assert.equal((m.update([s], [THREE]).state.frontends[0]?.flags ?? -1) & SVC_L7, 0);
    s.metadata.annotations = { [A.lb]: "maglev" }; // edited in place, as the model must notice
    const on = m.update([s], [THREE]);
    assert.equal(on.recomputed, 1);
    assert.equal((on.state.frontends[0]?.flags ?? 0) & SVC_L7, SVC_L7);
    s.metadata.annotations = {};
    assert.equal((m.update([s], [THREE]).state.frontends[0]?.flags ?? -1) & SVC_L7, 0);
  });
});
