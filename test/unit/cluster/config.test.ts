// The cluster's service map size setting (`weft up --lb-map-max`): accepted values, refusals
// naming the value and the range, and where it lands in the cluster config.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clusterConfig, LB_MAP_MAX_RANGE, parseLbMapMax } from "../../../src/cluster/config.ts";

describe("lbMapMax", () => {
  const ok: [string | number, number][] = [
    ["65536", 65536],
    ["1024", 1024],
    [327680, 327680],
    [String(LB_MAP_MAX_RANGE.max), LB_MAP_MAX_RANGE.max],
  ];
  for (const [raw, want] of ok) it(`accepts ${raw}`, () => assert.equal(parseLbMapMax(raw), want));
  for (const raw of ["1023", "0", "-5", "1e5", "65536.5", "", "abc", "16777217", 2.5])
    it(`refuses ${JSON.stringify(raw)}`, () => assert.throws(() => parseLbMapMax(raw), /lbMapMax ".*" must be a whole number from 1024 to 16777216/));
  it("is absent from the config unless set, and kept when set", () => {
    assert.equal(clusterConfig("c1", 2, "/tmp/x").lbMapMax, undefined);
    assert.equal(clusterConfig("c1", 2, "/tmp/x", { lbMapMax: 32768 }).lbMapMax, 32768);
    assert.throws(() => clusterConfig("c1", 2, "/tmp/x", { lbMapMax: 10 }));
  });
});
