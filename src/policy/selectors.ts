// Label selectors over security labels (Cilium's "source:key=value" labels): parsing selector keys,
// building selectors from matchLabels/matchExpressions, canonical text, and matching label sets.
// Pure: no I/O.

export const LABEL_SOURCES = new Set(["k8s", "reserved", "any", "cidr", "fqdn", "unspec", "container"]);

export interface Label {
  source: string;
  key: string;
  value: string;
}

export type Operator = "In" | "NotIn" | "Exists" | "DoesNotExist";

export interface Requirement {
  /** "any" matches a label of this key from every source. */
  source: string;
  key: string;
  op: Operator;
  values: string[];
}

export interface Selector {
  reqs: Requirement[];
  /** Canonical text: equal selectors have equal text (the cache key). */
  text: string;
}

export const NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
export const NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels.";
export const CLUSTER_LABEL = "io.cilium.k8s.policy.cluster";

/** "k8s:app" → {k8s, app}; "app" → {any, app}; "reserved:host" → {reserved, host}. */
export function parseLabelKey(raw: string): { source: string; key: string } {
  const m = /^([a-z0-9-]+):(.+)$/.exec(raw);
  if (m?.[1] && m[2] && LABEL_SOURCES.has(m[1])) return { source: m[1], key: m[2] };
  return { source: "any", key: raw };
}

/** Parses "source:key=value" (source optional → k8s) as used for identity labels. */
export function parseLabel(raw: string, defaultSource = "k8s"): Label {
  const eq = raw.indexOf("=");
  const k = eq < 0 ? raw : raw.slice(0, eq);
  const value = eq < 0 ? "" : raw.slice(eq + 1);
  const { source, key } = parseLabelKey(k);
  return { source: source === "any" ? defaultSource : source, key, value };
}

export function formatLabel(l: Label): string {
  return `${l.source}:${l.key}${l.value === "" ? "" : `=${l.value}`}`;
}

function reqText(r: Requirement): string {
  return `${r.source}:${r.key} ${r.op}${r.values.length ? ` (${[...r.values].sort().join(",")})` : ""}`;
}

export function makeSelector(reqs: Requirement[]): Selector {
  const sorted = [...reqs].sort((a, b) => (reqText(a) < reqText(b) ? -1 : reqText(a) > reqText(b) ? 1 : 0));
  const dedup: Requirement[] = [];
  for (const r of sorted) if (!dedup.length || reqText(dedup[dedup.length - 1] as Requirement) !== reqText(r)) dedup.push(r);
  return { reqs: dedup, text: dedup.length ? dedup.map(reqText).join(", ") : "{}" };
}

export interface LabelSelectorDoc {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * Builds a selector from a Kubernetes/Cilium label selector. `defaultSource` is the source given to
 * keys written without one ("any" in Cilium selectors, "k8s" for Kubernetes NetworkPolicy), and
 * `keyPrefix` is prepended to every key (namespace selectors select namespace labels).
 */
export function selectorFromDoc(doc: LabelSelectorDoc | undefined, defaultSource = "any", keyPrefix = ""): Requirement[] {
  const reqs: Requirement[] = [];
  for (const [k, v] of Object.entries(doc?.matchLabels ?? {})) {
    const p = keyPrefix ? { source: "k8s", key: keyPrefix + k } : parseLabelKey(k);
    reqs.push({ source: p.source === "any" ? defaultSource : p.source, key: p.key, op: "In", values: [String(v)] });
  }
  for (const e of doc?.matchExpressions ?? []) {
    const p = keyPrefix ? { source: "k8s", key: keyPrefix + e.key } : parseLabelKey(e.key);
    reqs.push({ source: p.source === "any" ? defaultSource : p.source, key: p.key, op: e.operator as Operator, values: e.values ?? [] });
  }
  return reqs;
}

export function hasKey(reqs: Requirement[], key: string): boolean {
  return reqs.some((r) => r.key === key && (r.source === "k8s" || r.source === "any"));
}

/** An identity's labels indexed by key for matching. */
export type LabelIndex = Map<string, Label[]>;

export function indexLabels(labels: Label[]): LabelIndex {
  const m: LabelIndex = new Map();
  for (const l of labels) {
    const list = m.get(l.key);
    if (list) list.push(l);
    else m.set(l.key, [l]);
  }
  return m;
}

export function matches(sel: Selector, labels: LabelIndex): boolean {
  for (const r of sel.reqs) {
    const cands = (labels.get(r.key) ?? []).filter((l) => r.source === "any" || l.source === r.source);
    switch (r.op) {
      case "In":
        if (!cands.some((l) => r.values.includes(l.value))) return false;
        break;
      case "NotIn":
        if (cands.some((l) => r.values.includes(l.value))) return false;
        break;
      case "Exists":
        if (!cands.length) return false;
        break;
      case "DoesNotExist":
        if (cands.length) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
