// The policy compiler: (policies, identity table, named ports, audit settings) → for every subject
// identity and direction, policy map entries for the datapath and L7 rule sets for the proxy.
// Compiles per identity, not per endpoint, and incrementally: a selector cache knows which
// identities each selector selects, so a change to a policy or an identity recompiles only the
// subjects it touches, lazily on the next read. Pure: no I/O.

import type { Cidr } from "./cidr.ts";
import { type Identity, type IdentityTable, WILDCARD_IDENTITY } from "./identity.ts";
import { type PolicyEntry, type PolicyValue, PREFIX_ANY_PORT, PREFIX_ANY_PROTO, rangeToPrefixes } from "./key.ts";
import { type Policy, policyKey } from "./model.ts";
import { isEndpointIdentity, isWildcardPeer, peerSelects, subjectSelects } from "./peers.ts";
import { PROTO } from "./ports.ts";
import { type Direction, type L7Rules, type NormRule, type Peer, peerText, type RuleSet, ruleSets } from "./rules.ts";
import { NAMESPACE_LABEL } from "./selectors.ts";

export type NamedPorts = Record<string, { port: number; protocol?: string }>;

export interface AuditConfig {
  /** Cilium's policy-audit-mode for the whole agent. */
  all?: boolean;
  namespaces?: string[];
  /** Per endpoint: Weft applies it to the endpoint's identity (policy is compiled per identity). */
  identities?: number[];
}

export interface CompileOptions {
  clusterName: string;
  identities: IdentityTable;
  /** Container port names per identity (NetworkPolicy/Cilium named ports). */
  namedPorts?: ReadonlyMap<number, NamedPorts>;
  audit?: AuditConfig;
}

/** One port item of a rule after named ports are resolved. */
export interface PortItem {
  proto: number;
  lo: number;
  hi: number;
  l7: L7Rules | null;
  /** JSON path of the toPorts/icmps entry, for traces. */
  path: string;
}

export interface ResolvedRule {
  rule: NormRule;
  /** Peer identities; 0 = any peer. */
  scopes: number[];
  items: PortItem[];
}

export interface L7Entry {
  /** The peer identity, 0 = any. */
  scope: number;
  /** A rule without L7 rules also allows the peer on this port: every request passes. */
  allowAll: boolean;
  l7: L7Rules | null;
  rule: string;
}

export interface L7Set {
  proto: number;
  port: number;
  /** "conflict": rules of two L7 protocols on one port; the proxy refuses everything (fail closed). */
  kind: "http" | "kafka" | "dns" | "conflict";
  entries: L7Entry[];
}

export interface CompiledDirection {
  /** Default deny: a selecting rule has rules in this direction (or enableDefaultDeny says so). */
  enforced: boolean;
  audit: boolean;
  rules: ResolvedRule[];
  entries: PolicyEntry[];
  l7: L7Set[];
}

export interface SubjectPolicy {
  identity: number;
  /** Policy rule sets that select the subject, e.g. "CiliumNetworkPolicy default/api spec". */
  selectedBy: string[];
  ingress: CompiledDirection;
  egress: CompiledDirection;
  /** cookie - 1 → the rule ids behind an entry. */
  origins: string[];
}

interface CacheEntry {
  peer: Peer;
  subject: boolean;
  ids: Set<number>;
  users: Set<RuleSet>;
}

interface Item {
  scope: number;
  proto: number;
  lo: number;
  hi: number;
  action: "allow" | "deny";
  l7: L7Rules | null;
  rule: string;
}

export interface CompilerStats {
  subjectsCompiled: number;
  selectorEvaluations: number;
}

export class PolicyCompiler {
  private readonly clusterName: string;
  private readonly identities = new Map<number, Identity>();
  private namedPorts: ReadonlyMap<number, NamedPorts>;
  private audit: AuditConfig;
  private readonly policies = new Map<string, RuleSet[]>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly subjectIndex = new Map<number, Set<RuleSet>>();
  private readonly results = new Map<number, SubjectPolicy>();
  private readonly dirty = new Set<number>();
  readonly stats: CompilerStats = { subjectsCompiled: 0, selectorEvaluations: 0 };

  constructor(opts: CompileOptions) {
    this.clusterName = opts.clusterName;
    for (const [id, i] of opts.identities) this.identities.set(id, i);
    this.namedPorts = opts.namedPorts ?? new Map();
    this.audit = opts.audit ?? {};
  }

  // --- inputs ---

  setPolicy(p: Policy): void {
    this.deletePolicy(policyKey(p));
    const sets = ruleSets(p);
    this.policies.set(policyKey(p), sets);
    for (const s of sets) {
      const subj = this.cached(`subject ${s.subject.text}`, { type: "selector", selector: s.subject }, true, s);
      for (const id of subj.ids) {
        this.indexSubject(id).add(s);
        this.dirty.add(id);
      }
      for (const r of s.rules) for (const peer of r.peers ?? []) if (!isWildcardPeer(peer)) this.cached(peerText(peer), peer, false, s);
    }
  }

