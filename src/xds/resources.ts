// The xDS resources Weft serves, as typed plain objects with Envoy's v3 proto field names, and the
// builders that make them: Listener, RouteConfiguration, Cluster, ClusterLoadAssignment, and Weft's
// L7Policy (src/xds/proto/weft_l7policy.proto). Pure: no I/O (encoding lives in codec.ts).

import type { L7Set } from "../policy/compile.ts";
import type { DnsRuleDoc } from "../policy/l7/dns.ts";
import { compileHttpRule, type HttpRuleDoc } from "../policy/l7/http-match.ts";
import type { KafkaRuleDoc } from "../policy/l7/kafka.ts";
import type { Direction, L7Rules } from "../policy/rules.ts";

export const TYPE = {
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  l7policy: "type.googleapis.com/weft.l7policy.v1.L7Policy",
} as const;
export type TypeUrl = (typeof TYPE)[keyof typeof TYPE];

/** The order in which changed types are pushed: clusters and their endpoints before the listeners and routes that use them. */
export const WARMING_ORDER: readonly string[] = [TYPE.cluster, TYPE.endpoint, TYPE.l7policy, TYPE.listener, TYPE.route];

/** Types whose empty (or "*") subscription means every resource of the node. */
export const WILDCARD_TYPES: ReadonlySet<string> = new Set([TYPE.listener, TYPE.cluster, TYPE.l7policy]);

export const HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
export const ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
export const TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

export const SHORT_NAME: Record<string, string> = {
  [TYPE.listener]: "Listener",
  [TYPE.route]: "RouteConfiguration",
  [TYPE.cluster]: "Cluster",
  [TYPE.endpoint]: "ClusterLoadAssignment",
  [TYPE.l7policy]: "L7Policy",
};

// --- Envoy v3 shapes (the subset Weft writes and reads; proto field names) ---

export interface Duration {
  seconds?: number;
  nanos?: number;
}
export interface UInt32Value {
  value: number;
}
export interface BoolValue {
  value: boolean;
}
export interface SocketAddress {
  address: string;
  port_value: number;
  protocol?: "TCP" | "UDP";
}
export interface Address {
  socket_address?: SocketAddress;
  pipe?: { path: string };
}
export interface ConfigSource {
  ads: Record<string, never>;
  resource_api_version: "V3";
}
export interface AnyResource {
  type_url: string;
  value: Uint8Array;
}

export interface RouterFilter {
  "@type": typeof ROUTER_TYPE;
}
export interface HttpFilter {
  name: string;
  typed_config: RouterFilter;
}
export type EscapedSlashesAction = "KEEP_UNCHANGED" | "REJECT_REQUEST" | "UNESCAPE_AND_REDIRECT" | "UNESCAPE_AND_FORWARD";
export interface HttpConnectionManager {
  "@type": typeof HCM_TYPE;
  stat_prefix: string;
  codec_type?: "AUTO" | "HTTP1" | "HTTP2";
  rds?: { config_source: ConfigSource; route_config_name: string };
  route_config?: RouteConfiguration;
  http_filters: HttpFilter[];
  normalize_path?: BoolValue;
  merge_slashes?: boolean;
  path_with_escaped_slashes_action?: EscapedSlashesAction;
}
export interface TcpProxy {
  "@type": typeof TCP_PROXY_TYPE;
  stat_prefix: string;
  cluster: string;
}
export interface NetworkFilter {
  name: string;
  typed_config: HttpConnectionManager | TcpProxy;
}
export interface Listener {
  name: string;
  address: Address;
  filter_chains: { filters: NetworkFilter[] }[];
}

