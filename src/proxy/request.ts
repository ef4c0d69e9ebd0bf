// The stages every HTTP request passes, whatever its codec, each with a type saying what is known
// at that point: Attributed (the redirect record: who, to where) → Normalised (the path policy and
// routing see, and that goes upstream) → Decided (egress then ingress L7 policy) → Routed (cluster,
// retry and timeout policy, hash) → an endpoint picked by the cluster's balancer.

import type { TrafficDirection } from "../observe/flow.ts";
import { type CompiledRoute, DEFAULT_NORMALIZER, type HttpListenerConfig, type ProxySnapshot, routeCluster } from "./config.ts";
import type { HeaderEdit, HttpVerdict, PolicyRequest } from "./filters/l7-policy.ts";
import { PathAction, type PathActionCode } from "./http1/path.ts";
import { type HashPolicy, requestHash } from "./lb/hash.ts";
import type { RetryPolicy } from "./lb/retry.ts";
import type { RedirectRecord } from "./origdst.ts";
import type { ClusterRuntime } from "./upstream/cluster.ts";

/** Stage 1: a connection the datapath redirected, with its record. */
export interface Attributed {
  record: RedirectRecord;
  remoteIp: string;
  remotePort: number;
}

/** Stage 2: the request's path as policy and upstream see it. */
export interface Normalised {
  action: PathActionCode;
  /** Normalised path and query ("" on Reject); the Location on Redirect. */
  path: string;
  reason: string;
  listener: HttpListenerConfig | undefined;
}

export function normalise(snap: ProxySnapshot, a: Attributed, target: string): Normalised {
  const listener = snap.listener(a.record.vip, a.record.vport);
  const n = listener?.normalizer ?? DEFAULT_NORMALIZER;
  const action = n.run(target);
  return { action, path: n.path, reason: n.reason, listener };
}

/** Stage 3: the policy verdict of every direction that applies (all must allow). */
export interface Decided {
  allowed: boolean;
  /** The direction that denied, or the last one applied (for flows). */
  direction: TrafficDirection;
  /** Every allowing rule constrained nothing: visibility only. */
  visibilityOnly: boolean;
  edits: HeaderEdit[];
  rule: string;
}

const NO_EDITS: HeaderEdit[] = [];

export function decide(snap: ProxySnapshot, a: Attributed, req: PolicyRequest): Decided {
  let edits = NO_EDITS;
  let visibilityOnly = true;
  let rule = "";
  let direction: TrafficDirection = "TRAFFIC_DIRECTION_UNKNOWN";
  for (const d of a.record.directions) {
    direction = d.direction === "ingress" ? "INGRESS" : "EGRESS";
    const v: HttpVerdict = snap.policy(d.subject, d.direction, a.record.bport).decide(d.peer, req);
    if (!v.allowed) return { allowed: false, direction, visibilityOnly: false, edits: NO_EDITS, rule: "" };
    if (!v.visibilityOnly) visibilityOnly = false;
    if (v.rule) rule = v.rule;
    if (v.edits.length) edits = edits === NO_EDITS ? [...v.edits] : edits.concat(v.edits);
  }
  return { allowed: true, direction, visibilityOnly, edits, rule };
}

/** Stage 4: where the request goes and under which failure policy. */
export interface Routed {
  cluster: ClusterRuntime;
  /** 0 = none. */
  timeoutMs: number;
  retry: RetryPolicy | null;
  hash: number | undefined;
}

export type RouteFailure = { status: 404 | 503; reason: string };

const PASSTHROUGH_TIMEOUT_MS = 0;

export function routeRequest(
  snap: ProxySnapshot,
  a: Attributed,
  n: Normalised,
  authority: string,
  headers: { get(lower: string): string | undefined },
): Routed | RouteFailure {
  if (!n.listener) {
    // No L7 load balancing for this destination: the socket hook's choice stands.
    return { cluster: snap.clusters.single(a.record.backend, a.record.bport), timeoutMs: PASSTHROUGH_TIMEOUT_MS, retry: null, hash: undefined };
  }
  const r: CompiledRoute | undefined = snap.route(n.listener.routeConfig, authority, n.path, headers);
  if (!r) return { status: 404, reason: "no route" };
  const name = routeCluster(r);
  const cluster = snap.clusters.get(name);
  if (!cluster) return { status: 503, reason: `cluster ${name} unknown` };
  return { cluster, timeoutMs: r.timeoutMs, retry: r.retry, hash: hashOf(r.hash, headers, a.remoteIp) };
}

function hashOf(policies: HashPolicy[], headers: { get(lower: string): string | undefined }, ip: string): number | undefined {
  for (const p of policies) {
    const h = requestHash(p, headers, ip);
    if (h !== undefined) return h;
  }
  return undefined;
}

export function isRouteFailure(r: Routed | RouteFailure): r is RouteFailure {
  return "status" in r;
}

export { PathAction };
