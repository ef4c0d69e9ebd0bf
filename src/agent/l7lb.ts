// L7 load balancing per Service, switched on by annotations: Services + EndpointSlices → the Envoy
// v3 resources the node proxy routes by (a Listener on each frontend VIP:port naming a
// RouteConfiguration, which names an EDS Cluster with its ClusterLoadAssignment). Pure: no I/O.

import type { EndpointSliceInput, ServiceInput } from "../datapath/services.ts";
import { ANNOTATION_L7_LB, L7_LB_ALGORITHMS, type L7LbAlgorithm } from "../datapath/services.ts";
import {
  type ClusterSpec,
  cluster,
  clusterLoadAssignment,
  type EndpointSpec,
  type LbPolicy,
  listener,
  type RouteSpec,
  routeConfiguration,
  TYPE,
  type XdsResource,
} from "../xds/resources.ts";

export { ANNOTATION_L7_LB };

/** The annotations read here (docs/proxy.md "L7 load balancing per Service"). */
export const L7_ANNOTATIONS = {
  lb: ANNOTATION_L7_LB,
  hashHeader: "service.weft.io/l7-lb-hash-header",
  hashCookie: "service.weft.io/l7-lb-hash-cookie",
  retries: "service.weft.io/l7-retries",
  retryOn: "service.weft.io/l7-retry-on",
  perTryTimeout: "service.weft.io/l7-per-try-timeout",
  timeout: "service.weft.io/l7-timeout",
  outlier5xx: "service.weft.io/l7-outlier-consecutive-5xx",
  outlierBaseEjection: "service.weft.io/l7-outlier-base-ejection-time",
  outlierMaxPercent: "service.weft.io/l7-outlier-max-ejection-percent",
  maxRequests: "service.weft.io/l7-max-requests",
  maxPending: "service.weft.io/l7-max-pending",
  maxConnections: "service.weft.io/l7-max-connections",
} as const;

const POLICY: Record<L7LbAlgorithm, LbPolicy> = {
  "round-robin": "ROUND_ROBIN",
  "least-request": "LEAST_REQUEST",
  "ring-hash": "RING_HASH",
  maglev: "MAGLEV",
};

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MAX_RETRIES = 10;
const MAX_DURATION_MS = 3_600_000;

export interface L7LbProblem {
  /** namespace/name */
  service: string;
  annotation?: string;
  reason: string;
}

export interface L7LbConfig {
  resources: XdsResource[];
  problems: L7LbProblem[];
}

/** "250ms", "2s", "1.5s", "1m" → milliseconds; undefined when malformed. */
export function parseDurationMs(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(raw.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000);
  return Number.isFinite(n) && n <= MAX_DURATION_MS ? Math.round(n) : undefined;
}

function parseCount(raw: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const n = Number(raw.trim());
  return n >= min && n <= max ? n : undefined;
}

/** Resource names of one service port: `svc/<namespace>/<name>/<port>` (route, cluster, endpoints). */
export function l7LbClusterName(namespace: string, name: string, port: number): string {
  return `svc/${namespace}/${name}/${port}`;
}

interface ServiceSettings {
  policy: LbPolicy;
  route: Omit<RouteSpec, "cluster">;
  cluster: Omit<ClusterSpec, "name">;
}

