// L7 matchers: HTTP regexes are RE2 (full match, linear time — the ReDoS test pins that), headers,
// Kafka roles and keys, DNS names and patterns.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { matchDns, validateDnsRule } from "../../../src/policy/l7/dns.ts";
import { compileHttpRule, compileRe2, type HttpRuleDoc, matchHttp, parseHeaderLine } from "../../../src/policy/l7/http-match.ts";
import { matchKafka, validateKafkaRule } from "../../../src/policy/l7/kafka.ts";

describe("HTTP rules", () => {
  const cases: [HttpRuleDoc, { method: string; path: string; host?: string; headers?: Record<string, string> }, boolean][] = [
    [{ method: "GET" }, { method: "GET", path: "/" }, true],
    [{ method: "GET" }, { method: "get", path: "/" }, false],
    [{ method: "GET|POST" }, { method: "POST", path: "/" }, true],
    [{ path: "/v1/.*" }, { method: "GET", path: "/v1/x/y" }, true],
    [{ path: "/v1/.*" }, { method: "GET", path: "/v2/v1/x" }, false],
    [{ path: "/v1" }, { method: "GET", path: "/v1?x=1" }, false],
    [{ path: "/v1(\\?.*)?" }, { method: "GET", path: "/v1?x=1" }, true],
    [{ host: "(www\\.)?example\\.com" }, { method: "GET", path: "/", host: "www.example.com" }, true],
    [{ host: "(www\\.)?example\\.com" }, { method: "GET", path: "/", host: "wwwxexample.com" }, false],
    [{ host: "example\\.com" }, { method: "GET", path: "/" }, false],
    [{ headers: ["X-A: 1", "X-B"] }, { method: "GET", path: "/", headers: { "x-a": "1", "x-b": "" } }, true],
    [{ headers: ["X-A: 1", "X-B"] }, { method: "GET", path: "/", headers: { "x-a": "1" } }, false],
    [{ headerMatches: [{ name: "X-Token", value: "s3cret" }] }, { method: "GET", path: "/", headers: { "X-Token": "s3cret" } }, true],
    [{ headerMatches: [{ name: "X-Token", value: "s3cret" }] }, { method: "GET", path: "/", headers: { "X-Token": "S3CRET" } }, false],
    [{}, { method: "ANYTHING", path: "/whatever" }, true],
    // header names: lowercase ones are read in place, others through a lowercased copy
    [{ headers: ["X-A: 1"] }, { method: "GET", path: "/", headers: { "x-a": "1" } }, true],
    [{ headers: ["X-A: 1"] }, { method: "GET", path: "/", headers: { "x-a": "2", "X-A": "1" } }, true],
    [{ headers: ["X-A: 1"] }, { method: "GET", path: "/", headers: { "X-A": "1", "x-a": "2" } }, false],
    [{ headers: ["Constructor"] }, { method: "GET", path: "/", headers: {} }, false],
    [{ headers: ["toString"] }, { method: "GET", path: "/", headers: { "x-a": "1" } }, false],
    // method, path and host patterns on the literal fast path and the engine give one answer
    [{ method: "GET|HEAD", path: "/public/.*", host: "(www\\.)?example\\.com" }, { method: "HEAD", path: "/public/x", host: "example.com" }, true],
    [{ method: "GET|HEAD", path: "/public/.*", host: "(www\\.)?example\\.com" }, { method: "HEAD", path: "/public/x", host: "example.com:80" }, false],
    [{ method: "GET", path: "/api/v[0-9]+/.*" }, { method: "GET", path: "/api/v2/x" }, true],
    [{ method: "GET", path: "/api/v[0-9]+/.*" }, { method: "GET", path: "/api/vx/x" }, false],
    [{ host: "(?i)api\\.example\\.com" }, { method: "GET", path: "/", host: "API.example.com" }, true],
  ];
  for (const [rule, req, want] of cases) {
    it(`${JSON.stringify(rule)} ${want ? "matches" : "does not match"} ${JSON.stringify(req)}`, () =>
      assert.equal(matchHttp(compileHttpRule(rule), req), want));
  }
  it("header lines parse as name and optional value", () => {
    assert.deepEqual(parseHeaderLine("X-My-Header: true"), { name: "x-my-header", value: "true" });
    assert.deepEqual(parseHeaderLine("X-Flag"), { name: "x-flag" });
    assert.deepEqual(parseHeaderLine("X-Key value with spaces"), { name: "x-key", value: "value with spaces" });
    assert.equal(parseHeaderLine("X(bad): 1"), undefined);
  });
  it("Perl-only syntax is refused (lookarounds, backreferences)", () => {
    for (const p of ["(?=a)b", "(?<=a)b", "(a)\\1", "a++"]) assert.equal(typeof compileRe2(p), "string", p);
  });
});

