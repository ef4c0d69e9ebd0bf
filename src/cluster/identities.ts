// Cluster-wide security identities for the local cluster: `weft apply` (the admission step) numbers
// every pod label set the objects can produce and stores them as CiliumIdentity objects, so every
// node's agent reads the same numbers and none allocates on its own. Pure: no I/O.

import {
  allocateIdentities,
  type EndpointInput,
  endpointLabels,
  FIRST_CLUSTER_IDENTITY,
  type Identity,
  makeIdentity,
  reservedIdentities,
} from "../policy/identity.ts";
import { formatLabel, parseLabel } from "../policy/selectors.ts";
import type { K8sObject } from "./store.ts";

/** The label sets pods of these objects will carry (Pods, and Deployment templates). */
export function podLabelSets(objects: K8sObject[]): EndpointInput[] {
  const out: EndpointInput[] = [];
  for (const o of objects) {
    const namespace = o.metadata.namespace ?? "default";
    if (o.kind === "Pod") out.push({ namespace, name: o.metadata.name, labels: o.metadata.labels ?? {} });
    if (o.kind === "Deployment") {
      const t = (o.spec as { template?: { metadata?: { labels?: Record<string, string> } } }).template;
      out.push({ namespace, name: `deployment/${o.metadata.name}`, labels: t?.metadata?.labels ?? {} });
    }
  }
  return out;
}

export function identityFromObject(o: K8sObject): Identity {
  const labels = Object.entries((o["security-labels"] ?? {}) as Record<string, string>).map(([k, v]) => parseLabel(v === "" ? k : `${k}=${v}`));
  return makeIdentity(Number(o.metadata.name), labels);
}

export function identityTable(stored: K8sObject[]): Map<number, Identity> {
  const table = new Map<number, Identity>();
  for (const r of reservedIdentities()) table.set(r.id, r);
  for (const o of stored) if (o.kind === "CiliumIdentity") table.set(Number(o.metadata.name), identityFromObject(o));
  return table;
}

function toObject(id: Identity): K8sObject {
  const security: Record<string, string> = {};
  for (const l of id.labels) security[formatLabel({ ...l, value: "" })] = l.value;
  return { apiVersion: "cilium.io/v2", kind: "CiliumIdentity", metadata: { name: String(id.id) }, "security-labels": security };
}

/**
 * New CiliumIdentity objects for label sets that `all` (the store's objects after this apply) can
 * produce and that have no number yet. Known numbers never change.
 */
export function newIdentityObjects(cluster: string, all: K8sObject[], stored: K8sObject[]): K8sObject[] {
  const previous = identityTable(stored);
  const namespaces = all.filter((o) => o.kind === "Namespace").map((n) => ({ name: n.metadata.name, labels: n.metadata.labels ?? {} }));
  // Stored numbers are never reused, even when no object produces their labels any more: their
  // CiliumIdentity objects stay, and a number must keep meaning one label set everywhere.
  const { table } = allocateIdentities({ clusterName: cluster, endpoints: podLabelSets(all), namespaces, previous, taken: previous.keys() });
  return [...table.values()].filter((id) => id.id >= FIRST_CLUSTER_IDENTITY && !previous.has(id.id)).map(toObject);
}

/** The identity of a pod with these labels, by its label text; undefined when not allocated. */
export function identityOfPod(
  table: Map<number, Identity>,
  cluster: string,
  pod: EndpointInput,
  nsLabels: Record<string, string> | undefined,
): number | undefined {
  const text = makeIdentity(0, endpointLabels(pod, nsLabels, cluster)).text;
  for (const id of table.values()) if (id.text === text) return id.id;
  return undefined;
}
