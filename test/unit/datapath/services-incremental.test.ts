// The incremental service computation (LbModel in src/datapath/services.ts): a change recomputes
// and writes only what it touches, and after every update the state, problems, ids and map
// contents equal a from-scratch desiredLb on the same inputs given the same ids.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { seededRandom as rng } from "../../../src/core/random.ts";
import { type EncodedMapBatch, encodeMapBatch, type MapWrite } from "../../../src/datapath/loader.ts";
import { backendIdsOf, LB_MAPS, lb4Backend, lb4Key, lb4Service, SLOTS_PER_ENTRY, SVC_AFFINITY, SVC_MAGLEV, slotsOf } from "../../../src/datapath/maps/lb.ts";
import {
  desiredLb,
  type EndpointInput,
  type EndpointSliceInput,
  emptyContents,
  idsOf,
  type LbContents,
  LbModel,
  lbContents,
  lbDiff,
  type ServiceInput,
} from "../../../src/datapath/services.ts";

const pin = (m: string) => `/pins/maps/${m}`;

function apply(contents: LbContents, ops: MapWrite[]): LbContents {
  const maps: Record<string, Map<string, Buffer>> = {
    [pin(LB_MAPS.services)]: new Map(contents.services),
    [pin(LB_MAPS.backends)]: new Map(contents.backends),
    [pin(LB_MAPS.maglev)]: new Map(contents.maglev),
  };
  for (const op of ops) {
    const m = maps[op.map] as Map<string, Buffer>;
    if (op.op === "update") m.set(op.key.toString("hex"), op.value);
    else m.delete(op.key.toString("hex"));
  }
  return {
    services: maps[pin(LB_MAPS.services)] as Map<string, Buffer>,
    backends: maps[pin(LB_MAPS.backends)] as Map<string, Buffer>,
    maglev: maps[pin(LB_MAPS.maglev)] as Map<string, Buffer>,
  };
}

/** The service id an lb4_services or lb4_backends write belongs to. */
function serviceIdOf(op: MapWrite, before: LbContents): number {
  const value = op.op === "update" ? op.value : (op.map === pin(LB_MAPS.services) ? before.services : before.backends).get(op.key.toString("hex"));
  assert.ok(value, "a delete names a key that was there");
  return op.map === pin(LB_MAPS.services) ? lb4Service.decode(value).service_id : lb4Backend.decode(value).service_id;
}

const svc = (name: string, clusterIP: string, extra: Partial<NonNullable<ServiceInput["spec"]>> = {}): ServiceInput => ({
  metadata: { namespace: "default", name },
  spec: { clusterIP, ports: [{ port: 80, targetPort: 8080 }], ...extra },
});
const ep = (ip: string, cond: EndpointInput["conditions"] = {}, nodeName = "n1"): EndpointInput => ({ addresses: [ip], conditions: cond, nodeName });
const slice = (service: string, ips: string[]): EndpointSliceInput => ({
  metadata: { namespace: "default", name: `${service}-0`, labels: { "kubernetes.io/service-name": service } },
  addressType: "IPv4",
  endpoints: ips.map((ip) => ep(ip)),
  ports: [{ name: "", port: 8080, protocol: "TCP" }],
});

function fleet(n: number): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
  const services: ServiceInput[] = [];
  const slices: EndpointSliceInput[] = [];
  for (let i = 1; i <= n; i++) {
    services.push(svc(`s${i}`, `10.96.1.${i}`));
    slices.push(slice(`s${i}`, [`10.200.${i}.1`, `10.200.${i}.2`]));
  }
  return { services, slices };
}

/** One update, checked against a from-scratch computation; returns the writes and the new contents. */
function step(model: LbModel, contents: LbContents, services: ServiceInput[], slices: EndpointSliceInput[], node?: string) {
  const idsBefore = model.ids();
  const u = model.update(services, slices);
  const scratch = desiredLb(services, slices, { ...(node ? { node } : {}), previous: idsBefore });
  assert.deepEqual(u.state, scratch.state);
  assert.deepEqual(u.problems, scratch.problems);
  const ops = lbDiff(u.before, u.after, pin);
  // The encoded batch the sync sends is exactly these writes (encoded straight from the computed
  // entries when the recomputed services held nothing before, as from empty).
  const batch = u.encode(pin);
  assert.equal(batch.records, ops.length);
  assert.ok(batch.bytes.equals(encodeMapBatch(ops)), "the encoded batch is lbDiff's writes, byte for byte");
  const next = apply(contents, ops);
  assert.deepEqual(next, lbContents(scratch.state), "the incremental writes reach the from-scratch contents");
  assert.deepEqual(model.contents(), next);
  const ids = model.ids();
  const want = idsOf(scratch.state);
  assert.deepEqual(ids.services, want.services);
  assert.deepEqual(ids.backends, want.backends);
  return { u, ops, contents: next, idsBefore };
}

