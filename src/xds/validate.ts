// Validation of decoded xDS resources at the proxy's door: a resource the proxy cannot serve exactly
// as written is refused with a message naming the resource and the field, so the client NACKs and
// keeps its last good config instead of failing later on traffic. Pure: no I/O.

import { compileRe2, parseHeaderLine } from "../policy/l7/http-match.ts";
import {
  type Address,
  type Cluster,
  type ClusterLoadAssignment,
  HCM_TYPE,
  type HeaderMatcher,
  type HttpConnectionManager,
  type L7Policy,
  type Listener,
  l7PolicyName,
  ROUTER_TYPE,
  type RouteConfiguration,
  SHORT_NAME,
  TCP_PROXY_TYPE,
  type TcpProxy,
  TYPE,
} from "./resources.ts";

type Problems = string[];

const LB_POLICIES = new Set(["ROUND_ROBIN", "LEAST_REQUEST", "RING_HASH", "MAGLEV"]);
const HEALTH = new Set(["UNKNOWN", "HEALTHY", "UNHEALTHY", "DRAINING", "TIMEOUT", "DEGRADED"]);
const ESCAPED = new Set(["KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD", "IMPLEMENTATION_SPECIFIC_DEFAULT"]);
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function checkAddress(p: Problems, at: string, a: Address | undefined, allowPipe: boolean): void {
  if (!a) return void p.push(`${at}: missing`);
  if (a.pipe && allowPipe) {
    if (!a.pipe.path) p.push(`${at}.pipe.path: empty`);
    return;
  }
  const s = a.socket_address;
  if (!s) return void p.push(`${at}.socket_address: missing`);
  if (!IPV4.test(s.address ?? "") && !/^[0-9a-fA-F:.]+$/.test(s.address ?? ""))
    p.push(`${at}.socket_address.address: "${s.address ?? ""}" is not an IP address`);
  const port = s.port_value ?? 0;
  if (!Number.isInteger(port) || port < 1 || port > 65535) p.push(`${at}.socket_address.port_value: ${port} is not a port (1-65535)`);
}

function checkRegex(p: Problems, at: string, re: string | undefined): void {
  if (re === undefined) return;
  const r = compileRe2(re);
  if (typeof r === "string") p.push(`${at}: ${r}`);
}

function checkHeader(p: Problems, at: string, h: HeaderMatcher): void {
  if (!h.name || !/^:?[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h.name)) p.push(`${at}.name: "${h.name ?? ""}" is not a header name`);
  const m = h.string_match;
  if (m) {
    const set = ["exact", "prefix", "suffix", "safe_regex"].filter((k) => (m as Record<string, unknown>)[k] !== undefined);
    if (set.length !== 1) p.push(`${at}.string_match: give exactly one of exact, prefix, suffix, safe_regex`);
    checkRegex(p, `${at}.string_match.safe_regex.regex`, m.safe_regex?.regex);
  } else if (h.present_match === undefined) p.push(`${at}: give string_match or present_match`);
}

function checkHcm(p: Problems, at: string, h: HttpConnectionManager): void {
  if (!h.stat_prefix) p.push(`${at}.stat_prefix: empty`);
  if (h.rds && h.route_config) p.push(`${at}: give rds or route_config, not both`);
  if (h.rds) {
    if (!h.rds.route_config_name) p.push(`${at}.rds.route_config_name: empty`);
    if (!h.rds.config_source?.ads) p.push(`${at}.rds.config_source: only ads is supported`);
  } else if (h.route_config) checkRoutes(p, `${at}.route_config.`, h.route_config);
  else p.push(`${at}: give rds or route_config`);
  const filters = h.http_filters ?? [];
  if (!filters.length) p.push(`${at}.http_filters: empty (the router filter must be last)`);
  filters.forEach((f, i) => {
    const t = f.typed_config?.["@type"];
    if (t !== ROUTER_TYPE) p.push(`${at}.http_filters[${i}]: unsupported HTTP filter "${f.name}" (${t ?? "no typed_config"})`);
    else if (i !== filters.length - 1) p.push(`${at}.http_filters[${i}]: the router filter must be last`);
  });
  if (h.path_with_escaped_slashes_action !== undefined && !ESCAPED.has(h.path_with_escaped_slashes_action))
    p.push(`${at}.path_with_escaped_slashes_action: unknown action ${h.path_with_escaped_slashes_action}`);
}

