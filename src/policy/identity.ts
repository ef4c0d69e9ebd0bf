// Security identities: the reserved numbers, the identity of an endpoint's label set, CIDR and FQDN
// identities (local scope, from 1<<24 as Cilium), and a pure, deterministic allocator for tests and
// tools. The cluster's real allocator stores numbers in the cluster; the compiler only reads a table.
// Pure: no I/O.

import { type Cidr, cidrContains, parseCidr } from "./cidr.ts";
import { CLUSTER_LABEL, formatLabel, indexLabels, type Label, type LabelIndex, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX } from "./selectors.ts";

export const RESERVED_IDENTITIES = {
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  "remote-node": 6,
  "kube-apiserver": 7,
} as const;
export type ReservedName = keyof typeof RESERVED_IDENTITIES;

/** First number for identities allocated for endpoint label sets (cluster scope). */
export const FIRST_CLUSTER_IDENTITY = 256;
/** Identities for CIDR and FQDN selectors are node-local: they start here. */
export const LOCAL_IDENTITY_SCOPE = 1 << 24;
/** In a policy map key, identity 0 stands for "any peer". */
export const WILDCARD_IDENTITY = 0;

/** Labels Kubernetes controllers churn; they never go into a security identity. */
const IGNORED_POD_LABELS = new Set(["pod-template-hash", "controller-revision-hash", "pod-template-generation"]);

export interface Identity {
  id: number;
  labels: Label[];
  index: LabelIndex;
  /** Canonical sorted label text: equal label sets have equal text. */
  text: string;
  /** For CIDR identities: the prefix the identity stands for. */
  cidr?: Cidr;
  /** For FQDN identities: the DNS names whose answers the identity stands for. */
  fqdns?: string[];
}

export type IdentityTable = ReadonlyMap<number, Identity>;

export function makeIdentity(id: number, labels: Label[], extra: { cidr?: Cidr; fqdns?: string[] } = {}): Identity {
  const sorted = [...labels].sort((a, b) => (formatLabel(a) < formatLabel(b) ? -1 : 1));
  return { id, labels: sorted, index: indexLabels(sorted), text: sorted.map(formatLabel).join(";"), ...extra };
}

export function reservedIdentities(): Identity[] {
  return Object.entries(RESERVED_IDENTITIES).map(([name, id]) => makeIdentity(id, [{ source: "reserved", key: name, value: "" }]));
}

export interface EndpointInput {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  node?: string;
  podIP?: string;
  /** Container port names, for NetworkPolicy/Cilium named ports. */
  namedPorts?: Record<string, { port: number; protocol?: string }>;
}

export interface NamespaceInput {
  name: string;
  labels?: Record<string, string>;
}

/** The security labels of a pod: its labels, its namespace, its namespace's labels, its cluster. */
export function endpointLabels(ep: EndpointInput, nsLabels: Record<string, string> | undefined, clusterName: string): Label[] {
  const out: Label[] = [];
  for (const [key, value] of Object.entries(ep.labels)) if (!IGNORED_POD_LABELS.has(key)) out.push({ source: "k8s", key, value });
  out.push({ source: "k8s", key: NAMESPACE_LABEL, value: ep.namespace });
  const nsl = { "kubernetes.io/metadata.name": ep.namespace, ...(nsLabels ?? {}) };
  for (const [key, value] of Object.entries(nsl)) out.push({ source: "k8s", key: NAMESPACE_LABELS_PREFIX + key, value });
  out.push({ source: "k8s", key: CLUSTER_LABEL, value: clusterName });
  return out;
}

export function cidrIdentityLabels(c: Cidr): Label[] {
  return [
    { source: "reserved", key: "world", value: "" },
    { source: "cidr", key: c.text, value: "" },
  ];
}

export interface Allocation {
  table: Map<number, Identity>;
  /** "namespace/name" → identity number. */
  byEndpoint: Map<string, number>;
}

function nextFree(used: Set<number>, start: number): number {
  let n = start;
  while (used.has(n)) n++;
  return n;
}

/**
 * Numbers every distinct label set among `endpoints`, every prefix in `cidrs` and every name in
 * `fqdns`. Deterministic; keeps the numbers of `previous` for label sets it already knows.
 */
