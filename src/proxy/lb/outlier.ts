// Outlier detection, Envoy's consecutive_5xx: a host answering N 5xx in a row (connect failures,
// resets and timeouts count as 5xx) is ejected at once for base_ejection_time × times ejected
// (capped), never more than max_ejection_percent of the cluster (but always at least one host);
// the interval tick brings hosts back and lets an ejection multiplier decay while a host behaves.
// Pure: no I/O; time is passed in.

import type { Host } from "./host.ts";

export interface OutlierOptions {
  consecutive5xx: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export const DEFAULT_OUTLIER: Readonly<OutlierOptions> = Object.freeze({
  consecutive5xx: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
});

interface HostState {
  host: Host;
  consecutive: number;
  /** Times ejected, decaying by one per healthy interval: the ejection-time multiplier. */
  multiplier: number;
  /** Ejected until (ms), or 0. */
  ejectedUntil: number;
}

export class OutlierDetector {
  readonly opts: OutlierOptions;
  private states = new Map<string, HostState>();
  private eligibleCache: Host[] | null = null;
  private ejectedCount = 0;
  /** Ejections refused because of max_ejection_percent (Envoy's ejections_overflow). */
  overflow = 0;

  constructor(hosts: readonly Host[] = [], opts: Partial<OutlierOptions> = {}) {
    this.opts = { ...DEFAULT_OUTLIER, ...opts };
    this.setHosts(hosts);
  }

  /** Membership changed: state is kept for hosts that stay. */
  setHosts(hosts: readonly Host[]): void {
    const next = new Map<string, HostState>();
    for (const h of hosts) next.set(h.address, { ...(this.states.get(h.address) ?? { consecutive: 0, multiplier: 0, ejectedUntil: 0 }), host: h });
    this.states = next;
    this.ejectedCount = [...next.values()].filter((s) => s.ejectedUntil > 0).length;
    this.eligibleCache = null;
  }

  /**
   * One result from a host: an HTTP status, or 0 for a local failure (connect failure, reset,
   * timeout). Returns true when the host was just ejected (the caller rebuilds its balancer).
   */
  report(host: Host, status: number, now: number): boolean {
    const s = this.states.get(host.address);
    if (!s) return false;
    if (status !== 0 && status < 500) {
      s.consecutive = 0;
      return false;
    }
    if (++s.consecutive < this.opts.consecutive5xx || s.ejectedUntil > 0) return false;
    s.consecutive = 0;
    const total = this.states.size;
    if (this.ejectedCount > 0 && (100 * (this.ejectedCount + 1)) / total > this.opts.maxEjectionPercent) {
      this.overflow++;
      return false;
    }
    s.multiplier++;
    s.ejectedUntil = now + Math.min(this.opts.baseEjectionTimeMs * s.multiplier, Math.max(this.opts.baseEjectionTimeMs, this.opts.maxEjectionTimeMs));
    this.ejectedCount++;
    this.eligibleCache = null;
    return true;
  }

  /** The interval timer (every intervalMs): un-ejects hosts whose time is up. True when any came back. */
  tick(now: number): boolean {
    let changed = false;
    for (const s of this.states.values()) {
      if (s.ejectedUntil > 0) {
        if (now >= s.ejectedUntil) {
          s.ejectedUntil = 0;
          s.consecutive = 0;
          this.ejectedCount--;
          changed = true;
        }
      } else if (s.multiplier > 0) s.multiplier--;
    }
    if (changed) this.eligibleCache = null;
    return changed;
  }

  isEjected(host: Host): boolean {
    return (this.states.get(host.address)?.ejectedUntil ?? 0) > 0;
  }

  get ejected(): number {
    return this.ejectedCount;
  }

  /** The hosts to balance over (rebuilt only after a change). */
  eligible(): Host[] {
    this.eligibleCache ??= [...this.states.values()].filter((s) => s.ejectedUntil === 0).map((s) => s.host);
    return this.eligibleCache;
  }
}
