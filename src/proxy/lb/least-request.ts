// Least request by the power of two choices (Envoy's LEAST_REQUEST, choice_count 2): draw two hosts
// at random — weighted by their weights — and send to the one with fewer requests in flight per
// unit of weight. Near-optimal spreading at O(log n) per pick, without scanning every host.
// Pure: no I/O.

import type { Host, LoadBalancer, RandomSource } from "./host.ts";

export class LeastRequest implements LoadBalancer {
  private hosts: readonly Host[] = [];
  /** Cumulative weights, for a weighted draw by binary search. */
  private cumulative = new Float64Array(0);
  private total = 0;
  private readonly random: RandomSource;
  private readonly choices: number;

  constructor(hosts: readonly Host[] = [], random: RandomSource = Math.random, choices = 2) {
    if (!Number.isInteger(choices) || choices < 2) throw new RangeError("least-request needs at least 2 choices");
    this.random = random;
    this.choices = choices;
    this.setHosts(hosts);
  }

  setHosts(hosts: readonly Host[]): void {
    this.hosts = hosts;
    this.cumulative = new Float64Array(hosts.length);
    let t = 0;
    hosts.forEach((h, i) => {
      t += h.weight;
      this.cumulative[i] = t;
    });
    this.total = t;
  }

  private draw(): number {
    const x = this.random() * this.total;
    let lo = 0;
    let hi = this.hosts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cumulative[mid] as number) > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  pick(): Host | undefined {
    const n = this.hosts.length;
    if (n <= 1) return this.hosts[0];
    let best = this.hosts[this.draw()] as Host;
    for (let c = 1; c < this.choices; c++) {
      const h = this.hosts[this.draw()] as Host;
      // Fewer in flight per unit of weight wins; a tie keeps the first draw (so idle hosts share by weight).
      if (h.active * best.weight < best.active * h.weight) best = h;
    }
    return best;
  }
}
