// Ring hash (ketama-style consistent hashing, Envoy's RING_HASH): each host owns points on a 32-bit
// ring in proportion to its weight; a request goes to the first point at or after its hash. Removing
// one of N hosts moves only ~1/N of the keys. Pure: no I/O.

import { hash32 } from "./hash.ts";
import type { Host, LoadBalancer, RandomSource } from "./host.ts";

export interface RingHashOptions {
  /**
   * Points per unit of weight (ketama's fixed count; default 256, so 4 equal hosts make Envoy's
   * minimum ring of 1024). Fixed, unlike Envoy's rescaling to minimum_ring_size, so that removing
   * a host moves only that host's keys.
   */
  pointsPerWeight: number;
  /** Envoy's maximum_ring_size (default 8M): past it every host's points scale down together. */
  maxRingSize: number;
}

export const DEFAULT_RING: Readonly<RingHashOptions> = Object.freeze({ pointsPerWeight: 256, maxRingSize: 8 * 1024 * 1024 });

export class RingHash implements LoadBalancer {
  private hosts: readonly Host[] = [];
  private points = new Uint32Array(0);
  private owners = new Uint32Array(0);
  private readonly opts: RingHashOptions;
  private readonly random: RandomSource;

  constructor(hosts: readonly Host[] = [], opts: Partial<RingHashOptions> = {}, random: RandomSource = Math.random) {
    this.opts = { ...DEFAULT_RING, ...opts };
    if (!Number.isInteger(this.opts.pointsPerWeight) || this.opts.pointsPerWeight < 1 || this.opts.maxRingSize < 1)
      throw new RangeError("ring hash: pointsPerWeight and maxRingSize must be positive integers");
    this.random = random;
    this.setHosts(hosts);
  }

  get size(): number {
    return this.points.length;
  }

  setHosts(hosts: readonly Host[]): void {
    this.hosts = hosts;
    if (hosts.length === 0) {
      this.points = new Uint32Array(0);
      this.owners = new Uint32Array(0);
      return;
    }
    let total = 0;
    for (const h of hosts) total += h.weight;
    const perWeight = Math.min(this.opts.pointsPerWeight, this.opts.maxRingSize / total);
    const entries: { hash: number; owner: number }[] = [];
    hosts.forEach((h, i) => {
      const count = Math.max(1, Math.floor(h.weight * perWeight));
      for (let k = 0; k < count; k++) entries.push({ hash: hash32(`${h.address}_${k}`), owner: i });
    });
    // Equal hashes: order by address so the ring does not depend on the order hosts were given in.
    entries.sort((a, b) => a.hash - b.hash || ((hosts[a.owner] as Host).address < (hosts[b.owner] as Host).address ? -1 : 1));
    this.points = Uint32Array.from(entries, (e) => e.hash);
    this.owners = Uint32Array.from(entries, (e) => e.owner);
  }

  /** No hash (the request lacks the hashed header or cookie): a random point, as Envoy. */
  pick(hash?: number): Host | undefined {
    const n = this.points.length;
    if (n === 0) return undefined;
    const h = hash === undefined ? Math.floor(this.random() * 0x100000000) : hash >>> 0;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.points[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    return this.hosts[this.owners[lo === n ? 0 : lo] as number];
  }
}
