// State-of-the-world ADS bookkeeping, the server's functional core: versioned snapshots (a type's
// version is a hash of its content, so it changes exactly when the content does) and, per stream,
// subscriptions, nonces, ACK/NACK and the choice of the next response in warming order.
// Pure: no I/O (the server in server.ts feeds it requests and sends what it returns).

import { createHash } from "node:crypto";
import type { AnyResource, Ref } from "./resources.ts";
import { TYPE, WARMING_ORDER, WILDCARD_TYPES } from "./resources.ts";

export interface EncodedResource {
  name: string;
  any: AnyResource;
  refs: Ref[];
}

export interface Snapshot {
  /** typeUrl → name → resource. */
  types: Map<string, Map<string, EncodedResource>>;
  /** typeUrl → version; a type absent from the snapshot has the version of the empty set. */
  versions: Map<string, string>;
}

const EMPTY_VERSION = versionOf([]);

function versionOf(resources: EncodedResource[]): string {
  const h = createHash("sha256");
  for (const r of [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    h.update(`${r.name.length}:${r.name}:${r.any.value.length}:`);
    h.update(r.any.value);
  }
  return h.digest("hex").slice(0, 16);
}

export function buildSnapshot(resources: (EncodedResource & { typeUrl: string })[]): Snapshot {
  const types = new Map<string, Map<string, EncodedResource>>();
  for (const r of resources) {
    let m = types.get(r.typeUrl);
    if (!m) types.set(r.typeUrl, (m = new Map()));
    if (m.has(r.name)) throw new Error(`duplicate ${r.typeUrl} resource "${r.name}"`);
    m.set(r.name, { name: r.name, any: r.any, refs: r.refs });
  }
  const versions = new Map<string, string>();
  for (const [t, m] of types) versions.set(t, versionOf([...m.values()]));
  return { types, versions };
}

export function snapshotVersion(s: Snapshot | undefined, typeUrl: string): string {
  return s?.versions.get(typeUrl) ?? EMPTY_VERSION;
}

export interface Request {
  typeUrl: string;
  versionInfo: string;
  resourceNames: string[];
  nonce: string;
  errorDetail?: string;
}

export type RequestVerdict =
  | { kind: "initial" }
  | { kind: "ack"; version: string }
  | { kind: "nack"; version: string; detail: string }
  /** A nonce that is not the latest sent for the type: the client has not seen our newest response yet; ignored. */
  | { kind: "stale" };

export interface Response {
  typeUrl: string;
  version: string;
  nonce: string;
  resources: AnyResource[];
  names: string[];
  /** Sent although its dependencies had not been acknowledged, after waiting warmWaitMs. */
  forced: boolean;
}

interface TypeState {
  requested: boolean;
  wildcard: boolean;
  names: Set<string>;
  sent?: { version: string; nonce: string; names: string[] };
  acked?: { version: string; names: Set<string> };
  nacked?: { version: string; detail: string };
  blockedSince?: number;
}

export interface TypeStatus {
  subscribed: string[] | "*";
  sentVersion?: string;
  ackedVersion?: string;
  nacked?: { version: string; detail: string };
}

export class SotwStream {
  private readonly types = new Map<string, TypeState>();
  private nonces = 0;

  constructor(
    /** Prefix that makes nonces unique across streams and server restarts. */
    private readonly noncePrefix: string,
    /** How long a type waits for the clusters and endpoints it references before it is sent anyway. */
    private readonly warmWaitMs = 5000,
  ) {}

  private state(typeUrl: string): TypeState {
    let s = this.types.get(typeUrl);
    if (!s) this.types.set(typeUrl, (s = { requested: false, wildcard: false, names: new Set() }));
    return s;
  }

  onRequest(r: Request): RequestVerdict {
    const s = this.state(r.typeUrl);
    if (r.nonce && r.nonce !== s.sent?.nonce) return { kind: "stale" };
    s.requested = true;
    s.wildcard = WILDCARD_TYPES.has(r.typeUrl) ? r.resourceNames.length === 0 || r.resourceNames.includes("*") : r.resourceNames.includes("*");
    s.names = new Set(r.resourceNames.filter((n) => n !== "*"));
    if (!r.nonce || !s.sent) return { kind: "initial" };
    if (r.errorDetail !== undefined) {
      s.nacked = { version: s.sent.version, detail: r.errorDetail };
      return { kind: "nack", version: s.sent.version, detail: r.errorDetail };
    }
    s.acked = { version: s.sent.version, names: new Set(s.sent.names) };
    return { kind: "ack", version: s.sent.version };
  }

  private namesFor(snap: Snapshot, typeUrl: string, s: TypeState): string[] {
    const all = snap.types.get(typeUrl);
    if (!all) return [];
    const names = s.wildcard ? [...all.keys()] : [...s.names].filter((n) => all.has(n));
    return names.sort();
  }

  private ackedHas(snap: Snapshot, typeUrl: string, name: string): boolean {
    const s = this.types.get(typeUrl);
    return s?.acked?.version === snapshotVersion(snap, typeUrl) && s.acked.names.has(name);
  }

  private covers(typeUrl: string, name: string): boolean {
    const s = this.types.get(typeUrl);
    return !!s?.requested && (s.wildcard || s.names.has(name));
  }

  /**
   * A cluster is ready on the client when the client takes it from us and has acknowledged it, and
   * (for EDS) its endpoints. A client that has not subscribed to it (gRPC's proxyless client asks
   * for clusters only after routes) is never waited for.
   */
  private clusterReady(snap: Snapshot, name: string): boolean {
    const c = snap.types.get(TYPE.cluster)?.get(name);
    if (!c || !this.covers(TYPE.cluster, name)) return true;
    if (!this.ackedHas(snap, TYPE.cluster, name)) return false;
    for (const ref of c.refs) {
      if (!snap.types.get(ref.typeUrl)?.has(ref.name)) continue;
      if (!this.ackedHas(snap, ref.typeUrl, ref.name)) return false;
    }
    return true;
  }

  private blocked(snap: Snapshot, typeUrl: string, names: string[]): boolean {
    if (typeUrl === TYPE.cluster) return false;
    const all = snap.types.get(typeUrl);
    for (const n of names) for (const ref of all?.get(n)?.refs ?? []) if (ref.typeUrl === TYPE.cluster && !this.clusterReady(snap, ref.name)) return true;
    return false;
  }

  /**
   * The next response this stream needs, or undefined. Types go in warming order (clusters,
   * endpoints, L7 policy, listeners, routes); a NACKed version is not sent again on this stream
   * until the type's content changes; listeners and routes wait (up to warmWaitMs) for the
   * clusters they reference. `wakeAt` says when a waiting type should be looked at again.
   */
  next(snap: Snapshot | undefined, now: number): { response?: Response; wakeAt?: number } {
    if (!snap) return {};
    const order = [...WARMING_ORDER, ...[...this.types.keys()].filter((t) => !WARMING_ORDER.includes(t)).sort()];
    let wakeAt: number | undefined;
    for (const typeUrl of order) {
      const s = this.types.get(typeUrl);
      if (!s?.requested) continue;
      const version = snapshotVersion(snap, typeUrl);
      const names = this.namesFor(snap, typeUrl, s);
      const fresh = !s.sent || s.sent.version !== version || s.sent.names.join("\0") !== names.join("\0");
      if (!fresh) continue;
      if (s.nacked?.version === version) continue;
      let forced = false;
      if (this.blocked(snap, typeUrl, names)) {
        s.blockedSince ??= now;
        if (now - s.blockedSince < this.warmWaitMs) {
          const at = s.blockedSince + this.warmWaitMs;
          wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at);
          continue;
        }
        forced = true;
      }
      s.blockedSince = undefined;
      const nonce = `${this.noncePrefix}-${++this.nonces}`;
      s.sent = { version, nonce, names };
      const all = snap.types.get(typeUrl);
      const resources = names.map((n) => all?.get(n)?.any).filter((a): a is AnyResource => a !== undefined);
      return { response: { typeUrl, version, nonce, resources, names, forced } };
    }
    return wakeAt === undefined ? {} : { wakeAt };
  }

  status(): Record<string, TypeStatus> {
    const out: Record<string, TypeStatus> = {};
    for (const [t, s] of this.types) {
      if (!s.requested) continue;
      out[t] = {
        subscribed: s.wildcard ? "*" : [...s.names].sort(),
        ...(s.sent ? { sentVersion: s.sent.version } : {}),
        ...(s.acked ? { ackedVersion: s.acked.version } : {}),
        ...(s.nacked ? { nacked: s.nacked } : {}),
      };
    }
    return out;
  }
}
