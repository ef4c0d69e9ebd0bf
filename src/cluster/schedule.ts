// Which pods should run on which node: expands Deployments into replicas, places pods on nodes, and
// keeps an old replica until its replacement is Ready (rolling update with surge, none unavailable).
// Pure: no I/O. Every kubelet runs the same function over the same objects and agrees on the answer.

import { createHash } from "node:crypto";
import type { K8sObject } from "./store.ts";

export interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  workingDir?: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  readinessProbe?: ProbeSpec;
  livenessProbe?: ProbeSpec;
}

export interface ProbeSpec {
  httpGet?: { path?: string; port: number | string; host?: string };
  tcpSocket?: { port: number | string; host?: string };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

export interface PodSpec {
  containers: ContainerSpec[];
  restartPolicy?: "Always" | "OnFailure" | "Never";
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  terminationGracePeriodSeconds?: number;
}

export interface Owner {
  kind: "Deployment";
  name: string;
  templateHash: string;
  index: number;
}

export interface DesiredPod {
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  spec: PodSpec;
  /** Changes whenever the pod must be recreated. */
  specHash: string;
  owner?: Owner;
}

/** What the scheduler needs to know about pods that exist now (from the kubelets' status). */
export interface ExistingPod {
  namespace: string;
  name: string;
  node: string;
  ready: boolean;
  terminating: boolean;
  desired: DesiredPod;
}

export interface NodeInfo {
  name: string;
  labels: Record<string, string>;
}

export function hashOf(value: unknown, length = 10): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, length);
}

function eligibleNodes(spec: PodSpec, nodes: NodeInfo[]): NodeInfo[] {
  if (spec.nodeName) return nodes.filter((n) => n.name === spec.nodeName);
  const sel = spec.nodeSelector ?? {};
  return nodes.filter((n) => Object.entries(sel).every(([k, v]) => n.labels[k] === v));
}

function place(spec: PodSpec, nodes: NodeInfo[], slot: number): string | undefined {
  const eligible = eligibleNodes(spec, nodes);
  if (eligible.length === 0) return spec.nodeName; // unschedulable (or a node that does not exist): Pending
  return eligible[slot % eligible.length]?.name;
}

function slotOf(text: string): number {
  return Number.parseInt(hashOf(text, 8), 16);
}

interface DeploymentSpec {
  replicas?: number;
  template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
}

export function desiredPods(objects: K8sObject[], nodes: NodeInfo[], existing: ExistingPod[] = []): DesiredPod[] {
  const out: DesiredPod[] = [];
  for (const o of objects) {
    const ns = o.metadata.namespace ?? "default";
    if (o.kind === "Pod") {
      const spec = o.spec as PodSpec;
      const node = place(spec, nodes, slotOf(`${ns}/${o.metadata.name}`));
      out.push({
        namespace: ns,
        name: o.metadata.name,
        node: node ?? "",
        labels: o.metadata.labels ?? {},
        spec,
        specHash: hashOf(spec),
      });
    } else if (o.kind === "Deployment") {
      out.push(...deploymentPods(o, ns, nodes, existing));
    }
  }
  return out;
}

function deploymentPods(o: K8sObject, ns: string, nodes: NodeInfo[], existing: ExistingPod[]): DesiredPod[] {
  const d = o.spec as DeploymentSpec;
  const replicas = d.replicas ?? 1;
  const templateHash = hashOf(d.template);
  const labels = { ...(d.template.metadata?.labels ?? {}), "pod-template-hash": templateHash };
  const fresh: DesiredPod[] = [];
  for (let index = 0; index < replicas; index++) {
    const name = `${o.metadata.name}-${templateHash}-${index}`;
    fresh.push({
      namespace: ns,
      name,
      node: place(d.template.spec, nodes, index) ?? "",
      labels,
      spec: d.template.spec,
      specHash: templateHash,
      owner: { kind: "Deployment", name: o.metadata.name, templateHash, index },
    });
  }
  // Old replicas stay until the new replica of the same index is Ready.
  const readyNames = new Set(existing.filter((e) => e.ready && !e.terminating).map((e) => `${e.namespace}/${e.name}`));
  const kept: DesiredPod[] = [];
  for (const e of existing) {
    const owner = e.desired.owner;
    if (!owner || owner.name !== o.metadata.name || e.namespace !== ns || owner.templateHash === templateHash) continue;
    if (e.terminating || owner.index >= replicas) continue;
    const replacement = fresh[owner.index];
    if (replacement && !readyNames.has(`${ns}/${replacement.name}`)) kept.push(e.desired);
  }
  return [...fresh, ...kept];
}
