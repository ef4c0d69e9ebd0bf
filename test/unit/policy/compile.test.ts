// The compiler against the model: for random policy sets, every (peer, protocol, port) looked up in
// the compiled policy map the way the datapath will gives the model's L3/L4 verdict and redirect.
// And incrementality: a change recompiles only the subjects it touches, with the same result as a
// full compile.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { seededRandom as rng } from "../../../src/core/random.ts";
import { compilePolicies, PolicyCompiler, selectorCidrs } from "../../../src/policy/compile.ts";
import { allocateIdentities, type EndpointInput, makeIdentity, WILDCARD_IDENTITY } from "../../../src/policy/identity.ts";
import { datapathLookup, PolicyMapView } from "../../../src/policy/key.ts";
import type { Policy } from "../../../src/policy/model.ts";
import { PROTO } from "../../../src/policy/ports.ts";
import { traceDirection } from "../../../src/policy/trace.ts";
import { cnp, sel, validated } from "./harness.ts";

export { rng };

const APPS = ["a", "b", "c", "d"];
const PORTS = [0, 22, 53, 79, 80, 81, 443, 1000, 1023, 1024, 2000, 8080, 65535];

function randomPolicy(r: () => number, i: number): object {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const peerPart = (): object => {
    const k = r();
    if (k < 0.35) return { fromEndpoints: [sel(`app=${pick(APPS)}`)] };
    if (k < 0.45) return { fromEntities: [pick(["world", "all", "host", "cluster"])] };
    if (k < 0.55) return { fromCIDRSet: [{ cidr: "10.0.0.0/8", except: r() < 0.5 ? ["10.1.0.0/16"] : [] }] };
    return {};
  };
  const portPart = (deny: boolean): object => {
    const k = r();
    if (k < 0.25) return {};
    if (k < 0.35) return { icmps: [{ fields: [{ type: pick([0, 8]) }] }] };
    const lo = pick([22, 53, 80, 443, 1000, 8080]);
    const range = r() < 0.3;
    const proto = pick(["TCP", "UDP", "ANY", undefined] as const);
    const port = { port: String(lo), ...(range ? { endPort: lo + pick([1, 23, 1000]) } : {}), ...(proto ? { protocol: proto } : {}) };
    const l7 = !deny && !range && proto === "TCP" && r() < 0.4 ? { rules: { http: [{ method: "GET" }] } } : {};
    return { toPorts: [{ ports: [port], ...l7 }] };
  };
  const rules = (deny: boolean) => Array.from({ length: 1 + Math.floor(r() * 2) }, () => ({ ...peerPart(), ...portPart(deny) }));
  const spec: Record<string, unknown> = { endpointSelector: sel(`app=${pick(APPS)}`) };
  if (r() < 0.8) spec.ingress = rules(false);
  if (r() < 0.4) spec.ingressDeny = rules(true);
  if (r() < 0.2) spec.enableDefaultDeny = { ingress: r() < 0.5 };
  return cnp(spec, { name: `rand-${i}` });
}

const coverage = new Set<string>();

describe("compiled policy maps agree with the model", () => {
  for (let seed = 1; seed <= 40; seed++) {
    it(`random policy set #${seed}: every lookup agrees`, () => {
      const r = rng(seed);
      const docs = Array.from({ length: 1 + Math.floor(r() * 5) }, (_, i) => randomPolicy(r, i));
      const policies = validated(docs);
      const eps: EndpointInput[] = APPS.map((a) => ({ namespace: "default", name: a, labels: { app: a } }));
      const alloc = allocateIdentities({ clusterName: "weft", endpoints: eps, cidrs: selectorCidrs(policies) });
      const { subjects } = compilePolicies(policies, { clusterName: "weft", identities: alloc.table });
      const peers = [...alloc.table.keys()];
      let checked = 0;
      const seen = new Set<string>();
      for (const sp of subjects.values()) {
        const view = new PolicyMapView(sp.ingress.entries);
        for (const peer of peers)
          for (const proto of [PROTO.TCP, PROTO.UDP, PROTO.ICMP])
            for (const port of proto === PROTO.ICMP ? [0, 8, 13] : PORTS) {
              const m = traceDirection(sp, "ingress", peer, { proto, port });
              const d = datapathLookup(view, "ingress", peer, proto, port);
              const where = `subject ${sp.identity} peer ${peer} ${proto}/${port}: model ${m.verdict} (${m.reason})`;
              if (m.verdict === "DENIED" && m.rules.length) assert.equal(d.kind, "deny", where);
              else if (m.verdict === "DENIED") assert.equal(d.kind, "miss", where);
              else if (m.rules.length || m.l7 !== "none") {
                assert.equal(d.kind, "allow", where);
                assert.equal(d.redirect, m.redirect, `${where}: redirect`);
              } else assert.equal(d.kind, "miss", where);
              seen.add(`${m.verdict}/${m.redirect}/${d.kind}`);
              checked++;
            }
      }
      assert.ok(checked > 0);
      for (const k of seen) coverage.add(k);
    });
  }
  it("the random sets reached denies, misses, allows and redirects", () => {
    for (const k of ["DENIED/false/deny", "DENIED/false/miss", "ALLOWED/false/allow", "ALLOWED/true/allow"])
      assert.ok(coverage.has(k), `${k} in ${[...coverage].join(" ")}`);
  });
});

