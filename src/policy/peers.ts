// Which identities a peer selector (endpoint selector, entity, CIDR, FQDN) selects. Entities map to
// reserved identities and labels as in Cilium; CIDR selectors select CIDR identities inside the
// prefix and outside every except; FQDN selectors select identities of names DNS answered for.
// Pure: no I/O.

import { cidrContains } from "./cidr.ts";
import { FIRST_CLUSTER_IDENTITY, type Identity, LOCAL_IDENTITY_SCOPE, RESERVED_IDENTITIES } from "./identity.ts";
import { matchDns } from "./l7/dns.ts";
import type { Peer } from "./rules.ts";
import { CLUSTER_LABEL, matches, type Selector } from "./selectors.ts";

/** Does this peer select every identity, known or future? Then it compiles to identity 0. */
export function isWildcardPeer(p: Peer): boolean {
  return (p.type === "selector" && p.selector.reqs.length === 0) || (p.type === "entity" && p.entity === "all");
}

/** Can this identity be a policy subject (a local endpoint with allocated labels)? */
export function isEndpointIdentity(id: number): boolean {
  return id >= FIRST_CLUSTER_IDENTITY && id < LOCAL_IDENTITY_SCOPE;
}

const CLUSTER_RESERVED = new Set<number>([
  RESERVED_IDENTITIES.host,
  RESERVED_IDENTITIES.unmanaged,
  RESERVED_IDENTITIES.health,
  RESERVED_IDENTITIES.init,
  RESERVED_IDENTITIES["remote-node"],
  RESERVED_IDENTITIES["kube-apiserver"],
]);

function entitySelects(entity: string, id: Identity, clusterName: string): boolean {
  switch (entity) {
    case "all":
      return true;
    case "none":
      return false;
    case "world":
      return id.index.get("world")?.some((l) => l.source === "reserved") ?? false;
    case "cluster":
      return CLUSTER_RESERVED.has(id.id) || (id.index.get(CLUSTER_LABEL)?.some((l) => l.source === "k8s" && l.value === clusterName) ?? false);
    default: {
      const n = RESERVED_IDENTITIES[entity as keyof typeof RESERVED_IDENTITIES];
      return n !== undefined && id.id === n;
    }
  }
}

export function subjectSelects(sel: Selector, id: Identity): boolean {
  return isEndpointIdentity(id.id) && matches(sel, id.index);
}

export function peerSelects(p: Peer, id: Identity, clusterName: string): boolean {
  switch (p.type) {
    case "selector":
      return matches(p.selector, id.index);
    case "entity":
      return entitySelects(p.entity, id, clusterName);
    case "cidr":
      if (id.cidr) return cidrContains(p.cidr, id.cidr) && !p.except.some((e) => id.cidr && cidrContains(e, id.cidr));
      // 0.0.0.0/0 and ::/0 stand for the whole outside world, as in Cilium.
      return p.cidr.bits === 0 && id.id === RESERVED_IDENTITIES.world;
    case "fqdn":
      return (id.fqdns ?? []).some((n) => matchDns(p.doc, n));
  }
}
