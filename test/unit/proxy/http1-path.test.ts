// Path normalisation (src/proxy/http1/path.ts): Envoy's normalize_path, merge_slashes and escaped-slash
// actions, pinned case by case; the query is never touched.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_PATH_OPTIONS, PathAction, PathNormalizer, type PathOptions, redirectResponse } from "../../../src/proxy/http1/path.ts";

const F = PathAction.Forward;
const R = PathAction.Reject;
const D = PathAction.Redirect;
const merge: Partial<PathOptions> = { mergeSlashes: true };
const raw: Partial<PathOptions> = { normalize: false };

const cases: [string, Partial<PathOptions> | undefined, number, string][] = [
  // dot segments
  ["/a/../b", undefined, F, "/b"],
  ["/a/./b", undefined, F, "/a/b"],
  ["/a/b/..", undefined, F, "/a/"],
  ["/a/b/.", undefined, F, "/a/b/"],
  ["/..", undefined, F, "/"],
  ["/../../etc/passwd", undefined, F, "/etc/passwd"],
  ["/a/../../b", undefined, F, "/b"],
  ["/./", undefined, F, "/"],
  ["/a/.../b", undefined, F, "/a/.../b"],
  ["/a/..b/c", undefined, F, "/a/..b/c"],
  ["/public/../private", undefined, F, "/private"],
  // encoded dots are dots
  ["/%2e%2e/x", undefined, F, "/x"],
  ["/a/%2E%2E/b", undefined, F, "/b"],
  ["/a/.%2e/b", undefined, F, "/b"],
  ["/a/%2e/b", undefined, F, "/a/b"],
  ["/public/%2e%2e/private", undefined, F, "/private"],
  // percent-decoding of unreserved characters; other escapes uppercased, kept
  ["/%7Euser/%41%62c", undefined, F, "/~user/Abc"],
  ["/a%2db_c%5fd", undefined, F, "/a-b_c_d"],
  ["/a%20b", undefined, F, "/a%20b"],
  ["/a%3fb", undefined, F, "/a%3Fb"],
  ["/a%c3%a9", undefined, F, "/a%C3%A9"],
  ["/a%00b", undefined, F, "/a%00b"],
  // case of the path itself is never changed
  ["/Admin", undefined, F, "/Admin"],
  ["/ADMIN/%2e%2e/Users", undefined, F, "/Users"],
  // malformed escapes
  ["/a%zz", undefined, R, ""],
  ["/a%4", undefined, R, ""],
  ["/a%", undefined, R, ""],
  // slashes
  ["//a//b", undefined, F, "//a//b"],
  ["//a//b", merge, F, "/a/b"],
  ["/a///b/../c", merge, F, "/a/c"],
  ["/a//b/../c", undefined, F, "/a//c"],
  ["/a\\b", undefined, F, "/a/b"],
  // escaped slashes: keep (default), reject, unescape-and-forward, unescape-and-redirect
  ["/a%2Fb", undefined, F, "/a%2Fb"],
  ["/a%2fb", undefined, F, "/a%2Fb"],
  ["/public/..%2Fprivate", undefined, F, "/public/..%2Fprivate"],
  ["/a%2Fb", { escapedSlashes: "reject" }, R, ""],
  ["/a%5cb", { escapedSlashes: "reject" }, R, ""],
  ["/a?x=%2F", { escapedSlashes: "reject" }, F, "/a?x=%2F"],
  ["/a%2Fb", { escapedSlashes: "unescape-and-forward" }, F, "/a/b"],
  ["/public/..%2Fprivate", { escapedSlashes: "unescape-and-forward" }, F, "/private"],
  ["/a%5Cb", { escapedSlashes: "unescape-and-forward" }, F, "/a/b"],
  ["/a%2F%2Fb", { escapedSlashes: "unescape-and-forward", mergeSlashes: true }, F, "/a/b"],
  ["/public/..%2fprivate?q=1", { escapedSlashes: "unescape-and-redirect" }, D, "/private?q=1"],
  ["/plain", { escapedSlashes: "unescape-and-redirect" }, F, "/plain"],
  // the query string is preserved untouched
  ["/a/../b?x=/../y&z=%2e%2e", undefined, F, "/b?x=/../y&z=%2e%2e"],
  ["/a?", undefined, F, "/a?"],
  ["/a?b?c", undefined, F, "/a?b?c"],
  ["/%7e?%7e", undefined, F, "/~?%7e"],
  // forms and edge cases
  ["*", undefined, F, "*"],
  ["/", undefined, F, "/"],
  ["", undefined, R, ""],
  ["/a#frag", undefined, R, ""],
  ["http://example.com/a/../b?q", undefined, F, "/b?q"],
  ["https://example.com", undefined, F, "/"],
  ["http://example.com?q=1", undefined, F, "/?q=1"],
  ["ftp://example.com/a", undefined, R, ""],
  // normalize_path off: passed as received
  ["/a/../b", raw, F, "/a/../b"],
  ["/a%7e", raw, F, "/a%7e"],
  ["/a%2Fb", { normalize: false, escapedSlashes: "unescape-and-forward" }, F, "/a/b"],
];

describe("path normalisation", () => {
  it("defaults are Envoy's and Cilium's: normalize on, merge off, escaped slashes kept", () => {
    assert.deepEqual({ ...DEFAULT_PATH_OPTIONS }, { normalize: true, mergeSlashes: false, escapedSlashes: "keep" });
  });
  for (const [input, opts, action, path] of cases) {
    it(`${JSON.stringify(input)}${opts ? ` ${JSON.stringify(opts)}` : ""} → ${["forward", "reject", "redirect"][action]} ${path}`, () => {
      const n = new PathNormalizer(opts);
      assert.equal(n.run(input), action, n.reason);
      assert.equal(n.path, path);
      if (action === R) assert.ok(n.reason.length > 0);
    });
  }
  it(`has at least 40 cases (${cases.length})`, () => assert.ok(cases.length >= 40));

  it("normalisation is idempotent: the normalised path normalises to itself", () => {
    const n = new PathNormalizer();
    for (const [input, opts, action] of cases) {
      if (action !== F || opts) continue;
      n.run(input);
      const once = n.path;
      assert.equal(n.run(once), F);
      assert.equal(n.path, once, input);
    }
  });

  it("a common path costs no new string", () => {
    const n = new PathNormalizer();
    const p = "/api/v1/items/42?x=1";
    n.run(p);
    assert.equal(n.path, p);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 200_000; i++) n.run(p);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  200k normalisations of a clean path: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000);
  });

  it("redirect answer carries the location", () => {
    const r = redirectResponse("/private?q=1", true).toString("latin1");
    assert.match(r, /^HTTP\/1\.1 307 Temporary Redirect\r\nlocation: \/private\?q=1\r\ncontent-length: 0\r\n\r\n$/);
  });
});
