// L7 load balancing (src/proxy/lb/): spreads by weight, least-request under load, consistent hashing
// stability, outlier ejection timing, circuit breaking, retry decisions and back-off — all with an
// injected random source and time, so every count below is reproducible.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CircuitBreaker } from "../../../src/proxy/lb/circuit-breaker.ts";
import { cookieValue, hash32, requestHash } from "../../../src/proxy/lb/hash.ts";
import { type Host, host, type LoadBalancer, seededRandom } from "../../../src/proxy/lb/host.ts";
import { LeastRequest } from "../../../src/proxy/lb/least-request.ts";
import { Maglev } from "../../../src/proxy/lb/maglev.ts";
import { OutlierDetector } from "../../../src/proxy/lb/outlier.ts";
import { backoffMs, compileRetryPolicy, Failure, retriable, shouldRetry, tryTimeoutMs } from "../../../src/proxy/lb/retry.ts";
import { RingHash } from "../../../src/proxy/lb/ring-hash.ts";
import { RoundRobin } from "../../../src/proxy/lb/round-robin.ts";

const hosts = (...weights: number[]): Host[] => weights.map((w, i) => host(`10.0.0.${i + 1}:8080`, w));

function spread(lb: LoadBalancer, n: number, hashOf?: (i: number) => number | undefined): Map<string, number> {
  const c = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = lb.pick(hashOf?.(i));
    assert.ok(h);
    c.set(h.address, (c.get(h.address) ?? 0) + 1);
  }
  return c;
}
const share = (c: Map<string, number>, hs: Host[]) => hs.map((h) => c.get(h.address) ?? 0);

describe("round robin", () => {
  it("equal weights rotate exactly", () => {
    const hs = hosts(1, 1, 1);
    const rr = new RoundRobin(hs);
    assert.deepEqual(
      Array.from({ length: 6 }, () => rr.pick()?.address),
      [0, 1, 2, 0, 1, 2].map((i) => hs[i]?.address),
    );
  });
  it("weights 1:2:3 over 6000 picks give exactly 1000:2000:3000", () => {
    const hs = hosts(1, 2, 3);
    assert.deepEqual(share(spread(new RoundRobin(hs), 6000), hs), [1000, 2000, 3000]);
  });
  it("smooth: weights 5:1:1 interleave (a a b a c a a), never five in a row", () => {
    const hs = hosts(5, 1, 1);
    const rr = new RoundRobin(hs);
    const seq = Array.from({ length: 7 }, () => hs.indexOf(rr.pick() as Host)).join("");
    assert.equal(seq, "0010200");
  });
  it("a random start offset still rotates over everyone", () => {
    const hs = hosts(1, 1, 1, 1);
    assert.deepEqual(share(spread(new RoundRobin(hs, seededRandom(7)), 400), hs), [100, 100, 100, 100]);
  });
  it("no hosts: no pick", () => assert.equal(new RoundRobin([]).pick(), undefined));
});

describe("least request (power of two choices)", () => {
  it("idle hosts share by weight: 1:2:3 over 6000 picks within 5%", () => {
    const hs = hosts(1, 2, 3);
    const c = share(spread(new LeastRequest(hs, seededRandom(1)), 6000), hs);
    for (const [i, want] of [1000, 2000, 3000].entries()) assert.ok(Math.abs((c[i] as number) - want) <= want * 0.05, `host ${i}: ${c[i]} vs ${want}`);
  });
  it("a loaded host is avoided whenever it meets another in the draw", () => {
    const hs = hosts(1, 1, 1, 1);
    (hs[0] as Host).active = 50;
    const c = share(spread(new LeastRequest(hs, seededRandom(2)), 4000), hs);
    // It wins only when drawn twice: ~1/16 of picks.
    assert.ok((c[0] as number) < 4000 / 16 + 100, `loaded host got ${c[0]}`);
    for (const x of c.slice(1)) assert.ok((x as number) > 1100);
  });
  it("in-flight counts balance out: simulated requests that finish in order keep every host busy", () => {
    const hs = hosts(1, 1, 1);
    const lb = new LeastRequest(hs, seededRandom(3));
    const inflight: Host[] = [];
    const c = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const h = lb.pick() as Host;
      h.active++;
      inflight.push(h);
      c.set(h.address, (c.get(h.address) ?? 0) + 1);
      if (inflight.length > 12) (inflight.shift() as Host).active--;
    }
    for (const x of share(c, hs)) assert.ok(Math.abs(x - 1000) < 100, `${x}`);
    assert.ok(Math.max(...hs.map((h) => h.active)) - Math.min(...hs.map((h) => h.active)) <= 4);
  });
  it("refuses fewer than two choices", () => assert.throws(() => new LeastRequest(hosts(1), Math.random, 1), RangeError));
});

