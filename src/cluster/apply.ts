// `weft apply` / `weft delete`: the API server's admission step for the local cluster. Validates a
// whole batch first (nothing is written if any document is bad), checks namespaces, allocates
// ClusterIPs and NodePorts, stamps metadata, then writes the store.

import { randomUUID } from "node:crypto";
import { WeftError } from "../core/errors.ts";
import { newIdentityObjects } from "./identities.ts";
import { hashOf } from "./schedule.ts";
import { CLUSTER_SCOPED, type K8sObject, objectKey, type Store } from "./store.ts";

/** Kinds whose objects carry pod labels or namespace labels, and so shape identities. */
const WORKLOAD_KINDS = ["Namespace", "Pod", "Deployment"];

const BUILTIN_NAMESPACES = new Set(["default", "kube-system", "kube-public"]);

interface ServicePort {
  port: number;
  nodePort?: number;
  [k: string]: unknown;
}
interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  ports?: ServicePort[];
  [k: string]: unknown;
}

function ipFromIndex(i: number): string {
  return `10.96.${Math.floor(i / 256)}.${i % 256}`;
}

function allocateServiceFields(o: K8sObject, previous: K8sObject | undefined, services: K8sObject[]): void {
  const spec = o.spec as ServiceSpec;
  const prev = previous?.spec as ServiceSpec | undefined;
  const usedIPs = new Set(services.filter((s) => objectKey(s) !== objectKey(o)).map((s) => (s.spec as ServiceSpec).clusterIP));
  if (spec.clusterIP === undefined || spec.clusterIP === "") {
    if (prev?.clusterIP) spec.clusterIP = prev.clusterIP;
    else {
      // Deterministic first choice (stable across re-creation), then the next free address.
      let i = 16 + (Number.parseInt(hashOf(objectKey(o), 6), 16) % 65000);
      while (usedIPs.has(ipFromIndex(i))) i = 16 + ((i - 15) % 65000);
      spec.clusterIP = ipFromIndex(i);
    }
  } else if (spec.clusterIP !== "None") {
    if (!/^10\.96\.\d{1,3}\.\d{1,3}$/.test(spec.clusterIP)) {
      throw new WeftError("WEFT_MANIFEST_INVALID", `${spec.clusterIP} is not in the service CIDR 10.96.0.0/16`, `${objectKey(o)}: spec.clusterIP`);
    }
    if (usedIPs.has(spec.clusterIP)) {
      throw new WeftError("WEFT_MANIFEST_INVALID", `${spec.clusterIP} is already allocated`, `${objectKey(o)}: spec.clusterIP`);
    }
  }
  if (spec.type === "NodePort" || spec.type === "LoadBalancer") {
    const used = new Set(services.filter((s) => objectKey(s) !== objectKey(o)).flatMap((s) => ((s.spec as ServiceSpec).ports ?? []).map((p) => p.nodePort)));
    let next = 30000;
    spec.ports?.forEach((p, idx) => {
      if (p.nodePort !== undefined) {
        if (used.has(p.nodePort))
          throw new WeftError("WEFT_MANIFEST_INVALID", `nodePort ${p.nodePort} is already allocated`, `${objectKey(o)}: spec.ports[${idx}].nodePort`);
      } else {
        const kept = prev?.ports?.find((q) => q.port === p.port)?.nodePort;
        if (kept !== undefined && !used.has(kept)) p.nodePort = kept;
        else {
          while (used.has(next)) next++;
          p.nodePort = next;
        }
      }
      used.add(p.nodePort);
    });
  }
}

export function admit(store: Store, objects: K8sObject[]): K8sObject[] {
  const namespaces = new Set([
    ...BUILTIN_NAMESPACES,
    ...store.list("Namespace").map((n) => n.metadata.name),
    ...objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name),
  ]);
  const services = store.list("Service");
  const out: K8sObject[] = [];
  for (const o of objects) {
    if (!CLUSTER_SCOPED.has(o.kind) && !namespaces.has(o.metadata.namespace ?? "default")) {
      throw new WeftError(
        "WEFT_MANIFEST_INVALID",
        `namespace "${o.metadata.namespace}" not found (create the Namespace first)`,
        `${objectKey(o)}: metadata.namespace`,
      );
    }
    const previous = store.get(o.kind, o.metadata.namespace, o.metadata.name);
    const copy = structuredClone(o);
    copy.metadata.uid = previous?.metadata.uid ?? randomUUID();
    copy.metadata.creationTimestamp = previous?.metadata.creationTimestamp ?? new Date().toISOString();
    const changed = !previous || hashOf(previous.spec ?? previous.specs ?? null) !== hashOf(o.spec ?? o.specs ?? null);
    copy.metadata.generation = (previous?.metadata.generation ?? 0) + (changed ? 1 : 0);
    if (o.kind === "Service") {
      allocateServiceFields(copy, previous, services);
      services.push(copy);
    }
    out.push(copy);
  }
  return out;
}

export function applyObjects(store: Store, objects: K8sObject[]): { key: string; action: "created" | "configured" | "unchanged" }[] {
  const admitted = admit(store, objects);
  // Number the label sets the new objects bring (cluster-wide identities, written with them).
  const keys = new Set(admitted.map(objectKey));
  const after = [...WORKLOAD_KINDS.flatMap((k) => store.list(k)).filter((o) => !keys.has(objectKey(o))), ...admitted];
  const identities = newIdentityObjects(store.cluster, after, store.list("CiliumIdentity"));
  const result = admitted.map((o) => {
    const previous = store.get(o.kind, o.metadata.namespace, o.metadata.name);
    const same =
      previous &&
      previous.metadata.generation === o.metadata.generation &&
      hashOf([previous.metadata.labels, previous.metadata.annotations]) === hashOf([o.metadata.labels, o.metadata.annotations]);
    const action = !previous ? "created" : same ? "unchanged" : "configured";
    return { key: objectKey(o), action } as const;
  });
  store.write([...admitted, ...identities]);
  return result;
}
