// The datapath's policy map contract: key and value, their byte encoding (mirrored by the C struct
// in bpf/lib/policy.h), port ranges as LPM prefixes, and the lookup the datapath performs —
// implemented here so the compiler's output can be checked against the model. Pure: no I/O.
//
// One map per subject identity (an LPM trie; endpoints with the same identity share it).
//   key   (12 bytes): u32 prefixlen (host order) | be32 identity | u8 direction | u8 protocol | be16 dport
//   value  (8 bytes): u8 flags (deny 1, redirect 2, audit 4) | u8 reserved | be16 proxy_port | u32 cookie
// prefixlen counts the matched bits after itself: 40 (identity + direction) for "every protocol",
// 48 for "every port of a protocol", 48 + n for a port prefix of n bits (64 = one port/ICMP type).

import type { Direction } from "./rules.ts";

export const KEY_SIZE = 12;
export const VALUE_SIZE = 8;
export const DIRECTION_CODE: Record<Direction, number> = { ingress: 0, egress: 1 };
export const FLAG = { deny: 1, redirect: 2, audit: 4 } as const;
/** prefixlen of an entry matching every protocol (identity and direction only). */
export const PREFIX_ANY_PROTO = 40;
/** prefixlen of an entry matching every port of one protocol. */
export const PREFIX_ANY_PORT = 48;

export interface PolicyKey {
  /** Remote identity; 0 = any peer (looked up second). */
  identity: number;
  direction: Direction;
  /** IANA protocol; 0 with prefixlen 40 = every protocol. */
  protocol: number;
  /** Destination port, or ICMP type for ICMP/ICMPv6. */
  dport: number;
  prefixlen: number;
}

export interface PolicyValue {
  deny: boolean;
  redirect: boolean;
  audit: boolean;
  /** Proxy listener port; 0 until the agent assigns one. */
  proxyPort: number;
  /** Identifies the rule(s) for flow records: an index into the compiled subject's origins. */
  cookie: number;
}

export interface PolicyEntry {
  key: PolicyKey;
  value: PolicyValue;
  /** Rule ids that produced the entry (diagnostics; not encoded). */
  origins: string[];
}

export function encodeKey(k: PolicyKey): Uint8Array {
  const b = new Uint8Array(KEY_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, k.prefixlen, true);
  v.setUint32(4, k.identity >>> 0, false);
  v.setUint8(8, DIRECTION_CODE[k.direction]);
  v.setUint8(9, k.protocol);
  v.setUint16(10, k.dport, false);
  return b;
}

export function decodeKey(b: Uint8Array): PolicyKey {
  if (b.length !== KEY_SIZE) throw new RangeError(`policy key is ${KEY_SIZE} bytes, got ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    prefixlen: v.getUint32(0, true),
    identity: v.getUint32(4, false),
    direction: v.getUint8(8) === 1 ? "egress" : "ingress",
    protocol: v.getUint8(9),
    dport: v.getUint16(10, false),
  };
}

export function encodeValue(x: PolicyValue): Uint8Array {
  const b = new Uint8Array(VALUE_SIZE);
  const v = new DataView(b.buffer);
  v.setUint8(0, (x.deny ? FLAG.deny : 0) | (x.redirect ? FLAG.redirect : 0) | (x.audit ? FLAG.audit : 0));
  v.setUint16(2, x.proxyPort, false);
  v.setUint32(4, x.cookie >>> 0, true);
  return b;
}

export function decodeValue(b: Uint8Array): PolicyValue {
  if (b.length !== VALUE_SIZE) throw new RangeError(`policy value is ${VALUE_SIZE} bytes, got ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const f = v.getUint8(0);
  return {
    deny: (f & FLAG.deny) !== 0,
    redirect: (f & FLAG.redirect) !== 0,
    audit: (f & FLAG.audit) !== 0,
    proxyPort: v.getUint16(2, false),
    cookie: v.getUint32(4, true),
  };
}

/**
 * The fewest aligned prefixes covering [lo, hi] in a 16-bit space, as {port, bits}. A range never
 * needs more than 30 (e.g. 1-65534); a single port is one /16, every port one /0.
 */
export function rangeToPrefixes(lo: number, hi: number): { port: number; bits: number }[] {
  const out: { port: number; bits: number }[] = [];
  let a = lo;
  while (a <= hi) {
    let size = a === 0 ? 65536 : a & -a;
    while (a + size - 1 > hi) size >>= 1;
    out.push({ port: a, bits: 16 - Math.log2(size) });
    a += size;
  }
  return out;
}

function keyMatches(k: PolicyKey, proto: number, port: number): boolean {
  if (k.prefixlen <= PREFIX_ANY_PROTO) return true;
  if (k.protocol !== proto) return false;
  const bits = k.prefixlen - PREFIX_ANY_PORT;
  if (bits <= 0) return true;
  const shift = 16 - bits;
  return port >>> shift === k.dport >>> shift;
}

/** Entries of one subject indexed the way the trie finds them. */
export class PolicyMapView {
  private readonly byScope = new Map<string, PolicyEntry[]>();

  constructor(entries: PolicyEntry[]) {
    for (const e of entries) {
      const s = `${e.key.direction}/${e.key.identity}`;
      const list = this.byScope.get(s);
      if (list) list.push(e);
      else this.byScope.set(s, [e]);
    }
  }

  /** The longest-prefix match for one identity (as bpf_map_lookup_elem on the LPM trie). */
  lpm(direction: Direction, identity: number, proto: number, port: number): PolicyEntry | undefined {
    let best: PolicyEntry | undefined;
    for (const e of this.byScope.get(`${direction}/${identity}`) ?? [])
      if (keyMatches(e.key, proto, port) && (!best || e.key.prefixlen > best.key.prefixlen)) best = e;
    return best;
  }
}

export type DatapathVerdict = { kind: "deny" | "allow" | "miss"; entry?: PolicyEntry; redirect: boolean; audit: boolean };

/**
 * The datapath's decision: look up the peer's identity and then identity 0 (any peer). A deny in
 * either wins; otherwise the longer prefix decides, the peer's own entry on a tie; no entry is a
 * miss (default deny where the direction is enforced, else allow).
 */
export function datapathLookup(view: PolicyMapView, direction: Direction, identity: number, proto: number, port: number): DatapathVerdict {
  const exact = identity === 0 ? undefined : view.lpm(direction, identity, proto, port);
  const any = view.lpm(direction, 0, proto, port);
  for (const e of [exact, any]) if (e?.value.deny) return { kind: "deny", entry: e, redirect: false, audit: e.value.audit };
  const win = exact && (!any || exact.key.prefixlen >= any.key.prefixlen) ? exact : any;
  if (!win) return { kind: "miss", redirect: false, audit: false };
  return { kind: "allow", entry: win, redirect: win.value.redirect, audit: false };
}
