// One upstream cluster at run time: its hosts (from the ClusterLoadAssignment), the load balancer
// its lb_policy names, outlier detection and circuit breaking — the pure core's modules, wired to a
// clock. Host objects (and their in-flight counts) survive config pushes that keep the host.

import { type Cluster, type ClusterLoadAssignment, durationMs } from "../../xds/resources.ts";
import { CircuitBreaker } from "../lb/circuit-breaker.ts";
import { type Host, host, type LoadBalancer } from "../lb/host.ts";
import { LeastRequest } from "../lb/least-request.ts";
import { DEFAULT_L7_MAGLEV_SIZE, Maglev } from "../lb/maglev.ts";
import { OutlierDetector } from "../lb/outlier.ts";
import { RingHash } from "../lb/ring-hash.ts";
import { RoundRobin } from "../lb/round-robin.ts";

const SKIP_HEALTH = new Set(["UNHEALTHY", "DRAINING", "TIMEOUT"]);

export interface UpstreamHost extends Host {
  readonly ip: string;
  readonly port: number;
}

function upstreamHost(ip: string, port: number, weight: number): UpstreamHost {
  return Object.assign(host(`${ip}:${port}`, weight), { ip, port });
}

export class ClusterRuntime {
  readonly name: string;
  hosts: UpstreamHost[] = [];
  lb: LoadBalancer = new RoundRobin();
  outlier: OutlierDetector | null = null;
  breaker = new CircuitBreaker();
  connectTimeoutMs = 1000;
  /** Envoy's stats, named as Envoy names them. */
  readonly stats = {
    upstream_rq_total: 0,
    upstream_rq_retry: 0,
    upstream_rq_timeout: 0,
    upstream_cx_connect_fail: 0,
    outlier_ejections: 0,
    upstream_rq_pending_overflow: 0,
  };
  private specKey = "";
  private endpointsKey = "";
  private timer: NodeJS.Timeout | undefined;

  constructor(name: string) {
    this.name = name;
  }

  /** A cluster of one host: a redirected connection's recorded backend when no listener balances it. */
  static single(ip: string, port: number): ClusterRuntime {
    const c = new ClusterRuntime(`original-dst/${ip}:${port}`);
    c.hosts = [upstreamHost(ip, port, 1)];
    c.lb.setHosts(c.hosts);
    return c;
  }

  /** Applies a config push; rebuilds only what changed. */
  update(spec: Cluster, cla: ClusterLoadAssignment | undefined): void {
    const specKey = JSON.stringify(spec);
    const endpointsKey = JSON.stringify(cla ?? null);
    if (specKey === this.specKey && endpointsKey === this.endpointsKey) return;
    const specChanged = specKey !== this.specKey;
    this.specKey = specKey;
    this.endpointsKey = endpointsKey;
    const old = new Map(this.hosts.map((h) => [h.address, h]));
    const hosts: UpstreamHost[] = [];
    for (const loc of cla?.endpoints ?? [])
      for (const e of loc.lb_endpoints ?? []) {
        if (e.health_status && SKIP_HEALTH.has(e.health_status)) continue;
        const sa = e.endpoint.address.socket_address;
        if (!sa) continue;
        const w = e.load_balancing_weight?.value ?? 1;
        const prev = old.get(`${sa.address}:${sa.port_value}`);
        hosts.push(prev && prev.weight === w ? prev : upstreamHost(sa.address, sa.port_value, w));
      }
    this.hosts = hosts;
    if (specChanged) {
      this.connectTimeoutMs = durationMs(spec.connect_timeout) ?? 1000;
      this.lb = balancerOf(spec);
      const t = spec.circuit_breakers?.thresholds?.[0];
      this.breaker = new CircuitBreaker({
        ...(t?.max_connections ? { maxConnections: t.max_connections.value } : {}),
        ...(t?.max_pending_requests ? { maxPendingRequests: t.max_pending_requests.value } : {}),
        ...(t?.max_requests ? { maxRequests: t.max_requests.value } : {}),
        ...(t?.max_retries ? { maxRetries: t.max_retries.value } : {}),
      });
      clearInterval(this.timer);
      this.timer = undefined;
      const o = spec.outlier_detection;
      if (o) {
        this.outlier = new OutlierDetector([], {
          consecutive5xx: o.consecutive_5xx?.value ?? 5,
          intervalMs: durationMs(o.interval) ?? 10_000,
          baseEjectionTimeMs: durationMs(o.base_ejection_time) ?? 30_000,
          maxEjectionPercent: o.max_ejection_percent?.value ?? 10,
        });
        this.timer = setInterval(() => {
          if (this.outlier?.tick(Date.now())) this.rebalance();
        }, this.outlier.opts.intervalMs).unref();
      } else this.outlier = null;
    }
    this.outlier?.setHosts(hosts);
    this.rebalance();
  }

  private rebalance(): void {
    this.lb.setHosts(this.outlier ? this.outlier.eligible() : this.hosts);
  }

  pick(hash?: number): UpstreamHost | undefined {
    return this.lb.pick(hash) as UpstreamHost | undefined;
  }

  /** One try's result: an HTTP status, or 0 for a local failure (connect, reset, timeout). */
  report(h: UpstreamHost, status: number): void {
    if (this.outlier?.report(h, status, Date.now())) {
      this.stats.outlier_ejections++;
      this.rebalance();
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

function balancerOf(spec: Cluster): LoadBalancer {
  switch (spec.lb_policy ?? "ROUND_ROBIN") {
    case "LEAST_REQUEST":
      return new LeastRequest([], Math.random, spec.least_request_lb_config?.choice_count?.value ?? 2);
    case "RING_HASH": {
      const max = spec.ring_hash_lb_config?.maximum_ring_size?.value;
      return new RingHash([], max ? { maxRingSize: max } : {});
    }
    case "MAGLEV":
      return new Maglev([], spec.maglev_lb_config?.table_size?.value ?? DEFAULT_L7_MAGLEV_SIZE);
    default:
      return new RoundRobin([], Math.random);
  }
}