describe("ring hash", () => {
  it("the same key always lands on the same host", () => {
    const rh = new RingHash(hosts(1, 1, 1, 1));
    for (const k of ["user-1", "user-2", "abc"]) assert.equal(rh.pick(hash32(k))?.address, rh.pick(hash32(k))?.address);
  });
  it("ring size: points per weight, scaled down to the maximum", () => {
    assert.equal(new RingHash(hosts(1, 1, 1, 1)).size, 1024);
    assert.equal(new RingHash(hosts(1, 2, 3), { pointsPerWeight: 100 }).size, 600);
    assert.equal(new RingHash(hosts(1, 1, 1, 1), { maxRingSize: 100 }).size, 100);
  });
  it("10k keys over 4 equal hosts: each within 20% of a quarter", () => {
    const hs = hosts(1, 1, 1, 1);
    const c = share(
      spread(new RingHash(hs), 10_000, (i) => hash32(`key-${i}`)),
      hs,
    );
    for (const x of c) assert.ok(Math.abs(x - 2500) < 500, `${c}`);
  });
  it("weights 1:2:3 give about 1:2:3 of 6000 keys", () => {
    const hs = hosts(1, 2, 3);
    const c = share(
      spread(new RingHash(hs, { pointsPerWeight: 1024 }), 6000, (i) => hash32(`k${i}`)),
      hs,
    );
    for (const [i, want] of [1000, 2000, 3000].entries()) assert.ok(Math.abs((c[i] as number) - want) <= want * 0.2, `host ${i}: ${c[i]}`);
  });
  for (const n of [4, 8]) {
    it(`removing one of ${n} hosts remaps about 1/${n} of keys, and only the removed host's`, () => {
      const hs = hosts(...new Array(n).fill(1));
      const before = new RingHash(hs);
      const gone = hs[1] as Host;
      const after = new RingHash(hs.filter((h) => h !== gone));
      let moved = 0;
      const keys = 20_000;
      for (let i = 0; i < keys; i++) {
        const k = hash32(`session-${i}`);
        const a = before.pick(k) as Host;
        const b = after.pick(k) as Host;
        if (a !== b) {
          moved++;
          assert.equal(a, gone, "a key of a surviving host moved");
        }
      }
      assert.ok(Math.abs(moved / keys - 1 / n) < 0.5 / n, `moved ${((100 * moved) / keys).toFixed(1)}%`);
    });
  }
  it("host order does not change the ring", () => {
    const hs = hosts(1, 2, 1);
    const a = new RingHash(hs);
    const b = new RingHash([...hs].reverse());
    for (let i = 0; i < 500; i++) assert.equal(a.pick(hash32(`${i}`))?.address, b.pick(hash32(`${i}`))?.address);
  });
  it("hash by header, cookie or source IP", () => {
    const headers = { get: (n: string) => ({ "x-user": "alice", cookie: 'a=1; session="s-42"; b=2' })[n] };
    assert.equal(requestHash({ header: "X-User" }, headers, "10.1.1.1"), hash32("alice"));
    assert.equal(requestHash({ cookie: "session" }, headers, "10.1.1.1"), hash32("s-42"));
    assert.equal(requestHash({ sourceIp: true }, headers, "10.1.1.1"), hash32("10.1.1.1"));
    assert.equal(requestHash({ header: "x-absent" }, headers, "10.1.1.1"), undefined);
    assert.equal(cookieValue("a=1;b=2", "b"), "2");
    assert.equal(cookieValue("ab=1; b=2", "b"), "2");
    assert.equal(cookieValue("a=1", "b"), undefined);
  });
  it("no hash: a random point (deterministic with a seeded source)", () => {
    const hs = hosts(1, 1);
    const c = share(spread(new RingHash(hs, {}, seededRandom(5)), 2000), hs);
    for (const x of c) assert.ok(x > 800);
  });
});

describe("maglev (L7)", () => {
  it("weights 1:2:3 over 6000 keys within 10%", () => {
    const hs = hosts(1, 2, 3);
    const c = share(
      spread(new Maglev(hs, 65537), 6000, (i) => hash32(`m${i}`)),
      hs,
    );
    for (const [i, want] of [1000, 2000, 3000].entries()) assert.ok(Math.abs((c[i] as number) - want) <= want * 0.1, `host ${i}: ${c[i]}`);
  });
  it("removing one of 5 hosts remaps about a fifth of keys", () => {
    const hs = hosts(1, 1, 1, 1, 1);
    const before = new Maglev(hs, 16381);
    const after = new Maglev(
      hs.filter((_, i) => i !== 2),
      16381,
    );
    let moved = 0;
    for (let i = 0; i < 10_000; i++) if (before.pick(hash32(`k${i}`)) !== after.pick(hash32(`k${i}`))) moved++;
    assert.ok(moved / 10_000 > 0.15 && moved / 10_000 < 0.3, `moved ${moved}`);
  });
  it("refuses a table size that is not prime", () => assert.throws(() => new Maglev(hosts(1), 1000), RangeError));
});

