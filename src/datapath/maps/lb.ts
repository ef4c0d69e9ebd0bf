// Mirrors of the service load-balancing maps (bpf/lib/lb.h) and the managed-namespace map
// (bpf/lib/netns.h): one defineStruct per C struct, with the C member names, plus typed encoders
// for keys and values. Checked against sock.o's BTF by test/integration/datapath/mirrors-lb.test.ts.
// Pure: no I/O.

import { defineStruct } from "./struct.ts";

/** Pinned map names (maps/<name> under a node's pin root). */
export const LB_MAPS = {
  services: "lb4_services",
  backends: "lb4_backends",
  maglev: "lb4_maglev",
  affinity: "lb4_affinity",
  revnat: "lb4_revnat",
  revnatConn: "lb4_revnat_conn",
  netns: "netns_managed",
} as const;

/**
 * Default max_entries of lb4_services and lb4_backends (Cilium's --bpf-lb-map-max default). Both
 * are preallocated: the kernel memory is fixed when they are created. lb4_services holds one
 * entry per frontend with up to 8 selectable backends (one more per further 8), each with its
 * address; lb4_backends one per endpoint of the service ports that pick by id (ClientIP affinity,
 * Maglev).
 */
export const DEFAULT_LB_MAP_MAX = 65536;

/** The maps the lbMapMax setting sizes (bpf/lib/lb.h), as loadObject's `maxEntries`. */
export function lbMapSizes(lbMapMax: number = DEFAULT_LB_MAP_MAX): Record<string, number> {
  return { [LB_MAPS.services]: lbMapMax, [LB_MAPS.backends]: lbMapMax };
}

/** lb4_service.flags (LB_SVC_*). */
export const SVC_AFFINITY = 0x1;
export const SVC_MAGLEV = 0x2;
export const SVC_LOCAL = 0x4;
export const SVC_EXTERNAL = 0x8;
/** L7 load balancing in the node proxy: connect4 redirects even without L7 policy rules. */
export const SVC_L7 = 0x10;

/** lb4_backend.flags (LB_BE_*). */
export const BE_TERMINATING = 0x1;
export const BE_LOCAL = 0x2;

/** lb4_key.scope (LB_SCOPE_*): pods at their socket hooks, or traffic from outside the node (bpf/host). */
export const SCOPE_INTERNAL = 0;
export const SCOPE_EXTERNAL = 1;
/** The address of a NodePort frontend (scope external): any of the node's own addresses. */
export const NODEPORT_ADDRESS = "0.0.0.0";

/** Backend ids per lb4_maglev value (LB_MAGLEV_CHUNK). */
export const MAGLEV_CHUNK = 256;

export const PROTO = { TCP: 6, UDP: 17 } as const;
export type Protocol = keyof typeof PROTO;

export const lb4Key = defineStruct("lb4_key", [
  ["address", "ipv4"],
  ["dport", "be16"],
  ["slot", "u16"],
  ["proto", "u8"],
  ["scope", "u8"],
  ["pad", { bytes: 2 }],
] as const);

/** Backends per lb4_services entry (LB_SLOTS_PER_ENTRY): entry 0 holds the service and its first 8. */
export const SLOTS_PER_ENTRY = 8;

/** Where one of an entry's backends is (lb4_service.backends[i], beside backend_ids[i]). */
export const lb4Slot = defineStruct("lb4_slot", [
  ["address", "ipv4"],
  ["port", "be16"],
  ["flags", "u8"],
  ["pad", "u8"],
] as const);

export const lb4Service = defineStruct("lb4_service", [
  ["service_id", "u32"],
  ["count", "u32"],
  ["affinity_timeout", "u32"],
  ["maglev_size", "u32"],
  ["flags", "u32"],
  ["backend_ids", { bytes: SLOTS_PER_ENTRY * 4 }],
  ["backends", { bytes: SLOTS_PER_ENTRY * lb4Slot.size }],
] as const);

/** Entries a frontend with `count` selectable backends has in lb4_services (entry 0 included). */
export function serviceEntries(count: number): number {
  return count <= SLOTS_PER_ENTRY ? 1 : Math.ceil(count / SLOTS_PER_ENTRY);
}

/** What entry `entry` of a frontend holds of its backends in order (up to SLOTS_PER_ENTRY of `ids`). */
export function entryBackendIds<T>(ids: readonly T[], entry: number): T[] {
  return ids.slice(entry * SLOTS_PER_ENTRY, entry * SLOTS_PER_ENTRY + SLOTS_PER_ENTRY);
}

/** A backend_ids field: `ids` (at most SLOTS_PER_ENTRY) as u32 little-endian, 0 after them. */
export function backendIdsField(ids: readonly number[]): Buffer {
  const b = Buffer.alloc(SLOTS_PER_ENTRY * 4);
  for (const [i, id] of ids.entries()) b.writeUInt32LE(id, 4 * i);
  return b;
}

