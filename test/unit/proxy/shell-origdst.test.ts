// The proxy shell's small pure parts: redirect records by client address (exact port, then any
// port; IPv4-mapped addresses), the JSON-file source re-read on change, the per-worker upstream port
// slices (disjoint, rotating, never a port in use), and route/policy lookup in a config snapshot.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { compileHttpRule } from "../../../src/policy/l7/http-match.ts";
import { ClusterRegistry, ProxySnapshot } from "../../../src/proxy/config.ts";
import { FileRedirects, MemoryRedirects, type RedirectRecord } from "../../../src/proxy/origdst.ts";
import { PortAllocator } from "../../../src/proxy/proxy-ports.ts";
import { decide, normalise } from "../../../src/proxy/request.ts";
import type { XdsConfig } from "../../../src/xds/client.ts";
import { cluster, clusterLoadAssignment, l7Policies, listener, routeConfiguration, TYPE } from "../../../src/xds/resources.ts";

const rec = (identity: number): RedirectRecord => ({
  vip: "10.0.0.1",
  vport: 80,
  backend: "10.1.0.5",
  bport: 8080,
  identity,
  directions: [{ direction: "ingress", subject: 2001, peer: identity }],
});

describe("redirect records", () => {
  it("exact client port first, then the address's any-port record; mapped IPv4 reads as IPv4", () => {
    const m = new MemoryRedirects().set("10.2.0.1", 0, rec(1)).set("10.2.0.1", 40000, rec(2));
    assert.equal(m.lookup("10.2.0.1", 40000, "", 0)?.identity, 2);
    assert.equal(m.lookup("10.2.0.1", 40001, "", 0)?.identity, 1);
    assert.equal(m.lookup("::ffff:10.2.0.1", 5, "", 0)?.identity, 1);
    assert.equal(m.lookup("10.2.0.2", 40000, "", 0), undefined);
  });

  it("the JSON file is re-read when it changes; a missing file means no records", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-redir-"));
    try {
      const path = join(dir, "r.json");
      const f = new FileRedirects(path, 0);
      assert.equal(f.lookup("10.2.0.1", 1), undefined);
      writeFileSync(path, JSON.stringify({ records: [{ remote: "10.2.0.1", ...rec(7) }] }));
      assert.equal(f.lookup("10.2.0.1", 1)?.identity, 7);
      await new Promise((r) => setTimeout(r, 20));
      writeFileSync(path, JSON.stringify({ records: [] }));
      assert.equal(f.lookup("10.2.0.1", 1), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("PortAllocator", () => {
  it("workers get disjoint slices; ports rotate and skip those in use", () => {
    const a = new PortAllocator([20000, 20099], 0, 2);
    const b = new PortAllocator([20000, 20099], 1, 2);
    assert.deepEqual([a.lo, a.hi, b.lo, b.hi], [20000, 20049, 20050, 20099]);
    const p1 = a.take();
    const p2 = a.take();
    assert.deepEqual([p1, p2], [20000, 20001]);
    a.give(p1);
    assert.equal(a.take(), 20002, "a port just given back is reused last");
    const all = new Set<number>();
    for (let i = 0; i < 50; i++) all.add(a.take());
    assert.ok(all.has(0), "0 once every port is in use");
    assert.equal(a.used, 50);
  });
  it("refuses a range too small to split", () => {
    assert.throws(() => new PortAllocator([1000, 1020], 0, 4), /too small/);
  });
});

describe("ProxySnapshot", () => {
  const cfg = (): XdsConfig => {
    const set = {
      proto: 6,
      port: 8080,
      kind: "http" as const,
      entries: [{ scope: 1001, allowAll: false, l7: { kind: "http" as const, rules: [compileHttpRule({ method: "GET", path: "/api/.*" })] }, rule: "r" }],
    };
    const pol = l7Policies(2001, "ingress", [set])[0];
    return {
      listeners: new Map([["l", listener({ name: "l", address: "10.0.0.1", port: 80, http: { routeConfigName: "rc", mergeSlashes: true } })]]),
      routes: new Map([
        [
          "rc",
          routeConfiguration("rc", [
            {
              name: "v",
              domains: ["svc.test", "*.svc.test"],
              routes: [
                { prefix: "/api/", cluster: "api" },
                { path: "/exact", cluster: "other" },
              ],
            },
          ]),
        ],
      ]),
      clusters: new Map([["api", cluster({ name: "api" })]]),
      endpoints: new Map([["api", clusterLoadAssignment("api", [{ address: "10.1.0.5", port: 8080 }])]]),
      l7policies: new Map(pol ? [[pol.name, pol]] : []),
      versions: { [TYPE.l7policy]: "1" },
    };
  };
  const snap = new ProxySnapshot(1, cfg(), new ClusterRegistry());
  const headers = { get: () => undefined };

  it("routes by domain and path, after the listener's normalisation", () => {
    const a = { record: rec(1001), remoteIp: "10.2.0.1", remotePort: 1 };
    const n = normalise(snap, a, "//api//x");
    assert.equal(n.path, "/api/x");
    assert.equal(snap.route("rc", "svc.test:80", n.path, headers)?.clusters[0]?.name, "api");
    assert.equal(snap.route("rc", "a.svc.test", "/exact", headers)?.clusters[0]?.name, "other");
    assert.equal(snap.route("rc", "elsewhere", "/api/x", headers), undefined);
  });

  it("decides with the policy of (subject, direction, backend port) for the record's peer", () => {
    const req = (identity: number, path: string) =>
      decide(snap, { record: rec(identity), remoteIp: "10.2.0.1", remotePort: 1 }, { method: "GET", path, authority: "svc.test", headers });
    assert.equal(req(1001, "/api/x").allowed, true);
    assert.equal(req(1001, "/admin").allowed, false);
    assert.equal(req(1002, "/api/x").allowed, false);
    const none = decide(snap, { record: { ...rec(1001), bport: 9999 }, remoteIp: "", remotePort: 0 }, { method: "GET", path: "/x", authority: "", headers });
    assert.equal(none.allowed, true, "a port without L7 rules: the L3/L4 verdict stands");
  });
});