export interface RegexMatcher {
  regex: string;
}
export interface StringMatcher {
  exact?: string;
  prefix?: string;
  suffix?: string;
  safe_regex?: RegexMatcher;
  ignore_case?: boolean;
}
export interface HeaderMatcher {
  name: string;
  string_match?: StringMatcher;
  present_match?: boolean;
  invert_match?: boolean;
}
export interface RouteMatch {
  prefix?: string;
  path?: string;
  safe_regex?: RegexMatcher;
  headers?: HeaderMatcher[];
}
export interface RetryPolicy {
  retry_on: string;
  num_retries?: UInt32Value;
  per_try_timeout?: Duration;
}
export interface HashPolicy {
  header?: { header_name: string };
  cookie?: { name: string; ttl?: Duration; path?: string };
  terminal?: boolean;
}
export interface WeightedCluster {
  name: string;
  weight: UInt32Value;
}
export interface RouteAction {
  cluster?: string;
  weighted_clusters?: { clusters: WeightedCluster[] };
  timeout?: Duration;
  retry_policy?: RetryPolicy;
  hash_policy?: HashPolicy[];
}
export interface Route {
  name?: string;
  match: RouteMatch;
  route: RouteAction;
}
export interface VirtualHost {
  name: string;
  domains: string[];
  routes: Route[];
}
export interface RouteConfiguration {
  name: string;
  virtual_hosts: VirtualHost[];
}

export type LbPolicy = "ROUND_ROBIN" | "LEAST_REQUEST" | "RING_HASH" | "MAGLEV";
export interface OutlierDetection {
  consecutive_5xx?: UInt32Value;
  interval?: Duration;
  base_ejection_time?: Duration;
  max_ejection_percent?: UInt32Value;
}
export interface Thresholds {
  priority?: "DEFAULT" | "HIGH";
  max_connections?: UInt32Value;
  max_pending_requests?: UInt32Value;
  max_requests?: UInt32Value;
  max_retries?: UInt32Value;
}
export interface Cluster {
  name: string;
  type: "EDS" | "STATIC";
  eds_cluster_config?: { eds_config: ConfigSource; service_name?: string };
  connect_timeout?: Duration;
  lb_policy?: LbPolicy;
  least_request_lb_config?: { choice_count: UInt32Value };
  ring_hash_lb_config?: { minimum_ring_size?: { value: number }; maximum_ring_size?: { value: number } };
  maglev_lb_config?: { table_size: { value: number } };
  outlier_detection?: OutlierDetection;
  circuit_breakers?: { thresholds: Thresholds[] };
  load_assignment?: ClusterLoadAssignment;
}

export type HealthStatus = "UNKNOWN" | "HEALTHY" | "UNHEALTHY" | "DRAINING" | "TIMEOUT" | "DEGRADED";
export interface LbEndpoint {
  endpoint: { address: Address };
  health_status?: HealthStatus;
  load_balancing_weight?: UInt32Value;
}
export interface LocalityLbEndpoints {
  lb_endpoints: LbEndpoint[];
  priority?: number;
}
export interface ClusterLoadAssignment {
  cluster_name: string;
  /** Absent when there are none (protobuf does not tell an empty list from an absent one). */
  endpoints?: LocalityLbEndpoints[];
}

// Weft's L7 policy resource (weft_l7policy.proto).
export type L7Kind = "HTTP" | "KAFKA" | "DNS" | "CONFLICT";
export type Mismatch = "LOG" | "ADD" | "DELETE" | "REPLACE";
/** Cilium's headerMatches mismatch actions; an absent one denies the request on a mismatch. */
const MISMATCH_ACTIONS: ReadonlySet<string> = new Set<Mismatch>(["LOG", "ADD", "DELETE", "REPLACE"]);
export interface L7HttpRule {
  method?: string;
  path?: string;
  host?: string;
  headers?: string[];
  header_matches?: { name: string; value?: string; mismatch?: Mismatch }[];
}
export interface L7KafkaRule {
  role?: string;
  api_key?: string;
  api_version?: string;
  client_id?: string;
  topic?: string;
}
export interface L7DnsRule {
  match_name?: string;
  match_pattern?: string;
}
export interface L7PolicyEntry {
  remote_identity: number;
  allow_all?: boolean;
  rule?: string;
  http?: L7HttpRule[];
  kafka?: L7KafkaRule[];
  dns?: L7DnsRule[];
}
export interface L7Policy {
  name: string;
  identity: number;
  direction: "INGRESS" | "EGRESS";
  protocol: number;
  port: number;
  kind: L7Kind;
  entries?: L7PolicyEntry[];
}

export type ResourceOf = {
  [TYPE.listener]: Listener;
  [TYPE.route]: RouteConfiguration;
  [TYPE.cluster]: Cluster;
  [TYPE.endpoint]: ClusterLoadAssignment;
  [TYPE.l7policy]: L7Policy;
};

