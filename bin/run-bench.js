#!/usr/bin/env node
// Runs every bench/*.bench.ts (or the ones named) one after another; each prints its own ratios.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const named = process.argv.slice(2);
const files = named.length
  ? named
  : readdirSync(join(root, "bench"))
      .filter((f) => f.endsWith(".bench.ts"))
      .map((f) => join("bench", f));
let failed = 0;
for (const f of files) {
  console.log(`[weft bench] ${f}`);
  const r = spawnSync(process.execPath, ["--import", "tsx", "--expose-gc", f], { stdio: "inherit", cwd: root });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