export function allocateIdentities(opts: {
  clusterName: string;
  endpoints?: EndpointInput[];
  namespaces?: NamespaceInput[];
  cidrs?: Cidr[];
  fqdns?: string[];
  previous?: IdentityTable;
  /** Numbers never to hand out (a store's identities that no endpoint uses any more). */
  taken?: Iterable<number>;
}): Allocation {
  const table = new Map<number, Identity>();
  for (const r of reservedIdentities()) table.set(r.id, r);
  const known = new Map<string, number>();
  const used = new Set<number>([...table.keys(), ...(opts.taken ?? [])]);
  for (const id of opts.previous?.values() ?? []) {
    if (id.id < FIRST_CLUSTER_IDENTITY) continue;
    known.set(id.text, id.id);
  }
  const nsLabels = new Map((opts.namespaces ?? []).map((n) => [n.name, n.labels ?? {}]));
  const byEndpoint = new Map<string, number>();
  const wanted: { identity: Omit<Identity, "id">; local: boolean; endpoint?: string }[] = [];
  for (const ep of opts.endpoints ?? []) {
    const i = makeIdentity(0, endpointLabels(ep, nsLabels.get(ep.namespace), opts.clusterName));
    wanted.push({ identity: i, local: false, endpoint: `${ep.namespace}/${ep.name}` });
  }
  for (const c of opts.cidrs ?? []) wanted.push({ identity: makeIdentity(0, cidrIdentityLabels(c), { cidr: c }), local: true });
  for (const name of opts.fqdns ?? []) {
    const labels: Label[] = [
      { source: "reserved", key: "world", value: "" },
      { source: "fqdn", key: name.toLowerCase().replace(/\.$/, ""), value: "" },
    ];
    wanted.push({ identity: makeIdentity(0, labels, { fqdns: [name.toLowerCase().replace(/\.$/, "")] }), local: true });
  }
  // Keep previous numbers first, then number the rest in label order so runs agree.
  const fresh: typeof wanted = [];
  for (const w of wanted) {
    const prev = known.get(w.identity.text);
    if (prev !== undefined && prev >= LOCAL_IDENTITY_SCOPE === w.local) {
      table.set(prev, { ...w.identity, id: prev });
      used.add(prev);
      if (w.endpoint) byEndpoint.set(w.endpoint, prev);
    } else fresh.push(w);
  }
  fresh.sort((a, b) => (a.identity.text < b.identity.text ? -1 : a.identity.text > b.identity.text ? 1 : 0));
  const byText = new Map<string, number>();
  for (const id of table.values()) byText.set(id.text, id.id);
  for (const w of fresh) {
    let id = byText.get(w.identity.text);
    if (id === undefined) {
      id = nextFree(used, w.local ? LOCAL_IDENTITY_SCOPE + 1 : FIRST_CLUSTER_IDENTITY);
      used.add(id);
      byText.set(w.identity.text, id);
      table.set(id, { ...w.identity, id });
    }
    if (w.endpoint) byEndpoint.set(w.endpoint, id);
  }
  return { table, byEndpoint };
}

/**
 * The identity an outside address carries, as the ipcache's longest-prefix match would give it:
 * the most specific CIDR identity containing it, else world.
 */
export function identityForAddress(table: IdentityTable, address: string): number | undefined {
  const c = parseCidr(address);
  if (typeof c === "string") return undefined;
  let best: Identity | undefined;
  for (const id of table.values()) {
    if (id.cidr && cidrContains(id.cidr, c) && (!best?.cidr || best.cidr.bits < id.cidr.bits)) best = id;
  }
  return best?.id ?? RESERVED_IDENTITIES.world;
}

export function describeIdentity(id: Identity | undefined, n: number): string {
  if (!id) return `${n}`;
  if (n > 0 && n < FIRST_CLUSTER_IDENTITY) return `${n} (reserved:${id.labels[0]?.key ?? "?"})`;
  return `${n} (${id.labels
    .filter((l) => !l.key.startsWith(NAMESPACE_LABELS_PREFIX) && l.key !== CLUSTER_LABEL)
    .map(formatLabel)
    .join(", ")})`;
}