describe("incremental service computation", () => {
  const node = "n1";

  it("nothing changed: nothing recomputed, nothing written", () => {
    const model = new LbModel({ node });
    const f = fleet(20);
    const first = step(model, emptyContents(), f.services, f.slices, node);
    assert.equal(first.u.recomputed, 20);
    const again = step(model, first.contents, fleet(20).services, fleet(20).slices, node); // equal inputs, new objects
    assert.equal(again.u.recomputed, 0);
    assert.deepEqual(again.ops, []);
  });

  it("one service's EndpointSlice changes: only that service is recomputed, only its keys are written", () => {
    const model = new LbModel({ node });
    const f = fleet(50);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const sid = s.u.state.frontends.find((fe) => fe.service === "default/s7:80")?.serviceId;
    f.slices[6] = slice("s7", ["10.200.7.1", "10.200.7.9", "10.200.7.10"]);
    const t = step(model, s.contents, f.services, f.slices, node);
    assert.equal(t.u.recomputed, 1);
    assert.ok(t.ops.length > 0);
    for (const op of t.ops) assert.equal(serviceIdOf(op, s.contents), sid);
    // The entry alone (its backends, their addresses and its count: one write): a service that
    // picks at random has no lb4_backends records.
    assert.equal(t.ops.length, 1);
    assert.equal(t.ops[0]?.map, pin(LB_MAPS.services));
  });

  it("a removed service: exactly its keys are deleted", () => {
    const model = new LbModel({ node });
    const f = fleet(30);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const sid = s.u.state.frontends.find((fe) => fe.service === "default/s3:80")?.serviceId;
    const mine = (c: LbContents) =>
      [...c.services.entries()].filter(([, v]) => lb4Service.decode(v).service_id === sid).length +
      [...c.backends.entries()].filter(([, v]) => lb4Backend.decode(v).service_id === sid).length;
    const t = step(
      model,
      s.contents,
      f.services.filter((x) => x.metadata.name !== "s3"),
      f.slices,
      node,
    );
    assert.equal(t.u.recomputed, 1);
    assert.ok(t.ops.every((o) => o.op === "delete"));
    assert.equal(t.ops.length, mine(s.contents));
    assert.equal(mine(t.contents), 0);
  });

  it("an edit of an input object in place is seen (inputs are compared, not trusted by identity)", () => {
    const model = new LbModel({ node });
    const f = fleet(5);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const ports = f.services[2]?.spec?.ports;
    assert.ok(ports?.[0]);
    ports[0].port = 81;
    const t = step(model, s.contents, f.services, f.slices, node);
    assert.equal(t.u.recomputed, 1);
    assert.ok(t.ops.some((o) => o.op === "delete") && t.ops.some((o) => o.op === "update"));
  });

  it("fields the computation does not read change nothing", () => {
    const model = new LbModel({ node });
    const f = fleet(5);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const edited = f.services.map((x) => ({ ...x, metadata: { ...x.metadata, annotations: { "example.com/owner": "team-a" } } }));
    const t = step(model, s.contents, edited, f.slices, node);
    assert.equal(t.u.recomputed, 0);
  });

  it("a frontend taken by an earlier service, and released again: both services are recomputed", () => {
    const model = new LbModel({ node });
    const f = fleet(5);
    let s = step(model, emptyContents(), f.services, f.slices, node);
    // "a0" sorts first and claims s4's ClusterIP: s4 loses its frontend and reports it.
    const withClash = [svc("a0", "10.96.1.4"), ...f.services];
    s = step(model, s.contents, withClash, f.slices, node);
    assert.equal(s.u.recomputed, 2);
    assert.deepEqual(
      s.u.problems.map((p) => `${p.service}:${p.port}: ${p.reason}`),
      ["default/s4:80: 10.96.1.4:80/TCP is already a frontend of default/a0:80"],
    );
    s = step(model, s.contents, f.services, f.slices, node);
    assert.equal(s.u.recomputed, 2);
    assert.deepEqual(s.u.problems, []);
  });

  it("a service replaced by another on the same address keeps the service id (as from scratch)", () => {
    const model = new LbModel({ node });
    const f = fleet(3);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const before = s.u.state.frontends.find((fe) => fe.address === "10.96.1.2")?.serviceId;
    const replaced = [f.services[0] as ServiceInput, svc("z-new", "10.96.1.2"), f.services[2] as ServiceInput];
    const t = step(model, s.contents, replaced, f.slices, node);
    assert.equal(t.u.state.frontends.find((fe) => fe.address === "10.96.1.2")?.serviceId, before);
  });

  it("ids are never reused: a backend that comes back after a removal gets a new id", () => {
    const model = new LbModel({ node });
    const f = fleet(2);
    const s = step(model, emptyContents(), f.services, f.slices, node);
    const idOf = (st: typeof s, ip: string) => st.u.state.backends.find((b) => b.address === ip)?.id;
    const old = idOf(s, "10.200.1.2");
    f.slices[0] = slice("s1", ["10.200.1.1"]);
    const t = step(model, s.contents, f.services, f.slices, node);
    f.slices[0] = slice("s1", ["10.200.1.1", "10.200.1.2"]);
    const u = step(model, t.contents, f.services, f.slices, node);
    assert.notEqual(idOf(u, "10.200.1.2"), old);
    assert.ok((idOf(u, "10.200.1.2") as number) > Math.max(...s.u.state.backends.map((b) => b.id)));
  });
});