/** The backend ids a backend_ids field holds, in order (ids start at 1: the first 0 ends them). */
export function backendIdsOf(field: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < SLOTS_PER_ENTRY; i++) {
    const id = field.readUInt32LE(4 * i);
    if (id === 0) break;
    out.push(id);
  }
  return out;
}

/** A slot's backend: where it is (the entry's backend_ids say which it is). */
export interface SlotBackend {
  address: string;
  port: number;
  flags: number;
}

/** A backends field: `slots` (at most SLOTS_PER_ENTRY) as lb4_slot values, zero after them. */
export function slotsField(slots: readonly SlotBackend[]): Buffer {
  const b = Buffer.alloc(SLOTS_PER_ENTRY * lb4Slot.size);
  for (const [i, s] of slots.entries()) lb4Slot.encode({ address: s.address, port: s.port, flags: s.flags, pad: 0 }).copy(b, i * lb4Slot.size);
  return b;
}

/** The first `n` slots a backends field holds. */
export function slotsOf(field: Buffer, n: number): SlotBackend[] {
  const out: SlotBackend[] = [];
  for (let i = 0; i < n; i++) {
    const s = lb4Slot.decode(field.subarray(i * lb4Slot.size, (i + 1) * lb4Slot.size));
    out.push({ address: s.address, port: s.port, flags: s.flags });
  }
  return out;
}

export const lb4Backend = defineStruct("lb4_backend", [
  ["address", "ipv4"],
  ["port", "be16"],
  ["proto", "u8"],
  ["flags", "u8"],
  ["service_id", "u32"],
] as const);

export const lbMaglevKey = defineStruct("lb_maglev_key", [
  ["service_id", "u32"],
  ["chunk", "u16"],
  ["scope", "u8"],
  ["pad", "u8"],
] as const);

export const lbMaglevChunk = defineStruct("lb_maglev_chunk", [["backend_ids", { bytes: MAGLEV_CHUNK * 4 }]] as const);

export const lbAffinityKey = defineStruct("lb_affinity_key", [
  ["netns_cookie", "u64"],
  ["service_id", "u32"],
  ["pad", "u32"],
] as const);

export const lbAffinity = defineStruct("lb_affinity", [
  ["last_used_ns", "u64"],
  ["backend_id", "u32"],
  ["pad", "u32"],
] as const);

export const lb4RevnatKey = defineStruct("lb4_revnat_key", [
  ["sock_cookie", "u64"],
  ["address", "ipv4"],
  ["port", "be16"],
  ["pad", "u16"],
] as const);

export const lb4Revnat = defineStruct("lb4_revnat", [
  ["address", "ipv4"],
  ["port", "be16"],
  ["proto", "u8"],
  ["pad", "u8"],
  ["service_id", "u32"],
] as const);

/**
 * lb4_revnat_conn (array, written by connect4): a connected socket's record in slot
 * `cookie & (REVNAT_CONN_SLOTS - 1)`; `rev` is an lb4_revnat (decode with lb4Revnat).
 */
export const lb4ConnRevnat = defineStruct("lb4_conn_revnat", [
  ["sock_cookie", "u64"],
  ["peer_address", "ipv4"],
  ["peer_port", "be16"],
  ["pad", "u16"],
  ["rev", { bytes: 12 }],
  ["pad2", "u32"],
] as const);

/** lb4_revnat_conn's size (LB_REVNAT_CONN_SLOTS, a power of two). */
export const REVNAT_CONN_SLOTS = 262144;

/** The lb4_revnat_conn slot of a socket cookie. */
export function revnatConnSlot(cookie: bigint): number {
  return Number(cookie & BigInt(REVNAT_CONN_SLOTS - 1));
}

export const netnsInfo = defineStruct("netns_info", [
  ["identity", "u32"],
  ["flags", "u32"],
] as const);

/** Every mirror of a struct in sock.o, for the BTF comparison. */
export const LB_MIRRORS = [
  lb4Key,
  lb4Slot,
  lb4Service,
  lb4Backend,
  lbMaglevKey,
  lbMaglevChunk,
  lbAffinityKey,
  lbAffinity,
  lb4RevnatKey,
  lb4Revnat,
  lb4ConnRevnat,
  netnsInfo,
];

// ---- typed encoders ---------------------------------------------------------------------------

const PAD2 = Buffer.alloc(2);

export interface FrontendKey {
  address: string;
  port: number;
  proto: Protocol;
  /** SCOPE_INTERNAL (default) or SCOPE_EXTERNAL. */
  scope?: number;
}

