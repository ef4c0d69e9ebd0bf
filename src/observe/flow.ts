// The Flow record: one type for every producer (BPF events, the proxy, DNS) and every consumer
// (the ring, the Observer API, `weft observe`, metrics). Field names are Hubble's (flow.proto, as
// JSON), so the hubble CLI and users' jq habits carry over. Pure: no I/O.

import { DROP_REASON_ENUM } from "../datapath/drop-reasons.ts";
import type { DatapathEvent } from "../datapath/events.ts";
import { CtState, EVENT_FLAG, EventType, Verdict as EventVerdict } from "../datapath/events.ts";

export type Verdict = "FORWARDED" | "DROPPED" | "AUDIT";
export type TrafficDirection = "INGRESS" | "EGRESS" | "TRAFFIC_DIRECTION_UNKNOWN";

export interface TCPFlags {
  FIN?: boolean;
  SYN?: boolean;
  RST?: boolean;
  PSH?: boolean;
  ACK?: boolean;
  URG?: boolean;
}

export type Layer4 =
  | { TCP: { source_port: number; destination_port: number; flags?: TCPFlags } }
  | { UDP: { source_port: number; destination_port: number } }
  | { ICMPv4: { type: number; code: number } };

export interface Endpoint {
  identity: number;
  namespace?: string;
  labels?: string[];
  pod_name?: string;
  ID?: number;
}

/** Hubble's L7 record (flow.proto Layer7/HTTP, as JSON). */
export interface HttpHeader {
  key: string;
  value: string;
}
export interface L7Http {
  code: number;
  method: string;
  url: string;
  protocol: string;
  headers?: HttpHeader[];
  /**
   * headerMatches mismatch actions (Weft's addition; Cilium's access log fields of the same names):
   * headers the request lacked or had with another value, with the value the rule expected
   * (logged, added or set), and values the proxy removed or overwrote.
   */
  missing_headers?: HttpHeader[];
  rejected_headers?: HttpHeader[];
}
export interface Layer7 {
  type: "REQUEST" | "RESPONSE" | "SAMPLE";
  latency_ns: number;
  http?: L7Http;
}

export interface Flow {
  /** RFC 3339 with nanoseconds, as Hubble's JSON. */
  time: string;
  verdict: Verdict;
  /** Hubble's deprecated numeric reason (kept: hubble prints it). */
  drop_reason?: number;
  drop_reason_desc?: string;
  IP: { source: string; destination: string; ipVersion: "IPv4" };
  l4?: Layer4;
  source: Endpoint;
  destination: Endpoint;
  Type: "L3_L4" | "L7";
  /** Type "L7": the proxy's record of one request. */
  l7?: Layer7;
  traffic_direction: TrafficDirection;
  node_name: string;
  /** "policy-verdict:L3-L4 INGRESS ALLOWED"-style summary as hubble's `observe` prints it. */
  Summary?: string;
  is_reply?: boolean;
  event_type?: { type: number; sub_type?: number };
  policy_match_type?: number;
  trace_observation_point?: string;
}

/** What the flow builder needs to know about identities (the agent's store; tests pass a table). */
export interface FlowContext {
  nodeName: string;
  endpointOf(identity: number, ip: string): Endpoint;
  /** Wall-clock time of an event's CLOCK_MONOTONIC stamp. */
  timeOf(monotonicNs: bigint): Date;
}

const TCP_FLAG_BITS: [keyof TCPFlags, number][] = [
  ["FIN", 0x01],
  ["SYN", 0x02],
  ["RST", 0x04],
  ["PSH", 0x08],
  ["ACK", 0x10],
  ["URG", 0x20],
];

export function tcpFlags(bits: number): TCPFlags {
  const f: TCPFlags = {};
  for (const [name, bit] of TCP_FLAG_BITS) if (bits & bit) f[name] = true;
  return f;
}

function verdictOf(v: number): Verdict {
  return v === EventVerdict.dropped ? "DROPPED" : v === EventVerdict.audit ? "AUDIT" : "FORWARDED";
}

const OBS_NAMES: Record<number, string> = { 0: "TO_ENDPOINT", 4: "TO_OVERLAY", 5: "FROM_ENDPOINT", 10: "FROM_OVERLAY" };

