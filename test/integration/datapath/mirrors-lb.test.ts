// The service maps' TypeScript mirrors (src/datapath/maps/lb.ts) against the BTF of the compiled
// sock.o: every struct's size and every member's offset, and no member the mirror lacks.
// Run: node --import tsx --test test/integration/datapath/mirrors-lb.test.ts

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { objectPath } from "../../../src/datapath/loader.ts";
import { type BtfStruct, btfStructs } from "../../../src/datapath/maps/btf.ts";
import { LB_MIRRORS } from "../../../src/datapath/maps/lb.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

describe("service map mirrors match sock.o's BTF", () => {
  let btf: Map<string, BtfStruct>;
  before(() => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    btf = btfStructs(objectPath("sock"));
  });

  for (const mirror of LB_MIRRORS) {
    it(`struct ${mirror.cName}: same size and member offsets`, () => {
      const s = btf.get(mirror.cName);
      assert.ok(s, `struct ${mirror.cName} is in sock.o's BTF`);
      assert.equal(mirror.size, s.size, `sizeof(struct ${mirror.cName})`);
      assert.deepEqual(mirror.offsets, s.members, `member offsets of struct ${mirror.cName}`);
    });
  }
});
