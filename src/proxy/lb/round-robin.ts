// Weighted round robin, smooth (nginx's algorithm): each pick every host earns its weight, the
// richest is chosen and pays the total, so weights 5:1:1 give a a b a c a a, never a burst of five.
// Equal weights take a plain rotation. Pure: no I/O.

import type { Host, LoadBalancer, RandomSource } from "./host.ts";

export class RoundRobin implements LoadBalancer {
  private hosts: readonly Host[] = [];
  private current = new Float64Array(0);
  private total = 0;
  private uniform = true;
  private next = 0;
  private readonly random: RandomSource | undefined;

  /** `random` only chooses the starting point, so proxies do not all begin with the same host. */
  constructor(hosts: readonly Host[] = [], random?: RandomSource) {
    this.random = random;
    this.setHosts(hosts);
  }

  setHosts(hosts: readonly Host[]): void {
    this.hosts = hosts;
    this.current = new Float64Array(hosts.length);
    this.total = 0;
    for (const h of hosts) this.total += h.weight;
    this.uniform = hosts.every((h) => h.weight === (hosts[0] as Host).weight);
    this.next = this.random && hosts.length ? Math.floor(this.random() * hosts.length) : 0;
  }

  pick(): Host | undefined {
    const n = this.hosts.length;
    if (n === 0) return undefined;
    if (this.uniform) {
      const h = this.hosts[this.next] as Host;
      this.next = this.next + 1 === n ? 0 : this.next + 1;
      return h;
    }
    const cur = this.current;
    let best = 0;
    for (let i = 0; i < n; i++) {
      cur[i] = (cur[i] as number) + (this.hosts[i] as Host).weight;
      if ((cur[i] as number) > (cur[best] as number)) best = i;
    }
    cur[best] = (cur[best] as number) - this.total;
    return this.hosts[best];
  }
}
