// The literal fast path of HTTP rule patterns (src/policy/l7/literal.ts via Re2Field) decides exactly
// as RE2 full match does: a table of tricky patterns and inputs checked against re2js, which patterns
// reduce to what, a seeded random differential test, and the cost of 50 rules with and without it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RE2JS } from "re2js";
import { seededRandom as rng } from "../../../src/core/random.ts";
import { compileHttpRule, matchHttp, Re2Field } from "../../../src/policy/l7/http-match.ts";
import { literalPlan, requiredPrefix } from "../../../src/policy/l7/literal.ts";

const field = (p: string) => new Re2Field(p, RE2JS.compile(p));

describe("literal fast path: table of patterns and inputs, against re2js", () => {
  // [pattern, input, expected full match]
  const cases: [string, string, boolean][] = [
    // pure literals
    ["GET", "GET", true],
    ["GET", "get", false],
    ["GET", "GETX", false],
    ["GET", "XGET", false],
    ["GET", "", false],
    ["/public", "/public", true],
    ["/public", "/public/", false],
    ["/public", "/public?x=1", false],
    // empty pattern and empty branches
    ["", "", true],
    ["", "a", false],
    ["|", "", true],
    ["GET|", "", true],
    ["GET|", "GET", true],
    ["()", "", true],
    // alternation at top level vs inside a group
    ["GET|HEAD", "HEAD", true],
    ["GET|HEAD", "GETHEAD", false],
    ["GET|HEAD", "GE", false],
    ["/a|/b/.*", "/b/x", true],
    ["/a|/b/.*", "/a/x", false],
    ["/(a|b)/.*", "/b/x", true],
    ["/(a|b)/.*", "/c/x", false],
    ["/a(b|c)d", "/acd", true],
    ["/a(b|c)d", "/ad", false],
    ["(GET|HEAD)|POST", "POST", true],
    ["A|B|C|D|E|F", "F", true],
    ["A|B|C|D|E|F", "G", false],
    // prefix, suffix, infix with .*
    ["/public/.*", "/public/", true],
    ["/public/.*", "/public/a/b?c", true],
    ["/public/.*", "/public", false],
    ["/public/.*", "/publicx/", false],
    ["/public/.*", "/other/public/", false],
    ["/public/.*?", "/public/a", true],
    [".*\\.css", "/a/b.css", true],
    [".*\\.css", "/a/bxcss", false],
    [".*\\.css", ".css", true],
    ["/a/.*/b", "/a//b", true],
    ["/a/.*/b", "/a/b", false],
    ["/a/.*/b", "/a/x/y/b", true],
    ["/a.*b.*c", "/abc", true],
    ["/a.*b.*c", "/acb", false],
    ["/a.*b.*c", "/abbcc", true],
    ["/ab.*ba", "/aba", false],
    ["/ab.*ba", "/abba", true],
    [".*", "", true],
    [".*.*", "xyz", true],
    ["a.*.*b", "ab", true],
    // `.` never matches a newline without (?s)
    [".*", "a\nb", false],
    ["/public/.*", "/public/\n", false],
    [".*\\.css", "\n.css", false],
    ["/a.*b.*c", "/a\nbc", false],
    ["(?s)/public/.*", "/public/\n", true],
    ["/a/.", "/a/\n", false],
    ["/a/.", "/a/x", true],
    // escaped dots and other punctuation
    ["/v1\\.0", "/v1.0", true],
    ["/v1\\.0", "/v1x0", false],
    ["/v1.0", "/v1x0", true],
    ["example\\.com", "example.com", true],
    ["example\\.com", "exampleXcom", false],
    ["\\/api\\/.*", "/api/x", true],
    ["a\\_b", "a_b", true],
    ["a\\-b", "a-b", true],
    ["\\^a\\$", "^a$", true],
    ["\\(a\\)", "(a)", true],
    ["\\.\\*", ".*", true],
    ["\\.\\*", "ab", false],
    ["/a\\|b", "/a|b", true],
    ["/a\\|b", "/a", false],
    // optional groups and characters
    ["/v1(\\?.*)?", "/v1", true],
    ["/v1(\\?.*)?", "/v1?x=1", true],
    ["/v1(\\?.*)?", "/v1x", false],
    ["(www\\.)?example\\.com", "example.com", true],
    ["(www\\.)?example\\.com", "www.example.com", true],
    ["(www\\.)?example\\.com", "wwwxexample.com", false],
    ["/colou?r", "/color", true],
    ["/colou?r", "/colour", true],
    ["/colou??r", "/colour", true],
    ["/colou?r", "/colouur", false],
    ["(?:/a)?/b", "/a/b", true],
    ["(?P<v>v1|v2)/.*", "v2/x", true],
    ["(?<v>v1|v2)/.*", "v3/x", false],
    // anchors: no-ops at the ends under full match
    ["^/public/.*$", "/public/x", true],
    ["^/public/.*$", "x/public/x", false],
    ["^GET$|^HEAD$", "HEAD", true],
    ["a$", "a\n", false],
    ["(?m)a$", "a\n", false],
    ["a^b", "ab", false],
    // character classes, repetitions, flags: the engine decides
    ["/api/v[0-9]+/.*", "/api/v12/x", true],
    ["/api/v[0-9]+/.*", "/api/v/x", false],
    ["/api/v[0-9]+/.*", "/apx/v1/x", false],
    ["[.]", ".", true],
    ["[.]", "x", false],
    ["[^/]+", "abc", true],
    ["[^/]+", "a/c", false],
    ["\\d+", "123", true],
    ["/a+", "/aaa", true],
    ["/ab*", "/a", true],
    ["/ab?", "/a", true],
    ["/ab{2}", "/abb", true],
    ["/ab{2}", "/ab", false],
    ["a{,2}", "a{,2}", true],
    ["(?i)get", "GET", true],
    ["(?i)get", "GEt", true],
    ["(?i)get", "GEX", false],
    ["(?i)GET|head", "HEAD", true],
    ["(?i)GET|head", "POST", false],
    ["(?i)/admin/.*", "/ADMIN/Users", true],
    ["(?i)/admin/.*", "/admin\n", false],
    ["(?i)/admin/.*", "/ADMIN/\n", false],
    ["(?i)/b", "/\u0042", true],
    ["(?i)i", "\u0130", false],
    ["(?i)i", "\u0131", false],
    ["(?i)k", "K", true],
    ["(?i)/api", "/\u0130pi", false],
    ["(?i)é", "É", true],
    ["(?i)api\\.example\\.com", "API.Example.COM", true],
    ["(?i)get", "GeT", true],
    ["(?i)k", "\u212A", true],
    ["(?i)s", "\u017F", true],
    ["(?i)/admin", "/ADMIN", true],
    ["/a(?i)b", "/aB", true],
    ["/a(?i)b", "/AB", false],
    ["(?i:a)b", "Ab", true],
    ["\\Qa.b\\E", "a.b", true],
    ["\\Qa.b\\E", "axb", false],
    ["\\x2e", ".", true],
    ["/a\\b", "/a", true],
    // unicode: literals are code points
    ["/café", "/café", true],
    ["/café", "/cafe", false],
    ["/caf.", "/café", true],
    ["/\u{1F600}/.*", "/\u{1F600}/x", true],
    ["/\u{1F600}?", "/", true],
    ["/\u{1F600}?", "/\u{1F600}", true],
    ["/\u{1F600}?", "/\uD83D", false],
    ["/.", "/\u{1F600}", true],
    ["/..", "/\u{1F600}", false],
    ["/.*", "/\uD800x", true],
    ["/\uD800", "/\uD800", true],
    ["/x.*", "/x\uDC00", true],
    ["é|e", "é", true],
    ["é|e", "e\u0301", false],
  ];
  for (const [pattern, input, want] of cases) {
    it(`${JSON.stringify(pattern)} ${want ? "matches" : "does not match"} ${JSON.stringify(input)}`, () => {
      assert.equal(RE2JS.compile(pattern).matches(input), want, "re2js (the reference) disagrees with the table");
      assert.equal(field(pattern).matches(input), want);
    });
  }
});

