// The HTTP L7 policy filter (src/proxy/filters/l7-policy.ts): verdicts per peer and request over
// compiled L7 sets, visibility-only allows, headerMatches mismatch actions as header edits, fail-closed
// sets, the 403 bytes; and the parser → path normalisation → policy chain on raw requests.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { L7Entry, L7Set } from "../../../src/policy/compile.ts";
import { compileHttpRule, type HttpRuleDoc } from "../../../src/policy/l7/http-match.ts";
import { denyResponse, editPlan, type HeaderEdit, HttpPolicy } from "../../../src/proxy/filters/l7-policy.ts";
import { Ev, RequestParser } from "../../../src/proxy/http1/parser.ts";
import { PathAction, PathNormalizer } from "../../../src/proxy/http1/path.ts";

const CLIENT = 1001;
const OTHER = 1002;

function entry(scope: number, rules: HttpRuleDoc[] | null, rule = "r"): L7Entry {
  return { scope, allowAll: rules === null, l7: rules === null ? null : { kind: "http", rules: rules.map(compileHttpRule) }, rule };
}
function set(...entries: L7Entry[]): L7Set {
  return { proto: 6, port: 80, kind: "http", entries };
}
class Headers {
  constructor(private readonly h: Record<string, string>) {}
  get(lower: string): string | undefined {
    for (const [k, v] of Object.entries(this.h)) if (k.toLowerCase() === lower) return v;
    return undefined;
  }
}
interface Req {
  method?: string;
  path?: string;
  authority?: string;
  headers?: Record<string, string>;
}
const rq = (r: Req) => ({ method: r.method ?? "GET", path: r.path ?? "/", authority: r.authority ?? "svc", headers: new Headers(r.headers ?? {}) });

interface Want {
  allowed: boolean;
  visibilityOnly?: boolean;
  rule?: string;
  edits?: HeaderEdit[];
  mismatches?: number;
}

