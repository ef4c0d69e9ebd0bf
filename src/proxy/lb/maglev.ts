// Maglev consistent hashing for L7 (Envoy's MAGLEV), on the same table builder the datapath uses
// (src/datapath/maglev.ts): a prime-sized lookup table, each host ~M·weight/Σweights entries,
// minimal disruption when hosts change, O(1) pick. Pure: no I/O.

import { maglevTable } from "../../datapath/maglev.ts";
import type { Host, LoadBalancer, RandomSource } from "./host.ts";

/** Envoy's default table size for Maglev (prime). */
export const DEFAULT_L7_MAGLEV_SIZE = 65537;

export class Maglev implements LoadBalancer {
  private hosts: readonly Host[] = [];
  private table: Uint32Array = new Uint32Array(0);
  private readonly size: number;
  private readonly random: RandomSource;

  constructor(hosts: readonly Host[] = [], size = DEFAULT_L7_MAGLEV_SIZE, random: RandomSource = Math.random) {
    this.size = size;
    this.random = random;
    this.setHosts(hosts);
  }

  setHosts(hosts: readonly Host[]): void {
    this.hosts = hosts;
    this.table = hosts.length
      ? maglevTable(
          hosts.map((h) => ({ name: h.address, weight: h.weight })),
          this.size,
        )
      : new Uint32Array(0);
  }

  pick(hash?: number): Host | undefined {
    if (this.hosts.length === 0) return undefined;
    const h = hash === undefined ? Math.floor(this.random() * 0x100000000) : hash >>> 0;
    return this.hosts[this.table[h % this.size] as number];
  }
}