/** One resource as the server takes it: its type and the message (a plain object). */
export type XdsResource = { [K in TypeUrl]: { typeUrl: K; message: ResourceOf[K] } }[TypeUrl];

/** The name a resource is known by: cluster_name for a ClusterLoadAssignment, name otherwise. */
export function resourceName(typeUrl: string, message: object): string {
  const m = message as { name?: unknown; cluster_name?: unknown };
  const n = typeUrl === TYPE.endpoint ? m.cluster_name : m.name;
  return typeof n === "string" ? n : "";
}

// --- builders ---

const ADS: ConfigSource = { ads: {}, resource_api_version: "V3" };

/** Milliseconds → Duration, leaving out zero fields (so a decoded copy compares equal). */
export function duration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return { ...(seconds ? { seconds } : {}), ...(nanos ? { nanos } : {}) };
}

export function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return (d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6;
}

export function socketAddress(address: string, port: number): Address {
  return { socket_address: { address, port_value: port } };
}

export interface HttpListenerSpec {
  /** The RouteConfiguration this listener asks for over ADS (RDS). */
  routeConfigName: string;
  statPrefix?: string;
  /** Envoy's normalize_path (RFC 3986 dot segments, unreserved percent-decoding). */
  normalizePath?: boolean;
  mergeSlashes?: boolean;
  escapedSlashes?: EscapedSlashesAction;
}

export interface ListenerSpec {
  name: string;
  address: string;
  port: number;
  /** An HTTP connection manager with the router filter... */
  http?: HttpListenerSpec;
  /** ...or a TCP proxy to one cluster. */
  tcp?: { cluster: string; statPrefix?: string };
}

export function listener(s: ListenerSpec): Listener {
  let filter: NetworkFilter;
  if (s.http) {
    const h = s.http;
    const hcm: HttpConnectionManager = {
      "@type": HCM_TYPE,
      stat_prefix: h.statPrefix ?? s.name,
      codec_type: "AUTO",
      rds: { config_source: ADS, route_config_name: h.routeConfigName },
      http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": ROUTER_TYPE } }],
    };
    if (h.normalizePath !== undefined) hcm.normalize_path = { value: h.normalizePath };
    if (h.mergeSlashes !== undefined) hcm.merge_slashes = h.mergeSlashes;
    if (h.escapedSlashes !== undefined) hcm.path_with_escaped_slashes_action = h.escapedSlashes;
    filter = { name: "envoy.filters.network.http_connection_manager", typed_config: hcm };
  } else if (s.tcp) {
    filter = {
      name: "envoy.filters.network.tcp_proxy",
      typed_config: { "@type": TCP_PROXY_TYPE, stat_prefix: s.tcp.statPrefix ?? s.name, cluster: s.tcp.cluster },
    };
  } else {
    throw new Error(`listener ${s.name}: give http or tcp`);
  }
  return { name: s.name, address: socketAddress(s.address, s.port), filter_chains: [{ filters: [filter] }] };
}

export type HeaderMatchSpec = { name: string; invert?: boolean } & (
  | { exact: string }
  | { prefix: string }
  | { suffix: string }
  | { regex: string }
  | { present: boolean }
);

export interface RouteSpec {
  name?: string;
  /** Exactly one of prefix, path (exact) and regex (RE2, full match). */
  prefix?: string;
  path?: string;
  regex?: string;
  headers?: HeaderMatchSpec[];
  cluster?: string;
  weightedClusters?: { name: string; weight: number }[];
  timeoutMs?: number;
  retry?: { retryOn?: string; numRetries: number; perTryTimeoutMs?: number };
  /** For RING_HASH and MAGLEV clusters: hash by a header or a cookie. */
  hash?: ({ header: string } | { cookie: string; ttlMs?: number })[];
}

function headerMatcher(h: HeaderMatchSpec): HeaderMatcher {
  const out: HeaderMatcher = { name: h.name };
  if ("exact" in h) out.string_match = { exact: h.exact };
  else if ("prefix" in h) out.string_match = { prefix: h.prefix };
  else if ("suffix" in h) out.string_match = { suffix: h.suffix };
  else if ("regex" in h) out.string_match = { safe_regex: { regex: h.regex } };
  else out.present_match = h.present;
  if (h.invert) out.invert_match = true;
  return out;
}