describe("incremental compilation", () => {
  const eps: EndpointInput[] = ["web", "api", "db", "cache"].map((a) => ({ namespace: "default", name: a, labels: { app: a } }));
  const base = () =>
    validated([
      cnp({ endpointSelector: sel("app=api"), ingress: [{ fromEndpoints: [sel("app=web")] }] }, { name: "api" }),
      cnp({ endpointSelector: sel("app=db"), ingress: [{ fromEndpoints: [sel("app=api")] }] }, { name: "db" }),
      cnp({ endpointSelector: sel("app=cache"), ingress: [{ fromEndpoints: [sel("app=api")] }] }, { name: "cache" }),
    ]);
  const fresh = (policies: Policy[], table = allocateIdentities({ clusterName: "weft", endpoints: eps }).table) => {
    const c = new PolicyCompiler({ clusterName: "weft", identities: table });
    for (const p of policies) c.setPolicy(p);
    c.all();
    return c;
  };
  const snapshot = (c: PolicyCompiler) =>
    JSON.stringify([...c.all()].map(([id, s]) => [id, s.ingress.entries, s.egress.entries, s.ingress.enforced, s.egress.enforced]));

  it("changing one policy recompiles only the subjects it selects", () => {
    const c = fresh(base());
    const before = c.stats.subjectsCompiled;
    const [changed] = validated([cnp({ endpointSelector: sel("app=db"), ingress: [{ fromEndpoints: [sel("app=web")] }] }, { name: "db" })]);
    c.setPolicy(changed as Policy);
    assert.equal(c.pending().length, 1, "only the db identity is touched");
    c.all();
    assert.equal(c.stats.subjectsCompiled - before, 1);
  });
  it("the incremental result equals a full compile", () => {
    const c = fresh(base());
    const [changed] = validated([cnp({ endpointSelector: sel("app=db"), ingress: [{ fromEndpoints: [sel("app=web")] }] }, { name: "db" })]);
    c.setPolicy(changed as Policy);
    const policies = base()
      .filter((p) => p.name !== "db")
      .concat(changed as Policy);
    assert.equal(snapshot(c), snapshot(fresh(policies)));
  });
  it("deleting a policy frees its subject from default deny", () => {
    const c = fresh(base());
    const db = [...c.all().values()].find((s) => s.selectedBy.some((x) => x.includes("/db")));
    assert.ok(db?.ingress.enforced);
    c.deletePolicy("CiliumNetworkPolicy/default/db");
    assert.equal(c.subject(db.identity)?.ingress.enforced, false);
  });
  it("a new identity selected as a peer recompiles the subjects that select it, and no others", () => {
    const alloc = allocateIdentities({ clusterName: "weft", endpoints: eps });
    const c = fresh(base(), alloc.table);
    const before = c.stats.subjectsCompiled;
    const table = allocateIdentities({
      clusterName: "weft",
      endpoints: [...eps, { namespace: "default", name: "web2", labels: { app: "web", v: "2" } }],
      previous: alloc.table,
    }).table;
    const added = [...table.values()].find((i) => !alloc.table.has(i.id));
    assert.ok(added);
    c.setIdentity(added);
    // api (selects web peers) and the new identity itself: nothing else.
    assert.equal(c.pending().length, 2);
    const api = alloc.byEndpoint.get("default/api") as number;
    c.all();
    assert.equal(c.stats.subjectsCompiled - before, 2);
    assert.ok(
      c.subject(api)?.ingress.entries.some((e) => e.key.identity === added.id),
      "api now admits the new web identity",
    );
  });
  it("removing an identity removes its entries from the subjects that selected it", () => {
    const alloc = allocateIdentities({ clusterName: "weft", endpoints: eps });
    const c = fresh(base(), alloc.table);
    const web = alloc.byEndpoint.get("default/web") as number;
    const api = alloc.byEndpoint.get("default/api") as number;
    assert.ok(c.subject(api)?.ingress.entries.some((e) => e.key.identity === web));
    c.deleteIdentity(web);
    assert.ok(!c.subject(api)?.ingress.entries.some((e) => e.key.identity === web));
  });
  it("a label change moves an identity out of a subject selector", () => {
    const alloc = allocateIdentities({ clusterName: "weft", endpoints: eps });
    const c = fresh(base(), alloc.table);
    const db = alloc.byEndpoint.get("default/db") as number;
    assert.equal(c.subject(db)?.ingress.enforced, true);
    c.setIdentity(
      makeIdentity(db, [
        { source: "k8s", key: "app", value: "db-retired" },
        { source: "k8s", key: "io.kubernetes.pod.namespace", value: "default" },
      ]),
    );
    assert.equal(c.subject(db)?.ingress.enforced, false);
  });
  it("wildcard peers compile to identity 0 rather than one entry per identity", () => {
    const [p] = validated([
      cnp({ endpointSelector: sel("app=api"), ingress: [{ fromEntities: ["all"], toPorts: [{ ports: [{ port: "80", protocol: "TCP" }] }] }] }),
    ]);
    const c = fresh([p as Policy]);
    const api = [...c.all().values()].find((s) => s.ingress.enforced);
    assert.deepEqual(
      api?.ingress.entries.map((e) => e.key.identity),
      [WILDCARD_IDENTITY],
    );
  });
  it("a port range compiles to its LPM prefixes", () => {
    const [p] = validated([cnp({ endpointSelector: sel("app=api"), ingress: [{ toPorts: [{ ports: [{ port: "8080", endPort: 8090, protocol: "TCP" }] }] }] })]);
    const c = fresh([p as Policy]);
    const api = [...c.all().values()].find((s) => s.ingress.enforced);
    // 8080-8087 (/13), 8088-8089 (/15), 8090 (/16)
    assert.deepEqual(
      api?.ingress.entries.map((e) => [e.key.dport, e.key.prefixlen]),
      [
        [8080, 61],
        [8088, 63],
        [8090, 64],
      ],
    );
  });
});
