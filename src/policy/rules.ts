// Turns validated policies of all three kinds into one normalized rule form: a subject selector,
// a direction, allow or deny, peers, ports/ICMP types and L7 rules. Applies the namespace defaults
// of namespaced kinds and each kind's default-deny rules here, so the compiler sees one language.
// Pure: no I/O.

import { type Cidr, parseCidr } from "./cidr.ts";
import type { DnsRuleDoc } from "./l7/dns.ts";
import { type CompiledHttpRule, compileHttpRule } from "./l7/http-match.ts";
import type { KafkaRuleDoc } from "./l7/kafka.ts";
import { type CiliumPolicy, type KubeNetworkPolicy, type NetworkPolicyPeerDoc, type PeerRuleDoc, type Policy, policyKey, policyName } from "./model.ts";
import { icmpType, isNumericPort, PORT_PROTOCOLS, PROTO } from "./ports.ts";
import { hasKey, makeSelector, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, type Requirement, type Selector, selectorFromDoc } from "./selectors.ts";

export type Direction = "ingress" | "egress";
export const DIRECTIONS: Direction[] = ["ingress", "egress"];

export type Peer =
  | { type: "selector"; selector: Selector }
  | { type: "entity"; entity: string }
  | { type: "cidr"; cidr: Cidr; except: Cidr[] }
  | { type: "fqdn"; doc: DnsRuleDoc };

export function peerText(p: Peer): string {
  switch (p.type) {
    case "selector":
      return `endpoints ${p.selector.text}`;
    case "entity":
      return `entity ${p.entity}`;
    case "cidr":
      return `cidr ${p.cidr.text}${p.except.length ? ` except ${p.except.map((e) => e.text).join(",")}` : ""}`;
    case "fqdn":
      return `fqdn ${p.doc.matchName !== undefined ? `name=${p.doc.matchName.toLowerCase()}` : ""}${p.doc.matchPattern !== undefined ? `pattern=${p.doc.matchPattern.toLowerCase()}` : ""}`;
  }
}

export type L7Rules = { kind: "http"; rules: CompiledHttpRule[] } | { kind: "kafka"; rules: KafkaRuleDoc[] } | { kind: "dns"; rules: DnsRuleDoc[] };

export interface PortMatch {
  /** IANA protocol numbers this port applies to (ANY → TCP, UDP, SCTP). */
  protos: number[];
  lo: number;
  hi: number;
  /** A named port, resolved per endpoint by the compiler. */
  named?: string;
}

export interface PortRule {
  ports: PortMatch[];
  l7: L7Rules | null;
  path: string;
}

export interface PolicyRef {
  key: string;
  /** "CiliumNetworkPolicy default/allow-api". */
  name: string;
  file?: string;
}

export interface NormRule {
  /** "CiliumNetworkPolicy default/allow-api spec.ingress[0]": how traces name the rule. */
  id: string;
  policy: PolicyRef;
  path: string;
  direction: Direction;
  action: "allow" | "deny";
  /** null: any peer. [] : no peer (an empty Cilium rule selects nothing). */
  peers: Peer[] | null;
  /** null: every protocol and port (unless icmps is set). */
  ports: PortRule[] | null;
  icmps: { proto: number; type: number }[] | null;
}

/** Rules that share one subject selector and default-deny setting (a Cilium rule; a NetworkPolicy). */
export interface RuleSet {
  policy: PolicyRef;
  path: string;
  subject: Selector;
  defaultDeny: Record<Direction, boolean>;
  rules: NormRule[];
}

function nsReq(ns: string): Requirement {
  return { source: "k8s", key: NAMESPACE_LABEL, op: "In", values: [ns] };
}

/** A namespaced policy's endpoint selectors select its own namespace unless they name one. */
function endpointPeer(reqs: Requirement[], namespace: string | undefined): Peer {
  const r = [...reqs];
  if (namespace !== undefined && !hasKey(r, NAMESPACE_LABEL) && !r.some((q) => q.source === "reserved")) r.push(nsReq(namespace));
  return { type: "selector", selector: makeSelector(r) };
}

