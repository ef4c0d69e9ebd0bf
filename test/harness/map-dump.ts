// A canonical dump of every map the agent writes on one node, for comparing two agents' results
// (a restarted agent against a fresh start): every pinned map under the node's pin root, inner
// policy maps included, each as sorted "key => value" lines. Two things are rewritten because they
// are the agent's private numbering, not state a user sees: service ids become the frontend they
// belong to, backend ids the backend they name (so Maglev tables become address lists); slots keep
// their set of backends; and a map-of-maps value (a kernel map id) becomes the inner map's pin. Maps written by the hooks or the proxy at run time (conntrack, affinity,
// reverse NAT, connection records, events) are listed as skipped, with why.

import { execFileSync } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { dumpMap, type MapEntry } from "../../src/datapath/loader.ts";
import { backendIdsOf, LB_MAPS, lb4Backend, lb4Key, lb4Service, lbMaglevKey, slotsOf } from "../../src/datapath/maps/lb.ts";

/** Maps whose entries are made by traffic, not by the agent; a fresh start cannot have them. */
export const RUNTIME_MAPS: Record<string, string> = {
  weft_ct: "conntrack entries of live flows",
  weft_events: "ring buffer",
  weft_events_lost: "lost-event counters",
  lb4_affinity: "affinity records made by connects",
  lb4_revnat: "reverse NAT records of unconnected UDP sends",
  lb4_revnat_conn: "reverse NAT records of connected sockets",
  lb4_nodeport_nat: "NodePort flows",
  weft_proxy_origin: "original destinations of proxied connections",
  weft_proxy_pending: "proxied connections waiting for sock_ops",
  weft_proxy_ports: "upstream ports the proxy bound",
};

export interface NodeMapDump {
  /** Map path (relative to maps/) → its canonical lines. */
  maps: Record<string, string[]>;
  skipped: string[];
}

async function mapFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    if ((await stat(p)).isDirectory()) out.push(...(await mapFiles(p)));
    else out.push(p);
  }
  return out;
}

const hex = (b: Buffer) => b.toString("hex");
const BPF_MAP_TYPE_ARRAY_OF_MAPS = 12;
const BPF_MAP_TYPE_HASH_OF_MAPS = 13;

function mapId(pin: string): number {
  return (JSON.parse(execFileSync("bpftool", ["-j", "map", "show", "pinned", pin], { encoding: "utf8" })) as { id: number }).id;
}

function lines(entries: MapEntry[]): string[] {
  return entries.map((e) => `${hex(e.key)} => ${hex(e.value)}`).sort();
}

/** Dumps a node's agent-written maps, canonically (see the header). */
export async function dumpNodeMaps(root: string): Promise<NodeMapDump> {
  const mapsDir = join(root, "maps");
  const raw = new Map<string, MapEntry[]>();
  const maps: Record<string, string[]> = {};
  const skipped: string[] = [];
  const files = await mapFiles(mapsDir);
  const pinOfId = new Map<number, string>();
  for (const file of files) pinOfId.set(mapId(file), relative(mapsDir, file));
  for (const file of files) {
    const name = relative(mapsDir, file);
    if (RUNTIME_MAPS[name] !== undefined) {
      skipped.push(name);
      continue;
    }
    const dump = await dumpMap(file);
    if (dump.type === BPF_MAP_TYPE_HASH_OF_MAPS || dump.type === BPF_MAP_TYPE_ARRAY_OF_MAPS) {
      maps[name] = dump.entries.map((e) => `${hex(e.key)} => map ${pinOfId.get(e.value.readUInt32LE(0)) ?? "(unpinned)"}`).sort();
    } else raw.set(name, dump.entries);
  }
  for (const [name, entries] of raw) {
    if (name !== LB_MAPS.services && name !== LB_MAPS.backends && name !== LB_MAPS.maglev) maps[name] = lines(entries);
  }
  Object.assign(maps, canonicalLb(raw.get(LB_MAPS.services) ?? [], raw.get(LB_MAPS.backends) ?? [], raw.get(LB_MAPS.maglev) ?? []));
  return { maps, skipped: skipped.sort() };
}

