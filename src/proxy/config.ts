// The proxy's configuration in force, as one immutable snapshot built from the xDS client's config:
// listeners by original destination, compiled routes, compiled L7 policies by
// "<identity>/<direction>/tcp/<port>", and the live clusters. A request binds to the snapshot it
// started with, so a push never changes a request half-way; clusters are shared (their membership
// and outlier state are live), and are updated in place.

import type { RE2JS } from "re2js";
import { compileRe2 } from "../policy/l7/http-match.ts";
import type { XdsConfig } from "../xds/client.ts";
import {
  durationMs,
  HCM_TYPE,
  type HeaderMatcher,
  type HttpConnectionManager,
  type Listener,
  l7PolicyName,
  l7SetOf,
  type RouteConfiguration,
} from "../xds/resources.ts";
import { HttpPolicy } from "./filters/l7-policy.ts";
import { PathNormalizer, type PathOptions } from "./http1/path.ts";
import type { HashPolicy } from "./lb/hash.ts";
import { compileRetryPolicy, type RetryPolicy } from "./lb/retry.ts";
import type { L7DirectionName } from "./origdst.ts";
import { ClusterRuntime } from "./upstream/cluster.ts";

export interface CompiledHeaderMatch {
  name: string;
  invert: boolean;
  test: (v: string | undefined) => boolean;
}

export interface CompiledRoute {
  prefix?: string;
  path?: string;
  regex?: RE2JS;
  headers: CompiledHeaderMatch[];
  clusters: { name: string; weight: number }[];
  totalWeight: number;
  /** 0 = none. Envoy's default route timeout is 15 s. */
  timeoutMs: number;
  retry: RetryPolicy | null;
  hash: HashPolicy[];
}

export interface CompiledVirtualHost {
  domains: string[];
  routes: CompiledRoute[];
}

export interface HttpListenerConfig {
  name: string;
  routeConfig: string;
  normalizer: PathNormalizer;
}

const DEFAULT_TIMEOUT_MS = 15_000;

function headerMatch(h: HeaderMatcher): CompiledHeaderMatch {
  const m = h.string_match;
  let test: (v: string | undefined) => boolean;
  if (h.present_match !== undefined) test = (v) => (v !== undefined) === h.present_match;
  else if (m?.exact !== undefined) test = (v) => v === m.exact;
  else if (m?.prefix !== undefined) test = (v) => v?.startsWith(m.prefix as string) ?? false;
  else if (m?.suffix !== undefined) test = (v) => v?.endsWith(m.suffix as string) ?? false;
  else if (m?.safe_regex) {
    const re = compileRe2(m.safe_regex.regex) as RE2JS;
    test = (v) => v !== undefined && re.matches(v);
  } else test = () => false;
  return { name: h.name.toLowerCase(), invert: h.invert_match ?? false, test };
}

function compileRoutes(rc: RouteConfiguration): CompiledVirtualHost[] {
  return (rc.virtual_hosts ?? []).map((vh) => ({
    domains: (vh.domains ?? ["*"]).map((d) => d.toLowerCase()),
    routes: (vh.routes ?? []).map((r): CompiledRoute => {
      const a = r.route;
      const clusters = a.weighted_clusters
        ? a.weighted_clusters.clusters.map((w) => ({ name: w.name, weight: w.weight.value }))
        : [{ name: a.cluster ?? "", weight: 1 }];
      const out: CompiledRoute = {
        headers: (r.match.headers ?? []).map(headerMatch),
        clusters,
        totalWeight: clusters.reduce((s, c) => s + c.weight, 0),
        timeoutMs: a.timeout ? (durationMs(a.timeout) ?? 0) : DEFAULT_TIMEOUT_MS,
        retry: a.retry_policy
          ? compileRetryPolicy({
              retryOn: a.retry_policy.retry_on,
              numRetries: a.retry_policy.num_retries?.value ?? 1,
              ...(a.retry_policy.per_try_timeout ? { perTryTimeoutMs: Math.round(durationMs(a.retry_policy.per_try_timeout) ?? 0) } : {}),
              budget: {},
            })
          : null,
        hash: (a.hash_policy ?? []).flatMap((h): HashPolicy[] => (h.header ? [{ header: h.header.header_name }] : h.cookie ? [{ cookie: h.cookie.name }] : [])),
      };
      if (r.match.prefix !== undefined) out.prefix = r.match.prefix;
      else if (r.match.path !== undefined) out.path = r.match.path;
      else if (r.match.safe_regex) out.regex = compileRe2(r.match.safe_regex.regex) as RE2JS;
      return out;
    }),
  }));
}

function domainMatches(d: string, host: string): boolean {
  if (d === "*" || d === host) return true;
  if (d.startsWith("*")) return host.endsWith(d.slice(1));
  if (d.endsWith("*")) return host.startsWith(d.slice(0, -1));
  return false;
}

function pathOptions(h: HttpConnectionManager): Partial<PathOptions> {
  const esc = h.path_with_escaped_slashes_action;
  return {
    normalize: h.normalize_path?.value ?? true,
    mergeSlashes: h.merge_slashes ?? false,
    escapedSlashes:
      esc === "REJECT_REQUEST"
        ? "reject"
        : esc === "UNESCAPE_AND_REDIRECT"
          ? "unescape-and-redirect"
          : esc === "UNESCAPE_AND_FORWARD"
            ? "unescape-and-forward"
            : "keep",
  };
}