function portMatches(ports: { port: string; endPort?: number; protocol?: string }[]): PortMatch[] {
  return ports.map((p) => {
    const protos = p.protocol && p.protocol !== "ANY" ? [PROTO[p.protocol as "TCP"]] : [...PORT_PROTOCOLS];
    if (!isNumericPort(p.port)) return { protos, lo: 0, hi: -1, named: p.port };
    const lo = Number(p.port);
    if (lo === 0) return { protos, lo: 0, hi: 65535 };
    return { protos, lo, hi: p.endPort && p.endPort > lo ? p.endPort : lo };
  });
}

function l7Of(rules: NonNullable<PeerRuleDoc["toPorts"]>[number]["rules"]): L7Rules | null {
  if (!rules) return null;
  if (rules.http) return { kind: "http", rules: rules.http.map(compileHttpRule) };
  if (rules.kafka) return { kind: "kafka", rules: rules.kafka };
  if (rules.dns) return { kind: "dns", rules: rules.dns };
  return null;
}

function ciliumPeers(r: PeerRuleDoc, dir: Direction, namespace: string | undefined): Peer[] | null {
  const peers: Peer[] = [];
  let l3 = false;
  const eps = dir === "ingress" ? r.fromEndpoints : r.toEndpoints;
  if (eps?.length) {
    l3 = true;
    for (const s of eps) peers.push(endpointPeer(selectorFromDoc(s, "any"), namespace));
  }
  const cidrs = dir === "ingress" ? r.fromCIDR : r.toCIDR;
  for (const c of cidrs ?? []) {
    l3 = true;
    const p = parseCidr(c);
    if (typeof p !== "string") peers.push({ type: "cidr", cidr: p, except: [] });
  }
  const sets = dir === "ingress" ? r.fromCIDRSet : r.toCIDRSet;
  for (const s of sets ?? []) {
    l3 = true;
    const p = s.cidr !== undefined ? parseCidr(s.cidr) : "";
    if (typeof p === "string") continue;
    const except = (s.except ?? []).map((e) => parseCidr(e)).filter((e): e is Cidr => typeof e !== "string");
    peers.push({ type: "cidr", cidr: p, except });
  }
  const ents = dir === "ingress" ? r.fromEntities : r.toEntities;
  for (const e of ents ?? []) {
    l3 = true;
    peers.push({ type: "entity", entity: e });
  }
  for (const f of r.toFQDNs ?? []) {
    l3 = true;
    peers.push({ type: "fqdn", doc: f });
  }
  if (l3) return peers;
  // No L3 selector: with ports or ICMP types it is an L4-only rule (any peer); empty, it selects nothing.
  return r.toPorts?.length || r.icmps?.length ? null : [];
}

function ciliumRuleSets(p: CiliumPolicy): RuleSet[] {
  const ref: PolicyRef = { key: policyKey(p), name: policyName(p), ...(p.source.file ? { file: p.source.file } : {}) };
  return p.rules.map(({ rule, path }) => {
    const subjectReqs = selectorFromDoc(rule.endpointSelector, "any");
    if (p.namespace !== undefined) subjectReqs.push(nsReq(p.namespace));
    const rules: NormRule[] = [];
    for (const section of ["ingress", "ingressDeny", "egress", "egressDeny"] as const) {
      const dir: Direction = section.startsWith("ingress") ? "ingress" : "egress";
      (rule[section] ?? []).forEach((r, i) => {
        const rp = `${path}.${section}[${i}]`;
        const ports: PortRule[] | null = r.toPorts?.length
          ? r.toPorts.map((pr, j) => ({ ports: portMatches(pr.ports ?? []), l7: l7Of(pr.rules), path: `${rp}.toPorts[${j}]` }))
          : null;
        const icmps = r.icmps?.length
          ? r.icmps.flatMap((ic) =>
              (ic.fields ?? []).map((f) => {
                const fam = f.family ?? "IPv4";
                const t = icmpType(fam, f.type);
                return { proto: fam === "IPv4" ? PROTO.ICMP : PROTO.ICMPV6, type: typeof t === "number" ? t : -1 };
              }),
            )
          : null;
        rules.push({
          id: `${ref.name} ${rp}`,
          policy: ref,
          path: rp,
          direction: dir,
          action: section.endsWith("Deny") ? "deny" : "allow",
          peers: ciliumPeers(r, dir, p.namespace),
          ports,
          icmps,
        });
      });
    }
    const has = (d: Direction) => (rule[d]?.length ?? 0) > 0 || (rule[`${d}Deny`]?.length ?? 0) > 0;
    return {
      policy: ref,
      path,
      subject: makeSelector(subjectReqs),
      defaultDeny: { ingress: rule.enableDefaultDeny?.ingress ?? has("ingress"), egress: rule.enableDefaultDeny?.egress ?? has("egress") },
      rules,
    };
  });
}

