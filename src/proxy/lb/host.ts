// The upstream host as every load balancer sees it, and the one interface they share. A balancer
// is built over the hosts currently eligible (outlier detection removes ejected ones and calls
// setHosts again); pick() runs per request and allocates nothing. Pure: no I/O.

export interface Host {
  /** "address:port", unique within a cluster; hashes and tables are keyed by it. */
  readonly address: string;
  /** Relative weight, a positive integer (Envoy's load_balancing_weight); default 1. */
  readonly weight: number;
  /** Requests in flight to this host; the caller increments on send and decrements on completion. */
  active: number;
}

export interface LoadBalancer {
  /** Rebuilds over the eligible hosts (on membership, weight or ejection changes; not per request). */
  setHosts(hosts: readonly Host[]): void;
  /** The host for one request; `hash` is the request's hash (hash-based balancers), else ignored. */
  pick(hash?: number): Host | undefined;
}

export function host(address: string, weight = 1): Host {
  if (!Number.isInteger(weight) || weight < 1) throw new RangeError(`weight of ${address} must be a positive integer`);
  return { address, weight, active: 0 };
}

export { type RandomSource, seededRandom } from "../../core/random.ts";
