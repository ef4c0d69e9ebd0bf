// x-request-id: kept when the request comes from a peer trusted to set it (inside the mesh, as
// Envoy keeps internal requests' ids), otherwise generated as a UUID v4. Pure: no I/O.

import { randomUUID } from "node:crypto";

const HEX = "0123456789abcdef";

/** A UUID v4 from 16 random bytes (RFC 9562 §5.4: version 4, variant 10). */
export function uuidV4(bytes: Uint8Array): string {
  if (bytes.length < 16) throw new RangeError("uuidV4 needs 16 bytes");
  let s = "";
  for (let i = 0; i < 16; i++) {
    let b = bytes[i] as number;
    if (i === 6) b = (b & 0x0f) | 0x40;
    if (i === 8) b = (b & 0x3f) | 0x80;
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX.charAt(b >> 4) + HEX.charAt(b & 15);
  }
  return s;
}

/** A fresh id (node's pooled CSPRNG: no syscall per call). */
export function newRequestId(): string {
  return randomUUID();
}

/** Visible ASCII, 1..200 bytes: anything else from a client is replaced, never forwarded. */
function acceptable(id: string): boolean {
  if (id.length === 0 || id.length > 200) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/**
 * The id to send upstream and to record in the flow. `existing` is the request's x-request-id (or
 * undefined); `trusted` says whether the peer may set it (Envoy's preserve_external_request_id for
 * edge traffic, always for mesh-internal traffic). `generate` is injectable for tests.
 */
export function requestIdFor(existing: string | undefined, trusted: boolean, generate: () => string = newRequestId): { id: string; generated: boolean } {
  if (trusted && existing !== undefined && acceptable(existing)) return { id: existing, generated: false };
  return { id: generate(), generated: true };
}
