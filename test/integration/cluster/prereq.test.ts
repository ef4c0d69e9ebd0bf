// Missing prerequisites are refused with the missing piece named, before anything is created.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO, WEFT } from "../../harness/cluster.ts";

function asNobody(cmd: string, args: string[]) {
  return spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", cmd, ...args], {
    encoding: "utf8",
    cwd: REPO,
    env: { ...process.env, WEFT_STATE_DIR: "/tmp/weft-prereq-test" },
    timeout: 60_000,
  });
}

describe("prerequisites", () => {
  it("weft up refuses without root, naming root", () => {
    const r = asNobody(process.execPath, [WEFT, "up", "--cluster", "noroot", "--manifests", ""]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /WEFT_PREREQ_MISSING: the local cluster cannot start/);
    assert.match(r.stderr, /- root: /);
  });

  it("the set-up refuses without root, naming root", () => {
    const r = asNobody("sh", [join(REPO, "scripts/setup.sh")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /WEFT_PREREQ_MISSING: run as root/);
  });
});