const GET_PUBLIC = set(entry(CLIENT, [{ method: "GET", path: "/public/.*" }], "allow-get-public"));
const ANY_PEER = set(entry(0, [{ method: "GET|HEAD", path: "/health" }], "any"));
const cases: [string, L7Set | undefined, number, Req, Want][] = [
  // method and path
  ["allowed method and path", GET_PUBLIC, CLIENT, { path: "/public/a" }, { allowed: true, visibilityOnly: false, rule: "allow-get-public" }],
  ["wrong method", GET_PUBLIC, CLIENT, { method: "POST", path: "/public/a" }, { allowed: false }],
  ["method is case-sensitive", GET_PUBLIC, CLIENT, { method: "get", path: "/public/a" }, { allowed: false }],
  ["path outside the rule", GET_PUBLIC, CLIENT, { path: "/private" }, { allowed: false }],
  ["path regex is a full match, not a prefix", GET_PUBLIC, CLIENT, { path: "/x/public/a" }, { allowed: false }],
  ["path includes the query (Cilium matches :path)", set(entry(CLIENT, [{ path: "/public" }])), CLIENT, { path: "/public?x=1" }, { allowed: false }],
  ["query allowed when the regex says so", set(entry(CLIENT, [{ path: "/public(\\?.*)?" }])), CLIENT, { path: "/public?x=1" }, { allowed: true }],
  ["another peer gets nothing from a peer-scoped rule", GET_PUBLIC, OTHER, { path: "/public/a" }, { allowed: false }],
  ["scope 0 applies to every peer", ANY_PEER, OTHER, { method: "HEAD", path: "/health" }, { allowed: true, rule: "any" }],
  ["scope 0 still checks the request", ANY_PEER, OTHER, { method: "GET", path: "/admin" }, { allowed: false }],
  ["alternatives in the method regex", set(entry(CLIENT, [{ method: "GET|POST" }])), CLIENT, { method: "POST" }, { allowed: true }],
  ["method regex anchored: GETX is not GET", set(entry(CLIENT, [{ method: "GET" }])), CLIENT, { method: "GETX" }, { allowed: false }],
  // any rule passes
  [
    "second rule of an entry matches",
    set(
      entry(CLIENT, [
        { method: "POST", path: "/a" },
        { method: "GET", path: "/b" },
      ]),
    ),
    CLIENT,
    { path: "/b" },
    { allowed: true },
  ],
  [
    "second entry (another policy) matches, its rule named",
    set(entry(CLIENT, [{ path: "/a" }], "p1"), entry(CLIENT, [{ path: "/b" }], "p2")),
    CLIENT,
    { path: "/b" },
    { allowed: true, rule: "p2" },
  ],
  ["no rule matches across entries", set(entry(CLIENT, [{ path: "/a" }], "p1"), entry(0, [{ path: "/b" }], "p2")), CLIENT, { path: "/c" }, { allowed: false }],
  // host
  ["host regex", set(entry(CLIENT, [{ host: "api\\.example\\.com" }])), CLIENT, { authority: "api.example.com" }, { allowed: true }],
  [
    "host with a port does not match a portless regex",
    set(entry(CLIENT, [{ host: "api\\.example\\.com" }])),
    CLIENT,
    { authority: "api.example.com:8080" },
    { allowed: false },
  ],
  [
    "host regex allowing a port",
    set(entry(CLIENT, [{ host: "api\\.example\\.com(:[0-9]+)?" }])),
    CLIENT,
    { authority: "api.example.com:8080" },
    { allowed: true },
  ],
  ["host dot is literal when escaped", set(entry(CLIENT, [{ host: "api\\.example\\.com" }])), CLIENT, { authority: "apixexample.com" }, { allowed: false }],
  ["missing host does not match a host rule", set(entry(CLIENT, [{ host: "a" }])), CLIENT, { authority: "" }, { allowed: false }],
  // headers
  ["header presence", set(entry(CLIENT, [{ headers: ["X-Debug"] }])), CLIENT, { headers: { "x-debug": "" } }, { allowed: true }],
  ["header absent", set(entry(CLIENT, [{ headers: ["X-Debug"] }])), CLIENT, {}, { allowed: false }],
  ["header name case-insensitive", set(entry(CLIENT, [{ headers: ["X-Token: abc"] }])), CLIENT, { headers: { "X-TOKEN": "abc" } }, { allowed: true }],
  ["header value exact", set(entry(CLIENT, [{ headers: ["X-Token: abc"] }])), CLIENT, { headers: { "x-token": "abcd" } }, { allowed: false }],
  ["header value case-sensitive", set(entry(CLIENT, [{ headers: ["X-Token: abc"] }])), CLIENT, { headers: { "x-token": "ABC" } }, { allowed: false }],
  [
    "headerMatches without mismatch: required",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Key", value: "k" }] }])),
    CLIENT,
    { headers: { "x-key": "nope" } },
    { allowed: false },
  ],
  [
    "headerMatches without mismatch: satisfied",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Key", value: "k" }] }])),
    CLIENT,
    { headers: { "x-key": "k" } },
    { allowed: true },
  ],
  // mismatch actions
  [
    "mismatch LOG: allowed, logged, no edit",
    set(entry(CLIENT, [{ path: "/a", headerMatches: [{ name: "X-Key", value: "k", mismatch: "LOG" }] }])),
    CLIENT,
    { path: "/a", headers: { "x-key": "bad" } },
    { allowed: true, visibilityOnly: false, edits: [], mismatches: 1 },
  ],
  [
    "mismatch ADD on a missing header adds it",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [{ op: "add", name: "x-tenant", value: "blue" }], mismatches: 1 },
  ],
  [
    "mismatch ADD on a wrong value adds another value",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }])),
    CLIENT,
    { headers: { "x-tenant": "red" } },
    { allowed: true, edits: [{ op: "add", name: "x-tenant", value: "blue" }] },
  ],
  [
    "mismatch DELETE removes the wrong header",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", value: "no", mismatch: "DELETE" }] }])),
    CLIENT,
    { headers: { "x-admin": "yes" } },
    { allowed: true, edits: [{ op: "delete", name: "x-admin", value: "" }] },
  ],
  [
    "mismatch DELETE of an absent header: nothing to edit",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", value: "no", mismatch: "DELETE" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [], mismatches: 1 },
  ],
  [
    "mismatch REPLACE sets the value",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] }])),
    CLIENT,
    { headers: { "x-role": "admin" } },
    { allowed: true, edits: [{ op: "replace", name: "x-role", value: "reader" }] },
  ],
  [
    "matching header: no mismatch, no edit",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] }])),
    CLIENT,
    { headers: { "x-role": "reader" } },
    { allowed: true, edits: [], mismatches: 0 },
  ],
  [
    "mismatch action does not rescue a wrong path",
    set(entry(CLIENT, [{ path: "/a", headerMatches: [{ name: "X-Role", value: "r", mismatch: "REPLACE" }] }])),
    CLIENT,
    { path: "/b" },
    { allowed: false },
  ],
  [
    "a clean match elsewhere wins over a mismatch with edits",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "r", mismatch: "REPLACE" }] }], "soft"), entry(CLIENT, [{ path: "/ok" }], "clean")),
    CLIENT,
    { path: "/ok", headers: { "x-role": "admin" } },
    { allowed: true, rule: "clean", edits: [] },
  ],
  [
    "strict headers still required next to soft ones",
    set(entry(CLIENT, [{ headers: ["X-A: 1"], headerMatches: [{ name: "X-B", value: "2", mismatch: "LOG" }] }])),
    CLIENT,
    { headers: { "x-b": "2" } },
    { allowed: false },
  ],
  // visibility and allow-all
  [
    "http: [{}] allows everything, visibility only",
    set(entry(CLIENT, [{}], "vis")),
    CLIENT,
    { method: "DELETE", path: "/anything" },
    { allowed: true, visibilityOnly: true, rule: "vis" },
  ],
  [
    "L4-only allow on the same port (allowAll) allows every request",
    set(entry(CLIENT, [{ path: "/a" }]), entry(CLIENT, null, "l4")),
    CLIENT,
    { path: "/zzz" },
    { allowed: true, visibilityOnly: true, rule: "l4" },
  ],
  ["allowAll for another peer does not apply", set(entry(CLIENT, [{ path: "/a" }]), entry(OTHER, null, "l4")), CLIENT, { path: "/zzz" }, { allowed: false }],
  ["allowAll for any peer (scope 0)", set(entry(0, null, "l4-any")), OTHER, { path: "/zzz" }, { allowed: true, visibilityOnly: true }],
  ["no L7 set in this direction: allowed", undefined, CLIENT, { path: "/anything" }, { allowed: true, visibilityOnly: true, rule: "" }],
  ["empty set: nothing allowed", set(), CLIENT, {}, { allowed: false }],
  // fail closed
  ["conflict of two L7 protocols refuses everything", { proto: 6, port: 80, kind: "conflict", entries: [entry(CLIENT, [{}])] }, CLIENT, {}, { allowed: false }],
  ["a kafka set on an HTTP listener refuses everything", { proto: 6, port: 80, kind: "kafka", entries: [] }, CLIENT, {}, { allowed: false }],
];

