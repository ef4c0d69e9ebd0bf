// Mirror of the policy maps (bpf/lib/policy.h): the key and value of src/policy/key.ts, byte for
// byte, and the per-subject LPM tries held by the outer hash-of-maps weft_policy (key: subject
// identity). Subject maps are created and pinned with the helper's map-create and plugged into the
// outer map with a map-in-map update (loader.ts createMap/setInnerMap); their entries are then
// written with writeMaps like any pinned map.

import { unlink } from "node:fs/promises";
import { DIRECTION_CODE, FLAG, type PolicyEntry, type PolicyKey, type PolicyValue } from "../../policy/key.ts";
import { createMap, type MapWrite, pins, setInnerMap, writeMaps } from "../loader.ts";
import { defineStruct } from "./struct.ts";

export const POLICY_OUTER_MAP = "weft_policy";
/** Must equal POLICY_INNER_MAX in bpf/lib/policy.h: the kernel only accepts inner maps shaped as the template. */
export const POLICY_INNER_MAX = 16384;
const BPF_F_NO_PREALLOC = 1;

export const policyKey = defineStruct("policy_key", [
  ["prefixlen", "u32"],
  ["identity", "be32"],
  ["direction", "u8"],
  ["protocol", "u8"],
  ["dport", "be16"],
] as const);

export const policyValue = defineStruct("policy_value", [
  ["flags", "u8"],
  ["reserved", "u8"],
  ["proxy_port", "be16"],
  ["cookie", "u32"],
] as const);

export function encodePolicyKey(k: PolicyKey): Buffer {
  return policyKey.encode({ prefixlen: k.prefixlen, identity: k.identity >>> 0, direction: DIRECTION_CODE[k.direction], protocol: k.protocol, dport: k.dport });
}

export function encodePolicyValue(v: PolicyValue): Buffer {
  const flags = (v.deny ? FLAG.deny : 0) | (v.redirect ? FLAG.redirect : 0) | (v.audit ? FLAG.audit : 0);
  return policyValue.encode({ flags, reserved: 0, proxy_port: v.proxyPort, cookie: v.cookie >>> 0 });
}

/** Where the LPM trie of one subject identity is pinned: maps/weft_policy_<identity>. */
export function subjectMapPin(root: string, subject: number): string {
  return pins.map(root, `${POLICY_OUTER_MAP}_${subject >>> 0}`);
}

function subjectKey(subject: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(subject >>> 0);
  return b;
}

/**
 * Makes sure the subject's policy map exists (pinned) and is the one weft_policy holds for it.
 * Idempotent: an existing pin is reused with its entries (agent restart), and re-plugged; a pin
 * of another shape is refused (WEFT_BPF).
 */
export async function ensureSubjectMap(root: string, subject: number): Promise<string> {
  const pin = subjectMapPin(root, subject);
  await createMap(pin, {
    type: "lpm_trie",
    keySize: policyKey.size,
    valueSize: policyValue.size,
    maxEntries: POLICY_INNER_MAX,
    flags: BPF_F_NO_PREALLOC,
    name: `weft_pol_${subject >>> 0}`.slice(0, 15),
  });
  await setInnerMap(pins.map(root, POLICY_OUTER_MAP), subjectKey(subject), pin);
  return pin;
}

/** Unplugs and unpins a subject's map; traffic of that identity then sees no entries (misses). */
export async function removeSubjectMap(root: string, subject: number): Promise<void> {
  const pin = subjectMapPin(root, subject);
  await writeMaps([{ op: "delete", map: pins.map(root, POLICY_OUTER_MAP), key: subjectKey(subject) }]).catch(() => undefined); // outer map gone: nothing to unplug
  await unlink(pin).catch(() => undefined);
}

/** The writes that put `entries` into a subject's (already ensured) map. */
export function policyWrites(root: string, subject: number, entries: readonly PolicyEntry[]): MapWrite[] {
  const map = subjectMapPin(root, subject);
  return entries.map((e) => ({ op: "update" as const, map, key: encodePolicyKey(e.key), value: encodePolicyValue(e.value) }));
}

/** The writes that remove entries (by key) from a subject's map. */
export function policyDeletes(root: string, subject: number, keys: readonly PolicyKey[]): MapWrite[] {
  const map = subjectMapPin(root, subject);
  return keys.map((k) => ({ op: "delete" as const, map, key: encodePolicyKey(k) }));
}
