// EndpointSlices: which pod addresses and ports back each Service, computed from the Services and
// the pods' status exactly as Kubernetes' EndpointSlice controller would. Pure: no I/O. The
// service datapath, the DNS server and `weft get endpoints` all use this one computation.

import type { PodStatusRecord } from "./state.ts";
import type { K8sObject } from "./store.ts";

export interface ServicePortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: "TCP" | "UDP" | "SCTP";
  nodePort?: number;
}

export interface ServiceSpec {
  type?: string;
  selector?: Record<string, string>;
  clusterIP?: string;
  ports?: ServicePortSpec[];
  externalIPs?: string[];
  sessionAffinity?: "None" | "ClientIP";
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  externalTrafficPolicy?: "Cluster" | "Local";
  internalTrafficPolicy?: "Cluster" | "Local";
  publishNotReadyAddresses?: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions: { ready: boolean; serving: boolean; terminating: boolean };
  nodeName: string;
  targetRef: { kind: "Pod"; namespace: string; name: string; uid: string };
}

export interface EndpointSlice {
  apiVersion: "discovery.k8s.io/v1";
  kind: "EndpointSlice";
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  addressType: "IPv4";
  endpoints: Endpoint[];
  ports: { name: string; port: number; protocol: string }[];
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The port a service port reaches on one pod, or undefined when a named targetPort is missing there. */
export function resolveTargetPort(p: ServicePortSpec, pod: PodStatusRecord): number | undefined {
  const target = p.targetPort ?? p.port;
  if (typeof target === "number") return target;
  if (/^\d+$/.test(target)) return Number(target);
  for (const c of pod.desired.spec.containers) {
    const found = c.ports?.find((cp) => cp.name === target && (cp.protocol ?? "TCP") === (p.protocol ?? "TCP"));
    if (found) return found.containerPort;
  }
  return undefined;
}

/** Pods that can back a service (an address, not finished), by namespace and by each label and value, in input order. */
function podIndex(pods: PodStatusRecord[]): Map<string, Map<string, PodStatusRecord[]>> {
  const index = new Map<string, Map<string, PodStatusRecord[]>>();
  for (const p of pods) {
    if (!p.podIP || p.phase === "Succeeded" || p.phase === "Failed") continue;
    let byLabel = index.get(p.namespace);
    if (!byLabel) index.set(p.namespace, (byLabel = new Map()));
    for (const [k, v] of Object.entries(p.desired.labels)) {
      const key = `${k}\u0000${v}`;
      const list = byLabel.get(key);
      if (list) list.push(p);
      else byLabel.set(key, [p]);
    }
  }
  return index;
}

export function endpointSlices(services: K8sObject[], pods: PodStatusRecord[]): EndpointSlice[] {
  const out: EndpointSlice[] = [];
  // Candidates come from an index on one of the selector's labels (services × pods would be
  // seconds at 10k services); the full selector is still checked on each, in pod order.
  const index = podIndex(pods);
  for (const svc of services) {
    const spec = (svc.spec ?? {}) as ServiceSpec;
    if (!spec.selector || Object.keys(spec.selector).length === 0) continue; // endpoints managed by hand
    const ns = svc.metadata.namespace ?? "default";
    let candidates: PodStatusRecord[] | undefined;
    for (const [k, v] of Object.entries(spec.selector)) {
      const list = index.get(ns)?.get(`${k}\u0000${v}`) ?? [];
      if (candidates === undefined || list.length < candidates.length) candidates = list;
    }
    const members = (candidates ?? []).filter((p) => selects(spec.selector ?? {}, p.desired.labels));
    // Pods that resolve the ports differently go into different slices, as in Kubernetes.
    const groups = new Map<string, { ports: EndpointSlice["ports"]; endpoints: Endpoint[] }>();
    for (const pod of members) {
      const ports = (spec.ports ?? []).flatMap((p) => {
        const port = resolveTargetPort(p, pod);
        return port === undefined ? [] : [{ name: p.name ?? "", port, protocol: p.protocol ?? "TCP" }];
      });
      const key = JSON.stringify(ports);
      const group = groups.get(key) ?? { ports, endpoints: [] };
      groups.set(key, group);
      const serving = pod.containers.every((c) => c.ready) || (pod.terminating && pod.containers.some((c) => c.state === "running"));
      group.endpoints.push({
        addresses: [pod.podIP as string],
        conditions: {
          ready: (pod.ready || !!spec.publishNotReadyAddresses) && !pod.terminating,
          serving: pod.terminating ? serving : pod.ready,
          terminating: pod.terminating,
        },
        nodeName: pod.node,
        targetRef: { kind: "Pod", namespace: pod.namespace, name: pod.name, uid: pod.uid },
      });
    }
    if (groups.size === 0) groups.set("[]", { ports: [], endpoints: [] });
    let i = 0;
    for (const g of groups.values()) {
      g.endpoints.sort((a, b) => a.targetRef.name.localeCompare(b.targetRef.name));
      out.push({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: { name: `${svc.metadata.name}-${i++}`, namespace: ns, labels: { "kubernetes.io/service-name": svc.metadata.name } },
        addressType: "IPv4",
        endpoints: g.endpoints,
        ports: g.ports,
      });
    }
  }
  return out;
}