export function route(s: RouteSpec): Route {
  const match: RouteMatch = {};
  if (s.prefix !== undefined) match.prefix = s.prefix;
  else if (s.path !== undefined) match.path = s.path;
  else if (s.regex !== undefined) match.safe_regex = { regex: s.regex };
  else match.prefix = "/";
  if (s.headers?.length) match.headers = s.headers.map(headerMatcher);
  const action: RouteAction = {};
  if (s.weightedClusters) action.weighted_clusters = { clusters: s.weightedClusters.map((w) => ({ name: w.name, weight: { value: w.weight } })) };
  else action.cluster = s.cluster ?? "";
  if (s.timeoutMs !== undefined) action.timeout = duration(s.timeoutMs);
  if (s.retry) {
    const r: RetryPolicy = { retry_on: s.retry.retryOn ?? "5xx,reset,connect-failure", num_retries: { value: s.retry.numRetries } };
    if (s.retry.perTryTimeoutMs !== undefined) r.per_try_timeout = duration(s.retry.perTryTimeoutMs);
    action.retry_policy = r;
  }
  if (s.hash?.length)
    action.hash_policy = s.hash.map((h) =>
      "header" in h ? { header: { header_name: h.header } } : { cookie: { name: h.cookie, ...(h.ttlMs !== undefined ? { ttl: duration(h.ttlMs) } : {}) } },
    );
  return { ...(s.name !== undefined ? { name: s.name } : {}), match, route: action };
}

export interface VirtualHostSpec {
  name: string;
  domains?: string[];
  routes: RouteSpec[];
}

export function routeConfiguration(name: string, virtualHosts: VirtualHostSpec[]): RouteConfiguration {
  return { name, virtual_hosts: virtualHosts.map((v) => ({ name: v.name, domains: v.domains ?? ["*"], routes: v.routes.map(route) })) };
}

export interface ClusterSpec {
  name: string;
  lbPolicy?: LbPolicy;
  connectTimeoutMs?: number;
  /** The ClusterLoadAssignment name, when not the cluster's name. */
  edsServiceName?: string;
  /** LEAST_REQUEST: how many random hosts to compare (2 = power of two choices). */
  choiceCount?: number;
  /** RING_HASH ring bounds. */
  ringSize?: { min?: number; max?: number };
  /** MAGLEV table size (a prime; Envoy's default 65537). */
  maglevTableSize?: number;
  outlier?: { consecutive5xx: number; intervalMs?: number; baseEjectionMs?: number; maxEjectionPercent?: number };
  circuitBreakers?: { maxConnections?: number; maxPendingRequests?: number; maxRequests?: number; maxRetries?: number };
}

export function cluster(s: ClusterSpec): Cluster {
  const c: Cluster = { name: s.name, type: "EDS", eds_cluster_config: { eds_config: ADS, ...(s.edsServiceName ? { service_name: s.edsServiceName } : {}) } };
  c.connect_timeout = duration(s.connectTimeoutMs ?? 1000);
  c.lb_policy = s.lbPolicy ?? "ROUND_ROBIN";
  if (c.lb_policy === "LEAST_REQUEST" && s.choiceCount !== undefined) c.least_request_lb_config = { choice_count: { value: s.choiceCount } };
  if (c.lb_policy === "RING_HASH" && s.ringSize) {
    c.ring_hash_lb_config = {};
    if (s.ringSize.min !== undefined) c.ring_hash_lb_config.minimum_ring_size = { value: s.ringSize.min };
    if (s.ringSize.max !== undefined) c.ring_hash_lb_config.maximum_ring_size = { value: s.ringSize.max };
  }
  if (c.lb_policy === "MAGLEV" && s.maglevTableSize !== undefined) c.maglev_lb_config = { table_size: { value: s.maglevTableSize } };
  if (s.outlier) {
    const o = s.outlier;
    c.outlier_detection = { consecutive_5xx: { value: o.consecutive5xx } };
    if (o.intervalMs !== undefined) c.outlier_detection.interval = duration(o.intervalMs);
    if (o.baseEjectionMs !== undefined) c.outlier_detection.base_ejection_time = duration(o.baseEjectionMs);
    if (o.maxEjectionPercent !== undefined) c.outlier_detection.max_ejection_percent = { value: o.maxEjectionPercent };
  }
  if (s.circuitBreakers) {
    const b = s.circuitBreakers;
    const t: Thresholds = { priority: "DEFAULT" };
    if (b.maxConnections !== undefined) t.max_connections = { value: b.maxConnections };
    if (b.maxPendingRequests !== undefined) t.max_pending_requests = { value: b.maxPendingRequests };
    if (b.maxRequests !== undefined) t.max_requests = { value: b.maxRequests };
    if (b.maxRetries !== undefined) t.max_retries = { value: b.maxRetries };
    c.circuit_breakers = { thresholds: [t] };
  }
  return c;
}