describe("what each pattern reduces to", () => {
  // [pattern, "exact" (no engine) | "prefix:<literal>" (pre-filter, then engine) | "engine"]
  const plans: [string, string][] = [
    ["GET", "exact"],
    ["GET|HEAD", "exact"],
    ["/public", "exact"],
    ["/public/.*", "exact"],
    ["/public/.*?", "exact"],
    [".*\\.css", "exact"],
    ["/a/.*/b", "exact"],
    ["/v1(\\?.*)?", "exact"],
    ["(www\\.)?example\\.com", "exact"],
    ["^/public/.*$", "exact"],
    ["(?:a|b)(c|d)(e|f)?", "exact"],
    ["", "exact"],
    ["/\u{1F600}?", "exact"],
    ["(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)", "engine"], // 64 branches: over the cap
    ["/api/v[0-9]+/.*", "prefix:/api/v"],
    ["/api/v\\d+/.*", "prefix:/api/v"],
    ["/ab*", "prefix:/a"],
    ["/ab+c", "prefix:/a"],
    ["/ab{2}", "prefix:/a"],
    ["/v1\\.0/[a-z]+", "prefix:/v1.0/"],
    ["^/x/[a-z]+", "prefix:/x/"],
    ["/a(?i)b", "prefix:/a"],
    ["/\u{1F600}+", "prefix:/"],
    ["/a/[|]", "prefix:/a/"],
    ["/a/[]|]", "prefix:/a/"],
    ["/a/\\|[a-z]", "prefix:/a/|"],
    ["/a/.", "prefix:/a/"],
    ["(?i)/admin", "exact"],
    ["(?i)GET|HEAD", "exact"],
    ["(?i)(www\\.)?example\\.com", "exact"],
    ["(?i)k8s", "engine"], // k and s fold with U+212A and U+017F
    ["(?i)é", "engine"],
    ["(?i)a(?-i)b", "engine"],
    ["/a[0-9]|/b", "engine"],
    ["/a/[[:alpha:]]", "engine"],
    ["\\Q/a\\E.+", "engine"],
    ["[a-z]+/x", "engine"],
    ["a{,2}", "engine"],
  ];
  for (const [pattern, want] of plans) {
    it(`${JSON.stringify(pattern)} → ${want}`, () => {
      RE2JS.compile(pattern); // a pattern RE2 accepts
      const plan = literalPlan(pattern);
      assert.equal(plan.kind === "prefix" ? `prefix:${plan.prefix}` : plan.kind, want);
    });
  }
  it("a prefix is only claimed without a top-level alternation", () => {
    assert.equal(requiredPrefix("/a/[0-9]|/b/.*"), "");
    assert.equal(requiredPrefix("/a/([0-9]|x)"), "/a/");
    assert.equal(requiredPrefix("/a\\(|b"), "");
  });
});

