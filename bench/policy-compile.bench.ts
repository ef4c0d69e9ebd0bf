// Policy compiler benchmark: validate and compile 1,000 policies over 5,000 endpoints (200
// identities), then one-policy and one-identity incremental updates. Prints time and memory.
// (Peer ratios — e.g. against Cilium's policy repository — come later, measured in the same run.)

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { PolicyCompiler, selectorCidrs } from "../src/policy/compile.ts";
import { allocateIdentities, type EndpointInput } from "../src/policy/identity.ts";
import type { Policy } from "../src/policy/model.ts";
import { validateDocument } from "../src/policy/validate.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const NAMESPACES = 10;
const APPS = 20;
const ENDPOINTS = 5000;
const POLICIES = 1000;

function endpoints(): EndpointInput[] {
  const out: EndpointInput[] = [];
  for (let i = 0; i < ENDPOINTS; i++) {
    const set = i % 200; // 200 distinct label sets → 200 identities
    out.push({
      namespace: `ns${set % NAMESPACES}`,
      name: `pod-${i}`,
      labels: { app: `app${Math.floor(set / NAMESPACES) % APPS}`, "pod-template-hash": `h${i % 7}` },
    });
  }
  return out;
}

function policyDoc(i: number, variant = 0): object {
  const ns = `ns${i % NAMESPACES}`;
  const app = `app${i % APPS}`;
  const peer = `app${(i * 7 + variant) % APPS}`;
  const kind = i % 10;
  const meta = { name: `p${i}`, namespace: ns };
  if (kind === 9) {
    return {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: meta,
      spec: {
        podSelector: { matchLabels: { app } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: peer } } }], ports: [{ port: 8000 + (i % 100) }] }],
      },
    };
  }
  if (kind === 8) {
    return {
      apiVersion: "cilium.io/v2",
      kind: "CiliumClusterwideNetworkPolicy",
      metadata: { name: `c${i}` },
      spec: {
        endpointSelector: { matchLabels: { app } },
        egressDeny: [{ toCIDRSet: [{ cidr: `10.${i % 256}.0.0/16`, except: [`10.${i % 256}.1.0/24`] }] }],
        egress: [{ toEntities: ["world"] }],
      },
    };
  }
  const toPorts =
    kind < 3
      ? [
          {
            ports: [{ port: String(80 + (i % 20)), protocol: "TCP" }],
            rules: {
              http: [
                { method: "GET", path: `/api/v${i % 3}/.*` },
                { method: "POST", path: "/submit" },
              ],
            },
          },
        ]
      : [
          {
            ports: [
              { port: String(1000 + (i % 500)), endPort: 1100 + (i % 500), protocol: "TCP" },
              { port: "53", protocol: "UDP" },
            ],
          },
        ];
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNetworkPolicy",
    metadata: meta,
    spec: {
      endpointSelector: { matchLabels: { app } },
      ingress: [
        { fromEndpoints: [{ matchLabels: { app: peer } }, { matchLabels: { "k8s:io.kubernetes.pod.namespace": `ns${(i + 1) % NAMESPACES}` } }], toPorts },
      ],
      ...(kind === 4 ? { ingressDeny: [{ fromEntities: ["world"], toPorts: [{ ports: [{ port: "22", protocol: "TCP" }] }] }] } : {}),
      ...(kind === 5 ? { egress: [{ toCIDR: [`192.168.${i % 256}.0/24`] }, { toEndpoints: [{ matchLabels: { app: peer } }] }] } : {}),
    },
  };
}

