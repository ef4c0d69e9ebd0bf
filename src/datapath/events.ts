// Datapath event records (bpf/lib/events.h, struct weft_event) as typed, lazily decoded views:
// the raw record is kept and each field is read from it only when asked, so a consumer that looks
// at two fields pays for two. Pure: no I/O.

import { dropReasonDesc } from "./drop-reasons.ts";
import { weftEvent } from "./maps/events.ts";

export const EVENT_SIZE = weftEvent.size;
export const EventType = { policyVerdict: 1, drop: 2, trace: 3 } as const;
export const Verdict = { forwarded: 0, dropped: 1, audit: 2 } as const;
export const CtState = { new: 0, established: 1, reply: 2 } as const;
export const ObsPoint = { toEndpoint: 0, toOverlay: 4, fromEndpoint: 5, fromOverlay: 10 } as const;
export const PolicyMatch = { none: 0, l3Only: 1, l3L4: 2, l4Only: 3, all: 4, l3Proto: 5, protoOnly: 6 } as const;
export const EVENT_FLAG = { identityFromTunnel: 1, redirect: 2 } as const;

const O = weftEvent.offsets as Record<string, number>;
const at = (name: string): number => O[name] as number;
const OFF = {
  time: at("time_ns"),
  type: at("type"),
  verdict: at("verdict"),
  direction: at("direction"),
  proto: at("proto"),
  dropReason: at("drop_reason"),
  match: at("match"),
  ctState: at("ct_state"),
  srcId: at("src_identity"),
  dstId: at("dst_identity"),
  saddr: at("saddr"),
  daddr: at("daddr"),
  sport: at("sport"),
  dport: at("dport"),
  icmpType: at("icmp_type"),
  icmpCode: at("icmp_code"),
  tcpFlags: at("tcp_flags"),
  flags: at("flags"),
  ifindex: at("ifindex"),
  cookie: at("cookie"),
  endpointId: at("endpoint_id"),
  proxyPort: at("proxy_port"),
  pktLen: at("pkt_len"),
  obs: at("obs_point"),
};

function ip(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** One event; getters decode from `raw` on access. `raw` may be a view into a shared read chunk. */
export class DatapathEvent {
  constructor(readonly raw: Buffer) {
    if (raw.length < EVENT_SIZE) throw new RangeError(`event record is ${EVENT_SIZE} bytes, got ${raw.length}`);
  }
  /** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns); see monotonicToDate. */
  get timeNs(): bigint {
    return this.raw.readBigUInt64LE(OFF.time);
  }
  get type(): number {
    return this.raw[OFF.type] as number;
  }
  get verdict(): number {
    return this.raw[OFF.verdict] as number;
  }
  /** "ingress": toward the pod (its ingress policy); "egress": from the pod. */
  get direction(): "ingress" | "egress" {
    return this.raw[OFF.direction] === 1 ? "egress" : "ingress";
  }
  get proto(): number {
    return this.raw[OFF.proto] as number;
  }
  get dropReason(): number {
    return this.raw.readUInt16LE(OFF.dropReason);
  }
  get dropReasonDesc(): string {
    return dropReasonDesc(this.dropReason);
  }
  get match(): number {
    return this.raw[OFF.match] as number;
  }
  get ctState(): number {
    return this.raw[OFF.ctState] as number;
  }
  get srcIdentity(): number {
    return this.raw.readUInt32LE(OFF.srcId);
  }
  get dstIdentity(): number {
    return this.raw.readUInt32LE(OFF.dstId);
  }
  get saddr(): string {
    return ip(this.raw, OFF.saddr);
  }
  get daddr(): string {
    return ip(this.raw, OFF.daddr);
  }
  get sport(): number {
    return this.raw.readUInt16BE(OFF.sport);
  }
  get dport(): number {
    return this.raw.readUInt16BE(OFF.dport);
  }
  get icmpType(): number {
    return this.raw[OFF.icmpType] as number;
  }
  get icmpCode(): number {
    return this.raw[OFF.icmpCode] as number;
  }
  get tcpFlags(): number {
    return this.raw[OFF.tcpFlags] as number;
  }
  get flags(): number {
    return this.raw[OFF.flags] as number;
  }
  get ifindex(): number {
    return this.raw.readUInt32LE(OFF.ifindex);
  }
  get cookie(): number {
    return this.raw.readUInt32LE(OFF.cookie);
  }
  get endpointId(): number {
    return this.raw.readUInt16LE(OFF.endpointId);
  }
  get proxyPort(): number {
    return this.raw.readUInt16LE(OFF.proxyPort);
  }
  get pktLen(): number {
    return this.raw.readUInt32LE(OFF.pktLen);
  }
  get obsPoint(): number {
    return this.raw[OFF.obs] as number;
  }
  /** Every field at once (tests, logs); hot paths use the getters they need. */
  toJSON(): Record<string, unknown> {
    return {
      timeNs: this.timeNs.toString(),
      type: this.type,
      verdict: this.verdict,
      direction: this.direction,
      proto: this.proto,
      dropReason: this.dropReason,
      match: this.match,
      ctState: this.ctState,
      srcIdentity: this.srcIdentity,
      dstIdentity: this.dstIdentity,
      saddr: this.saddr,
      daddr: this.daddr,
      sport: this.sport,
      dport: this.dport,
      icmpType: this.icmpType,
      icmpCode: this.icmpCode,
      tcpFlags: this.tcpFlags,
      flags: this.flags,
      ifindex: this.ifindex,
      cookie: this.cookie,
      endpointId: this.endpointId,
      proxyPort: this.proxyPort,
      pktLen: this.pktLen,
      obsPoint: this.obsPoint,
    };
  }
}

export function decodeEvent(raw: Buffer): DatapathEvent {
  return new DatapathEvent(raw);
}

/**
 * Wall-clock time of a CLOCK_MONOTONIC timestamp: process.hrtime is CLOCK_MONOTONIC on Linux, so
 * the offset to Date.now() converts (to the millisecond).
 */
export function monotonicToDate(ns: bigint, nowMs = Date.now(), nowMono = process.hrtime.bigint()): Date {
  return new Date(nowMs - Number((nowMono - ns) / 1_000_000n));
}