  deletePolicy(key: string): void {
    const old = this.policies.get(key);
    if (!old) return;
    this.policies.delete(key);
    for (const s of old) {
      const subjKey = `subject ${s.subject.text}`;
      for (const id of this.cache.get(subjKey)?.ids ?? []) {
        this.subjectIndex.get(id)?.delete(s);
        this.dirty.add(id);
      }
      this.release(subjKey, s);
      for (const r of s.rules) for (const peer of r.peers ?? []) this.release(peerText(peer), s);
    }
  }

  setIdentity(identity: Identity): void {
    this.identities.set(identity.id, identity);
    this.reevaluate(identity.id);
  }

  deleteIdentity(id: number): void {
    this.identities.delete(id);
    this.results.delete(id);
    this.reevaluate(id);
    this.dirty.delete(id);
  }

  setNamedPorts(namedPorts: ReadonlyMap<number, NamedPorts>): void {
    this.namedPorts = namedPorts;
    this.invalidateAll();
  }

  setAudit(audit: AuditConfig): void {
    this.audit = audit;
    this.invalidateAll();
  }

  // --- outputs ---

  /** The compiled policy of a subject identity (compiled now if a change touched it). */
  subject(id: number): SubjectPolicy | undefined {
    if (!isEndpointIdentity(id) || !this.identities.has(id)) return undefined;
    if (this.dirty.has(id) || !this.results.has(id)) {
      this.results.set(id, this.compileSubject(id));
      this.dirty.delete(id);
    }
    return this.results.get(id);
  }

  /** Every subject identity's compiled policy. */
  all(): Map<number, SubjectPolicy> {
    const out = new Map<number, SubjectPolicy>();
    for (const id of this.identities.keys()) {
      const s = this.subject(id);
      if (s) out.set(id, s);
    }
    return out;
  }

  /** Subjects a change has touched and that have not been recompiled yet. */
  pending(): number[] {
    return [...this.dirty].filter((id) => this.identities.has(id));
  }

  identity(id: number): Identity | undefined {
    return this.identities.get(id);
  }

  identityTable(): IdentityTable {
    return this.identities;
  }

  // --- the selector cache ---

  private indexSubject(id: number): Set<RuleSet> {
    let s = this.subjectIndex.get(id);
    if (!s) {
      s = new Set();
      this.subjectIndex.set(id, s);
    }
    return s;
  }

  private cached(key: string, peer: Peer, subject: boolean, user: RuleSet): CacheEntry {
    let e = this.cache.get(key);
    if (!e) {
      const ids = new Set<number>();
      for (const i of this.identities.values()) {
        this.stats.selectorEvaluations++;
        if (subject ? subjectSelects(peer.type === "selector" ? peer.selector : { reqs: [], text: "{}" }, i) : peerSelects(peer, i, this.clusterName))
          ids.add(i.id);
      }
      e = { peer, subject, ids, users: new Set() };
      this.cache.set(key, e);
    }
    e.users.add(user);
    return e;
  }

  private release(key: string, user: RuleSet): void {
    const e = this.cache.get(key);
    if (!e) return;
    e.users.delete(user);
    if (!e.users.size) this.cache.delete(key);
  }

  /** An identity appeared, changed or went: update every selector's set; dirty who it touches. */
  private reevaluate(id: number): void {
    const identity = this.identities.get(id);
    if (isEndpointIdentity(id)) this.dirty.add(id);
    for (const e of this.cache.values()) {
      this.stats.selectorEvaluations++;
      const now = identity
        ? e.subject
          ? e.peer.type === "selector" && subjectSelects(e.peer.selector, identity)
          : peerSelects(e.peer, identity, this.clusterName)
        : false;
      if (now === e.ids.has(id)) continue;
      if (now) e.ids.add(id);
      else e.ids.delete(id);
      if (e.subject) {
        for (const s of e.users) {
          if (now) this.indexSubject(id).add(s);
          else this.subjectIndex.get(id)?.delete(s);
        }
        this.dirty.add(id);
      } else {
        for (const s of e.users) for (const subj of this.cache.get(`subject ${s.subject.text}`)?.ids ?? []) this.dirty.add(subj);
      }
    }
  }

  private invalidateAll(): void {
    for (const id of this.identities.keys()) if (isEndpointIdentity(id)) this.dirty.add(id);
  }

  // --- compiling one subject ---