export interface EndpointSpec {
  address: string;
  port: number;
  weight?: number;
  health?: HealthStatus;
}

export function clusterLoadAssignment(clusterName: string, endpoints: EndpointSpec[]): ClusterLoadAssignment {
  if (!endpoints.length) return { cluster_name: clusterName };
  const lb = endpoints.map((e) => {
    const ep: LbEndpoint = { endpoint: { address: socketAddress(e.address, e.port) } };
    if (e.health !== undefined) ep.health_status = e.health;
    if (e.weight !== undefined) ep.load_balancing_weight = { value: e.weight };
    return ep;
  });
  return { cluster_name: clusterName, endpoints: [{ lb_endpoints: lb }] };
}

// --- Weft's L7 policy resource ---

const PROTO_NAME: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

/** "<identity>/<ingress|egress>/<tcp|udp|sctp>/<port>", e.g. "256/ingress/tcp/80". */
export function l7PolicyName(identity: number, direction: Direction, protocol: number, port: number): string {
  return `${identity}/${direction}/${PROTO_NAME[protocol] ?? String(protocol)}/${port}`;
}

function httpRuleOf(d: HttpRuleDoc): L7HttpRule {
  const r: L7HttpRule = {};
  if (d.method !== undefined) r.method = d.method;
  if (d.path !== undefined) r.path = d.path;
  if (d.host !== undefined) r.host = d.host;
  if (d.headers?.length) r.headers = [...d.headers];
  if (d.headerMatches?.length)
    r.header_matches = d.headerMatches.map((h) => ({
      name: h.name,
      ...(h.value !== undefined ? { value: h.value } : {}),
      ...(h.mismatch ? { mismatch: h.mismatch as Mismatch } : {}),
    }));
  return r;
}

function kafkaRuleOf(d: KafkaRuleDoc): L7KafkaRule {
  const r: L7KafkaRule = {};
  if (d.role !== undefined) r.role = d.role;
  if (d.apiKey !== undefined) r.api_key = d.apiKey;
  if (d.apiVersion !== undefined) r.api_version = d.apiVersion;
  if (d.clientID !== undefined) r.client_id = d.clientID;
  if (d.topic !== undefined) r.topic = d.topic;
  return r;
}

function dnsRuleOf(d: DnsRuleDoc): L7DnsRule {
  const r: L7DnsRule = {};
  if (d.matchName !== undefined) r.match_name = d.matchName;
  if (d.matchPattern !== undefined) r.match_pattern = d.matchPattern;
  return r;
}

/** The compiler's L7 sets of one subject identity and direction → one L7Policy resource per (protocol, port). */
export function l7Policies(identity: number, direction: Direction, sets: readonly L7Set[]): L7Policy[] {
  return sets.map((s) => {
    const entries = s.entries.map((e) => {
      const out: L7PolicyEntry = { remote_identity: e.scope };
      if (e.allowAll) out.allow_all = true;
      if (e.rule) out.rule = e.rule;
      if (e.l7?.kind === "http" && e.l7.rules.length) out.http = e.l7.rules.map((r) => httpRuleOf(r.doc));
      if (e.l7?.kind === "kafka" && e.l7.rules.length) out.kafka = e.l7.rules.map(kafkaRuleOf);
      if (e.l7?.kind === "dns" && e.l7.rules.length) out.dns = e.l7.rules.map(dnsRuleOf);
      return out;
    });
    const p: L7Policy = {
      name: l7PolicyName(identity, direction, s.proto, s.port),
      identity,
      direction: direction === "ingress" ? "INGRESS" : "EGRESS",
      protocol: s.proto,
      port: s.port,
      kind: s.kind.toUpperCase() as L7Kind,
    };
    if (entries.length) p.entries = entries;
    return p;
  });
}

