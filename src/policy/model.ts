// The policy documents as Weft holds them after validation: the three kinds, their rules, and where
// each came from (file, document, JSON path) so every verdict can name the rule that decided.
// Pure: no I/O.

import type { DnsRuleDoc } from "./l7/dns.ts";
import type { HttpRuleDoc } from "./l7/http-match.ts";
import type { KafkaRuleDoc } from "./l7/kafka.ts";
import type { LabelSelectorDoc } from "./selectors.ts";

export interface CidrRuleDoc {
  cidr?: string;
  cidrGroupRef?: string;
  cidrGroupSelector?: LabelSelectorDoc;
  except?: string[];
}

export interface PortProtocolDoc {
  port: string;
  endPort?: number;
  protocol?: "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPV6" | "ANY";
}

export interface PortRuleDoc {
  ports?: PortProtocolDoc[];
  rules?: { http?: HttpRuleDoc[]; kafka?: KafkaRuleDoc[]; dns?: DnsRuleDoc[]; l7proto?: string; l7?: Record<string, string>[] };
  terminatingTLS?: unknown;
  originatingTLS?: unknown;
  serverNames?: string[];
  listener?: unknown;
}

export interface IcmpRuleDoc {
  fields?: { family?: "IPv4" | "IPv6"; type: number | string }[];
}

/** An ingress/egress (allow or deny) section of a Cilium rule; from* and to* fields both appear here. */
export interface PeerRuleDoc {
  fromEndpoints?: LabelSelectorDoc[];
  toEndpoints?: LabelSelectorDoc[];
  fromRequires?: LabelSelectorDoc[];
  toRequires?: LabelSelectorDoc[];
  fromCIDR?: string[];
  toCIDR?: string[];
  fromCIDRSet?: CidrRuleDoc[];
  toCIDRSet?: CidrRuleDoc[];
  fromEntities?: string[];
  toEntities?: string[];
  fromGroups?: unknown[];
  toGroups?: unknown[];
  fromNodes?: LabelSelectorDoc[];
  toNodes?: LabelSelectorDoc[];
  toServices?: unknown[];
  toFQDNs?: DnsRuleDoc[];
  toPorts?: PortRuleDoc[];
  icmps?: IcmpRuleDoc[];
  authentication?: { mode: string };
}

export interface CiliumRuleDoc {
  endpointSelector?: LabelSelectorDoc;
  nodeSelector?: LabelSelectorDoc;
  ingress?: PeerRuleDoc[];
  ingressDeny?: PeerRuleDoc[];
  egress?: PeerRuleDoc[];
  egressDeny?: PeerRuleDoc[];
  labels?: { key: string; value?: string; source?: string }[];
  enableDefaultDeny?: { ingress?: boolean; egress?: boolean };
  description?: string;
  log?: unknown;
}

export interface NetworkPolicyPeerDoc {
  podSelector?: LabelSelectorDoc;
  namespaceSelector?: LabelSelectorDoc;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface NetworkPolicyPortDoc {
  protocol?: "TCP" | "UDP" | "SCTP";
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicySpecDoc {
  podSelector: LabelSelectorDoc;
  policyTypes?: ("Ingress" | "Egress")[];
  ingress?: { from?: NetworkPolicyPeerDoc[]; ports?: NetworkPolicyPortDoc[] }[];
  egress?: { to?: NetworkPolicyPeerDoc[]; ports?: NetworkPolicyPortDoc[] }[];
}

export interface PolicySource {
  /** The file a document came from (absent for cluster objects). */
  file?: string;
  /** 1-based position of the document in its file. */
  document?: number;
}

interface PolicyBase {
  name: string;
  /** Always set for namespaced kinds (defaulted to "default"); absent for clusterwide. */
  namespace?: string;
  source: PolicySource;
  raw: unknown;
}

export interface CiliumPolicy extends PolicyBase {
  kind: "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy";
  /** Each rule with its JSON path: "spec" or "specs[i]". */
  rules: { rule: CiliumRuleDoc; path: string }[];
}

export interface KubeNetworkPolicy extends PolicyBase {
  kind: "NetworkPolicy";
  namespace: string;
  spec: NetworkPolicySpecDoc;
}

export type Policy = CiliumPolicy | KubeNetworkPolicy;

/** "CiliumNetworkPolicy default/allow-api", "CiliumClusterwideNetworkPolicy lockdown". */
export function policyName(p: Pick<Policy, "kind" | "name" | "namespace">): string {
  return p.namespace !== undefined ? `${p.kind} ${p.namespace}/${p.name}` : `${p.kind} ${p.name}`;
}

/** The key a policy is stored under: a change to the same key replaces the policy. */
export function policyKey(p: Pick<Policy, "kind" | "name" | "namespace">): string {
  return `${p.kind}/${p.namespace ?? ""}/${p.name}`;
}
