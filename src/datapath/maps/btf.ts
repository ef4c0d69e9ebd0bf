// Reads struct layouts from a compiled BPF object's BTF (through bpftool), to check the
// TypeScript mirrors against the C definitions.

import { execFileSync } from "node:child_process";

export interface BtfStruct {
  name: string;
  size: number;
  members: Record<string, number>; // name → byte offset
}

export function btfStructs(objectFile: string): Map<string, BtfStruct> {
  const raw = JSON.parse(
    execFileSync("bpftool", ["-j", "btf", "dump", "file", objectFile, "format", "raw"], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 }),
  ) as {
    types: { kind: string; name: string; size?: number; members?: { name: string; bits_offset: number }[] }[];
  };
  const out = new Map<string, BtfStruct>();
  for (const t of raw.types) {
    if (t.kind !== "STRUCT" || !t.name) continue;
    out.set(t.name, {
      name: t.name,
      size: t.size ?? 0,
      members: Object.fromEntries((t.members ?? []).map((m) => [m.name, m.bits_offset / 8])),
    });
  }
  return out;
}
