// Mirror of the event record (bpf/lib/events.h, struct weft_event) and its ring buffer's maps.
// src/datapath/events.ts decodes records lazily through these offsets. Pure: no I/O.

import { defineStruct } from "./struct.ts";

export const EVENTS_MAP = "weft_events";
export const EVENTS_LOST_MAP = "weft_events_lost";

export const weftEvent = defineStruct("weft_event", [
  ["time_ns", "u64"],
  ["type", "u8"],
  ["verdict", "u8"],
  ["direction", "u8"],
  ["proto", "u8"],
  ["drop_reason", "u16"],
  ["match", "u8"],
  ["ct_state", "u8"],
  ["src_identity", "u32"],
  ["dst_identity", "u32"],
  ["saddr", "ipv4"],
  ["daddr", "ipv4"],
  ["sport", "be16"],
  ["dport", "be16"],
  ["icmp_type", "u8"],
  ["icmp_code", "u8"],
  ["tcp_flags", "u8"],
  ["flags", "u8"],
  ["ifindex", "u32"],
  ["cookie", "u32"],
  ["endpoint_id", "u16"],
  ["proxy_port", "u16"],
  ["pkt_len", "u32"],
  ["obs_point", "u8"],
  ["pad", { bytes: 7 }],
] as const);
