// Drop reasons shared with the datapath: mirrors enum weft_drop_reason in bpf/lib/drop.h (a test
// parses that file and compares). Numbers and descriptions are Cilium's/Hubble's where the meaning
// is shared. Pure: no I/O.

export const DropReason = {
  NONE: 0,
  INVALID_SIP: 132,
  POLICY: 133,
  INVALID: 134,
  CT_INVALID_HDR: 135,
  CT_UNKNOWN_PROTO: 137,
  INVALID_IDENTITY: 171,
  POLICY_DENY: 181,
} as const;

export type DropReasonName = keyof typeof DropReason;

/** Hubble's drop_reason_desc text, by number. */
export const DROP_REASON_DESC: Readonly<Record<number, string>> = {
  0: "",
  132: "Invalid source ip",
  133: "Policy denied",
  134: "Invalid packet",
  135: "CT: Invalid header",
  137: "CT: Unknown L4 protocol",
  171: "Invalid identity",
  181: "Policy denied by denylist",
};

/** The description of a drop reason; unknown numbers say so rather than throwing. */
export function dropReasonDesc(code: number): string {
  return DROP_REASON_DESC[code] ?? `Unknown drop reason ${code}`;
}

/** Hubble's enum name for the flow's drop_reason_desc field (e.g. POLICY_DENIED). */
export const DROP_REASON_ENUM: Readonly<Record<number, string>> = {
  0: "DROP_REASON_UNKNOWN",
  132: "INVALID_SOURCE_IP",
  133: "POLICY_DENIED",
  134: "INVALID_PACKET_DROPPED",
  135: "CT_TRUNCATED_OR_INVALID_HEADER",
  137: "CT_UNKNOWN_L4_PROTOCOL",
  171: "INVALID_IDENTITY",
  181: "POLICY_DENY",
};