describe("seeded random differential test against re2js", () => {
  it("Re2Field decides as RE2 full match on generated patterns and near-miss inputs", () => {
    const rand = rng(Number(process.env.WEFT_TEST_SEED ?? 0x5eed)); // another seed: WEFT_TEST_SEED=n
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    // Input characters, incl. a newline, case pairs, non-ASCII, an astral one and a lone surrogate.
    const chars = ["a", "b", "A", "B", "/", ".", "-", "?", "|", "é", "É", "\u{1F600}", "\n", "\uD800", "k", "K", "\u212A", "s", "\u017F"];
    const randomText = (max: number) => Array.from({ length: Math.floor(rand() * (max + 1)) }, () => pick(chars)).join("");
    // Pattern pieces, each with a way to produce text it (usually) matches.
    type Piece = { re: string; sample: () => string };
    const lit = (c: string, re = c): Piece => ({ re, sample: () => c });
    // Pieces that reduce (literals, `.*`, groups, `?`) ...
    const reducible: (() => Piece)[] = [
      () => lit("a"),
      () => lit("b"),
      () => lit("B"),
      () => lit("k"),
      () => lit("S"),
      () => lit("/"),
      () => lit("-"),
      () => lit("é"),
      () => lit("\u{1F600}"),
      () => lit(".", "\\."),
      () => lit("?", "\\?"),
      () => lit("|", "\\|"),
      () => lit("/", "\\/"),
      () => ({ re: ".*", sample: () => randomText(3) }),
      () => ({ re: ".*?", sample: () => randomText(3) }),
      () => {
        const x = pick(["a", "b", "ab", "/"]);
        const y = pick(["b", "", "a/", "é"]);
        return { re: `(${x}|${y})`, sample: () => (rand() < 0.5 ? x : y) };
      },
      () => {
        const x = pick(["a", "/b", "\\.", ".*"]);
        return { re: `(?:${x})?`, sample: () => (rand() < 0.5 ? "" : x === "\\." ? "." : x === ".*" ? randomText(2) : x) };
      },
    ];
    // ... and pieces that need the engine.
    const atoms: (() => Piece)[] = [
      ...reducible,
      () => ({ re: ".", sample: () => pick(chars) }),
      () => ({ re: "[a-c]", sample: () => pick(["a", "b", "c", "d"]) }),
      () => ({ re: "[^/]", sample: () => pick(["a", "/", "\n"]) }),
      () => ({ re: "\\d", sample: () => pick(["1", "x"]) }),
      () => {
        const x = pick(["a", "b", "A"]);
        return { re: `(?i:${x})`, sample: () => pick([x, x.toLowerCase(), x.toUpperCase(), "\u212A"]) };
      },
    ];
    // Half the patterns use only what reduces, half anything.
    const quantified = (p: Piece, simple: boolean): Piece => {
      if (p.re.endsWith("*") || p.re.endsWith("*?") || p.re.endsWith(")?")) return p;
      const q = simple ? pick(["", "", "", "?"]) : pick(["", "", "", "", "?", "*", "+", "{2}"]);
      const group = p.re.length > 1 && !p.re.startsWith("(") && !p.re.startsWith("[") && !p.re.startsWith("\\") ? `(?:${p.re})` : p.re;
      if (q === "") return p;
      return {
        re: group + q,
        sample: () => (q === "?" ? (rand() < 0.5 ? "" : p.sample()) : q === "{2}" ? p.sample() + p.sample() : p.sample().repeat(1 + Math.floor(rand() * 2))),
      };
    };
    const branch = (simple: boolean): Piece => {
      const ps = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => quantified(pick(simple ? reducible : atoms)(), simple));
      if (!simple && rand() < 0.5) ps.unshift(lit("/"), lit(".", ".")); // a literal start: the prefix pre-filter
      return { re: ps.map((p) => p.re).join(""), sample: () => ps.map((p) => p.sample()).join("") };
    };
    const mutate = (s: string): string => {
      const cs = Array.from(s);
      const at = Math.floor(rand() * (cs.length + 1));
      const r = rand();
      if (r < 0.33) cs.splice(at, 0, pick(chars));
      else if (r < 0.66) cs.splice(at, 1);
      else cs[at] = pick(chars);
      return cs.join("");
    };

    const PATTERNS = 2500;
    const INPUTS = 12;
    let compared = 0;
    let matched = 0;
    const kinds = { exact: 0, prefix: 0, engine: 0 };
    let caseless = 0;
    const t0 = performance.now();
    for (let n = 0; n < PATTERNS; n++) {
      const simple = rand() < 0.5;
      const bs = Array.from({ length: rand() < 0.8 ? 1 : 2 + Math.floor(rand() * 2) }, () => branch(simple));
      let re = bs.map((b) => b.re).join("|");
      if (rand() < 0.1) re = `^${re}`;
      if (rand() < 0.1) re = `${re}$`;
      if (rand() < 0.15) re = `(?i)${re}`;
      if (rand() < 0.05) re = `(?s)${re}`;
      let engine: RE2JS;
      try {
        engine = RE2JS.compile(re);
      } catch {
        continue; // the validator refuses it before it can reach a matcher
      }
      const f = new Re2Field(re, engine);
      const kind = literalPlan(re).kind;
      kinds[kind]++;
      if (kind === "exact" && re.startsWith("(?i)")) caseless++;
      for (let k = 0; k < INPUTS; k++) {
        const base = pick(bs).sample();
        const input = k % 3 === 0 ? base : k % 3 === 1 ? mutate(base) : randomText(6);
        const want = engine.matches(input);
        assert.equal(f.matches(input), want, `pattern ${JSON.stringify(re)} input ${JSON.stringify(input)}: re2js says ${want}`);
        compared++;
        if (want) matched++;
      }
    }
    const ms = performance.now() - t0;
    console.log(
      `# differential: ${compared} comparisons, ${matched} matches, plans ${JSON.stringify(kinds)} (${caseless} exact under (?i)), ${ms.toFixed(0)} ms`,
    );
    // The generator must exercise every path and both answers, or the test proves little.
    assert.ok(kinds.exact > PATTERNS / 4 && kinds.prefix > PATTERNS / 10 && kinds.engine > PATTERNS / 10 && caseless > PATTERNS / 50, JSON.stringify(kinds));
    assert.ok(matched > compared / 10 && matched < compared * 0.9, `${matched} of ${compared}`);
    assert.ok(ms < 60_000, `took ${ms.toFixed(0)} ms`);
  });
});

