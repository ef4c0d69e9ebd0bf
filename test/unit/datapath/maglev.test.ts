// Maglev tables (src/datapath/maglev.ts): filled, balanced, minimally disrupted, deterministic;
// and the hashes the kernel shares with it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_MAGLEV_SIZE, flowHash, isPrime, jhash3, type MaglevBackend, maglevTable, murmur3 } from "../../../src/datapath/maglev.ts";

const named = (n: number, prefix = "10.0"): MaglevBackend[] => Array.from({ length: n }, (_, i) => ({ name: `${prefix}.${i >> 8}.${i & 255}:8080` }));

function counts(table: Uint32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const i of table) c[i] = (c[i] as number) + 1;
  return c;
}

describe("maglev table", () => {
  const shapes: [number, number][] = [
    [1, 251],
    [3, 251],
    [10, 251],
    [2, 16381],
    [10, 16381],
    [100, 16381],
    [50, 65537],
  ];
  for (const [n, m] of shapes) {
    it(`${n} backends, M=${m}: every slot names a backend and each has about M/N slots`, () => {
      const t = maglevTable(named(n), m);
      assert.equal(t.length, m);
      for (const i of t) assert.ok(i < n);
      const c = counts(t, n);
      const fair = m / n;
      // The paper's fill gives every backend floor or ceil of M/N, give or take one collision round.
      for (const [i, x] of c.entries()) assert.ok(Math.abs(x - fair) <= Math.max(2, fair * 0.02), `backend ${i}: ${x} slots, fair share ${fair.toFixed(1)}`);
    });
  }

  for (const n of [5, 10, 40]) {
    it(`removing one of ${n} backends moves about 1/${n} of the slots`, () => {
      const before = named(n);
      const gone = before[n >> 1] as MaglevBackend;
      const after = before.filter((b) => b !== gone);
      const t1 = maglevTable(before, DEFAULT_MAGLEV_SIZE);
      const t2 = maglevTable(after, DEFAULT_MAGLEV_SIZE);
      let moved = 0;
      let movedOthers = 0;
      for (let s = 0; s < t1.length; s++) {
        const a = (before[t1[s] as number] as MaglevBackend).name;
        const b = (after[t2[s] as number] as MaglevBackend).name;
        if (a !== b) moved++;
        if (a !== b && a !== gone.name) movedOthers++;
        assert.notEqual(b, gone.name);
      }
      const frac = moved / t1.length;
      assert.ok(frac >= 1 / n - 0.01 && frac <= 1.5 / n + 0.01, `moved ${(frac * 100).toFixed(2)}% of slots`);
      // Slots of surviving backends mostly stay where they were (the paper's small extra disruption).
      assert.ok(movedOthers / t1.length <= 0.5 / n + 0.01, `moved ${movedOthers} slots of surviving backends`);
    });
  }

  it("is deterministic and independent of the order backends are given in", () => {
    const b = named(17);
    const t1 = maglevTable(b, 251);
    const t2 = maglevTable([...b].reverse(), 251);
    const t3 = maglevTable(b, 251);
    assert.deepEqual(t1, t3);
    assert.deepEqual(
      [...t1].map((i) => (b[i] as MaglevBackend).name),
      [...t2].map((i) => ([...b].reverse()[i] as MaglevBackend).name),
    );
  });

  it("gives weighted backends slots in proportion (2:1:1)", () => {
    const b = [{ name: "a", weight: 2 }, { name: "b" }, { name: "c", weight: 1 }];
    const c = counts(maglevTable(b, 16381), 3);
    assert.ok(Math.abs((c[0] as number) / 16381 - 0.5) < 0.01, JSON.stringify(c));
    assert.ok(Math.abs((c[1] as number) - (c[2] as number)) <= 2, JSON.stringify(c));
  });

  it("an empty backend list gives an all-zero table (the service entry has count 0 and refuses)", () => {
    assert.deepEqual([...new Set(maglevTable([], 7))], [0]);
  });

  const refused: [string, () => unknown, RegExp][] = [
    ["a size that is not prime", () => maglevTable(named(2), 1000), /not prime/],
    ["duplicate backend names", () => maglevTable([{ name: "x" }, { name: "x" }], 251), /unique/],
    ["a zero weight", () => maglevTable([{ name: "x", weight: 0 }], 251), /positive integer/],
  ];
  for (const [what, f, re] of refused) it(`refuses ${what}`, () => assert.throws(f, re));
});

describe("hashes shared with the kernel", () => {
  const primes: [number, boolean][] = [
    [0, false],
    [1, false],
    [2, true],
    [7, true],
    [251, true],
    [1000, false],
    [16381, true],
    [65537, true],
    [131071, true],
    [131073, false],
  ];
  for (const [n, p] of primes) it(`isPrime(${n}) is ${p}`, () => assert.equal(isPrime(n), p));

  const vectors: [string, number, number][] = [
    ["", 0, 0],
    ["", 1, 0x514e28b7],
    ["hello", 0, 0x248bfa47],
    ["The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723],
  ];
  for (const [text, seed, want] of vectors)
    it(`murmur3(${JSON.stringify(text)}, ${seed}) = 0x${want.toString(16)}`, () => assert.equal(murmur3(text, seed), want));

  it("jhash3 is 32-bit, deterministic and sensitive to every word", () => {
    const h = jhash3(1, 2, 3, 6);
    assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    assert.equal(jhash3(1, 2, 3, 6), h);
    for (const other of [jhash3(0, 2, 3, 6), jhash3(1, 0, 3, 6), jhash3(1, 2, 0, 6), jhash3(1, 2, 3, 17)]) assert.notEqual(other, h);
  });

  it("flowHash of a bound socket ignores the cookie; of an unbound one, depends on it", () => {
    const f = { saddr: "127.0.0.1", sport: 40000, daddr: "10.96.0.53", dport: 80, proto: 6 };
    assert.equal(flowHash({ ...f, sockCookie: 1n }), flowHash({ ...f, sockCookie: 2n }));
    const u = { ...f, saddr: "0.0.0.0", sport: 0 };
    assert.notEqual(flowHash({ ...u, sockCookie: 1n }), flowHash({ ...u, sockCookie: 2n }));
  });
});