describe("outlier detection (consecutive 5xx)", () => {
  const opts = { consecutive5xx: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 };
  it("ejects on the 5th consecutive 5xx, not before; a success resets the count", () => {
    const hs = hosts(1, 1, 1, 1);
    const od = new OutlierDetector(hs, opts);
    const h = hs[0] as Host;
    for (let i = 0; i < 4; i++) assert.equal(od.report(h, 503, 0), false);
    assert.equal(od.report(h, 200, 0), false);
    for (let i = 0; i < 4; i++) assert.equal(od.report(h, 500, 0), false);
    assert.equal(od.report(h, 0 /* connect failure counts */, 1000), true);
    assert.equal(od.isEjected(h), true);
    assert.deepEqual(
      od.eligible().map((x) => x.address),
      hs.slice(1).map((x) => x.address),
    );
  });
  it("4xx are not failures", () => {
    const hs = hosts(1, 1);
    const od = new OutlierDetector(hs, opts);
    for (let i = 0; i < 20; i++) assert.equal(od.report(hs[0] as Host, 404, 0), false);
  });
  it("un-ejected at the first tick after base ejection time; the second ejection lasts twice as long", () => {
    const hs = hosts(1, 1, 1, 1);
    const od = new OutlierDetector(hs, opts);
    const h = hs[0] as Host;
    const fail = (t: number) => {
      for (let i = 0; i < 5; i++) od.report(h, 502, t);
    };
    fail(0);
    assert.equal(od.isEjected(h), true);
    assert.equal(od.tick(10_000), false);
    assert.equal(od.tick(20_000), false);
    assert.equal(od.tick(30_000), true);
    assert.equal(od.isEjected(h), false);
    fail(35_000);
    assert.equal(od.isEjected(h), true);
    assert.equal(od.tick(90_000), false, "second ejection: 2 × 30 s from 35 s");
    assert.equal(od.tick(95_000), true);
  });
  it("the multiplier decays while the host behaves", () => {
    const hs = hosts(1, 1);
    const od = new OutlierDetector(hs, opts);
    const h = hs[0] as Host;
    for (let i = 0; i < 5; i++) od.report(h, 500, 0);
    od.tick(30_000); // back
    for (let t = 40_000; t <= 100_000; t += 10_000) od.tick(t); // healthy intervals: multiplier back to 0
    for (let i = 0; i < 5; i++) od.report(h, 500, 100_000);
    assert.equal(od.tick(129_999), false);
    assert.equal(od.tick(130_000), true, "third ejection is base time again after decay");
  });
  it("max ejection percent caps ejections, but one host can always be ejected", () => {
    const hs = hosts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    const od = new OutlierDetector(hs, { ...opts, maxEjectionPercent: 10 });
    for (const h of hs.slice(0, 3)) for (let i = 0; i < 5; i++) od.report(h, 500, 0);
    assert.equal(od.ejected, 1);
    assert.equal(od.overflow, 2);
    const tiny = new OutlierDetector(hosts(1, 1), { ...opts, maxEjectionPercent: 0 });
    for (let i = 0; i < 5; i++) tiny.report(tiny.eligible()[0] as Host, 500, 0);
    assert.equal(tiny.ejected, 1);
  });
  it("state survives a membership change for hosts that stay", () => {
    const hs = hosts(1, 1, 1);
    const od = new OutlierDetector(hs, opts);
    for (let i = 0; i < 5; i++) od.report(hs[0] as Host, 500, 0);
    od.setHosts([...hs, host("10.0.0.9:8080")]);
    assert.equal(od.isEjected(hs[0] as Host), true);
    assert.equal(od.eligible().length, 3);
  });
});

describe("circuit breaker", () => {
  it("each threshold refuses past its limit, counts the overflow, and frees on release", () => {
    const cb = new CircuitBreaker({ maxConnections: 2, maxPendingRequests: 1, maxRequests: 3, maxRetries: 1 });
    assert.deepEqual([cb.tryRequest(), cb.tryRequest(), cb.tryRequest(), cb.tryRequest()], [true, true, true, false]);
    assert.equal(cb.overflow.requests, 1);
    assert.equal(cb.open().requests, true);
    cb.releaseRequest();
    assert.equal(cb.tryRequest(), true);
    assert.deepEqual([cb.tryPending(), cb.tryPending()], [true, false]);
    assert.deepEqual([cb.tryConnection(), cb.tryConnection(), cb.tryConnection()], [true, true, false]);
    assert.deepEqual([cb.tryRetry(), cb.tryRetry()], [true, false]);
    assert.deepEqual(cb.overflow, { connections: 1, pending: 1, requests: 1, retries: 1 });
  });
  it("Envoy's defaults", () =>
    assert.deepEqual(new CircuitBreaker().limits, { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 }));
});

