// DNS message codec and the cluster zone's answers, table by table.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { EndpointSlice } from "../../../src/cluster/endpoints.ts";
import type { K8sObject } from "../../../src/cluster/store.ts";
import { answer } from "../../../src/dns/cluster-zone.ts";
import { buildResponse, DnsFormatError, parseQuery, RCODE, readName, TYPE } from "../../../src/dns/message.ts";

function query(name: string, type: number, id = 0x1234): Buffer {
  const labels = name.split(".").flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  const header = Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

const svc = (ns: string, name: string, clusterIP: string): K8sObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: ns },
  spec: { clusterIP, selector: { app: name } },
});
const slice = (ns: string, name: string, eps: [string, boolean][]): EndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: `${name}-0`, namespace: ns, labels: { "kubernetes.io/service-name": name } },
  addressType: "IPv4",
  ports: [],
  endpoints: eps.map(([ip, ready]) => ({
    addresses: [ip],
    conditions: { ready, serving: ready, terminating: false },
    nodeName: "node-1",
    targetRef: { kind: "Pod", namespace: ns, name: ip, uid: ip },
  })),
});

const zone = {
  zone: "cluster.local",
  services: [svc("default", "echo", "10.96.0.50"), svc("shop", "db", "None")],
  slices: [
    slice("shop", "db", [
      ["10.200.1.7", true],
      ["10.200.2.9", true],
      ["10.200.2.3", false],
    ]),
  ],
};

describe("cluster zone", () => {
  const cases: [string, number, number, string[]][] = [
    ["echo.default.svc.cluster.local", TYPE.A, RCODE.NOERROR, ["10.96.0.50"]],
    ["ECHO.Default.svc.cluster.local", TYPE.A, RCODE.NOERROR, ["10.96.0.50"]],
    ["echo.default.svc.cluster.local", TYPE.AAAA, RCODE.NOERROR, []],
    ["echo.default.svc.cluster.local", TYPE.TXT, RCODE.NOERROR, []],
    ["db.shop.svc.cluster.local", TYPE.A, RCODE.NOERROR, ["10.200.1.7", "10.200.2.9"]],
    ["missing.default.svc.cluster.local", TYPE.A, RCODE.NXDOMAIN, []],
    ["echo.other.svc.cluster.local", TYPE.A, RCODE.NXDOMAIN, []],
    ["default.svc.cluster.local", TYPE.A, RCODE.NOERROR, []],
    ["nothing.svc.cluster.local", TYPE.A, RCODE.NXDOMAIN, []],
    ["a.b.echo.default.svc.cluster.local", TYPE.A, RCODE.NXDOMAIN, []],
    ["10-200-1-3.default.pod.cluster.local", TYPE.A, RCODE.NOERROR, ["10.200.1.3"]],
    ["10-200-1-300.default.pod.cluster.local", TYPE.A, RCODE.NXDOMAIN, []],
    ["cluster.local", TYPE.A, RCODE.NOERROR, []],
    ["example.com", TYPE.A, RCODE.REFUSED, []],
    ["notcluster.local", TYPE.A, RCODE.REFUSED, []],
  ];
  for (const [name, type, rcode, ips] of cases) {
    it(`${name} type ${type} → rcode ${rcode} ${ips.join(",")}`, () => {
      const a = answer({ name: name.toLowerCase(), type, class: 1 }, zone);
      assert.equal(a.rcode, rcode);
      assert.deepEqual(
        a.answers.map((r) => [...r.data].join(".")),
        ips,
      );
      if (rcode === RCODE.NXDOMAIN || (rcode === RCODE.NOERROR && ips.length === 0))
        assert.equal(a.authority?.[0]?.type, TYPE.SOA, "negative answers carry the SOA");
    });
  }
});

describe("DNS messages", () => {
  it("parses a query and builds a response that echoes id and question", () => {
    const q = parseQuery(query("echo.default.svc.cluster.local", TYPE.A, 0xbeef));
    assert.equal(q.id, 0xbeef);
    assert.deepEqual(q.questions, [{ name: "echo.default.svc.cluster.local", type: TYPE.A, class: 1 }]);
    const r = buildResponse(q, answer(q.questions[0] as never, zone));
    assert.equal(r.readUInt16BE(0), 0xbeef);
    assert.equal(r.readUInt16BE(2) & 0x8000, 0x8000, "QR set");
    assert.equal(r.readUInt16BE(2) & 0xf, 0);
    assert.equal(r.readUInt16BE(6), 1, "one answer");
    assert.deepEqual([...r.subarray(r.length - 4)], [10, 96, 0, 50]);
  });

  it("follows compression pointers", () => {
    const msg = Buffer.concat([Buffer.alloc(12), Buffer.from([3, 0x61, 0x62, 0x63, 0]), Buffer.from([1, 0x78, 0xc0, 12])]);
    assert.deepEqual(readName(msg, 17), { name: "x.abc", next: 21 });
  });

  const broken: [string, Buffer][] = [
    ["too short", Buffer.from([1, 2, 3])],
    ["a response", Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1])],
    ["label past end", Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([40, 0x61])])],
    ["pointer loop", Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 12])])],
    ["label > 63", Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0, 0, 1, 0, 1])])],
    ["question truncated", Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([1, 0x61, 0, 0])])],
  ];
  for (const [name, msg] of broken) {
    it(`refuses a malformed query: ${name}`, () => {
      assert.throws(() => parseQuery(msg), DnsFormatError);
    });
  }

  it("never throws anything but DnsFormatError on random input", () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const base = query("echo.default.svc.cluster.local", TYPE.A);
    for (let i = 0; i < 5000; i++) {
      const m = Buffer.from(base.subarray(0, Math.floor(rand() * (base.length + 1))));
      for (let j = 0; j < 3; j++) if (m.length) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      try {
        parseQuery(m);
      } catch (err) {
        assert.ok(err instanceof DnsFormatError, String(err));
      }
    }
  });
});
