// Mirror of the endpoints map (bpf/lib/policy.h, weft_endpoints): a local pod's IPv4 → its
// identity (the subject of its policy map), host-side veth ifindex (anti-spoofing; 0 = unchecked),
// endpoint id, and what its policy enforces per direction. Pure: no I/O.

import { defineStruct } from "./struct.ts";

export const ENDPOINTS_MAP = "weft_endpoints";
/** Default deny per direction, and policy-audit-mode (would-be drops pass with an audit verdict). */
export const ENDPOINT_FLAG = { enforceIngress: 1, enforceEgress: 2, auditIngress: 4, auditEgress: 8 } as const;

export const endpointKey = defineStruct("endpoint_key", [["addr", "ipv4"]] as const);

export const endpointValue = defineStruct("endpoint_value", [
  ["identity", "u32"],
  ["ifindex", "u32"],
  ["endpoint_id", "u16"],
  ["flags", "u8"],
  ["pad", "u8"],
] as const);

export interface EndpointEntry {
  ip: string;
  identity: number;
  ifindex?: number;
  endpointId: number;
  enforceIngress: boolean;
  enforceEgress: boolean;
  auditIngress?: boolean;
  auditEgress?: boolean;
}

export function encodeEndpointKey(ip: string): Buffer {
  return endpointKey.encode({ addr: ip });
}

export function encodeEndpointValue(e: EndpointEntry): Buffer {
  const flags =
    (e.enforceIngress ? ENDPOINT_FLAG.enforceIngress : 0) |
    (e.enforceEgress ? ENDPOINT_FLAG.enforceEgress : 0) |
    (e.auditIngress ? ENDPOINT_FLAG.auditIngress : 0) |
    (e.auditEgress ? ENDPOINT_FLAG.auditEgress : 0);
  return endpointValue.encode({ identity: e.identity, ifindex: e.ifindex ?? 0, endpoint_id: e.endpointId, flags, pad: 0 });
}
