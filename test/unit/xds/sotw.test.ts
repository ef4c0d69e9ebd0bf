// State-of-the-world ADS bookkeeping: versions follow content, ACK/NACK/stale classification, a
// NACKed version is not sent again until it changes, subscriptions, and warming order.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeAny } from "../../../src/xds/codec.ts";
import { cluster, clusterLoadAssignment, listener, refs, resourceName, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { buildSnapshot, type Response, type Snapshot, SotwStream, snapshotVersion } from "../../../src/xds/sotw.ts";

const snap = (rs: XdsResource[]): Snapshot =>
  buildSnapshot(rs.map((r) => ({ typeUrl: r.typeUrl, name: resourceName(r.typeUrl, r.message), any: encodeAny(r), refs: refs(r.typeUrl, r.message) })));

const C = (name: string, lbPolicy: "ROUND_ROBIN" | "MAGLEV" = "ROUND_ROBIN"): XdsResource => ({ typeUrl: TYPE.cluster, message: cluster({ name, lbPolicy }) });
const E = (name: string, port = 8080): XdsResource => ({ typeUrl: TYPE.endpoint, message: clusterLoadAssignment(name, [{ address: "127.0.0.1", port }]) });
const L = (name: string, rc: string): XdsResource => ({
  typeUrl: TYPE.listener,
  message: listener({ name, address: "127.0.0.1", port: 10080, http: { routeConfigName: rc } }),
});
const R = (name: string, cl: string): XdsResource => ({
  typeUrl: TYPE.route,
  message: routeConfiguration(name, [{ name: "all", routes: [{ prefix: "/", cluster: cl }] }]),
});

const req = (typeUrl: string, names: string[] = [], nonce = "", errorDetail?: string) => ({
  typeUrl,
  versionInfo: "",
  resourceNames: names,
  nonce,
  ...(errorDetail ? { errorDetail } : {}),
});

/** Every response the stream sends now, in order. */
function drain(s: SotwStream, sn: Snapshot, now = 0): Response[] {
  const out: Response[] = [];
  for (let i = 0; i < 20; i++) {
    const r = s.next(sn, now).response;
    if (!r) break;
    out.push(r);
  }
  return out;
}

describe("snapshot versions", () => {
  it("a type's version changes exactly when its content changes, not when another type's does", () => {
    const a = snap([C("web"), E("web"), L("l", "r"), R("r", "web")]);
    const b = snap([C("web"), E("web", 9090), L("l", "r"), R("r", "web")]);
    const c = snap([R("r", "web"), L("l", "r"), E("web", 9090), C("web")]);
    assert.equal(snapshotVersion(a, TYPE.cluster), snapshotVersion(b, TYPE.cluster));
    assert.notEqual(snapshotVersion(a, TYPE.endpoint), snapshotVersion(b, TYPE.endpoint));
    assert.equal(snapshotVersion(a, TYPE.listener), snapshotVersion(b, TYPE.listener));
    for (const t of [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route])
      assert.equal(snapshotVersion(b, t), snapshotVersion(c, t), `order does not matter for ${t}`);
  });

  it("a type absent from the snapshot has the version of the empty set; duplicates are refused", () => {
    assert.equal(snapshotVersion(snap([]), TYPE.l7policy), snapshotVersion(snap([C("x")]), TYPE.l7policy));
    assert.throws(() => snap([C("x"), C("x")]), /duplicate .*Cluster resource "x"/);
  });
});

describe("ACK, NACK and stale requests", () => {
  it("initial request → response; ACK of its nonce; a stale nonce is ignored", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([C("web")]);
    assert.deepEqual(s.onRequest(req(TYPE.cluster)), { kind: "initial" });
    const [r1] = drain(s, sn);
    assert.ok(r1);
    assert.equal(r1.version, snapshotVersion(sn, TYPE.cluster));
    assert.deepEqual(r1.names, ["web"]);
    assert.deepEqual(s.onRequest(req(TYPE.cluster, [], "t-999")), { kind: "stale" });
    assert.deepEqual(s.onRequest(req(TYPE.cluster, [], r1.nonce)), { kind: "ack", version: r1.version });
    assert.equal(s.status()[TYPE.cluster]?.ackedVersion, r1.version);
    assert.deepEqual(drain(s, sn), [], "nothing new to send");
  });

  it("a NACKed version is not sent again on the stream, even on a new subscription; a changed one is", () => {
    const s = new SotwStream("t", 5000);
    const v1 = snap([C("web")]);
    s.onRequest(req(TYPE.cluster));
    const [r1] = drain(s, v1);
    s.onRequest(req(TYPE.cluster, [], r1!.nonce));
    const v2 = snap([C("web", "MAGLEV")]);
    const [r2] = drain(s, v2);
    assert.ok(r2 && r2.version !== r1!.version);
    const v = s.onRequest(req(TYPE.cluster, [], r2.nonce, 'Cluster "web": nope'));
    assert.deepEqual(v, { kind: "nack", version: r2.version, detail: 'Cluster "web": nope' });
    assert.deepEqual(s.status()[TYPE.cluster], {
      subscribed: "*",
      sentVersion: r2.version,
      ackedVersion: r1!.version,
      nacked: { version: r2.version, detail: 'Cluster "web": nope' },
    });
    assert.deepEqual(drain(s, v2), [], "the refused version is not re-sent");
    const v3 = snap([C("web"), C("api")]);
    const [r3] = drain(s, v3);
    assert.deepEqual(r3?.names, ["api", "web"], "a new version goes out");
  });

  it("routes and endpoints are sent by name; a subscription change gets an answer at the same version", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([E("a"), E("b"), E("c")]);
    s.onRequest(req(TYPE.endpoint, ["a", "zzz"]));
    const [r1] = drain(s, sn);
    assert.deepEqual(r1?.names, ["a"], "unknown names are left out");
    s.onRequest(req(TYPE.endpoint, ["a", "b"], r1!.nonce));
    const [r2] = drain(s, sn);
    assert.deepEqual(r2?.names, ["a", "b"]);
    assert.equal(r2?.version, r1?.version);
    assert.equal(r2?.resources.length, 2);
  });

  it("an empty subscription means every resource for listeners, clusters and L7 policies, and none for routes", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([C("a"), C("b"), R("r", "a")]);
    s.onRequest(req(TYPE.cluster));
    s.onRequest(req(TYPE.route));
    const out = drain(s, sn);
    assert.deepEqual(
      out.map((r) => [r.typeUrl, r.names]),
      [
        [TYPE.cluster, ["a", "b"]],
        [TYPE.route, []],
      ],
    );
  });

  it("nothing is sent before the node has a snapshot", () => {
    const s = new SotwStream("t", 5000);
    s.onRequest(req(TYPE.listener));
    assert.deepEqual(s.next(undefined, 0), {});
  });
});

