// Read-side view of the cluster's pods, merged from every node's status: what `weft get pods`,
// `weft exec` and the policy tools see.

import { WeftError } from "../core/errors.ts";
import { defaultStateRoot } from "./config.ts";
import { clusterDir, type PodStatusRecord, readNodeStatuses } from "./state.ts";

export interface PodView {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  node: string;
  podIP?: string;
}

export function listPodRecords(cluster: string, stateRoot = defaultStateRoot()): PodStatusRecord[] {
  return readNodeStatuses(clusterDir(cluster, stateRoot)).flatMap((s) => s.pods);
}

export async function listPodViews(cluster: string, stateRoot = defaultStateRoot()): Promise<PodView[]> {
  return listPodRecords(cluster, stateRoot).map((p) => ({
    namespace: p.namespace,
    name: p.name,
    labels: p.desired.labels,
    node: p.node,
    podIP: p.podIP,
  }));
}

/** Finds a pod by name; a Deployment's name alone picks its first ready replica, as kubectl's deploy/NAME. */
export function findPod(cluster: string, namespace: string, name: string, stateRoot = defaultStateRoot()): PodStatusRecord {
  const pods = listPodRecords(cluster, stateRoot).filter((p) => p.namespace === namespace);
  const exact = pods.find((p) => p.name === name && !p.terminating) ?? pods.find((p) => p.name === name);
  if (exact) return exact;
  const deployName = name.startsWith("deploy/") ? name.slice(7) : name.startsWith("deployment/") ? name.slice(11) : undefined;
  if (deployName) {
    const replica = pods
      .filter((p) => p.desired.owner?.name === deployName && !p.terminating)
      .sort((a, b) => Number(b.ready) - Number(a.ready) || a.name.localeCompare(b.name))[0];
    if (replica) return replica;
  }
  throw new WeftError("WEFT_NOT_FOUND", `pod "${name}" not found in namespace "${namespace}"`, `${namespace}/${name}`);
}