export function checkListener(l: Listener): Problems {
  const p: Problems = [];
  checkAddress(p, "address", l.address, false);
  const chains = l.filter_chains ?? [];
  if (!chains.length) p.push("filter_chains: empty");
  chains.forEach((fc, i) => {
    const filters = fc.filters ?? [];
    if (filters.length !== 1)
      p.push(`filter_chains[${i}].filters: exactly one terminal filter (HTTP connection manager or TCP proxy) is supported, got ${filters.length}`);
    filters.forEach((f, j) => {
      const at = `filter_chains[${i}].filters[${j}].typed_config`;
      const t = f.typed_config?.["@type"];
      if (t === HCM_TYPE) checkHcm(p, at, f.typed_config as HttpConnectionManager);
      else if (t === TCP_PROXY_TYPE) {
        if (!(f.typed_config as TcpProxy).cluster) p.push(`${at}.cluster: empty`);
      } else p.push(`${at}: unsupported network filter "${f.name}" (${t ?? "no typed_config"})`);
    });
  });
  return p;
}

function checkRoutes(p: Problems, at: string, r: RouteConfiguration): void {
  (r.virtual_hosts ?? []).forEach((vh, i) => {
    const v = `${at}virtual_hosts[${i}]`;
    if (!vh.name) p.push(`${v}.name: empty`);
    if (!vh.domains?.length) p.push(`${v}.domains: empty`);
    (vh.routes ?? []).forEach((rt, j) => {
      const q = `${v}.routes[${j}]`;
      const m = rt.match ?? {};
      const kinds = ["prefix", "path", "safe_regex"].filter((k) => (m as Record<string, unknown>)[k] !== undefined);
      if (kinds.length !== 1) p.push(`${q}.match: give exactly one of prefix, path, safe_regex`);
      if (m.path !== undefined && !m.path.startsWith("/")) p.push(`${q}.match.path: must start with "/"`);
      checkRegex(p, `${q}.match.safe_regex.regex`, m.safe_regex?.regex);
      (m.headers ?? []).forEach((h, k) => {
        checkHeader(p, `${q}.match.headers[${k}]`, h);
      });
      const a = rt.route;
      if (!a) {
        p.push(`${q}.route: missing (only route actions are supported)`);
        return;
      }
      if (!a.cluster && !a.weighted_clusters) p.push(`${q}.route: give cluster or weighted_clusters`);
      const ws = a.weighted_clusters?.clusters;
      if (a.weighted_clusters && !ws?.length) p.push(`${q}.route.weighted_clusters.clusters: empty`);
      ws?.forEach((w, k) => {
        if (!w.name) p.push(`${q}.route.weighted_clusters.clusters[${k}].name: empty`);
      });
      if (ws?.length && ws.every((w) => !w.weight?.value)) p.push(`${q}.route.weighted_clusters: every weight is 0`);
      if ((a.timeout?.seconds ?? 0) < 0 || (a.timeout?.nanos ?? 0) < 0) p.push(`${q}.route.timeout: negative`);
      if (a.retry_policy && !a.retry_policy.retry_on) p.push(`${q}.route.retry_policy.retry_on: empty`);
      (a.hash_policy ?? []).forEach((h, k) => {
        if (!h.header?.header_name && !h.cookie?.name) p.push(`${q}.route.hash_policy[${k}]: give header.header_name or cookie.name`);
      });
    });
  });
}

export function checkRouteConfiguration(r: RouteConfiguration): Problems {
  const p: Problems = [];
  checkRoutes(p, "", r);
  return p;
}

export function checkCluster(c: Cluster): Problems {
  const p: Problems = [];
  if (c.type !== "EDS" && c.type !== "STATIC") p.push(`type: ${c.type ?? "STATIC"} is not supported (EDS or STATIC)`);
  if (c.type === "EDS" && !c.eds_cluster_config?.eds_config?.ads) p.push("eds_cluster_config.eds_config: only ads is supported");
  if (c.type === "STATIC" || c.type === undefined) {
    if (!c.load_assignment) p.push("load_assignment: a STATIC cluster needs its endpoints");
    else p.push(...checkClusterLoadAssignment(c.load_assignment).map((x) => `load_assignment.${x}`));
  }
  const lb = c.lb_policy ?? "ROUND_ROBIN";
  if (!LB_POLICIES.has(lb)) p.push(`lb_policy: ${lb} is not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, MAGLEV)`);
  const cc = c.least_request_lb_config?.choice_count?.value;
  if (cc !== undefined && cc < 2) p.push(`least_request_lb_config.choice_count: ${cc} (at least 2)`);
  const min = c.ring_hash_lb_config?.minimum_ring_size?.value;
  const max = c.ring_hash_lb_config?.maximum_ring_size?.value;
  if (min !== undefined && max !== undefined && min > max) p.push(`ring_hash_lb_config: minimum_ring_size ${min} > maximum_ring_size ${max}`);
  const ts = c.maglev_lb_config?.table_size?.value;
  if (ts !== undefined && !isPrime(ts)) p.push(`maglev_lb_config.table_size: ${ts} is not a prime`);
  const pct = c.outlier_detection?.max_ejection_percent?.value;
  if (pct !== undefined && pct > 100) p.push(`outlier_detection.max_ejection_percent: ${pct} (at most 100)`);
  if (c.connect_timeout && ((c.connect_timeout.seconds ?? 0) < 0 || (c.connect_timeout.nanos ?? 0) < 0)) p.push("connect_timeout: negative");
  return p;
}

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