describe("HTTP L7 policy filter", () => {
  for (const [name, s, peer, req, want] of cases) {
    it(name, () => {
      const v = HttpPolicy.compile(s).decide(peer, rq(req));
      assert.equal(v.allowed, want.allowed);
      if (want.visibilityOnly !== undefined) assert.equal(v.visibilityOnly, want.visibilityOnly);
      if (want.rule !== undefined) assert.equal(v.rule, want.rule);
      if (want.edits !== undefined) assert.deepEqual(v.edits, want.edits);
      if (want.mismatches !== undefined) assert.equal(v.mismatches.length, want.mismatches);
      if (!want.allowed) assert.deepEqual([v.rule, v.edits.length], ["", 0]);
    });
  }
  it(`has at least 40 cases (${cases.length})`, () => assert.ok(cases.length >= 40));

  it("edit plan: replace drops then adds, delete drops, add adds", () => {
    assert.deepEqual(
      editPlan([
        { op: "add", name: "x-a", value: "1" },
        { op: "replace", name: "x-b", value: "2" },
        { op: "delete", name: "x-c", value: "" },
      ]),
      { drop: ["x-b", "x-c"], add: "x-a: 1\r\nx-b: 2\r\n" },
    );
  });

  it("denial answers 403 with body 'Access denied\\r\\n'", () => {
    for (const keep of [true, false]) {
      const r = denyResponse(keep).toString("latin1");
      assert.match(r, /^HTTP\/1\.1 403 Forbidden\r\n/);
      assert.ok(r.endsWith("\r\n\r\nAccess denied\r\n"));
      assert.match(r, /content-length: 15\r\n/);
      assert.equal(/connection: close/.test(r), !keep);
    }
  });

  // The chain the proxy runs: parse → normalise → decide. A path trick cannot reach a denied path.
  const chain: [string, boolean, string][] = [
    ["GET /public/a HTTP/1.1", true, "/public/a"],
    ["GET /public/../private HTTP/1.1", false, "/private"],
    ["GET /public/%2e%2e/private HTTP/1.1", false, "/private"],
    ["GET /public/%2E%2E/private HTTP/1.1", false, "/private"],
    ["GET /public/./a HTTP/1.1", true, "/public/a"],
    ["GET //public/a HTTP/1.1", false, "//public/a"],
    ["GET /PUBLIC/a HTTP/1.1", false, "/PUBLIC/a"],
    ["GET /public/..%2Fprivate HTTP/1.1", true, "/public/..%2Fprivate"],
    ["GET /%70ublic/a HTTP/1.1", true, "/public/a"],
    ["GET http://svc/public/../private HTTP/1.1", false, "/private"],
  ];
  for (const [line, allowed, upstream] of chain) {
    it(`chain: ${line} → ${allowed ? "allowed" : "403"}, upstream path ${upstream}`, () => {
      const p = new RequestParser();
      p.execute(Buffer.from(`${line}\r\nHost: svc\r\n\r\n`, "latin1"));
      assert.equal(p.event, Ev.Head, p.error?.message);
      const n = new PathNormalizer();
      assert.equal(n.run(p.head.pathAndQuery()), PathAction.Forward);
      assert.equal(n.path, upstream);
      const v = HttpPolicy.compile(GET_PUBLIC).decide(CLIENT, { method: p.head.method, path: n.path, authority: p.head.authority(), headers: p.head });
      assert.equal(v.allowed, allowed);
    });
  }

  it("decides 20k requests against 50 rules within a generous ceiling", () => {
    const rules: HttpRuleDoc[] = Array.from({ length: 50 }, (_, i) => ({ method: "GET", path: `/api/v${i}/items/[0-9]+` }));
    const pol = HttpPolicy.compile(set(entry(CLIENT, rules)));
    const hit = rq({ path: "/api/v49/items/42" });
    const t0 = process.hrtime.bigint();
    let allowed = 0;
    for (let i = 0; i < 20_000; i++) if (pol.decide(CLIENT, hit).allowed) allowed++;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  20k decisions, match on the 50th rule: ${ms.toFixed(0)} ms (${((ms * 1000) / 20_000).toFixed(1)} µs each)`);
    assert.equal(allowed, 20_000);
    assert.ok(ms < 20_000);
  });
});