describe("warming order", () => {
  it("changed types go clusters → endpoints → listeners → routes, whatever order the requests came in", () => {
    const s = new SotwStream("t", 0);
    const sn = snap([C("web"), E("web"), L("l", "r"), R("r", "web")]);
    s.onRequest(req(TYPE.route, ["r"]));
    s.onRequest(req(TYPE.listener));
    s.onRequest(req(TYPE.endpoint, ["web"]));
    s.onRequest(req(TYPE.cluster));
    assert.deepEqual(
      drain(s, sn).map((r) => r.typeUrl),
      [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route],
    );
  });

  it("routes wait until the clusters they name and those clusters' endpoints are acknowledged", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([C("web"), E("web"), R("r", "web")]);
    s.onRequest(req(TYPE.cluster));
    s.onRequest(req(TYPE.route, ["r"]));
    const first = drain(s, sn, 1000);
    assert.deepEqual(
      first.map((r) => r.typeUrl),
      [TYPE.cluster],
      "routes held back",
    );
    assert.deepEqual(s.next(sn, 1000), { wakeAt: 6000 });
    s.onRequest(req(TYPE.cluster, [], first[0]!.nonce));
    assert.deepEqual(drain(s, sn, 1001), [], "the cluster is acknowledged, its endpoints are not yet asked for");
    s.onRequest(req(TYPE.endpoint, ["web"]));
    const [e] = drain(s, sn, 1002);
    assert.equal(e?.typeUrl, TYPE.endpoint);
    s.onRequest(req(TYPE.endpoint, ["web"], e!.nonce));
    const [r] = drain(s, sn, 1003);
    assert.equal(r?.typeUrl, TYPE.route);
    assert.equal(r?.forced, false);
  });

  it("a client that never asks for the clusters (gRPC proxyless, routes first) is not waited for", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([C("web"), E("web"), L("l", "r"), R("r", "web")]);
    s.onRequest(req(TYPE.listener));
    s.onRequest(req(TYPE.route, ["r"]));
    assert.deepEqual(
      drain(s, sn).map((r) => r.typeUrl),
      [TYPE.listener, TYPE.route],
    );
  });

  it("after warmWaitMs a held-back type is sent anyway, marked forced", () => {
    const s = new SotwStream("t", 5000);
    const sn = snap([C("web"), R("r", "web")]);
    s.onRequest(req(TYPE.cluster));
    s.onRequest(req(TYPE.route, ["r"]));
    drain(s, sn, 0);
    assert.deepEqual(drain(s, sn, 4999), []);
    const [r] = drain(s, sn, 5000);
    assert.equal(r?.typeUrl, TYPE.route);
    assert.equal(r?.forced, true);
  });

  it("nonces are unique per stream and carry the stream's prefix", () => {
    const s = new SotwStream("node7-3", 0);
    const sn = snap([C("a"), E("a")]);
    s.onRequest(req(TYPE.cluster));
    s.onRequest(req(TYPE.endpoint, ["a"]));
    const n = drain(s, sn).map((r) => r.nonce);
    assert.deepEqual(n, ["node7-3-1", "node7-3-2"]);
  });
});