describe("cost of 50 method+path rules when the 50th matches", () => {
  it("the literal path decides the same and much faster than the engine", () => {
    const docs = Array.from({ length: 50 }, (_, i) => ({ method: "GET", path: i === 49 ? "/api/v1/items/.*" : `/api/v1/other${i}/.*` }));
    const fast = docs.map((d) => compileHttpRule(d));
    // The same rules decided by the engine alone (what matchHttp did before the literal path).
    const slow = docs.map((d) => ({ m: RE2JS.compile(d.method), p: RE2JS.compile(d.path) }));
    const req = { method: "GET", path: "/api/v1/items/42" };
    const N = 20_000;
    const time = (f: () => number) => {
      const t0 = performance.now();
      let hits = 0;
      for (let i = 0; i < N; i++) hits += f();
      return { us: ((performance.now() - t0) * 1000) / N, hits };
    };
    const a = time(() => fast.findIndex((r) => matchHttp(r, req)));
    const b = time(() => slow.findIndex((r) => r.m.matches(req.method) && r.p.matches(req.path)));
    console.log(`# 50 rules, match on the 50th: literal path ${a.us.toFixed(2)} µs/decision, engine ${b.us.toFixed(2)} µs/decision`);
    assert.equal(a.hits, 49 * N);
    assert.equal(b.hits, 49 * N);
    assert.ok(a.us < 20, `${a.us.toFixed(2)} µs per decision`);
  });
});