function canonicalLb(services: MapEntry[], backends: MapEntry[], maglev: MapEntry[]): Record<string, string[]> {
  const svc = services.map((e) => ({ k: lb4Key.decode(e.key), v: lb4Service.decode(e.value) }));
  const frontend = (k: { address: string; dport: number; proto: number; scope: number }) => `${k.address}:${k.dport}/${k.proto}${k.scope ? `@${k.scope}` : ""}`;
  // A service id is named by the smallest frontend that carries it.
  const serviceName = new Map<number, string>();
  for (const s of svc) {
    if (s.k.slot !== 0) continue;
    const f = frontend(s.k);
    const prev = serviceName.get(s.v.service_id);
    if (prev === undefined || f < prev) serviceName.set(s.v.service_id, f);
  }
  const sid = (id: number) => serviceName.get(id) ?? `unknown-service#${id}`;
  const backendName = new Map<number, string>();
  const backendLines: string[] = [];
  for (const e of backends) {
    const id = e.key.readUInt32LE(0);
    const b = lb4Backend.decode(e.value);
    const name = `${b.address}:${b.port}/${b.proto}`;
    backendName.set(id, `${name}<${sid(b.service_id)}>`);
    backendLines.push(`${name} of ${sid(b.service_id)} flags=${b.flags}`);
  }
  const bid = (id: number) => backendName.get(id) ?? `missing-backend#${id}`;
  const slots = new Map<string, string[]>();
  const serviceLines: string[] = [];
  for (const s of svc) {
    const f = frontend(s.k);
    if (s.k.slot === 0) {
      serviceLines.push(
        `${f} => service ${sid(s.v.service_id)} count=${s.v.count} flags=${s.v.flags} affinity=${s.v.affinity_timeout} maglev=${s.v.maglev_size}`,
      );
    }
    // A slot says where its backend is (lb4_backends holds only those of services that pick by id).
    const where = slotsOf(s.v.backends, backendIdsOf(s.v.backend_ids).length);
    const names = where.map((w) => `${w.address}:${w.port}/${s.k.proto}<${sid(s.v.service_id)}> flags=${w.flags}`);
    if (names.length > 0) slots.set(f, [...(slots.get(f) ?? []), ...names]);
  }
  for (const [f, list] of slots) serviceLines.push(`${f} slots => ${list.sort().join(" ")}`);
  const maglevLines = maglev.map((e) => {
    const k = lbMaglevKey.decode(e.key);
    const ids: string[] = [];
    for (let off = 0; off + 4 <= e.value.length; off += 4) ids.push(bid(e.value.readUInt32LE(off)));
    return `${sid(k.service_id)} chunk=${k.chunk} scope=${k.scope} => ${ids.join(" ")}`;
  });
  return { [LB_MAPS.services]: serviceLines.sort(), [LB_MAPS.backends]: backendLines.sort(), [LB_MAPS.maglev]: maglevLines.sort() };
}

/** The lines that differ between two dumps, per map ("-" only in a, "+" only in b). */
export function diffDumps(a: NodeMapDump, b: NodeMapDump): string[] {
  const out: string[] = [];
  for (const name of [...new Set([...Object.keys(a.maps), ...Object.keys(b.maps)])].sort()) {
    const x = a.maps[name];
    const y = b.maps[name];
    if (!x || !y) {
      out.push(`${name}: only in ${x ? "the first" : "the second"} dump`);
      continue;
    }
    const ys = new Set(y);
    const xs = new Set(x);
    for (const l of x) if (!ys.has(l)) out.push(`${name}: - ${l}`);
    for (const l of y) if (!xs.has(l)) out.push(`${name}: + ${l}`);
    if (x.length !== y.length && out.length === 0) out.push(`${name}: ${x.length} vs ${y.length} lines (duplicates)`);
  }
  return out;
}