describe("ReDoS: regexes run in linear time", () => {
  it("a pattern that explodes a backtracking engine matches a crafted path quickly", () => {
    const pattern = "/(a+)+b";
    const evil = `/${"a".repeat(50_000)}c`;
    // A backtracking engine takes 2^n steps here; JS RegExp would not return for n = 30 already.
    const rule = compileHttpRule({ path: pattern });
    const t0 = performance.now();
    const hit = matchHttp(rule, { method: "GET", path: evil });
    const ms = performance.now() - t0;
    assert.equal(hit, false);
    assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`);
  });
  it("nested quantifiers with alternation stay linear as the input doubles", () => {
    const rule = compileHttpRule({ path: "(x|x|xx)*y", method: "(G|GE|GET)*T" });
    const time = (n: number) => {
      const t0 = performance.now();
      matchHttp(rule, { method: "G".repeat(n), path: "x".repeat(n) });
      return performance.now() - t0;
    };
    time(2000);
    const small = time(20_000);
    const big = time(40_000);
    assert.ok(big < Math.max(small * 6, 50), `20k: ${small.toFixed(1)} ms, 40k: ${big.toFixed(1)} ms`);
  });
});

describe("Kafka rules", () => {
  const cases: [object, object, boolean][] = [
    [{ role: "produce", topic: "t" }, { apiKey: "produce", topic: "t" }, true],
    [{ role: "produce", topic: "t" }, { apiKey: "fetch", topic: "t" }, false],
    [{ role: "produce", topic: "t" }, { apiKey: "metadata", topic: "t" }, true],
    [{ role: "consume", topic: "t" }, { apiKey: "joingroup" }, true],
    [{ apiKey: "produce" }, { apiKey: 0, topic: "any" }, true],
    [{ apiKey: "produce", apiVersion: "3" }, { apiKey: "produce", apiVersion: 2 }, false],
    [{ clientID: "app-1" }, { apiKey: "fetch", clientID: "app-2" }, false],
    [{ topic: "t" }, { apiKey: "fetch", topic: "u" }, false],
    [{}, { apiKey: "deleterecords", topic: "t" }, true],
    [{}, { apiKey: "nope" }, false],
  ];
  for (const [rule, req, want] of cases)
    it(`${JSON.stringify(rule)} ${want ? "matches" : "does not match"} ${JSON.stringify(req)}`, () => assert.equal(matchKafka(rule, req as never), want));
  it("validation names the field", () => {
    assert.deepEqual(
      validateKafkaRule({ apiKey: "x" }, "r").map((p) => p.path),
      ["r.apiKey"],
    );
    assert.deepEqual(
      validateKafkaRule({ topic: "bad topic" }, "r").map((p) => p.path),
      ["r.topic"],
    );
  });
});

describe("DNS names and patterns", () => {
  const cases: [object, string, boolean][] = [
    [{ matchName: "cilium.io" }, "cilium.io", true],
    [{ matchName: "cilium.io" }, "CILIUM.IO.", true],
    [{ matchName: "cilium.io" }, "docs.cilium.io", false],
    [{ matchPattern: "*.cilium.io" }, "docs.cilium.io", true],
    [{ matchPattern: "*.cilium.io" }, "cilium.io", false],
    [{ matchPattern: "*.cilium.io" }, "a.b.cilium.io", false],
    [{ matchPattern: "*" }, "a.b.c.d", true],
    [{ matchPattern: "api-*.example.com" }, "api-eu.example.com", true],
    [{ matchPattern: "api-*.example.com" }, "web-eu.example.com", false],
    [{ matchPattern: "*.example.com" }, "x.example.com.evil.net", false],
  ];
  for (const [rule, name, want] of cases)
    it(`${JSON.stringify(rule)} ${want ? "matches" : "does not match"} ${name}`, () => assert.equal(matchDns(rule, name), want));
  it("a rule needs a name or a pattern", () => assert.equal(validateDnsRule({}, "d")[0]?.path, "d"));
});
