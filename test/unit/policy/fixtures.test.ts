// Pins the fixtures: every valid document validates, compiles and gives the traced verdicts written
// beside it (`# trace: ARGS => VERDICT`), and the policy map agrees with the model on each one;
// every invalid document is refused with the code and JSON path it declares (`# expect: CODE PATH`).

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runTrace } from "../../../src/cli/policy.ts";
import { validateText } from "../../../src/policy/validate.ts";

const root = new URL("../../fixtures/policy/", import.meta.url).pathname;
const validDir = join(root, "valid");
const invalidDir = join(root, "invalid");

/** Splits a command line the way a shell would for simple double-quoted words. */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) out.push(m[1] ?? m[2] ?? "");
  return out;
}

function traces(text: string): { args: string[]; verdict: string; line: string }[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("# trace:"))
    .map((l) => {
      const [args, verdict] = l.slice("# trace:".length).split("=>");
      return { args: splitArgs((args ?? "").trim()), verdict: (verdict ?? "").trim(), line: l };
    });
}

const validFiles = readdirSync(validDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const invalidFiles = readdirSync(invalidDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("valid fixtures", () => {
  it("there are at least 40 valid policy documents", () => {
    const docs = validFiles.reduce((n, f) => n + validateText(readFileSync(join(validDir, f), "utf8"), f).policies.length, 0);
    assert.ok(docs >= 40, `only ${docs}`);
  });
  for (const f of validFiles) {
    const file = join(validDir, f);
    const text = readFileSync(file, "utf8");
    const cases = traces(text);
    it(`${f} validates with no problem`, () => {
      const r = validateText(text, f);
      assert.deepEqual(r.problems, []);
      assert.ok(r.policies.length >= 1);
    });
    it(`${f} pins at least 3 trace verdicts`, () => assert.ok(cases.length >= 3, `${cases.length} cases`));
    for (const c of cases) {
      it(`${f}: ${c.args.join(" ")} => ${c.verdict}`, async () => {
        const r = await runTrace(["-f", file, ...c.args]);
        assert.equal(r.verdict, c.verdict, r.text);
        // The policy map, looked up as the datapath will, must agree with the model at L3/L4.
        const j = r.json as { egress?: Record<string, unknown>; ingress?: Record<string, unknown> };
        for (const d of [j.egress, j.ingress]) {
          if (!d) continue;
          const l4Denied = d.verdict !== "ALLOWED" && d.l7 === "none";
          const expected = l4Denied ? ((d.rules as string[]).length ? ["deny"] : ["miss"]) : d.enforced ? ["allow"] : ["allow", "miss"];
          assert.ok(expected.includes(d.datapath as string), `${d.direction}: model ${d.verdict} (${d.reason}), datapath ${d.datapath}`);
        }
      });
    }
  }
});

describe("invalid fixtures", () => {
  it("there are at least 40 invalid documents", () => assert.ok(invalidFiles.length >= 40, `only ${invalidFiles.length}`));
  for (const f of invalidFiles) {
    const text = readFileSync(join(invalidDir, f), "utf8");
    const expects = text
      .split("\n")
      .filter((l) => l.startsWith("# expect:"))
      .map((l) => {
        const [code, path] = l.slice("# expect:".length).trim().split(/\s+/);
        return { code: code ?? "", path: path === "-" ? "" : (path ?? "") };
      });
    it(`${f} is refused with ${expects.map((e) => `${e.code} at ${e.path || "(document)"}`).join("; ")}`, () => {
      assert.ok(expects.length >= 1, "the fixture declares what it expects");
      const r = validateText(text, f);
      assert.equal(r.policies.length, 0, "nothing of a refused document is accepted");
      for (const e of expects) {
        assert.ok(
          r.problems.some((p) => p.code === e.code && p.path === e.path),
          `want ${e.code} at ${e.path}; got:\n${r.problems.map((p) => `${p.code} ${p.path}: ${p.reason}`).join("\n")}`,
        );
      }
    });
  }
});
