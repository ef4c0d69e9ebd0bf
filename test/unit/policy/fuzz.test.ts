// Nothing a user writes crashes the validator, the compiler or the CLI: random mutations of the
// fixtures (structure and text) and random arguments either work or fail with a WeftError.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import YAML from "yaml";
import { runPolicy } from "../../../src/cli/policy.ts";
import { isWeftError } from "../../../src/core/errors.ts";
import { PROTO } from "../../../src/policy/ports.ts";
import { buildScenario } from "../../../src/policy/scenario.ts";
import { traceFlow } from "../../../src/policy/trace.ts";
import { validateDocument, validateText } from "../../../src/policy/validate.ts";
import { rng } from "./compile.test.ts";

const validDir = new URL("../../fixtures/policy/valid/", import.meta.url).pathname;
const files = readdirSync(validDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const texts = files.map((f) => readFileSync(join(validDir, f), "utf8"));
const docs = texts.flatMap((t) => YAML.parseAllDocuments(t).map((d) => d.toJS() as unknown));

const WEIRD: unknown[] = [
  null,
  0,
  -1,
  65536,
  1.5,
  "",
  " ",
  "x".repeat(5000),
  "(((((",
  "*",
  "0.0.0.0/0",
  "::",
  "80",
  "http",
  true,
  [],
  {},
  [null],
  { matchLabels: null },
  "\u0000",
  "__proto__",
  "constructor",
  { __proto__: { polluted: 1 } },
  [[[]]],
  "ANY",
  "ICMP",
  1e308,
  "10.0.0.0/8",
  "a".repeat(70),
];

function mutate(v: unknown, r: () => number, depth = 0): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  if (r() < 0.08 || depth > 12) return pick(WEIRD);
  if (Array.isArray(v)) {
    const out = v.map((x) => (r() < 0.3 ? mutate(x, r, depth + 1) : x));
    if (r() < 0.1 && out.length) out.push(out[0]);
    if (r() < 0.1) out.pop();
    return out;
  }
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (r() < 0.05) continue;
      const key = r() < 0.03 ? `${k}x` : k;
      out[key] = r() < 0.35 ? mutate(x, r, depth + 1) : x;
    }
    if (r() < 0.05) out[pick(["toPorts", "icmps", "fromEntities", "rules", "except", "endPort", "specs"])] = pick(WEIRD);
    return out;
  }
  return r() < 0.5 ? pick(WEIRD) : v;
}

function onlyWeftErrors(fn: () => void, what: string): void {
  try {
    fn();
  } catch (err) {
    assert.ok(isWeftError(err), `${what}: ${(err as Error).stack}`);
  }
}

describe("fuzzing", () => {
  it("mutated documents validate, compile and trace without crashing", () => {
    const r = rng(42);
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      const doc = mutate(docs[i % docs.length], r);
      onlyWeftErrors(
        () => {
          const v = validateDocument(doc, { file: "fuzz", document: 1 });
          if (!v.policy) return;
          accepted++;
          const sc = buildScenario({
            clusterName: "weft",
            policies: [v.policy],
            namespaces: [],
            pods: [],
            src: { labels: { app: "a" } },
            dst: { labels: { app: "b", role: "backend" } },
          });
          for (const port of [0, 53, 80, 443, 8080])
            traceFlow((id) => sc.compiler.subject(id), sc.src, sc.dst, { proto: PROTO.TCP, port, http: { method: "GET", path: "/" } });
          sc.compiler.all();
        },
        JSON.stringify(doc).slice(0, 400),
      );
    }
    assert.ok(accepted > 100, `only ${accepted} mutants were still valid: the fuzzer would not reach the compiler`);
  });
  it("mutated YAML text never crashes the parser or validator", () => {
    const r = rng(7);
    for (let i = 0; i < 1500; i++) {
      const t = texts[i % texts.length] as string;
      const chars = [...t];
      for (let k = 0; k < 1 + Math.floor(r() * 6); k++) {
        const at = Math.floor(r() * chars.length);
        const op = r();
        if (op < 0.4) chars.splice(at, 1);
        else if (op < 0.8) chars.splice(at, 0, "{}[]:-&*!|>'\"#%@`\t\n ,?"[Math.floor(r() * 22)] as string);
        else chars[at] = String.fromCharCode(Math.floor(r() * 128));
      }
      const text = chars.join("");
      onlyWeftErrors(() => void validateText(text, "fuzz.yaml"), text.slice(0, 300));
    }
  });
  it("alias bombs are refused, not expanded", () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n`;
    const r = validateText(bomb, "bomb.yaml");
    assert.equal(r.policies.length, 0);
    assert.ok(r.problems.length >= 1);
  });
  it("random CLI arguments end with an exit code, never a crash", async () => {
    const r = rng(3);
    const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
    const words = [
      "validate",
      "get",
      "trace",
      "-f",
      join(validDir, files[0] as string),
      "--src-labels",
      "app=a",
      "--dst-labels",
      "--dport",
      "80/tcp",
      "99999/tcp",
      "x/y",
      "--src-cidr",
      "300.1.1.1",
      "--dst-entity",
      "nope",
      "--http-path",
      "--kafka-api-key",
      "-o",
      "json",
      "--bogus",
      "=",
      "",
      "--src-pod",
      "a/b/c",
      "--dst-fqdn",
      "..",
      "--audit-namespace",
    ];
    for (let i = 0; i < 300; i++) {
      const args = Array.from({ length: Math.floor(r() * 10) }, () => words[Math.floor(r() * words.length)] as string);
      const code = await runPolicy(args, { out: sink(), err: sink() });
      assert.ok([0, 1, 2].includes(code), `${args.join(" ")} → ${code}`);
    }
  });
});
