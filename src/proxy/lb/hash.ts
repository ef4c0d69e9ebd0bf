// Request hashing for the consistent-hash balancers (ring hash, Maglev): what to hash (a header, a
// cookie, the source IP — Envoy's hash_policy) and a 32-bit string hash that allocates nothing.
// Pure: no I/O.

import type { HeaderSource } from "../filters/l7-policy.ts";

export type HashPolicy = { header: string } | { cookie: string } | { sourceIp: true };

/**
 * MurmurHash3 (x86, 32-bit) over the string's UTF-16 code units, two bytes each: stable across
 * processes, no Buffer per call. Not the byte-wise murmur3 of src/datapath/maglev.ts (that one
 * matches the kernel's tables; this one only needs to agree with itself).
 */
export function hash32(s: string, seed = 0): number {
  let h = seed >>> 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The value of cookie `name` in a Cookie header ("a=1; b=2"), or undefined. */
export function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (!cookieHeader) return undefined;
  let at = 0;
  while (at < cookieHeader.length) {
    while (cookieHeader.charCodeAt(at) === 0x20 || cookieHeader.charCodeAt(at) === 0x3b || cookieHeader.charCodeAt(at) === 0x2c) at++;
    const eq = cookieHeader.indexOf("=", at);
    if (eq < 0) return undefined;
    let end = cookieHeader.indexOf(";", eq);
    if (end < 0) end = cookieHeader.length;
    if (eq - at === name.length && cookieHeader.startsWith(name, at)) {
      let v = cookieHeader.slice(eq + 1, end).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      return v;
    }
    at = end + 1;
  }
  return undefined;
}

/**
 * The request's hash under a policy; undefined when the request lacks the header or cookie (the
 * balancer then picks as if unhashed: Envoy falls back to a random choice).
 */
export function requestHash(policy: HashPolicy, headers: HeaderSource, sourceIp: string): number | undefined {
  if ("header" in policy) {
    const v = headers.get(policy.header.toLowerCase());
    return v === undefined ? undefined : hash32(v);
  }
  if ("cookie" in policy) {
    const v = cookieValue(headers.get("cookie"), policy.cookie);
    return v === undefined ? undefined : hash32(v);
  }
  return hash32(sourceIp);
}
