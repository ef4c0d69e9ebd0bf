// The NodePort mirrors (src/datapath/maps/nodeport.ts, and lb.ts's, which host.o shares) against
// the BTF of the compiled host.o: every struct's size and member offsets.
// Run: node --import tsx --test test/integration/datapath/nodeport-mirrors.test.ts

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { objectPath } from "../../../src/datapath/loader.ts";
import { type BtfStruct, btfStructs } from "../../../src/datapath/maps/btf.ts";
import { lb4Backend, lb4Key, lb4Service, lbAffinity, lbAffinityKey, lbMaglevChunk, lbMaglevKey } from "../../../src/datapath/maps/lb.ts";
import { NODEPORT_MIRRORS } from "../../../src/datapath/maps/nodeport.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

describe("NodePort map mirrors match host.o's BTF", () => {
  let btf: Map<string, BtfStruct>;
  before(() => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    btf = btfStructs(objectPath("host"));
  });

  for (const mirror of [...NODEPORT_MIRRORS, lb4Key, lb4Service, lb4Backend, lbMaglevKey, lbMaglevChunk, lbAffinityKey, lbAffinity]) {
    it(`struct ${mirror.cName}: same size and member offsets`, () => {
      const s = btf.get(mirror.cName);
      assert.ok(s, `struct ${mirror.cName} is in host.o's BTF`);
      assert.equal(mirror.size, s.size, `sizeof(struct ${mirror.cName})`);
      assert.deepEqual(mirror.offsets, s.members, `member offsets of struct ${mirror.cName}`);
    });
  }
});
