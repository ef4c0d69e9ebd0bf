// Circuit breaking per upstream cluster, Envoy's thresholds: connections, pending requests (waiting
// for a connection), requests in flight, retries in flight. A request over a limit is not queued: it
// fails fast (503, overflow counted), which keeps one slow backend from holding every worker.
// Pure: no I/O; the caller pairs each successful try* with its release*.

export interface CircuitBreakerThresholds {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

export const DEFAULT_THRESHOLDS: Readonly<CircuitBreakerThresholds> = Object.freeze({
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
});

export class CircuitBreaker {
  readonly limits: CircuitBreakerThresholds;
  connections = 0;
  pending = 0;
  requests = 0;
  retries = 0;
  /** Refusals per threshold (Envoy's upstream_cx_overflow, upstream_rq_pending_overflow, ...). */
  readonly overflow = { connections: 0, pending: 0, requests: 0, retries: 0 };

  constructor(limits: Partial<CircuitBreakerThresholds> = {}) {
    this.limits = { ...DEFAULT_THRESHOLDS, ...limits };
    for (const [k, v] of Object.entries(this.limits)) if (!Number.isInteger(v) || v < 0) throw new RangeError(`${k} must be a non-negative integer`);
  }

  tryConnection(): boolean {
    if (this.connections >= this.limits.maxConnections) {
      this.overflow.connections++;
      return false;
    }
    this.connections++;
    return true;
  }
  releaseConnection(): void {
    if (this.connections > 0) this.connections--;
  }

  tryPending(): boolean {
    if (this.pending >= this.limits.maxPendingRequests) {
      this.overflow.pending++;
      return false;
    }
    this.pending++;
    return true;
  }
  releasePending(): void {
    if (this.pending > 0) this.pending--;
  }

  tryRequest(): boolean {
    if (this.requests >= this.limits.maxRequests) {
      this.overflow.requests++;
      return false;
    }
    this.requests++;
    return true;
  }
  releaseRequest(): void {
    if (this.requests > 0) this.requests--;
  }

  tryRetry(): boolean {
    if (this.retries >= this.limits.maxRetries) {
      this.overflow.retries++;
      return false;
    }
    this.retries++;
    return true;
  }
  releaseRetry(): void {
    if (this.retries > 0) this.retries--;
  }

  /** Envoy's "open" gauges: is each limit reached right now? */
  open(): { connections: boolean; pending: boolean; requests: boolean; retries: boolean } {
    return {
      connections: this.connections >= this.limits.maxConnections,
      pending: this.pending >= this.limits.maxPendingRequests,
      requests: this.requests >= this.limits.maxRequests,
      retries: this.retries >= this.limits.maxRetries,
    };
  }
}
