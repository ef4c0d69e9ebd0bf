// The policy map contract: byte layout of key and value, port ranges as LPM prefixes, and the
// datapath lookup's precedence rules (deny in either lookup wins; longer prefix; own identity on a tie).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  datapathLookup,
  decodeKey,
  decodeValue,
  encodeKey,
  encodeValue,
  KEY_SIZE,
  type PolicyEntry,
  type PolicyKey,
  PolicyMapView,
  type PolicyValue,
  rangeToPrefixes,
  VALUE_SIZE,
} from "../../../src/policy/key.ts";
import { rng } from "./compile.test.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("policy key and value encoding", () => {
  const keys: [PolicyKey, string][] = [
    [{ prefixlen: 64, identity: 256, direction: "ingress", protocol: 6, dport: 80 }, "40000000" + "00000100" + "00" + "06" + "0050"],
    [{ prefixlen: 40, identity: 0, direction: "egress", protocol: 0, dport: 0 }, "28000000" + "00000000" + "01" + "00" + "0000"],
    [{ prefixlen: 61, identity: (1 << 24) + 5, direction: "egress", protocol: 17, dport: 8080 }, "3d000000" + "01000005" + "01" + "11" + "1f90"],
    [{ prefixlen: 64, identity: 7, direction: "ingress", protocol: 58, dport: 128 }, "40000000" + "00000007" + "00" + "3a" + "0080"],
  ];
  for (const [k, want] of keys) {
    it(`key ${JSON.stringify(k)} encodes to ${want}`, () => {
      const b = encodeKey(k);
      assert.equal(b.length, KEY_SIZE);
      assert.equal(hex(b), want);
      assert.deepEqual(decodeKey(b), k);
    });
  }
  const values: [PolicyValue, string][] = [
    [{ deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 1 }, "00000000" + "01000000"],
    [{ deny: true, redirect: false, audit: false, proxyPort: 0, cookie: 2 }, "01000000" + "02000000"],
    [{ deny: false, redirect: true, audit: false, proxyPort: 15001, cookie: 3 }, "02003a99" + "03000000"],
    [{ deny: true, redirect: false, audit: true, proxyPort: 0, cookie: 0xdeadbeef }, "05000000" + "efbeadde"],
  ];
  for (const [v, want] of values) {
    it(`value ${JSON.stringify(v)} encodes to ${want}`, () => {
      const b = encodeValue(v);
      assert.equal(b.length, VALUE_SIZE);
      assert.equal(hex(b), want);
      assert.deepEqual(decodeValue(b), v);
    });
  }
  it("decoding refuses a buffer of the wrong size", () => {
    assert.throws(() => decodeKey(new Uint8Array(11)), RangeError);
    assert.throws(() => decodeValue(new Uint8Array(9)), RangeError);
  });
});

describe("port ranges as LPM prefixes", () => {
  const table: [number, number, number][] = [
    [80, 80, 1],
    [0, 65535, 1],
    [8080, 8090, 3],
    [1, 65534, 30],
    [1024, 2047, 1],
    [1024, 2048, 2],
    [32768, 60999, 0],
  ];
  for (const [lo, hi, n] of table) {
    it(`[${lo}, ${hi}] needs ${n || "few"} prefixes and covers exactly the range`, () => {
      const ps = rangeToPrefixes(lo, hi);
      if (n) assert.equal(ps.length, n);
      assert.ok(ps.length <= 30);
      let next = lo;
      for (const p of ps) {
        assert.equal(p.port, next, "contiguous, in order");
        assert.equal(p.port % 2 ** (16 - p.bits), 0, "aligned");
        next = p.port + 2 ** (16 - p.bits);
      }
      assert.equal(next, hi + 1);
    });
  }
  it("random ranges are covered exactly, with at most 30 prefixes", () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const a = Math.floor(r() * 65536);
      const b = Math.floor(r() * 65536);
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      const ps = rangeToPrefixes(lo, hi);
      assert.ok(ps.length <= 30);
      assert.equal(
        ps.reduce((s, p) => s + 2 ** (16 - p.bits), 0),
        hi - lo + 1,
      );
    }
  });
});

function entry(identity: number, protocol: number, dport: number, prefixlen: number, v: Partial<PolicyValue> = {}): PolicyEntry {
  return {
    key: { identity, direction: "ingress", protocol, dport, prefixlen },
    value: { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 1, ...v },
    origins: [],
  };
}

describe("datapath lookup precedence", () => {
  const cases: { name: string; entries: PolicyEntry[]; id: number; proto: number; port: number; want: string; redirect?: boolean }[] = [
    { name: "no entry is a miss", entries: [], id: 300, proto: 6, port: 80, want: "miss" },
    { name: "exact port allow", entries: [entry(300, 6, 80, 64)], id: 300, proto: 6, port: 80, want: "allow" },
    { name: "exact port entry does not match a neighbour", entries: [entry(300, 6, 80, 64)], id: 300, proto: 6, port: 81, want: "miss" },
    { name: "every-port entry matches any port of its protocol", entries: [entry(300, 6, 0, 48)], id: 300, proto: 6, port: 9999, want: "allow" },
    { name: "every-port entry does not match another protocol", entries: [entry(300, 6, 0, 48)], id: 300, proto: 17, port: 9999, want: "miss" },
    { name: "every-protocol entry matches ICMP", entries: [entry(300, 0, 0, 40)], id: 300, proto: 1, port: 8, want: "allow" },
    { name: "the wildcard identity matches any peer", entries: [entry(0, 6, 80, 64)], id: 12345, proto: 6, port: 80, want: "allow" },
    {
      name: "a deny for the peer wins over a wildcard allow",
      entries: [entry(300, 0, 0, 40, { deny: true }), entry(0, 6, 80, 64)],
      id: 300,
      proto: 6,
      port: 80,
      want: "deny",
    },
    {
      name: "a wildcard deny wins over the peer's allow",
      entries: [entry(300, 6, 80, 64), entry(0, 6, 0, 48, { deny: true })],
      id: 300,
      proto: 6,
      port: 80,
      want: "deny",
    },
    {
      name: "the longer prefix decides between allows (wildcard L7 port)",
      entries: [entry(300, 6, 0, 48), entry(0, 6, 80, 64, { redirect: true })],
      id: 300,
      proto: 6,
      port: 80,
      want: "allow",
      redirect: true,
    },
    {
      name: "on a tie the peer's own entry decides",
      entries: [entry(300, 6, 80, 64, { redirect: true }), entry(0, 6, 80, 64)],
      id: 300,
      proto: 6,
      port: 80,
      want: "allow",
      redirect: true,
    },
    { name: "a range prefix matches inside", entries: [entry(300, 6, 8080, 61)], id: 300, proto: 6, port: 8087, want: "allow" },
    { name: "a range prefix does not match outside", entries: [entry(300, 6, 8080, 61)], id: 300, proto: 6, port: 8088, want: "miss" },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const v = datapathLookup(new PolicyMapView(c.entries), "ingress", c.id, c.proto, c.port);
      assert.equal(v.kind, c.want);
      if (c.redirect !== undefined) assert.equal(v.redirect, c.redirect);
    });
  }
});
