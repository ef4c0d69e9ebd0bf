#!/usr/bin/env node
// The whole test command (`npm test`): type check, then every test/**/*.test.ts under node:test.
// Arguments narrow the run to files under the given paths: `npm test -- test/unit`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
process.chdir(root);

function findTests(dir) {
  let st;
  try {
    st = statSync(dir);
  } catch {
    console.error(`no such test path: ${dir}`);
    process.exit(2);
  }
  if (!st.isDirectory()) return dir.endsWith(".test.ts") ? [dir] : [];
  return readdirSync(dir)
    .sort()
    .flatMap((e) => findTests(join(dir, e)));
}

const started = Date.now();
const args = process.argv.slice(2);
const files = (args.length ? args : ["test"]).flatMap(findTests).map((f) => relative(root, f));

console.log(`[weft test] type check (tsc --noEmit)`);
const tsc = spawnSync(join(root, "node_modules/.bin/tsc"), ["--noEmit", "-p", "."], { stdio: "inherit" });
if (tsc.status !== 0) {
  console.error("[weft test] type check failed");
  process.exit(1);
}

console.log(`[weft test] ${files.length} test files`);
// TAP goes to the terminal as it comes; failures are also collected and repeated at the end.
const summaryDir = mkdtempSync(join(tmpdir(), "weft-test-"));
const failures = join(summaryDir, "failures.txt");
const reporters = ["--test-reporter=tap", "--test-reporter-destination=stdout"];
reporters.push(`--test-reporter=${join(root, "bin/failure-summary.mjs")}`, `--test-reporter-destination=${failures}`);
const run = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=1800000", ...reporters, ...files], {
  stdio: "inherit",
  env: { ...process.env, WEFT_TEST: "1" },
});
let failed = "";
try {
  failed = readFileSync(failures, "utf8");
} catch {}
rmSync(summaryDir, { recursive: true, force: true });
if (failed) console.log(`\n[weft test] failed:\n${failed}`);
console.log(`[weft test] finished in ${((Date.now() - started) / 1000).toFixed(1)}s`);
process.exit(run.status ?? 1);