/** An L7Policy (as decoded by the proxy, already validated) → the compiler's L7Set, with the HTTP regexes compiled. */
export function l7SetOf(p: L7Policy): L7Set {
  const kind = p.kind.toLowerCase() as L7Set["kind"];
  return {
    proto: p.protocol,
    port: p.port,
    kind,
    entries: (p.entries ?? []).map((e) => {
      let l7: L7Rules | null = null;
      if (e.http?.length) l7 = { kind: "http", rules: e.http.map((r) => compileHttpRule(httpDocOf(r))) };
      else if (e.kafka?.length) l7 = { kind: "kafka", rules: e.kafka.map(kafkaDocOf) };
      else if (e.dns?.length) l7 = { kind: "dns", rules: e.dns.map(dnsDocOf) };
      return { scope: e.remote_identity ?? 0, allowAll: e.allow_all ?? false, l7, rule: e.rule ?? "" };
    }),
  };
}

export function httpDocOf(r: L7HttpRule): HttpRuleDoc {
  const d: HttpRuleDoc = {};
  if (r.method !== undefined) d.method = r.method;
  if (r.path !== undefined) d.path = r.path;
  if (r.host !== undefined) d.host = r.host;
  if (r.headers?.length) d.headers = [...r.headers];
  if (r.header_matches?.length)
    d.headerMatches = r.header_matches.map((h) => ({
      name: h.name,
      ...(h.value !== undefined ? { value: h.value } : {}),
      // MISMATCH_UNSPECIFIED (or an enum name this proxy does not know) is Cilium's default: deny.
      ...(h.mismatch && MISMATCH_ACTIONS.has(h.mismatch) ? { mismatch: h.mismatch } : {}),
    }));
  return d;
}

function kafkaDocOf(r: L7KafkaRule): KafkaRuleDoc {
  const d: KafkaRuleDoc = {};
  if (r.role !== undefined) d.role = r.role;
  if (r.api_key !== undefined) d.apiKey = r.api_key;
  if (r.api_version !== undefined) d.apiVersion = r.api_version;
  if (r.client_id !== undefined) d.clientID = r.client_id;
  if (r.topic !== undefined) d.topic = r.topic;
  return d;
}

function dnsDocOf(r: L7DnsRule): DnsRuleDoc {
  const d: DnsRuleDoc = {};
  if (r.match_name !== undefined) d.matchName = r.match_name;
  if (r.match_pattern !== undefined) d.matchPattern = r.match_pattern;
  return d;
}

// --- references, for warming order ---

export interface Ref {
  typeUrl: string;
  name: string;
}

/** What a resource needs on the client before it is useful: routes and TCP proxies need their clusters, EDS clusters their endpoints. */
export function refs(typeUrl: string, message: object): Ref[] {
  const out: Ref[] = [];
  if (typeUrl === TYPE.route) {
    for (const vh of (message as RouteConfiguration).virtual_hosts ?? [])
      for (const r of vh.routes ?? []) {
        if (r.route?.cluster) out.push({ typeUrl: TYPE.cluster, name: r.route.cluster });
        for (const w of r.route?.weighted_clusters?.clusters ?? []) out.push({ typeUrl: TYPE.cluster, name: w.name });
      }
  } else if (typeUrl === TYPE.listener) {
    for (const fc of (message as Listener).filter_chains ?? [])
      for (const f of fc.filters ?? []) {
        const tc = f.typed_config as Partial<TcpProxy> | undefined;
        if (tc?.["@type"] === TCP_PROXY_TYPE && tc.cluster) out.push({ typeUrl: TYPE.cluster, name: tc.cluster });
      }
  } else if (typeUrl === TYPE.cluster) {
    const c = message as Cluster;
    if (c.type === "EDS") out.push({ typeUrl: TYPE.endpoint, name: c.eds_cluster_config?.service_name || c.name });
  }
  return out;
}
