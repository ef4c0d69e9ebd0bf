// Mirror of the NodePort NAT table (bpf/lib/nodeport.h, lb4_nodeport_nat): a packet's tuple and
// direction → what it becomes. Written only by bpf/host; user space reads it (inspection, tests).
// Checked against host.o's BTF by test/integration/datapath/nodeport-mirrors.test.ts. Pure: no I/O.

import { defineStruct, ipv4ToBuffer } from "./struct.ts";

export const NODEPORT_NAT_MAP = "lb4_nodeport_nat";

/** nat4_key.dir: client → frontend as it arrives; a backend's reply as it reaches the node's device. */
export const NAT_DIR = { original: 0, reply: 1 } as const;
/** nat4_entry.flags. */
export const NAT_FLAG = { snat: 0x1, closing: 0x2 } as const;
/** SNAT ports (NAT_PORT_MIN ..): outside Linux's default ip_local_port_range. */
export const NAT_PORT_MIN = 61000;
export const NAT_PORT_MAX = 65535;

export const nat4Key = defineStruct("nat4_key", [
  ["saddr", "ipv4"],
  ["daddr", "ipv4"],
  ["sport", "be16"],
  ["dport", "be16"],
  ["proto", "u8"],
  ["dir", "u8"],
  ["pad", { bytes: 2 }],
] as const);

export const nat4Entry = defineStruct("nat4_entry", [
  ["expires", "u64"],
  ["saddr", "ipv4"],
  ["daddr", "ipv4"],
  ["sport", "be16"],
  ["dport", "be16"],
  ["service_id", "u32"],
  ["backend_id", "u32"],
  ["flags", "u8"],
  ["tcp_flags", "u8"],
  ["pad", { bytes: 2 }],
] as const);

/** Every mirror of a struct only host.o declares, for the BTF comparison. */
export const NODEPORT_MIRRORS = [nat4Key, nat4Entry];

export interface NatFlow {
  dir: "original" | "reply";
  from: string; // "saddr:sport"
  to: string; // "daddr:dport"
  proto: number;
  /** What the packet becomes. */
  newFrom: string;
  newTo: string;
  snat: boolean;
  closing: boolean;
  serviceId: number;
  backendId: number;
  expiresNs: bigint;
}

/** A NAT entry in words (for `weft bpf`-style listings and tests). */
export function decodeNat(key: Buffer, value: Buffer): NatFlow {
  const k = nat4Key.decode(key);
  const v = nat4Entry.decode(value);
  return {
    dir: k.dir === NAT_DIR.original ? "original" : "reply",
    from: `${k.saddr}:${k.sport}`,
    to: `${k.daddr}:${k.dport}`,
    proto: k.proto,
    newFrom: `${v.saddr}:${v.sport}`,
    newTo: `${v.daddr}:${v.dport}`,
    snat: (v.flags & NAT_FLAG.snat) !== 0,
    closing: (v.flags & NAT_FLAG.closing) !== 0,
    serviceId: v.service_id,
    backendId: v.backend_id,
    expiresNs: v.expires,
  };
}

/**
 * The value of `const volatile __u32 weft_node_ipv4` for loadObject's constants: the address in
 * network byte order, as the u32 the helper writes little-endian.
 */
export function nodeIpConstant(ip: string): number {
  return ipv4ToBuffer(ip).readUInt32LE(0);
}