describe("retry policy", () => {
  const cases: [string, number, number, boolean][] = [
    ["5xx", Failure.Response, 503, true],
    ["5xx", Failure.Response, 404, false],
    ["5xx", Failure.ConnectFailure, 0, true],
    ["5xx", Failure.Reset, 0, true],
    ["5xx", Failure.PerTryTimeout, 0, true],
    ["gateway-error", Failure.Response, 500, false],
    ["gateway-error", Failure.Response, 504, true],
    ["connect-failure", Failure.ConnectFailure, 0, true],
    ["connect-failure", Failure.Reset, 0, false],
    ["connect-failure", Failure.Response, 503, false],
    ["reset", Failure.Reset, 0, true],
    ["reset", Failure.Response, 500, false],
    ["retriable-4xx", Failure.Response, 409, true],
    ["refused-stream", Failure.RefusedStream, 0, true],
  ];
  for (const [on, failure, status, want] of cases)
    it(`retry_on ${on}: ${["response", "connect failure", "reset", "per-try timeout", "refused stream"][failure]} ${status || ""} → ${want ? "retry" : "no retry"}`, () =>
      assert.equal(retriable(compileRetryPolicy({ retryOn: on }), failure as 0, status), want));
  it("retriable status codes", () => {
    const p = compileRetryPolicy({ retryOn: "retriable-status-codes", retriableStatusCodes: [429] });
    assert.deepEqual([retriable(p, Failure.Response, 429), retriable(p, Failure.Response, 503)], [true, false]);
  });
  it("bad config is refused naming the field", () => {
    assert.throws(() => compileRetryPolicy({ retryOn: "5xx,sometimes" }), /WEFT_MANIFEST_INVALID: retry\.retryOn: unknown retry_on condition "sometimes"/);
    assert.throws(() => compileRetryPolicy({ retryOn: "5xx", numRetries: -1 }), /retry\.numRetries/);
    assert.throws(() => compileRetryPolicy({ retryOn: "5xx", budget: { percent: 150 } }), /budget\.percent/);
  });
  it("num retries bounds the attempts", () => {
    const p = compileRetryPolicy({ retryOn: "5xx", numRetries: 2 });
    assert.deepEqual(
      [0, 1, 2].map((n) => shouldRetry(p, n, Failure.Response, 503, 1, 0)),
      [true, true, false],
    );
  });
  it("budget: 20% of active requests, at least 3 retries in flight", () => {
    const p = compileRetryPolicy({ retryOn: "5xx", numRetries: 5, budget: {} });
    assert.equal(shouldRetry(p, 0, Failure.Response, 503, 10, 2), true, "under the minimum concurrency");
    assert.equal(shouldRetry(p, 0, Failure.Response, 503, 10, 3), false, "3 in flight, 20% of 10 = 2 < 3");
    assert.equal(shouldRetry(p, 0, Failure.Response, 503, 100, 19), true);
    assert.equal(shouldRetry(p, 0, Failure.Response, 503, 100, 20), false);
  });
  it("back-off: full jitter in [0, (2^n - 1)·base), capped at max", () => {
    const p = compileRetryPolicy({ retryOn: "5xx", baseIntervalMs: 25 });
    assert.equal(p.maxIntervalMs, 250);
    const hi = () => 0.999999;
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => backoffMs(p, n, hi)),
      [24, 74, 174, 249, 249],
    );
    assert.equal(
      backoffMs(p, 3, () => 0),
      0,
    );
    const rnd = seededRandom(9);
    for (let i = 0; i < 1000; i++) {
      const b = backoffMs(p, 2, rnd);
      assert.ok(b >= 0 && b < 75);
    }
  });
  it("per-try timeout bounded by the request's remaining time", () => {
    const p = compileRetryPolicy({ retryOn: "5xx", perTryTimeoutMs: 500 });
    assert.deepEqual([tryTimeoutMs(p, 2000), tryTimeoutMs(p, 200), tryTimeoutMs(p)], [500, 200, 500]);
    assert.equal(tryTimeoutMs(compileRetryPolicy({ retryOn: "5xx" })), Number.POSITIVE_INFINITY);
  });
});