/** The annotations of one service → its settings, or the problems that refuse it. */
function settingsOf(ann: Record<string, string>, problem: (annotation: string, reason: string) => void): ServiceSettings | undefined {
  const A = L7_ANNOTATIONS;
  let ok = true;
  const bad = (a: string, reason: string) => {
    ok = false;
    problem(a, reason);
  };
  const algo = ann[A.lb] as L7LbAlgorithm;
  const policy = POLICY[algo];
  const route: Omit<RouteSpec, "cluster"> = { prefix: "/" };
  const c: Omit<ClusterSpec, "name"> = { lbPolicy: policy };

  const header = ann[A.hashHeader];
  const cookie = ann[A.hashCookie];
  if (header !== undefined || cookie !== undefined) {
    if (policy !== "RING_HASH" && policy !== "MAGLEV") bad(header !== undefined ? A.hashHeader : A.hashCookie, `needs ${A.lb}: ring-hash or maglev`);
    const hash: RouteSpec["hash"] = [];
    if (header !== undefined) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(header)) bad(A.hashHeader, `"${header}" is not a header name`);
      else hash.push({ header: header.toLowerCase() });
    }
    if (cookie !== undefined) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(cookie)) bad(A.hashCookie, `"${cookie}" is not a cookie name`);
      else hash.push({ cookie });
    }
    if (hash.length) route.hash = hash;
  }

  const timeout = ann[A.timeout];
  if (timeout !== undefined) {
    const ms = timeout.trim() === "0" ? 0 : parseDurationMs(timeout);
    if (ms === undefined) bad(A.timeout, `"${timeout}" is not a duration like 500ms, 2s, 1m (0 = none)`);
    else route.timeoutMs = ms;
  }
  const retries = ann[A.retries];
  const perTry = ann[A.perTryTimeout];
  const retryOn = ann[A.retryOn];
  if (retries !== undefined) {
    const n = parseCount(retries, 0, MAX_RETRIES);
    if (n === undefined) bad(A.retries, `"${retries}" is not a count in 0..${MAX_RETRIES}`);
    else if (n > 0) {
      const r: NonNullable<RouteSpec["retry"]> = { numRetries: n };
      if (retryOn !== undefined) {
        if (!/^[a-z0-9-]+(,[a-z0-9-]+)*$/.test(retryOn)) bad(A.retryOn, `"${retryOn}" is not a comma-separated list of retry conditions`);
        else r.retryOn = retryOn;
      }
      if (perTry !== undefined) {
        const ms = parseDurationMs(perTry);
        if (ms === undefined || ms === 0) bad(A.perTryTimeout, `"${perTry}" is not a duration like 500ms, 2s`);
        else r.perTryTimeoutMs = ms;
      }
      route.retry = r;
    }
  }
  if ((perTry !== undefined || retryOn !== undefined) && !route.retry && retries === undefined)
    bad(perTry !== undefined ? A.perTryTimeout : A.retryOn, `needs ${A.retries}`);

  const o5 = ann[A.outlier5xx];
  if (o5 !== undefined) {
    const n = parseCount(o5, 1, 1000);
    if (n === undefined) bad(A.outlier5xx, `"${o5}" is not a count in 1..1000`);
    else {
      const o: NonNullable<ClusterSpec["outlier"]> = { consecutive5xx: n };
      const base = ann[A.outlierBaseEjection];
      if (base !== undefined) {
        const ms = parseDurationMs(base);
        if (ms === undefined || ms === 0) bad(A.outlierBaseEjection, `"${base}" is not a duration like 30s`);
        else o.baseEjectionMs = ms;
      }
      const pct = ann[A.outlierMaxPercent];
      if (pct !== undefined) {
        const p = parseCount(pct, 0, 100);
        if (p === undefined) bad(A.outlierMaxPercent, `"${pct}" is not a percentage in 0..100`);
        else o.maxEjectionPercent = p;
      }
      c.outlier = o;
    }
  } else for (const a of [A.outlierBaseEjection, A.outlierMaxPercent]) if (ann[a] !== undefined) bad(a, `needs ${A.outlier5xx}`);

  const breakers: NonNullable<ClusterSpec["circuitBreakers"]> = {};
  for (const [a, key] of [
    [A.maxRequests, "maxRequests"],
    [A.maxPending, "maxPendingRequests"],
    [A.maxConnections, "maxConnections"],
  ] as const) {
    const raw = ann[a];
    if (raw === undefined) continue;
    const n = parseCount(raw, 1, 1_000_000);
    if (n === undefined) bad(a, `"${raw}" is not a count in 1..1000000`);
    else breakers[key] = n;
  }
  if (Object.keys(breakers).length) c.circuitBreakers = breakers;
  return ok ? { policy, route, cluster: c } : undefined;
}

function sliceServiceName(s: EndpointSliceInput): string | undefined {
  return s.metadata.labels?.["kubernetes.io/service-name"];
}