function heapMiB(): number {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function time<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const r = fn();
  return [r, performance.now() - t0];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const heap0 = heapMiB();
const docs = Array.from({ length: POLICIES }, (_, i) => policyDoc(i));
// The first document of each kind compiles that kind's JSON Schema once; time it apart.
const [, schemaMs] = time(() => {
  for (const i of [0, 8, 9]) validateDocument(policyDoc(i), { file: "warm", document: 1 });
});
const [policies, validateMs] = time(() =>
  docs.map((d, i) => {
    const r = validateDocument(d, { file: `bench-${i}`, document: 1 });
    if (!r.policy) throw new Error(JSON.stringify(r.problems));
    return r.policy as Policy;
  }),
);
const eps = endpoints();
const [alloc, allocMs] = time(() => allocateIdentities({ clusterName: "bench", endpoints: eps, cidrs: selectorCidrs(policies) }));
const endpointIdentities = new Set(alloc.byEndpoint.values()).size;
const [compiler, compileMs] = time(() => {
  const c = new PolicyCompiler({ clusterName: "bench", identities: alloc.table });
  for (const p of policies) c.setPolicy(p);
  c.all();
  return c;
});
const all = compiler.all();
let entries = 0;
let l7Sets = 0;
for (const s of all.values()) {
  entries += s.ingress.entries.length + s.egress.entries.length;
  l7Sets += s.ingress.l7.length + s.egress.l7.length;
}
const heap1 = heapMiB();

// One policy changes (20 times, different policies): its subjects recompile, nothing else.
const updates: number[] = [];
let touched = 0;
for (let k = 0; k < 20; k++) {
  const i = (k * 37) % POLICIES;
  const changed = validateDocument(policyDoc(i, 1 + k), { file: `bench-${i}`, document: 1 }).policy as Policy;
  const before = compiler.stats.subjectsCompiled;
  updates.push(
    time(() => {
      compiler.setPolicy(changed);
      compiler.all();
    })[1],
  );
  touched = Math.max(touched, compiler.stats.subjectsCompiled - before);
}

// One identity appears (a new label set): selectors re-evaluated, touched subjects recompile.
const idUpdates: number[] = [];
let touched2 = 0;
let prev = alloc.table;
for (let k = 0; k < 20; k++) {
  const extra = allocateIdentities({
    clusterName: "bench",
    endpoints: [...eps, { namespace: `ns${k % NAMESPACES}`, name: `new-${k}`, labels: { app: `app${k % APPS}`, canary: `c${k}` } }],
    cidrs: selectorCidrs(policies),
    previous: prev,
  });
  const added = [...extra.table.values()].find((i) => !prev.has(i.id));
  prev = extra.table;
  const before = compiler.stats.subjectsCompiled;
  idUpdates.push(
    time(() => {
      if (added) compiler.setIdentity(added);
      compiler.all();
    })[1],
  );
  touched2 = Math.max(touched2, compiler.stats.subjectsCompiled - before);
}
const updateMs = median(updates);
const identityMs = median(idUpdates);

const line = (k: string, v: string) => process.stdout.write(`${k.padEnd(44)} ${v}\n`);
process.stdout.write(
  `policy-compile: ${POLICIES} policies, ${ENDPOINTS} endpoints, ${endpointIdentities} endpoint identities, ${alloc.table.size} identities in all\n`,
);
line("schema compile (first use of 3 kinds)", `${schemaMs.toFixed(1)} ms`);
line("validate 1,000 documents", `${validateMs.toFixed(1)} ms`);
line("allocate identities", `${allocMs.toFixed(1)} ms`);
line("full compile (every subject, both directions)", `${compileMs.toFixed(1)} ms  (${all.size} subjects, ${entries} map entries, ${l7Sets} L7 sets)`);
line("heap after compile (validated + compiled)", `${(heap1 - heap0).toFixed(1)} MiB`);
line("incremental: one policy changed (median of 20)", `${updateMs.toFixed(2)} ms  (at most ${touched} subject(s) recompiled)`);
line("incremental: one identity added (median of 20)", `${identityMs.toFixed(2)} ms  (at most ${touched2} subject(s) recompiled)`);
line("full compile / one-policy update", `${(compileMs / Math.max(updateMs, 0.001)).toFixed(0)}x`);