  private isAudited(id: number): boolean {
    if (this.audit.all) return true;
    if (this.audit.identities?.includes(id)) return true;
    const ns = this.identities
      .get(id)
      ?.index.get(NAMESPACE_LABEL)
      ?.find((l) => l.source === "k8s")?.value;
    return ns !== undefined && (this.audit.namespaces?.includes(ns) ?? false);
  }

  private scopesOf(r: NormRule): number[] {
    if (r.peers === null) return [WILDCARD_IDENTITY];
    const out = new Set<number>();
    for (const p of r.peers) {
      if (isWildcardPeer(p)) return [WILDCARD_IDENTITY];
      for (const id of this.cache.get(peerText(p))?.ids ?? []) out.add(id);
    }
    return [...out].sort((a, b) => a - b);
  }

  private resolvePorts(r: NormRule, subject: number): PortItem[] {
    if (r.icmps) return r.icmps.filter((i) => i.type >= 0).map((i) => ({ proto: i.proto, lo: i.type, hi: i.type, l7: null, path: r.path }));
    if (!r.ports) return [{ proto: PROTO.ANY, lo: 0, hi: 65535, l7: null, path: r.path }];
    const out: PortItem[] = [];
    for (const pr of r.ports) {
      for (const pm of pr.ports) {
        if (pm.named === undefined) {
          for (const proto of pm.protos) out.push({ proto, lo: pm.lo, hi: pm.hi, l7: pr.l7, path: pr.path });
          continue;
        }
        // Ingress: the subject's own container ports; egress: the port as any endpoint names it.
        const sources = r.direction === "ingress" ? [this.namedPorts.get(subject)] : [...this.namedPorts.values()];
        const seen = new Set<string>();
        for (const np of sources) {
          const hit = np && Object.hasOwn(np, pm.named) ? np[pm.named] : undefined;
          if (!hit) continue;
          const proto = PROTO[(hit.protocol ?? "TCP").toUpperCase() as "TCP"] ?? PROTO.TCP;
          if (!pm.protos.includes(proto) || seen.has(`${proto}/${hit.port}`)) continue;
          seen.add(`${proto}/${hit.port}`);
          out.push({ proto, lo: hit.port, hi: hit.port, l7: pr.l7, path: pr.path });
        }
      }
    }
    return out;
  }

  private compileSubject(id: number): SubjectPolicy {
    this.stats.subjectsCompiled++;
    const sets = [...(this.subjectIndex.get(id) ?? [])].sort((a, b) => (a.policy.key + a.path < b.policy.key + b.path ? -1 : 1));
    const origins: string[] = [];
    const originIndex = new Map<string, number>();
    const cookie = (ids: string[]) => {
      const k = ids.join("\n");
      let c = originIndex.get(k);
      if (c === undefined) {
        origins.push(k);
        c = origins.length;
        originIndex.set(k, c);
      }
      return c;
    };
    const audit = this.isAudited(id);
    const dir = (d: Direction): CompiledDirection => {
      const rules: ResolvedRule[] = [];
      for (const s of sets) for (const r of s.rules) if (r.direction === d) rules.push({ rule: r, scopes: this.scopesOf(r), items: this.resolvePorts(r, id) });
      const items: Item[] = [];
      for (const rr of rules)
        for (const scope of rr.scopes)
          for (const it of rr.items) items.push({ scope, proto: it.proto, lo: it.lo, hi: it.hi, action: rr.rule.action, l7: it.l7, rule: rr.rule.id });
      return {
        enforced: sets.some((s) => s.defaultDeny[d]),
        audit,
        rules,
        entries: buildEntries(items, d, audit, cookie),
        l7: buildL7Sets(items),
      };
    };
    const ingress = dir("ingress");
    const egress = dir("egress");
    return { identity: id, selectedBy: sets.map((s) => `${s.policy.name} ${s.path}`), ingress, egress, origins };
  }
}

function covers(i: Item, proto: number, port: number): boolean {
  return (i.proto === PROTO.ANY || i.proto === proto) && i.lo <= port && port <= i.hi;
}

function resolveValue(cover: Item[], extra: Item[], audit: boolean): { value: Omit<PolicyValue, "cookie">; origins: string[] } {
  const denies = cover.filter((i) => i.action === "deny");
  if (denies.length) return { value: { deny: true, redirect: false, audit, proxyPort: 0 }, origins: uniq(denies.map((i) => i.rule)) };
  const redirect = cover.some((i) => i.l7) || extra.some((i) => i.l7);
  return { value: { deny: false, redirect, audit: false, proxyPort: 0 }, origins: uniq(cover.map((i) => i.rule)) };
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}

/**
 * Entries that make the datapath's lookup (see key.ts) give the model's answer: within one peer
 * scope the port space is cut where any rule starts or ends, each piece gets deny if any deny covers
 * it (so a longer-prefix allow never hides a broader deny), and equal neighbours are merged before
 * the pieces become LPM prefixes.
 */