/** Clusters live across snapshots: one runtime per name, updated in place by each push. */
export class ClusterRegistry {
  private readonly byName = new Map<string, ClusterRuntime>();
  private readonly singles = new Map<string, ClusterRuntime>();

  apply(cfg: XdsConfig): void {
    for (const [name, spec] of cfg.clusters) {
      let c = this.byName.get(name);
      if (!c) this.byName.set(name, (c = new ClusterRuntime(name)));
      c.update(spec, cfg.endpoints.get(spec.eds_cluster_config?.service_name || name));
    }
    for (const [name, c] of this.byName)
      if (!cfg.clusters.has(name)) {
        c.close();
        this.byName.delete(name);
      }
  }

  get(name: string): ClusterRuntime | undefined {
    return this.byName.get(name);
  }

  /** The recorded backend as a one-host cluster (bounded cache). */
  single(ip: string, port: number): ClusterRuntime {
    const k = `${ip}:${port}`;
    let c = this.singles.get(k);
    if (!c) {
      if (this.singles.size > 4096) this.singles.clear();
      this.singles.set(k, (c = ClusterRuntime.single(ip, port)));
    }
    return c;
  }

  all(): ClusterRuntime[] {
    return [...this.byName.values()];
  }
}

export const DEFAULT_NORMALIZER = new PathNormalizer();

export class ProxySnapshot {
  readonly version: number;
  private readonly listeners = new Map<string, HttpListenerConfig>();
  private readonly routes = new Map<string, CompiledVirtualHost[]>();
  private readonly policies = new Map<string, HttpPolicy>();
  readonly clusters: ClusterRegistry;

  constructor(version: number, cfg: XdsConfig, clusters: ClusterRegistry) {
    this.version = version;
    this.clusters = clusters;
    for (const l of cfg.listeners.values()) {
      const hl = httpListener(l);
      const sa = l.address.socket_address;
      if (hl && sa) this.listeners.set(`${sa.address}:${sa.port_value}`, hl);
    }
    for (const [name, rc] of cfg.routes) this.routes.set(name, compileRoutes(rc));
    for (const [name, p] of cfg.l7policies) this.policies.set(name, HttpPolicy.compile(l7SetOf(p)));
  }

  static empty(clusters: ClusterRegistry): ProxySnapshot {
    return new ProxySnapshot(
      0,
      { listeners: new Map(), routes: new Map(), clusters: new Map(), endpoints: new Map(), l7policies: new Map(), versions: {} },
      clusters,
    );
  }

  /** The HTTP listener for an original destination: exact address, else a wildcard one on the port. */
  listener(vip: string, vport: number): HttpListenerConfig | undefined {
    return this.listeners.get(`${vip}:${vport}`) ?? this.listeners.get(`0.0.0.0:${vport}`);
  }

  /** The L7 policy of (subject, direction, TCP port); HttpPolicy.none when the port has no L7 rules. */
  policy(subject: number, direction: L7DirectionName, port: number): HttpPolicy {
    return this.policies.get(l7PolicyName(subject, direction, 6, port)) ?? HttpPolicy.none;
  }

  /** Route lookup (Envoy's order: first matching virtual host by domain, first matching route). */
  route(routeConfig: string, authority: string, path: string, headers: { get(lower: string): string | undefined }): CompiledRoute | undefined {
    const vhs = this.routes.get(routeConfig);
    if (!vhs) return undefined;
    let host = authority.toLowerCase();
    const colon = host.lastIndexOf(":");
    if (colon > 0 && !host.endsWith("]")) host = host.slice(0, colon);
    const q = path.indexOf("?");
    const p = q < 0 ? path : path.slice(0, q);
    for (const vh of vhs) {
      if (!vh.domains.some((d) => domainMatches(d, host))) continue;
      for (const r of vh.routes) {
        if (r.prefix !== undefined ? !p.startsWith(r.prefix) : r.path !== undefined ? p !== r.path : r.regex ? !r.regex.matches(p) : false) continue;
        let ok = true;
        for (const h of r.headers) if (h.test(headers.get(h.name)) === h.invert) ok = false;
        if (ok) return r;
      }
      return undefined;
    }
    return undefined;
  }
}

function httpListener(l: Listener): HttpListenerConfig | undefined {
  for (const fc of l.filter_chains ?? [])
    for (const f of fc.filters ?? []) {
      const h = f.typed_config as HttpConnectionManager;
      if (h?.["@type"] === HCM_TYPE && h.rds) return { name: l.name, routeConfig: h.rds.route_config_name, normalizer: new PathNormalizer(pathOptions(h)) };
    }
  return undefined;
}

/** One cluster of a route (weighted clusters: drawn by weight). */
export function routeCluster(r: CompiledRoute, random: () => number = Math.random): string {
  if (r.clusters.length === 1) return (r.clusters[0] as { name: string }).name;
  let x = random() * r.totalWeight;
  for (const c of r.clusters) {
    x -= c.weight;
    if (x < 0) return c.name;
  }
  return (r.clusters[r.clusters.length - 1] as { name: string }).name;
}