/** One Flow from one datapath event. */
export function flowFromEvent(ev: DatapathEvent, ctx: FlowContext): Flow {
  const proto = ev.proto;
  let l4: Layer4 | undefined;
  if (proto === 6) l4 = { TCP: { source_port: ev.sport, destination_port: ev.dport, flags: tcpFlags(ev.tcpFlags) } };
  else if (proto === 17) l4 = { UDP: { source_port: ev.sport, destination_port: ev.dport } };
  else if (proto === 1) l4 = { ICMPv4: { type: ev.icmpType, code: ev.icmpCode } };
  const verdict = verdictOf(ev.verdict);
  const saddr = ev.saddr;
  const daddr = ev.daddr;
  const flow: Flow = {
    time: ctx.timeOf(ev.timeNs).toISOString(),
    verdict,
    IP: { source: saddr, destination: daddr, ipVersion: "IPv4" },
    source: ctx.endpointOf(ev.srcIdentity, saddr),
    destination: ctx.endpointOf(ev.dstIdentity, daddr),
    Type: "L3_L4",
    traffic_direction: ev.direction === "egress" ? "EGRESS" : "INGRESS",
    node_name: ctx.nodeName,
    event_type: { type: ev.type === EventType.drop ? 1 : ev.type === EventType.trace ? 4 : 5 },
    trace_observation_point: OBS_NAMES[ev.obsPoint] ?? "UNKNOWN_POINT",
  };
  if (l4) flow.l4 = l4;
  if (ev.dropReason && verdict !== "FORWARDED") {
    flow.drop_reason = ev.dropReason;
    flow.drop_reason_desc = DROP_REASON_ENUM[ev.dropReason] ?? `DROP_REASON_${ev.dropReason}`;
  }
  if (ev.type === EventType.policyVerdict) flow.policy_match_type = ev.match;
  if (ev.type === EventType.trace) flow.is_reply = ev.ctState === CtState.reply;
  if (ev.flags & EVENT_FLAG.identityFromTunnel) flow.trace_observation_point = "FROM_OVERLAY";
  flow.Summary = summary(flow, ev.type);
  return flow;
}

function summary(f: Flow, type: number): string {
  const kind = type === EventType.policyVerdict ? "policy-verdict" : type === EventType.drop ? "drop" : "trace";
  const what = f.verdict === "DROPPED" ? "DENIED" : f.verdict === "AUDIT" ? "AUDITED" : "ALLOWED";
  return `${kind} ${f.traffic_direction} ${what}${f.drop_reason_desc ? ` (${f.drop_reason_desc})` : ""}`;
}

/** What the proxy knows about one request when it records it. */
export interface L7HttpEvent {
  time: Date;
  verdict: Verdict;
  direction: TrafficDirection;
  nodeName: string;
  source: { ip: string; port: number; identity: number };
  destination: { ip: string; port: number; identity: number };
  /** RESPONSE when an answer (the upstream's or the proxy's own) was sent; REQUEST when none was. */
  type: "REQUEST" | "RESPONSE";
  latencyNs: number;
  http: L7Http;
}

/** One Flow of Type "L7" from one proxied (or refused) request. */
export function l7HttpFlow(e: L7HttpEvent): Flow {
  const flow: Flow = {
    time: e.time.toISOString(),
    verdict: e.verdict,
    IP: { source: e.source.ip, destination: e.destination.ip, ipVersion: "IPv4" },
    l4: { TCP: { source_port: e.source.port, destination_port: e.destination.port } },
    source: { identity: e.source.identity },
    destination: { identity: e.destination.identity },
    Type: "L7",
    traffic_direction: e.direction,
    node_name: e.nodeName,
    l7: { type: e.type, latency_ns: e.latencyNs, http: e.http },
    event_type: { type: 129 },
  };
  const what = e.verdict === "DROPPED" ? "DENIED" : "ALLOWED";
  flow.Summary = `${e.http.protocol} ${e.http.code || "-"} ${Math.round(e.latencyNs / 1e6)}ms (${e.http.method} ${e.http.url}) ${what}`;
  return flow;
}
