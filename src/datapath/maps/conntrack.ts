// Mirror of the conntrack map (bpf/lib/conntrack.h, weft_ct): read for inspection and tests; only
// the datapath writes it (the agent may delete entries). Pure: no I/O.

import { defineStruct } from "./struct.ts";

export const CONNTRACK_MAP = "weft_ct";
/** Which policy point created the entry. */
export const CT_SCOPE = { ingress: 0, egress: 1 } as const;
export const CT_FLAG = { seenReply: 1, closing: 2, audited: 4, redirect: 8 } as const;

export const ctKey = defineStruct("ct_key", [
  ["saddr", "ipv4"],
  ["daddr", "ipv4"],
  ["sport", "be16"],
  ["dport", "be16"],
  ["proto", "u8"],
  ["scope", "u8"],
  ["pad", { bytes: 2 }],
] as const);

export const ctValue = defineStruct("ct_value", [
  ["expires", "u64"],
  ["packets", "u64"],
  ["src_identity", "u32"],
  ["cookie", "u32"],
  ["tx_flags", "u8"],
  ["rx_flags", "u8"],
  ["flags", "u8"],
  ["pad", { bytes: 5 }],
] as const);