/** lb4_services key: entry 0 is the service (and its first 8 backends), entry c >= 1 its backends from 8c + 1. */
export function serviceKey(f: FrontendKey, entry: number): Buffer {
  return lb4Key.encode({ address: f.address, dport: f.port, slot: entry, proto: PROTO[f.proto], scope: f.scope ?? SCOPE_INTERNAL, pad: PAD2 });
}

export interface ServiceEntry {
  serviceId: number;
  count: number;
  affinityTimeout: number;
  maglevSize: number;
  flags: number;
  /** The selectable backends in order (entry 0 holds the first SLOTS_PER_ENTRY). */
  backendIds: readonly number[];
  /** Where each of them is (same order). */
  backends: readonly SlotBackend[];
}

/** lb4_services value of entry 0. */
export function serviceValue(e: ServiceEntry): Buffer {
  return lb4Service.encode({
    service_id: e.serviceId,
    count: e.count,
    affinity_timeout: e.affinityTimeout,
    maglev_size: e.maglevSize,
    flags: e.flags,
    backend_ids: backendIdsField(entryBackendIds(e.backendIds, 0)),
    backends: slotsField(entryBackendIds(e.backends, 0)),
  });
}

/** lb4_services value of entry `entry` >= 1 of a service with these backends. */
export function slotsValue(serviceId: number, backendIds: readonly number[], backends: readonly SlotBackend[], entry: number): Buffer {
  return lb4Service.encode({
    service_id: serviceId,
    count: 0,
    affinity_timeout: 0,
    maglev_size: 0,
    flags: 0,
    backend_ids: backendIdsField(entryBackendIds(backendIds, entry)),
    backends: slotsField(entryBackendIds(backends, entry)),
  });
}

/** lb4_service's size before entries held their backends' addresses: five u32 fields and 8 ids. */
export const LB4_SERVICE_IDS_ONLY_SIZE = 20 + SLOTS_PER_ENTRY * 4;

/**
 * A pinned lb4_services value of an earlier layout in the current one (for an agent upgrade that
 * finds the map of another shape), or undefined when the layout is not known. The current size is
 * taken as is; an ids-only value (when every backend had an lb4_backends record) gets each id's
 * address, port and flags from `backendOf` (an lb4_backend value). An id it lacks leaves its slot
 * zero, which the kernel refuses, as it refused such an id before.
 */
export function upgradeServiceValue(old: Buffer, backendOf: (id: number) => Buffer | undefined): Buffer | undefined {
  if (old.length === lb4Service.size) return old;
  if (old.length !== LB4_SERVICE_IDS_ONLY_SIZE) return undefined;
  const v = Buffer.alloc(lb4Service.size);
  old.copy(v);
  const slots = backendIdsOf(old.subarray(LB4_SERVICE_IDS_ONLY_SIZE - SLOTS_PER_ENTRY * 4)).map((id): SlotBackend => {
    const be = backendOf(id);
    return be === undefined ? { address: "0.0.0.0", port: 0, flags: 0 } : lb4Backend.decode(be);
  });
  slotsField(slots).copy(v, lb4Service.offsets.backends as number);
  return v;
}

/** lb4_backends key: the backend id (u32, host order). */
export function backendKey(id: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(id);
  return b;
}

export interface BackendEntry {
  address: string;
  port: number;
  proto: Protocol;
  flags: number;
  serviceId: number;
}

export function backendValue(e: BackendEntry): Buffer {
  return lb4Backend.encode({ address: e.address, port: e.port, proto: PROTO[e.proto], flags: e.flags, service_id: e.serviceId });
}

export function maglevKey(serviceId: number, scope: 0 | 1, chunk: number): Buffer {
  return lbMaglevKey.encode({ service_id: serviceId, chunk, scope, pad: 0 });
}

/**
 * One 256-entry chunk of a table of backend ids. Entries past the table's end repeat it from the
 * start: while a table shrinks, the service entry still holds the old size for a moment, and an
 * index past the new end must still name a live backend.
 */
export function maglevChunkValue(table: ArrayLike<number>, chunk: number): Buffer {
  const b = Buffer.alloc(MAGLEV_CHUNK * 4);
  if (table.length === 0) return b;
  const start = chunk * MAGLEV_CHUNK;
  for (let i = 0; i < MAGLEV_CHUNK; i++) b.writeUInt32LE(table[(start + i) % table.length] as number, i * 4);
  return b;
}

/** A u64 key (netns cookie, socket cookie), host order. */
export function cookieKey(cookie: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(cookie);
  return b;
}

export function netnsValue(identity: number): Buffer {
  return netnsInfo.encode({ identity, flags: 0 });
}

export function protocolName(n: number): Protocol | undefined {
  return n === PROTO.TCP ? "TCP" : n === PROTO.UDP ? "UDP" : undefined;
}