/** The ready endpoints (address, resolved port) of one TCP service port, in slice order, deduplicated. */
function readyEndpoints(slices: readonly EndpointSliceInput[], portName: string, targetNumber: number | undefined): EndpointSpec[] {
  const out: EndpointSpec[] = [];
  const seen = new Set<string>();
  for (const s of slices) {
    if (s.addressType !== undefined && s.addressType !== "IPv4") continue;
    const sp = (s.ports ?? []).find((x) => (x.name ?? "") === portName && (x.protocol ?? "TCP") === "TCP");
    const port = sp?.port && sp.port >= 1 && sp.port <= 65535 ? sp.port : targetNumber;
    if (port === undefined) continue;
    for (const e of s.endpoints ?? []) {
      const address = e.addresses[0];
      if (address === undefined || !IPV4.test(address)) continue;
      // Ready and not terminating: draining endpoints keep their connections but get no new requests.
      if (!(e.conditions?.ready ?? true) || e.conditions?.terminating === true) continue;
      const k = `${address}:${port}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ address, port });
    }
  }
  return out;
}

/**
 * Every Service with `service.weft.io/l7-lb` → per TCP port: a Cluster (lb_policy, outlier
 * detection, circuit breakers), its ClusterLoadAssignment (ready endpoints), a RouteConfiguration
 * (one catch-all route: timeout, retries, hash policy) and one Listener per frontend address
 * (ClusterIP and ExternalIPs) at that port — the proxy maps a redirected connection's original
 * VIP:port to the Listener. Services with a bad annotation are left out and reported.
 */
export function l7LbConfig(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[]): L7LbConfig {
  const resources: XdsResource[] = [];
  const problems: L7LbProblem[] = [];
  const byService = new Map<string, EndpointSliceInput[]>();
  for (const s of slices) {
    const name = sliceServiceName(s);
    if (name === undefined) continue;
    const k = `${s.metadata.namespace ?? "default"}/${name}`;
    const list = byService.get(k);
    if (list) list.push(s);
    else byService.set(k, [s]);
  }
  const sorted = [...services].sort((a, b) => key(a).localeCompare(key(b)));
  for (const svc of sorted) {
    const ann = svc.metadata.annotations ?? {};
    const algo = ann[ANNOTATION_L7_LB];
    if (algo === undefined) continue;
    const namespace = svc.metadata.namespace ?? "default";
    const id = `${namespace}/${svc.metadata.name}`;
    const problem = (annotation: string | undefined, reason: string) => problems.push({ service: id, ...(annotation ? { annotation } : {}), reason });
    if (!(L7_LB_ALGORITHMS as readonly string[]).includes(algo)) {
      problem(ANNOTATION_L7_LB, `"${algo}" is not one of ${L7_LB_ALGORITHMS.join(", ")}`);
      continue;
    }
    const settings = settingsOf(ann, problem);
    if (!settings) continue;
    const spec = svc.spec ?? {};
    const addresses = [spec.clusterIP, ...(spec.externalIPs ?? [])].filter((a): a is string => a !== undefined && IPV4.test(a));
    if (!addresses.length) {
      problem(undefined, "no IPv4 ClusterIP or ExternalIP to balance (headless?)");
      continue;
    }
    const svcSlices = byService.get(id) ?? [];
    for (const p of spec.ports ?? []) {
      if ((p.protocol ?? "TCP") !== "TCP" || !(p.port >= 1 && p.port <= 65535)) continue;
      const target = p.targetPort ?? p.port;
      const targetNumber = typeof target === "number" ? target : /^\d+$/.test(target) ? Number(target) : undefined;
      const name = l7LbClusterName(namespace, svc.metadata.name, p.port);
      resources.push({ typeUrl: TYPE.cluster, message: cluster({ name, ...settings.cluster }) });
      resources.push({ typeUrl: TYPE.endpoint, message: clusterLoadAssignment(name, readyEndpoints(svcSlices, p.name ?? "", targetNumber)) });
      resources.push({
        typeUrl: TYPE.route,
        message: routeConfiguration(name, [{ name, domains: ["*"], routes: [{ ...settings.route, cluster: name }] }]),
      });
      for (const address of addresses)
        resources.push({
          typeUrl: TYPE.listener,
          message: listener({ name: `${name}/${address}`, address, port: p.port, http: { routeConfigName: name } }),
        });
    }
  }
  return { resources, problems };
}

/** The resources alone, for the agent's snapshot (next to the L7 policies). */
export function l7LbResources(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[]): XdsResource[] {
  return l7LbConfig(services, slices).resources;
}

function key(s: ServiceInput): string {
  return `${s.metadata.namespace ?? "default"}/${s.metadata.name}`;
}
