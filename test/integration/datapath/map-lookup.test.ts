// The proxy's single-key lookup channel (MapLookup) against a real pinned map: a helper started
// before the map is pinned (the node proxy can start before its agent) exits, is reported, and is
// started again, so lookups find the records once the map exists instead of never again.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadObject, MapLookup, objectPath, pins, writeMaps } from "../../../src/datapath/loader.ts";
import { freshSandbox } from "../../harness/sandbox.ts";

const key = (n: number) => Buffer.from([n, 0, 0, 0]);
const value = (n: number) => Buffer.from([n, 0, 0, 0, 0, 0, 0, 0]);

describe("map lookup channel", () => {
  it("recovers when the map is pinned after the channel opened", async () => {
    const sb = await freshSandbox("lookup-late");
    const problems: string[] = [];
    const map = pins.map(sb.pinRoot, "probe_udp");
    const lookup = new MapLookup(map, (m) => problems.push(m));
    try {
      assert.equal(await lookup.lookup(key(1)), undefined, "no map yet: absent");
      const deadline = Date.now() + 10_000;
      while (problems.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.match(problems[0] ?? "", /map lookup helper for .*probe_udp exited .*started again/, "the helper's exit is reported with its reason");

      await loadObject(objectPath("probe"), sb.pinRoot, { constants: { weft_probe_version: 1 } });
      await writeMaps([{ op: "update", map, key: key(1), value: value(42) }]);
      const started = Date.now();
      let got: Buffer | undefined;
      while (!got && Date.now() - started < 10_000) {
        got = await lookup.lookup(key(1));
        if (!got) await new Promise((r) => setTimeout(r, 50));
      }
      console.log(`# found the record ${Date.now() - started} ms after the map was pinned`);
      assert.equal(got?.[0], 42, "the record is found once the map exists");
      assert.deepEqual(
        (await Promise.all([1, 7, 1].map((n) => lookup.lookup(key(n))))).map((b) => b?.[0]),
        [42, undefined, 42],
        "answers stay in order on the new helper",
      );
    } finally {
      lookup.close();
      await sb.dispose();
    }
  });
});
