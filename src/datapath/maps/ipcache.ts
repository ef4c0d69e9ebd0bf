// Mirror of the ipcache map (bpf/lib/ipcache.h, weft_ipcache): IPv4 address or CIDR → security
// identity, tunnel endpoint (the node's underlay IP; 0.0.0.0 = this node) and flags. Pure: no I/O;
// the agent writes the encoded entries with writeMaps.

import { defineStruct } from "./struct.ts";

export const IPCACHE_MAP = "weft_ipcache";
export const IPCACHE_FLAG = { localPod: 1 } as const;

export const ipcacheKey = defineStruct("ipcache_key", [
  ["prefixlen", "u32"],
  ["addr", "ipv4"],
] as const);

export const ipcacheValue = defineStruct("ipcache_value", [
  ["identity", "u32"],
  ["tunnel_endpoint", "ipv4"],
  ["flags", "u8"],
  ["pad", { bytes: 3 }],
] as const);

export interface IpcacheEntry {
  /** "10.200.1.7" or "10.200.2.0/24". */
  cidr: string;
  identity: number;
  /** Underlay IP of the node that has the address; omitted or "0.0.0.0" = this node. */
  tunnelEndpoint?: string;
  flags?: number;
}

export function encodeIpcacheKey(cidr: string): Buffer {
  const [addr = "", len] = cidr.split("/");
  const prefixlen = len === undefined ? 32 : Number(len);
  if (!Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > 32) throw new RangeError(`bad prefix length in ${cidr}`);
  // Host bits are cleared so that equal prefixes are equal keys.
  const n = prefixlen === 0 ? 0 : (ipv4ToNumber(addr) & (0xffffffff << (32 - prefixlen))) >>> 0;
  return ipcacheKey.encode({ prefixlen, addr: numberToIpv4(n) });
}

export function encodeIpcacheValue(e: IpcacheEntry): Buffer {
  return ipcacheValue.encode({ identity: e.identity, tunnel_endpoint: e.tunnelEndpoint ?? "0.0.0.0", flags: e.flags ?? 0, pad: Buffer.alloc(3) });
}

function ipv4ToNumber(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new RangeError(`not an IPv4 address: ${ip}`);
  return (((p[0] as number) << 24) | ((p[1] as number) << 16) | ((p[2] as number) << 8) | (p[3] as number)) >>> 0;
}

function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