export function checkClusterLoadAssignment(a: ClusterLoadAssignment): Problems {
  const p: Problems = [];
  (a.endpoints ?? []).forEach((l, i) => {
    (l.lb_endpoints ?? []).forEach((e, j) => {
      const at = `endpoints[${i}].lb_endpoints[${j}]`;
      checkAddress(p, `${at}.endpoint.address`, e.endpoint?.address, false);
      if (e.health_status !== undefined && !HEALTH.has(e.health_status)) p.push(`${at}.health_status: unknown ${e.health_status}`);
      if (e.load_balancing_weight !== undefined && !(e.load_balancing_weight.value >= 1))
        p.push(`${at}.load_balancing_weight: ${e.load_balancing_weight.value} (at least 1)`);
    });
  });
  return p;
}

const KIND_LIST = { HTTP: "http", KAFKA: "kafka", DNS: "dns" } as const;

export function checkL7Policy(l: L7Policy): Problems {
  const p: Problems = [];
  if (l.direction !== "INGRESS" && l.direction !== "EGRESS") p.push(`direction: ${l.direction ?? "DIRECTION_UNSPECIFIED"} (INGRESS or EGRESS)`);
  if (![6, 17, 132].includes(l.protocol)) p.push(`protocol: ${l.protocol ?? 0} is not TCP (6), UDP (17) or SCTP (132)`);
  if (!Number.isInteger(l.port) || l.port < 1 || l.port > 65535) p.push(`port: ${l.port ?? 0} is not a port (1-65535)`);
  if (!["HTTP", "KAFKA", "DNS", "CONFLICT"].includes(l.kind)) p.push(`kind: ${l.kind ?? "KIND_UNSPECIFIED"} (HTTP, KAFKA, DNS or CONFLICT)`);
  if (!p.length) {
    const want = l7PolicyName(l.identity ?? 0, l.direction === "INGRESS" ? "ingress" : "egress", l.protocol, l.port);
    if (l.name !== want) p.push(`name: "${l.name}" does not match its identity, direction, protocol and port ("${want}")`);
  }
  (l.entries ?? []).forEach((e, i) => {
    const at = `entries[${i}]`;
    for (const list of ["http", "kafka", "dns"] as const)
      if (e[list]?.length && (l.kind === "CONFLICT" || KIND_LIST[l.kind as keyof typeof KIND_LIST] !== list))
        p.push(`${at}.${list}: rules of another kind than ${l.kind}`);
    (e.http ?? []).forEach((r, j) => {
      for (const f of ["method", "path", "host"] as const) checkRegex(p, `${at}.http[${j}].${f}`, r[f]);
      (r.headers ?? []).forEach((h, k) => {
        if (!parseHeaderLine(h)) p.push(`${at}.http[${j}].headers[${k}]: "${h}" is not a header name, nor "Name: value"`);
      });
      (r.header_matches ?? []).forEach((h, k) => {
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h.name ?? "")) p.push(`${at}.http[${j}].header_matches[${k}].name: "${h.name ?? ""}" is not a header name`);
      });
    });
  });
  return p;
}

/** Problems of one decoded resource, each "<Type> "<name>": <field>: <reason>"; empty when the proxy can serve it. */
export function validateResource(typeUrl: string, name: string, message: object): string[] {
  let p: Problems;
  switch (typeUrl) {
    case TYPE.listener:
      p = checkListener(message as Listener);
      break;
    case TYPE.route:
      p = checkRouteConfiguration(message as RouteConfiguration);
      break;
    case TYPE.cluster:
      p = checkCluster(message as Cluster);
      break;
    case TYPE.endpoint:
      p = checkClusterLoadAssignment(message as ClusterLoadAssignment);
      break;
    case TYPE.l7policy:
      p = checkL7Policy(message as L7Policy);
      break;
    default:
      p = [`unsupported resource type ${typeUrl}`];
  }
  if (!name) p.unshift("name: empty");
  return p.map((x) => `${SHORT_NAME[typeUrl] ?? typeUrl} "${name}": ${x}`);
}
