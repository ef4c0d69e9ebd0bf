// Shared test helpers: build policy documents tersely, validate them (failing loudly on problems),
// and trace a flow through them with the datapath cross-check every trace must pass.

import assert from "node:assert/strict";
import type { AuditConfig } from "../../../src/policy/compile.ts";
import type { EndpointInput, NamespaceInput } from "../../../src/policy/identity.ts";
import type { Policy } from "../../../src/policy/model.ts";
import { parsePortProto } from "../../../src/policy/ports.ts";
import { buildScenario, type PeerSpec } from "../../../src/policy/scenario.ts";
import { type DirectionTrace, type TraceRequest, type TraceResult, traceFlow } from "../../../src/policy/trace.ts";
import { validateDocument } from "../../../src/policy/validate.ts";

/** "app=a,tier=b" → {matchLabels}. */
export function sel(labels = ""): { matchLabels: Record<string, string> } {
  const matchLabels: Record<string, string> = {};
  for (const kv of labels.split(",").filter(Boolean)) {
    const i = kv.indexOf("=");
    matchLabels[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { matchLabels };
}

let counter = 0;
export function cnp(spec: object, opts: { name?: string; namespace?: string } = {}): object {
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNetworkPolicy",
    metadata: { name: opts.name ?? `p${++counter}`, ...(opts.namespace ? { namespace: opts.namespace } : {}) },
    spec,
  };
}
export function ccnp(spec: object | object[], name?: string): object {
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumClusterwideNetworkPolicy",
    metadata: { name: name ?? `c${++counter}` },
    ...(Array.isArray(spec) ? { specs: spec } : { spec }),
  };
}
export function knp(spec: object, opts: { name?: string; namespace?: string } = {}): object {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: opts.name ?? `k${++counter}`, ...(opts.namespace ? { namespace: opts.namespace } : {}) },
    spec,
  };
}

export function validated(docs: object[]): Policy[] {
  return docs.map((d, i) => {
    const r = validateDocument(d, { file: `doc${i}`, document: 1 });
    assert.deepEqual(r.problems, [], "the test's policy is valid");
    return r.policy as Policy;
  });
}

/** "cidr:1.2.3.4" | "entity:world" | "fqdn:a.com" | "pod:ns/name" | "app=a,io.kubernetes.pod.namespace=x". */
export function peer(s: string): PeerSpec {
  if (s.startsWith("cidr:")) return { cidr: s.slice(5) };
  if (s.startsWith("entity:")) return { entity: s.slice(7) };
  if (s.startsWith("fqdn:")) return { fqdn: s.slice(5) };
  if (s.startsWith("pod:")) return { pod: s.slice(4) };
  return { labels: sel(s).matchLabels };
}

export interface Flow {
  src: string;
  dst: string;
  port: string;
  http?: { method: string; path: string; host?: string; headers?: Record<string, string> };
  dns?: string;
  kafka?: { apiKey: string; topic?: string };
  namespaces?: NamespaceInput[];
  pods?: EndpointInput[];
  audit?: AuditConfig;
}

/** The datapath (policy map lookup) must agree with the model on the L3/L4 part of a verdict. */
export function assertDatapathAgrees(d: DirectionTrace): void {
  if (d.verdict !== "ALLOWED" && d.l7 === "none") assert.equal(d.datapath, d.rules.length ? "deny" : "miss", `${d.direction}: ${d.reason}`);
  else if (d.verdict === "ALLOWED" && d.enforced) assert.equal(d.datapath, "allow", `${d.direction}: ${d.reason}`);
  else if (d.l7 !== "none") assert.equal(d.datapath, "allow", `${d.direction}: L7 decisions start from an allow entry`);
  if (d.redirect) assert.equal(d.datapath, "allow");
}

export function traceOf(docs: object[], f: Flow): TraceResult {
  const policies = validated(docs);
  const sc = buildScenario({
    clusterName: "weft",
    policies,
    namespaces: f.namespaces ?? [],
    pods: f.pods ?? [],
    src: peer(f.src),
    dst: peer(f.dst),
    ...(f.audit ? { audit: f.audit } : {}),
  });
  const pp = parsePortProto(f.port);
  if (typeof pp === "string") throw new Error(pp);
  const req: TraceRequest = {
    proto: pp.proto,
    port: pp.port,
    ...(f.http ? { http: f.http } : {}),
    ...(f.dns ? { dns: { name: f.dns } } : {}),
    ...(f.kafka ? { kafka: f.kafka } : {}),
  };
  const r = traceFlow((id) => sc.compiler.subject(id), sc.src, sc.dst, req);
  for (const d of [r.egress, r.ingress]) if (d) assertDatapathAgrees(d);
  return r;
}