// ---- random edit sequences ------------------------------------------------------------------------

interface Shape {
  name: string;
  ip: number;
  type: "ClusterIP" | "NodePort";
  nodePort: number;
  port: number;
  udp: boolean;
  named: boolean;
  affinity: boolean;
  maglev: 0 | 7 | 13 | 4;
  itpLocal: boolean;
  etpLocal: boolean;
  external: number[];
  /** endpoint i: [address suffix, state (0 ready, 1 terminating, 2 not ready), node] */
  endpoints: [number, number, string][];
  sliceTarget: number | null;
}

function build(shapes: Shape[]): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
  const services: ServiceInput[] = [];
  const slices: EndpointSliceInput[] = [];
  for (const s of shapes) {
    const proto = s.udp ? "UDP" : "TCP";
    services.push({
      metadata: {
        namespace: "default",
        name: s.name,
        ...(s.maglev ? { annotations: { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": String(s.maglev) } } : {}),
      },
      spec: {
        type: s.type,
        clusterIP: `10.96.0.${s.ip}`,
        ...(s.external.length ? { externalIPs: s.external.map((e) => `192.0.2.${e}`) } : {}),
        ports: [{ port: s.port, targetPort: s.named ? "http" : 8080, protocol: proto, ...(s.type === "NodePort" ? { nodePort: s.nodePort } : {}) }],
        ...(s.affinity ? { sessionAffinity: "ClientIP" } : {}),
        ...(s.itpLocal ? { internalTrafficPolicy: "Local" } : {}),
        ...(s.etpLocal ? { externalTrafficPolicy: "Local" } : {}),
      },
    });
    if (s.sliceTarget === null) continue;
    slices.push({
      metadata: { namespace: "default", name: `${s.name}-0`, labels: { "kubernetes.io/service-name": s.name } },
      addressType: "IPv4",
      endpoints: s.endpoints.map(([a, st, n]) =>
        ep(`10.200.0.${a}`, st === 0 ? {} : st === 1 ? { ready: false, serving: true, terminating: true } : { ready: false, serving: false }, n),
      ),
      ports: [{ name: "", port: s.sliceTarget, protocol: proto }],
    });
  }
  return { services, slices };
}

describe("incremental equals from scratch over random edit sequences", () => {
  for (const seed of [1, 2, 3]) {
    it(`200 random edits (seed ${seed}): state, problems, ids and contents equal a from-scratch compute`, () => {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
      const int = (n: number) => Math.floor(r() * n);
      let counter = 0;
      const fresh = (): Shape => ({
        name: `svc-${String(counter++).padStart(3, "0")}`,
        ip: 1 + int(25), // a small pool: clashes happen
        type: "ClusterIP",
        nodePort: 30000 + int(6),
        port: pick([80, 443]),
        udp: false,
        named: false,
        affinity: false,
        maglev: 0,
        itpLocal: false,
        etpLocal: false,
        external: [],
        endpoints: [
          [1 + int(40), 0, "n1"],
          [1 + int(40), 0, "n2"],
        ],
        sliceTarget: 8080,
      });
      const shapes: Shape[] = Array.from({ length: 20 }, fresh);
      const node = "n1";
      const model = new LbModel({ node });
      let contents = emptyContents();
      let prevIds = new Map<string, number>();
      let handedOut = { service: 0, backend: 0 };
      let recomputed = 0;
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) {
        const s = pick(shapes);
        const edit = int(16);
        if (edit === 0 && shapes.length < 40) shapes.push(fresh());
        else if (edit === 1 && shapes.length > 5) shapes.splice(shapes.indexOf(s), 1);
        else if (edit === 2) s.ip = 1 + int(25);
        else if (edit === 3) s.type = s.type === "NodePort" ? "ClusterIP" : "NodePort";
        else if (edit === 4) s.nodePort = 30000 + int(6);
        else if (edit === 5) s.udp = !s.udp;
        else if (edit === 6) s.named = !s.named;
        else if (edit === 7) s.affinity = !s.affinity;
        else if (edit === 8) s.maglev = pick([0, 7, 13, 4] as const);
        else if (edit === 9) s.itpLocal = !s.itpLocal;
        else if (edit === 10) s.etpLocal = !s.etpLocal;
        else if (edit === 11) s.external = s.external.length ? [] : [1 + int(4)];
        else if (edit === 12) s.sliceTarget = pick([8080, 9090, null]);
        else if (edit === 13 && s.endpoints.length) s.endpoints.splice(int(s.endpoints.length), 1);
        else if (edit === 14) s.endpoints.push([1 + int(40), int(3), pick(["n1", "n2"])]);
        else {
          const e = s.endpoints[int(Math.max(1, s.endpoints.length))];
          if (e) e[1] = int(3);
        }
        const { services, slices } = build(shapes);
        const res = step(model, contents, services, slices, node);
        contents = res.contents;
        recomputed += res.u.recomputed;
        // Stable ids: what existed keeps its id; anything new gets one never handed out before.
        const ids = model.ids();
        for (const [k, id] of ids.backends) {
          const was = prevIds.get(k);
          if (was !== undefined) assert.equal(id, was, `backend ${k} kept its id`);
          else assert.ok(id >= handedOut.backend, `backend ${k}: new id ${id} was never used`);
        }
        for (const [fid, sid] of ids.services) {
          if (res.idsBefore.services.has(fid)) continue;
          assert.ok(
            sid >= handedOut.service || [...res.idsBefore.services.values()].includes(sid),
            `frontend ${fid}: id ${sid} is new or moved with a frontend`,
          );
        }
        prevIds = ids.backends;
        handedOut = { service: res.idsBefore.nextService, backend: res.idsBefore.nextBackend };
      }
      const ms = performance.now() - t0;
      console.log(`seed ${seed}: 200 steps in ${ms.toFixed(0)} ms, ${recomputed} services recomputed in all (of ~${200 * 20})`);
      assert.ok(recomputed < 200 * 20, "most services are reused");
      assert.ok(ms < 60_000);
    });
  }
});

describe("incremental: writes encoded straight from the computed entries", () => {
  it("from empty, every kind of entry (Maglev tables of several chunks, NodePort, ExternalIPs, affinity, Local, UDP) is lbDiff's writes byte for byte", () => {
    const maglev = (size: number) => ({ "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": String(size) });
    const services: ServiceInput[] = [
      { metadata: { namespace: "a", name: "big", annotations: maglev(1021) }, spec: { clusterIP: "10.96.2.1", ports: [{ port: 80, targetPort: 8080 }] } },
      {
        metadata: { namespace: "a", name: "small", annotations: maglev(7) },
        spec: { clusterIP: "10.96.2.2", ports: [{ port: 53, protocol: "UDP", targetPort: 5353 }] },
      },
      {
        metadata: { namespace: "b", name: "np" },
        spec: {
          type: "NodePort",
          clusterIP: "10.96.2.3",
          externalIPs: ["192.0.2.9"],
          externalTrafficPolicy: "Local",
          internalTrafficPolicy: "Local",
          sessionAffinity: "ClientIP",
          ports: [
            { name: "http", port: 80, targetPort: 8080, nodePort: 30080 },
            { name: "dns", port: 53, protocol: "UDP", targetPort: 5353, nodePort: 30053 },
          ],
        },
      },
    ];
    const eps = (ns: string, name: string, n: number): EndpointSliceInput => ({
      metadata: { namespace: ns, name: `${name}-0`, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      endpoints: Array.from({ length: n }, (_, i) =>
        ep(`10.201.${n}.${i + 1}`, i === 1 ? { ready: false, serving: true, terminating: true } : {}, i % 2 ? "n2" : "n1"),
      ),
      ports: [
        { name: "", port: 8080, protocol: "TCP" },
        { name: "http", port: 8080, protocol: "TCP" },
        { name: "dns", port: 5353, protocol: "UDP" },
      ],
    });
    const slices = [eps("a", "big", 9), eps("a", "small", 3), eps("b", "np", 4)];
    const model = new LbModel({ node: "n1" });
    const first = step(model, emptyContents(), services, slices, "n1");
    assert.ok(first.u.after.maglev.size >= 4 + 1, "the 1021-entry table takes four chunks");
    assert.ok(first.u.state.external && first.u.state.external.length > 0, "external frontends are written");
    // Only new services added: encoded straight as well.
    const more = [...services, { metadata: { namespace: "c", name: "late" }, spec: { clusterIP: "10.96.2.4", ports: [{ port: 80, targetPort: 8080 }] } }];
    const second = step(model, first.contents, more, [...slices, eps("c", "late", 2)], "n1");
    assert.equal(second.u.recomputed, 1);
  });
});

describe("incremental: lb4 key layout of the writes", () => {
  it("every key of the writes decodes and names a known frontend", () => {
    const model = new LbModel({});
    const f = fleet(3);
    const u = model.update(f.services, f.slices);
    for (const op of lbDiff(u.before, u.after, pin)) {
      if (op.map !== pin(LB_MAPS.services)) continue;
      const k = lb4Key.decode(op.key);
      assert.ok(k.address.startsWith("10.96.1."));
      assert.equal(k.dport, 80);
    }
  });
});

describe("incremental: from empty at 10k services (the lean path and computeService mixed)", () => {
  /**
   * 10k services, mostly the common shape (one port on a ClusterIP, numeric targetPort) with varied
   * endpoints — several slices, duplicates, terminating, not ready, other nodes, bad addresses,
   * UDP, named ports — and among them every other kind: Maglev, affinity, NodePort, ExternalIPs,
   * Local policies, multi-port, invalid specs, and frontends claimed twice.
   */
  function varied(n: number, seed: number): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)] as T;
    const services: ServiceInput[] = [];
    const slices: EndpointSliceInput[] = [];
    for (let i = 0; i < n; i++) {
      const name = `v${i}`;
      const ns = pick(["default", "a", "a-b", "z"]);
      const udp = r() < 0.1;
      const named = r() < 0.2 ? "web" : undefined;
      // every 50th service reuses an earlier one's address: a frontend claimed twice
      const ip = i % 50 === 49 ? `10.97.${(i - 7) >> 8}.${(i - 7) & 255}` : `10.97.${i >> 8}.${i & 255}`;
      const kind = r();
      const spec: NonNullable<ServiceInput["spec"]> = {
        clusterIP: ip,
        ports: [{ port: pick([80, 443, 53]), targetPort: 8080, ...(udp ? { protocol: "UDP" } : {}), ...(named ? { name: named } : {}) }],
      };
      const metadata: ServiceInput["metadata"] = { namespace: ns, name };
      if (kind < 0.02) metadata.annotations = { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "7" };
      else if (kind < 0.04) spec.sessionAffinity = "ClientIP";
      else if (kind < 0.06) {
        spec.type = "NodePort";
        (spec.ports as NonNullable<typeof spec.ports>)[0] = { port: 80, targetPort: 8080, nodePort: 30000 + (i % 2000) };
      } else if (kind < 0.08) spec.externalIPs = [`192.0.2.${i % 200}`];
      else if (kind < 0.1) spec.internalTrafficPolicy = "Local";
      else if (kind < 0.11)
        spec.ports = [
          { name: "a", port: 80, targetPort: 8080 },
          { name: "b", port: 81, targetPort: "b-port" },
        ];
      else if (kind < 0.12)
        spec.clusterIP = "10.97.999.1"; // invalid
      else if (kind < 0.13) spec.clusterIP = "None";
      else if (kind < 0.14) spec.externalTrafficPolicy = "Local";
      else if (kind < 0.15) spec.sessionAffinity = "None";
      services.push({ metadata, spec });
      const nSlices = r() < 0.9 ? 1 : r() < 0.5 ? 0 : 2;
      for (let k = 0; k < nSlices; k++) {
        const eps: EndpointInput[] = [];
        const count = Math.floor(r() * 5);
        for (let e = 0; e < count; e++) {
          const state = r();
          const cond = state < 0.8 ? pick([{}, { ready: true }]) : state < 0.9 ? { ready: false, serving: true, terminating: true } : { ready: false };
          const address = r() < 0.02 ? "not-an-ip" : `10.${200 + (i % 50)}.${e % 3}.${1 + Math.floor(r() * 3)}`;
          eps.push(ep(address, cond, pick(["n1", "n2"])));
        }
        slices.push({
          metadata: { namespace: ns, name: `${name}-${k}`, labels: { "kubernetes.io/service-name": name } },
          addressType: "IPv4",
          endpoints: eps,
          ports: [
            { name: named ?? "", port: r() < 0.8 ? 8080 : 9090, protocol: udp ? "UDP" : "TCP" },
            { name: "b", port: 9191, protocol: "TCP" },
          ],
        });
      }
    }
    return { services, slices };
  }

  it("state, problems, ids and the encoded batch equal a from-scratch compute; later edits too", () => {
    const node = "n1";
    const t0 = performance.now();
    const f = varied(10_000, 7);
    const model = new LbModel({ node });
    const s = step(model, emptyContents(), f.services, f.slices, node);
    assert.equal(s.u.recomputed, 10_000);
    assert.ok(s.u.problems.length > 100, "invalid specs and frontends claimed twice are reported");
    assert.ok(s.u.state.maglev.length > 0 && (s.u.state.external ?? []).length > 0);
    // Edits after the lean path: an endpoint list, a spec edited in place, a removal.
    (f.slices[3] as EndpointSliceInput).endpoints = [ep("10.250.0.1")];
    const ports = f.services[5]?.spec?.ports;
    if (ports?.[0]) ports[0].port = 8443;
    f.services.splice(9, 1);
    const t = step(model, s.contents, f.services, f.slices, node);
    assert.ok(t.u.recomputed >= 3 && t.u.recomputed < 100);
    console.log(`# 10k varied services from empty and one edit step, checked, in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  it("only common-shape services with a frontend claimed twice: the same result as from scratch", () => {
    const f = fleet(200);
    (f.services[150] as ServiceInput).spec = { clusterIP: "10.96.1.20", ports: [{ port: 80, targetPort: 8080 }] }; // s20's address
    const model = new LbModel({});
    const s = step(model, emptyContents(), f.services, f.slices);
    assert.deepEqual(
      s.u.problems.map((p) => p.service),
      ["default/s20"], // "s151" sorts first and keeps the address
    );
  });
});

/** A batch in the map server's framing, decoded: magic, and each record's map pin and raw bytes. */
function decodeBatch(b: Buffer): { magic: number; records: { pin: string; op: number; key: Buffer; raw: Buffer }[] } {
  const nmaps = b.readUInt32LE(4);
  const nrec = b.readUInt32LE(8);
  assert.equal(b.readUInt32LE(12), b.length - 16, "the header's body size");
  let off = 16;
  const pins: string[] = [];
  for (let i = 0; i < nmaps; i++) {
    const len = b.readUInt16LE(off);
    pins.push(b.subarray(off + 2, off + 2 + len).toString());
    off += 2 + len;
  }
  const records: { pin: string; op: number; key: Buffer; raw: Buffer }[] = [];
  for (let i = 0; i < nrec; i++) {
    const klen = b.readUInt32LE(off + 4);
    const vlen = b.readUInt32LE(off + 8);
    const end = off + 12 + klen + vlen;
    records.push({ pin: pins[b.readUInt16LE(off + 2)] as string, op: b[off] as number, key: b.subarray(off + 12, off + 12 + klen), raw: b.subarray(off, end) });
    off = end;
  }
  assert.equal(off, b.length, "no bytes after the last record");
  return { magic: b.readUInt32LE(0), records };
}

/** lbDiff's order of creations: 0 backends, 1 Maglev chunks, 2 slots, 3 service entries. */
function category(r: { pin: string; key: Buffer }): number {
  if (r.pin === pin(LB_MAPS.backends)) return 0;
  if (r.pin === pin(LB_MAPS.maglev)) return 1;
  return lb4Key.decode(r.key).slot > 0 ? 2 : 3;
}

describe("from empty, streamed in parts while computing (LbStream)", () => {
  /**
   * Services of every shape (see the 10k case below, smaller), and names that are prefixes of
   * others. `order` — "shuffled": services and slices in no particular order, plus slices of no
   * service; "written": as built; "key": services in namespace/name order as the store lists them
   * (no sort needed), slices in their order too; "key, slices shuffled": the services so, the slices not.
   */
  function inputs(order: "shuffled" | "written" | "key" | "key, slices shuffled"): { services: ServiceInput[]; slices: EndpointSliceInput[] } {
    const shuffled = order === "shuffled" || order === "key, slices shuffled";
    const services: ServiceInput[] = [];
    const slices: EndpointSliceInput[] = [];
    for (let i = 0; i < 1200; i++) {
      const ns = ["default", "a", "a-b", "z"][i % 4] as string;
      const name = `v${i}`; // v1 is a prefix of v10, v100 ...
      const spec: NonNullable<ServiceInput["spec"]> = { clusterIP: `10.98.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] };
      if (i % 97 === 5) spec.sessionAffinity = "ClientIP";
      if (i % 89 === 3) spec.externalIPs = [`192.0.2.${i % 200}`];
      const metadata: ServiceInput["metadata"] = { namespace: ns, name };
      if (i % 101 === 7) metadata.annotations = { "service.weft.io/lb-algorithm": "maglev", "service.weft.io/maglev-table-size": "7" };
      services.push({ metadata, spec });
      const eps = Array.from({ length: i % 4 }, (_, e) =>
        ep(`10.${200 + (i % 50)}.${e}.${1 + (i % 7)}`, e === 2 ? { ready: false, serving: true, terminating: true } : {}),
      );
      slices.push({
        metadata: { namespace: ns, name: `${name}-0`, labels: { "kubernetes.io/service-name": name } },
        addressType: "IPv4",
        endpoints: eps,
        ports: [{ name: "", port: 8080, protocol: "TCP" }],
      });
      if (i % 13 === 0) {
        // a second slice (after the first in input order), and one for a service that does not exist
        slices.push({
          ...(slices.at(-1) as EndpointSliceInput),
          metadata: { namespace: ns, name: `${name}-1`, labels: { "kubernetes.io/service-name": name } },
          endpoints: [ep(`10.250.${i >> 8}.${i & 255}`)],
        });
        if (shuffled)
          slices.push({
            ...(slices.at(-1) as EndpointSliceInput),
            metadata: { namespace: ns, name: `${name}x-0`, labels: { "kubernetes.io/service-name": `${name}x` } },
          });
      }
    }
    // The same name in another namespace than its slice: no endpoints for it.
    services.push({ metadata: { namespace: "other", name: "v5" }, spec: { clusterIP: "10.98.200.1", ports: [{ port: 80, targetPort: 8080 }] } });
    const r = rng(3);
    const keyOf = (ns: string | undefined, name: string | undefined) => `${ns}/${name}`;
    const sortBy = <T>(xs: T[], key: (x: T) => string) => xs.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    if (order === "key" || order === "key, slices shuffled") sortBy(services, (x) => keyOf(x.metadata.namespace, x.metadata.name));
    if (order === "key") sortBy(slices, (x) => keyOf(x.metadata.namespace, x.metadata.labels?.["kubernetes.io/service-name"]));
    else
      for (let i = shuffled ? slices.length - 1 : 0; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [slices[i], slices[j]] = [slices[j] as EndpointSliceInput, slices[i] as EndpointSliceInput];
      }
    if (order === "shuffled")
      for (let i = services.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [services[i], services[j]] = [services[j] as ServiceInput, services[i] as ServiceInput];
      }
    return { services, slices };
  }

  for (const [every, order] of [
    [1, "shuffled"],
    [7, "shuffled"],
    [500, "shuffled"],
    [7, "written"],
    [7, "key"],
    [500, "key"],
    [7, "key, slices shuffled"],
  ] as const) {
    it(`parts of ${every} services, inputs ${order}: each ordered backends, Maglev, slots, entries; taken category by category they are the whole batch`, () => {
      const f = inputs(order);
      const parts: EncodedMapBatch[] = [];
      const model = new LbModel({});
      const u = model.update(f.services, f.slices, { pinOf: pin, send: (p) => parts.push(p), partServices: every });
      assert.equal(u.streamed, true);
      const scratch = desiredLb(f.services, f.slices, {});
      assert.deepEqual(u.state, scratch.state);
      assert.deepEqual(u.problems, scratch.problems);
      const whole = u.encode(pin);
      assert.ok(whole.bytes.equals(encodeMapBatch(lbDiff(emptyContents(), lbContents(scratch.state), pin))), "the whole batch is lbDiff's writes");
      assert.equal(parts.length, Math.ceil(f.services.length / every));
      const streamed: { pin: string; op: number; key: Buffer; raw: Buffer }[] = [];
      for (const p of parts) {
        const d = decodeBatch(p.bytes);
        assert.equal(d.magic, 0x31424d57, "each part is a batch of its own");
        assert.equal(d.records.length, p.records);
        const cats = d.records.map(category);
        assert.deepEqual(cats, [...cats].sort(), "within a part: backends, Maglev chunks, slots, entries");
        streamed.push(...d.records);
      }
      const byCategory = [0, 1, 2, 3].flatMap((c) => streamed.filter((x) => category(x) === c));
      const want = decodeBatch(whole.bytes).records;
      assert.equal(byCategory.length, want.length);
      // (a record's map index is its batch's own: compared by pin)
      const unindexed = (raw: Buffer) => Buffer.concat([raw.subarray(0, 2), raw.subarray(4)]);
      for (let i = 0; i < want.length; i++) {
        const got = byCategory[i] as { pin: string; raw: Buffer };
        assert.ok(unindexed(got.raw).equals(unindexed((want[i] as { raw: Buffer }).raw)), `record ${i} as in the whole batch`);
        assert.equal(got.pin, want[i]?.pin);
      }
      // Every prefix of the parts is consistent: an entry 0 that picks by id (affinity, Maglev)
      // names only backends written before it, every slot has its address, and an entry 0's
      // count covers only further entries written before it.
      const backends = new Set<number>();
      const further = new Set<string>();
      for (const x of streamed) {
        const c = category(x);
        const value = x.raw.subarray(12 + x.key.length);
        if (c === 0) backends.add(x.key.readUInt32LE(0));
        else if (c === 2 || c === 3) {
          const v = lb4Service.decode(value);
          const ids = backendIdsOf(v.backend_ids);
          assert.ok(
            slotsOf(v.backends, ids.length).every((x) => x.address !== "0.0.0.0" && x.port > 0),
            "every slot says where its backend is",
          );
          if (c === 3 && v.flags & (SVC_AFFINITY | SVC_MAGLEV)) for (const id of ids) assert.ok(backends.has(id), "an entry's backends are written before it");
          if (c === 2) further.add(`${x.key.subarray(0, 6).toString("hex")}/${x.key[10]}/${lb4Key.decode(x.key).slot}`);
          else {
            for (let e = 1; e * SLOTS_PER_ENTRY < v.count; e++)
              assert.ok(further.has(`${x.key.subarray(0, 6).toString("hex")}/${x.key[10]}/${e}`), "a service's further entries are written before its entry 0");
          }
        }
      }
    });
  }

  it("a frontend claimed twice among common-shape services: nothing streamed, the general path's batch", () => {
    const f = fleet(200);
    (f.services[150] as ServiceInput).spec = { clusterIP: "10.96.1.20", ports: [{ port: 80, targetPort: 8080 }] };
    const parts: EncodedMapBatch[] = [];
    const u = new LbModel({}).update(f.services, f.slices, { pinOf: pin, send: (p) => parts.push(p), partServices: 10 });
    assert.equal(u.streamed, false);
    assert.equal(parts.length, 0);
    assert.ok(u.encode(pin).bytes.equals(encodeMapBatch(lbDiff(u.before, u.after, pin))));
    assert.deepEqual(u.problems, desiredLb(f.services, f.slices, {}).problems);
  });

  it("services in key order, lean until part 5, then a frontend claimed twice and services computeService takes: the general path's result, streamed from the first part", () => {
    // keys "default/k0000" ... in order; parts of 100 services
    const services: ServiceInput[] = [];
    const slices: EndpointSliceInput[] = [];
    for (let i = 0; i < 1000; i++) {
      const name = `k${String(i).padStart(4, "0")}`;
      const s = svc(name, `10.96.${i >> 8}.${i & 255}`);
      if (i === 540) (s.spec as NonNullable<ServiceInput["spec"]>).clusterIP = "10.96.0.17"; // k0017's frontend
      if (i === 777) (s.spec as NonNullable<ServiceInput["spec"]>).sessionAffinity = "ClientIP";
      if (i === 901) (s.spec as NonNullable<ServiceInput["spec"]>).clusterIP = "10.96.2.10"; // k0522's, claimed after the pass turned mixed
      services.push(s);
      slices.push(slice(name, [`10.200.${i >> 8}.${i & 255}`, "10.201.0.1"]));
    }
    const parts: EncodedMapBatch[] = [];
    const model = new LbModel({});
    const u = model.update(services, slices, { pinOf: pin, send: (p) => parts.push(p), partServices: 100 });
    assert.equal(u.streamed, true);
    assert.equal(parts.length, 10);
    const scratch = desiredLb(services, slices, {});
    assert.deepEqual(u.problems, scratch.problems);
    assert.deepEqual(
      u.problems.map((p) => p.service),
      ["default/k0540", "default/k0901"],
    );
    assert.deepEqual(u.state, scratch.state);
    assert.ok(u.encode(pin).bytes.equals(encodeMapBatch(lbDiff(emptyContents(), lbContents(scratch.state), pin))), "the whole batch is lbDiff's writes");
    // The parts hold the whole batch's records (each part orders its own; compared as sorted sets).
    const raws = (rs: { pin: string; raw: Buffer }[]) =>
      rs.map((x) => `${x.pin} ${Buffer.concat([x.raw.subarray(0, 2), x.raw.subarray(4)]).toString("hex")}`).sort();
    assert.deepEqual(raws(parts.flatMap((p) => decodeBatch(p.bytes).records)), raws(decodeBatch(u.encode(pin).bytes).records));
  });

  for (const sorted of [false, true])
    it(`a name given twice${sorted ? " (services otherwise in key order, the two side by side)" : ""}: nothing streamed, the same result as from scratch`, () => {
      const f = fleet(50);
      f.services.push({ metadata: { namespace: "default", name: "s7" }, spec: { clusterIP: "10.96.9.7", ports: [{ port: 80, targetPort: 8080 }] } });
      if (sorted) f.services.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
      const parts: EncodedMapBatch[] = [];
      const model = new LbModel({});
      const u = model.update(f.services, f.slices, { pinOf: pin, send: (p) => parts.push(p), partServices: 10 });
      assert.equal(u.streamed, false);
      assert.equal(parts.length, 0);
      assert.deepEqual(u.state, desiredLb(f.services, f.slices, {}).state);
    });

  it("an update that is not from empty streams nothing", () => {
    const f = fleet(30);
    const model = new LbModel({});
    model.update(f.services, f.slices);
    const parts: EncodedMapBatch[] = [];
    (f.slices[3] as EndpointSliceInput).endpoints = [ep("10.250.0.1")];
    const u = model.update(f.services, f.slices, { pinOf: pin, send: (p) => parts.push(p), partServices: 1 });
    assert.equal(u.streamed, false);
    assert.equal(parts.length, 0);
    assert.equal(u.recomputed, 1);
  });
});
