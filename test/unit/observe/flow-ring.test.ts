// The bounded flow ring: capacity kept, oldest overwritten, filters by verdict and last N.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Flow, Verdict } from "../../../src/observe/flow.ts";
import { FlowRing } from "../../../src/observe/flow-ring.ts";

function flow(n: number, verdict: Verdict): Flow {
  return {
    time: new Date(n * 1000).toISOString(),
    verdict,
    IP: { source: `10.0.0.${n}`, destination: "10.0.0.254", ipVersion: "IPv4" },
    source: { identity: n },
    destination: { identity: 1 },
    Type: "L3_L4",
    traffic_direction: "INGRESS",
    node_name: "n1",
  };
}

const ids = (fs: Flow[]) => fs.map((f) => f.source.identity);

describe("flow ring", () => {
  const fill = (cap: number, n: number) => {
    const r = new FlowRing(cap);
    for (let i = 1; i <= n; i++) r.push(flow(i, i % 3 === 0 ? "DROPPED" : "FORWARDED"));
    return r;
  };
  const cases: { name: string; cap: number; n: number; q: Parameters<FlowRing["query"]>[0]; want: number[] }[] = [
    { name: "empty ring: nothing", cap: 4, n: 0, q: {}, want: [] },
    { name: "under capacity: all, oldest first", cap: 4, n: 3, q: {}, want: [1, 2, 3] },
    { name: "over capacity: the newest `capacity` flows", cap: 4, n: 10, q: {}, want: [7, 8, 9, 10] },
    { name: "last N", cap: 8, n: 8, q: { last: 3 }, want: [6, 7, 8] },
    { name: "last larger than the ring: all", cap: 4, n: 4, q: { last: 100 }, want: [1, 2, 3, 4] },
    { name: "by verdict", cap: 16, n: 10, q: { verdict: ["DROPPED"] }, want: [3, 6, 9] },
    { name: "by verdict and last", cap: 16, n: 10, q: { verdict: ["DROPPED"], last: 2 }, want: [6, 9] },
    { name: "by verdict after wrap-around", cap: 4, n: 10, q: { verdict: ["DROPPED"] }, want: [9] },
    { name: "last 0: nothing", cap: 4, n: 4, q: { last: 0 }, want: [] },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(ids(fill(c.cap, c.n).query(c.q)), c.want));

  it("counts every flow seen and keeps size at capacity", () => {
    const r = fill(4, 10);
    assert.equal(r.size, 4);
    assert.equal(r.seen, 10);
  });

  it("refuses a capacity that is not a positive integer", () => {
    assert.throws(() => new FlowRing(0), RangeError);
    assert.throws(() => new FlowRing(1.5), RangeError);
  });
});