function kubePeer(peer: NetworkPolicyPeerDoc, namespace: string): Peer | undefined {
  if (peer.ipBlock) {
    const c = parseCidr(peer.ipBlock.cidr);
    if (typeof c === "string") return undefined;
    return { type: "cidr", cidr: c, except: (peer.ipBlock.except ?? []).map((e) => parseCidr(e)).filter((e): e is Cidr => typeof e !== "string") };
  }
  const reqs = selectorFromDoc(peer.podSelector, "k8s");
  if (peer.namespaceSelector) {
    reqs.push(...selectorFromDoc(peer.namespaceSelector, "k8s", NAMESPACE_LABELS_PREFIX));
    // Only pods live in namespaces: an empty namespaceSelector selects every pod, nothing else.
    reqs.push({ source: "k8s", key: NAMESPACE_LABEL, op: "Exists", values: [] });
  } else reqs.push(nsReq(namespace));
  return { type: "selector", selector: makeSelector(reqs) };
}

function kubeRuleSet(p: KubeNetworkPolicy): RuleSet {
  const ref: PolicyRef = { key: policyKey(p), name: policyName(p), ...(p.source.file ? { file: p.source.file } : {}) };
  const types = p.spec.policyTypes ?? (p.spec.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);
  const rules: NormRule[] = [];
  for (const dir of ["ingress", "egress"] as const) {
    if (!types.includes(dir === "ingress" ? "Ingress" : "Egress")) continue;
    (p.spec[dir] ?? []).forEach((r, i) => {
      const path = `spec.${dir}[${i}]`;
      const peersDoc = dir === "ingress" ? (r as { from?: NetworkPolicyPeerDoc[] }).from : (r as { to?: NetworkPolicyPeerDoc[] }).to;
      const peers = peersDoc?.length ? peersDoc.map((x) => kubePeer(x, p.namespace)).filter((x): x is Peer => x !== undefined) : null;
      const ports: PortRule[] | null = r.ports?.length
        ? [
            {
              path: `${path}.ports`,
              l7: null,
              ports: r.ports.map((pp) => {
                const proto = PROTO[pp.protocol ?? "TCP"];
                if (pp.port === undefined) return { protos: [proto], lo: 0, hi: 65535 };
                if (typeof pp.port === "string") return { protos: [proto], lo: 0, hi: -1, named: pp.port };
                return { protos: [proto], lo: pp.port, hi: pp.endPort ?? pp.port };
              }),
            },
          ]
        : null;
      rules.push({ id: `${ref.name} ${path}`, policy: ref, path, direction: dir, action: "allow", peers, ports, icmps: null });
    });
  }
  return {
    policy: ref,
    path: "spec",
    subject: makeSelector([...selectorFromDoc(p.spec.podSelector, "k8s"), nsReq(p.namespace)]),
    defaultDeny: { ingress: types.includes("Ingress"), egress: types.includes("Egress") },
    rules,
  };
}

export function ruleSets(p: Policy): RuleSet[] {
  return p.kind === "NetworkPolicy" ? [kubeRuleSet(p)] : ciliumRuleSets(p);
}