function buildEntries(items: Item[], direction: Direction, audit: boolean, cookie: (ids: string[]) => number): PolicyEntry[] {
  const byScope = new Map<number, Item[]>();
  for (const i of items) {
    const l = byScope.get(i.scope);
    if (l) l.push(i);
    else byScope.set(i.scope, [i]);
  }
  const wildAllows = (byScope.get(WILDCARD_IDENTITY) ?? []).filter((i) => i.action === "allow");
  const out: PolicyEntry[] = [];
  const push = (identity: number, protocol: number, dport: number, prefixlen: number, r: ReturnType<typeof resolveValue>) =>
    out.push({ key: { identity, direction, protocol, dport, prefixlen }, value: { ...r.value, cookie: cookie(r.origins) }, origins: r.origins });
  for (const [scope, its] of [...byScope].sort((a, b) => a[0] - b[0])) {
    const l3 = its.filter((i) => i.proto === PROTO.ANY);
    if (l3.length) push(scope, 0, 0, PREFIX_ANY_PROTO, resolveValue(l3, [], audit));
    const protos = [...new Set(its.filter((i) => i.proto !== PROTO.ANY).map((i) => i.proto))].sort((a, b) => a - b);
    for (const proto of protos) {
      const pi = its.filter((i) => i.proto === proto);
      const extra = scope === WILDCARD_IDENTITY ? [] : wildAllows.filter((i) => i.proto === proto || i.proto === PROTO.ANY);
      const points = new Set<number>();
      for (const i of pi) points.add(i.lo).add(i.hi + 1);
      for (const i of extra) if (i.l7) points.add(i.lo).add(i.hi + 1);
      const sorted = [...points].sort((a, b) => a - b);
      const segs: { lo: number; hi: number; r: ReturnType<typeof resolveValue>; sig: string }[] = [];
      for (let k = 0; k + 1 < sorted.length; k++) {
        const lo = sorted[k] as number;
        const hi = (sorted[k + 1] as number) - 1;
        if (lo > 65535) break;
        const cover = pi.filter((i) => covers(i, proto, lo));
        if (!cover.length) continue;
        const r = resolveValue(
          [...cover, ...l3],
          extra.filter((i) => covers(i, proto, lo)),
          audit,
        );
        const sig = `${r.value.deny}/${r.value.redirect}/${r.value.audit}/${r.origins.join("\n")}`;
        const last = segs[segs.length - 1];
        if (last && last.hi + 1 === lo && last.sig === sig) last.hi = hi;
        else segs.push({ lo, hi, r, sig });
      }
      for (const s of segs) {
        for (const p of rangeToPrefixes(s.lo, s.hi)) push(scope, proto, p.port, PREFIX_ANY_PORT + p.bits, s.r);
      }
    }
  }
  return out;
}

function buildL7Sets(items: Item[]): L7Set[] {
  const ports = new Map<string, { proto: number; port: number }>();
  for (const i of items) if (i.action === "allow" && i.l7) for (let p = i.lo; p <= i.hi; p++) ports.set(`${i.proto}/${p}`, { proto: i.proto, port: p });
  const out: L7Set[] = [];
  for (const { proto, port } of [...ports.values()].sort((a, b) => a.proto - b.proto || a.port - b.port)) {
    const entries: L7Entry[] = [];
    for (const i of items)
      if (i.action === "allow" && covers(i, proto, port)) entries.push({ scope: i.scope, allowAll: i.l7 === null, l7: i.l7, rule: i.rule });
    const kinds = new Set(entries.flatMap((e) => (e.l7 ? [e.l7.kind] : [])));
    out.push({ proto, port, kind: kinds.size === 1 ? ([...kinds][0] as L7Set["kind"]) : "conflict", entries });
  }
  return out;
}

/** Every prefix policies select (CIDR selectors and their excepts): each needs a CIDR identity. */
export function selectorCidrs(policies: Policy[]): Cidr[] {
  const out = new Map<string, Cidr>();
  for (const p of policies)
    for (const s of ruleSets(p))
      for (const r of s.rules)
        for (const peer of r.peers ?? [])
          if (peer.type === "cidr") {
            out.set(peer.cidr.text, peer.cidr);
            for (const e of peer.except) out.set(e.text, e);
          }
  return [...out.values()];
}

/** One-shot compile: every subject identity of the table. */
export function compilePolicies(policies: Policy[], opts: CompileOptions): { compiler: PolicyCompiler; subjects: Map<number, SubjectPolicy> } {
  const compiler = new PolicyCompiler(opts);
  for (const p of policies) compiler.setPolicy(p);
  return { compiler, subjects: compiler.all() };
}
