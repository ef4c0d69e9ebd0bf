// Retry policy, Envoy's: which failures retry (retry_on: 5xx, gateway-error, connect-failure, reset,
// refused-stream, retriable-4xx, retriable-status-codes), how many times, each try's timeout, the
// jittered exponential back-off, and a retry budget (retries in flight as a share of requests in
// flight) that keeps retries from multiplying an overload. Pure: no I/O; randomness is injected.

import { WeftError } from "../../core/errors.ts";
import type { RandomSource } from "./host.ts";

export const RetryOn = {
  "5xx": 1,
  "gateway-error": 2,
  "connect-failure": 4,
  reset: 8,
  "refused-stream": 16,
  "retriable-4xx": 32,
  "retriable-status-codes": 64,
} as const;

/** How a try ended: an HTTP response (with its status) or a failure without one. */
export const Failure = { Response: 0, ConnectFailure: 1, Reset: 2, PerTryTimeout: 3, RefusedStream: 4 } as const;
export type FailureKind = (typeof Failure)[keyof typeof Failure];

export interface RetryPolicyConfig {
  /** Comma-separated, as Envoy's x-envoy-retry-on / route retry_on: "5xx,connect-failure,reset". */
  retryOn: string;
  numRetries?: number;
  /** 0 = no per-try timeout (the request timeout alone applies). */
  perTryTimeoutMs?: number;
  baseIntervalMs?: number;
  /** Default 10 × base, as Envoy. */
  maxIntervalMs?: number;
  retriableStatusCodes?: number[];
  /** Envoy's retry_budget: budget_percent of active requests (default 20), min_retry_concurrency (default 3). */
  budget?: { percent?: number; minConcurrency?: number };
}

export interface RetryPolicy {
  on: number;
  numRetries: number;
  perTryTimeoutMs: number;
  baseIntervalMs: number;
  maxIntervalMs: number;
  statusCodes: ReadonlySet<number>;
  budget: { percent: number; minConcurrency: number } | null;
}

/** Validates once, at configuration time; bad config is refused with the field named. */
export function compileRetryPolicy(cfg: RetryPolicyConfig, where = "retry"): RetryPolicy {
  let on = 0;
  for (const raw of cfg.retryOn.split(",")) {
    const t = raw.trim();
    if (t === "") continue;
    const bit = (RetryOn as Record<string, number>)[t];
    if (bit === undefined)
      throw new WeftError("WEFT_MANIFEST_INVALID", `unknown retry_on condition "${t}" (one of ${Object.keys(RetryOn).join(", ")})`, `${where}.retryOn`);
    on |= bit;
  }
  const int = (v: number | undefined, d: number, name: string, min = 0) => {
    const x = v ?? d;
    if (!Number.isInteger(x) || x < min) throw new WeftError("WEFT_MANIFEST_INVALID", `must be an integer >= ${min}, got ${x}`, `${where}.${name}`);
    return x;
  };
  const baseIntervalMs = int(cfg.baseIntervalMs, 25, "baseIntervalMs", 1);
  const maxIntervalMs = int(cfg.maxIntervalMs, baseIntervalMs * 10, "maxIntervalMs", baseIntervalMs);
  const statusCodes = new Set(cfg.retriableStatusCodes ?? []);
  for (const c of statusCodes)
    if (!Number.isInteger(c) || c < 100 || c > 599)
      throw new WeftError("WEFT_MANIFEST_INVALID", `status ${c} is not an HTTP status`, `${where}.retriableStatusCodes`);
  let budget: RetryPolicy["budget"] = null;
  if (cfg.budget) {
    const percent = cfg.budget.percent ?? 20;
    if (!(percent >= 0 && percent <= 100)) throw new WeftError("WEFT_MANIFEST_INVALID", "must be within 0..100", `${where}.budget.percent`);
    budget = { percent, minConcurrency: int(cfg.budget.minConcurrency, 3, "budget.minConcurrency") };
  }
  return {
    on,
    numRetries: int(cfg.numRetries, 1, "numRetries"),
    perTryTimeoutMs: int(cfg.perTryTimeoutMs, 0, "perTryTimeoutMs"),
    baseIntervalMs,
    maxIntervalMs,
    statusCodes,
    budget,
  };
}

/** Does this outcome call for a retry under the policy (ignoring counts and budget)? */
export function retriable(p: RetryPolicy, failure: FailureKind, status = 0): boolean {
  switch (failure) {
    case Failure.ConnectFailure:
      return (p.on & (RetryOn["5xx"] | RetryOn["gateway-error"] | RetryOn["connect-failure"])) !== 0;
    case Failure.Reset:
    case Failure.PerTryTimeout:
      return (p.on & (RetryOn["5xx"] | RetryOn["gateway-error"] | RetryOn.reset)) !== 0;
    case Failure.RefusedStream:
      return (p.on & (RetryOn["5xx"] | RetryOn["refused-stream"])) !== 0;
    default:
      if (status >= 500 && p.on & RetryOn["5xx"]) return true;
      if ((status === 502 || status === 503 || status === 504) && p.on & RetryOn["gateway-error"]) return true;
      if (status === 409 && p.on & RetryOn["retriable-4xx"]) return true;
      return (p.on & RetryOn["retriable-status-codes"]) !== 0 && p.statusCodes.has(status);
  }
}

/**
 * Whether try number `retriesSoFar + 1` may be a retry: the outcome is retriable, retries remain,
 * and the budget (when configured) allows one more retry among `activeRequests` in flight.
 */
export function shouldRetry(
  p: RetryPolicy,
  retriesSoFar: number,
  failure: FailureKind,
  status: number,
  activeRequests: number,
  activeRetries: number,
): boolean {
  if (retriesSoFar >= p.numRetries || !retriable(p, failure, status)) return false;
  if (p.budget) return activeRetries < Math.max(p.budget.minConcurrency, (p.budget.percent / 100) * activeRequests);
  return true;
}

/** Back-off before retry n (1-based): uniform in [0, min((2^n − 1) · base, max)), as Envoy. */
export function backoffMs(p: RetryPolicy, n: number, random: RandomSource): number {
  const upper = Math.min((2 ** Math.min(n, 30) - 1) * p.baseIntervalMs, p.maxIntervalMs);
  return Math.floor(random() * upper);
}

/** This try's timeout: the per-try timeout bounded by what is left of the request's; Infinity = none. */
export function tryTimeoutMs(p: RetryPolicy, requestRemainingMs = Number.POSITIVE_INFINITY): number {
  return Math.min(p.perTryTimeoutMs || Number.POSITIVE_INFINITY, requestRemainingMs);
}
