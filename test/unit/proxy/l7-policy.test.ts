// The HTTP L7 policy filter (src/proxy/filters/l7-policy.ts): verdicts per peer and request over
// compiled L7 sets, visibility-only allows, headerMatches mismatch actions (LOG/ADD/DELETE/REPLACE with
// Cilium's semantics) as header edits and their application and log, fail-closed sets, the 403 bytes;
// and the parser → path normalisation → policy chain on raw requests.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { L7Entry, L7Set } from "../../../src/policy/compile.ts";
import { compileHttpRule, type HttpRuleDoc } from "../../../src/policy/l7/http-match.ts";
import { applyEdits, denyResponse, editPlan, type HeaderEdit, HttpPolicy, headerActionLog, headerActionRefusal } from "../../../src/proxy/filters/l7-policy.ts";
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
  // headerMatches mismatch actions, as Cilium's proxy runs them (cilium/proxy cilium/network_policy.cc)
  [
    "mismatch LOG: allowed, the expected value logged, no edit",
    set(entry(CLIENT, [{ path: "/a", headerMatches: [{ name: "X-Key", value: "k", mismatch: "LOG" }] }])),
    CLIENT,
    { path: "/a", headers: { "x-key": "bad" } },
    { allowed: true, visibilityOnly: false, edits: [{ op: "log", name: "x-key", value: "k" }] },
  ],
  [
    "mismatch LOG of a presence match on an absent header",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Trace", mismatch: "LOG" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [{ op: "log", name: "x-trace", value: "" }] },
  ],
  [
    "matching header under LOG: nothing logged",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Key", value: "k", mismatch: "LOG" }] }])),
    CLIENT,
    { headers: { "X-Key": "k" } },
    { allowed: true, edits: [] },
  ],
  [
    "mismatch ADD on a missing header adds it",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [{ op: "add", name: "x-tenant", value: "blue" }] },
  ],
  [
    "mismatch ADD on a wrong value adds another value (the wrong one stays)",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }])),
    CLIENT,
    { headers: { "x-tenant": "red" } },
    { allowed: true, edits: [{ op: "add", name: "x-tenant", value: "blue" }] },
  ],
  [
    "mismatch ADD of a presence match adds the header empty (as Cilium)",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Seen", mismatch: "ADD" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [{ op: "add", name: "x-seen", value: "" }] },
  ],
  [
    "mismatch DELETE removes the wrong header and records its value as rejected",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", value: "no", mismatch: "DELETE" }] }])),
    CLIENT,
    { headers: { "x-admin": "yes" } },
    { allowed: true, edits: [{ op: "delete", name: "x-admin", value: "", rejected: "yes" }] },
  ],
  [
    "mismatch DELETE of an absent header: nothing to do, nothing logged",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", value: "no", mismatch: "DELETE" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [] },
  ],
  [
    "mismatch DELETE of a presence match: nothing to do",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", mismatch: "DELETE" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [] },
  ],
  [
    "mismatch DELETE keeps a header with the right value",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Admin", value: "no", mismatch: "DELETE" }] }])),
    CLIENT,
    { headers: { "x-admin": "no" } },
    { allowed: true, edits: [] },
  ],
  [
    "mismatch REPLACE sets the value, the old one rejected",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] }])),
    CLIENT,
    { headers: { "x-role": "admin" } },
    { allowed: true, edits: [{ op: "replace", name: "x-role", value: "reader", rejected: "admin" }] },
  ],
  [
    "mismatch REPLACE of an absent header adds it",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] }])),
    CLIENT,
    {},
    { allowed: true, edits: [{ op: "replace", name: "x-role", value: "reader" }] },
  ],
  [
    "matching header under REPLACE: no edit",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] }])),
    CLIENT,
    { headers: { "x-role": "reader" } },
    { allowed: true, edits: [] },
  ],
  [
    "several values of a header are compared joined with ','",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "a,b", mismatch: "LOG" }] }])),
    CLIENT,
    { headers: { "x-role": "a,b" } },
    { allowed: true, edits: [] },
  ],
  [
    "mismatch action does not rescue a wrong path",
    set(entry(CLIENT, [{ path: "/a", headerMatches: [{ name: "X-Role", value: "r", mismatch: "REPLACE" }] }])),
    CLIENT,
    { path: "/b" },
    { allowed: false },
  ],
  [
    "every matching rule runs its actions, even after a clean match (as Cilium); the first allowing rule names the verdict",
    set(entry(CLIENT, [{ path: "/ok" }], "clean"), entry(CLIENT, [{ headerMatches: [{ name: "X-Role", value: "r", mismatch: "REPLACE" }] }], "soft")),
    CLIENT,
    { path: "/ok", headers: { "x-role": "admin" } },
    { allowed: true, rule: "clean", edits: [{ op: "replace", name: "x-role", value: "r", rejected: "admin" }] },
  ],
  [
    "an L4-only allow of the peer does not skip the actions of matching rules",
    set(entry(CLIENT, null, "l4"), entry(CLIENT, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }], "soft")),
    CLIENT,
    {},
    { allowed: true, rule: "l4", edits: [{ op: "add", name: "x-tenant", value: "blue" }] },
  ],
  [
    "a rule whose method or path does not match runs no action",
    set(entry(CLIENT, [{ path: "/ok" }, { path: "/other", headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }])),
    CLIENT,
    { path: "/ok" },
    { allowed: true, edits: [] },
  ],
  [
    "another peer's rule runs no action",
    set(entry(CLIENT, [{}], "mine"), entry(OTHER, [{ headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] }], "theirs")),
    CLIENT,
    {},
    { allowed: true, rule: "mine", edits: [] },
  ],
  [
    "later checks see earlier edits: ADD then LOG of the same header",
    set(
      entry(CLIENT, [
        { headerMatches: [{ name: "X-T", value: "blue", mismatch: "ADD" }] },
        { headerMatches: [{ name: "X-T", value: "blue", mismatch: "LOG" }] },
      ]),
    ),
    CLIENT,
    { headers: { "x-t": "red" } },
    {
      allowed: true,
      edits: [
        { op: "add", name: "x-t", value: "blue" },
        { op: "log", name: "x-t", value: "blue" },
      ],
    },
  ],
  [
    "later checks see earlier edits: after REPLACE the same value matches",
    set(
      entry(CLIENT, [
        { headerMatches: [{ name: "X-R", value: "reader", mismatch: "REPLACE" }] },
        { headerMatches: [{ name: "X-R", value: "reader", mismatch: "LOG" }] },
      ]),
    ),
    CLIENT,
    { headers: { "x-r": "admin" } },
    { allowed: true, edits: [{ op: "replace", name: "x-r", value: "reader", rejected: "admin" }] },
  ],
  [
    "several actions of one rule, in order",
    set(
      entry(CLIENT, [
        {
          headerMatches: [
            { name: "X-A", value: "1", mismatch: "LOG" },
            { name: "X-B", value: "2", mismatch: "ADD" },
            { name: "X-C", value: "3", mismatch: "DELETE" },
          ],
        },
      ]),
    ),
    CLIENT,
    { headers: { "x-c": "4" } },
    {
      allowed: true,
      edits: [
        { op: "log", name: "x-a", value: "1" },
        { op: "add", name: "x-b", value: "2" },
        { op: "delete", name: "x-c", value: "", rejected: "4" },
      ],
    },
  ],
  [
    "strict headers still required next to soft ones",
    set(entry(CLIENT, [{ headers: ["X-A: 1"], headerMatches: [{ name: "X-B", value: "2", mismatch: "LOG" }] }])),
    CLIENT,
    { headers: { "x-b": "2" } },
    { allowed: false },
  ],
  [
    "a headerMatch without action next to one with: still required",
    set(
      entry(CLIENT, [
        {
          headerMatches: [
            { name: "X-Key", value: "k" },
            { name: "X-B", value: "2", mismatch: "ADD" },
          ],
        },
      ]),
    ),
    CLIENT,
    { headers: { "x-key": "other" } },
    { allowed: false },
  ],
  [
    "an edit this proxy refuses (framing header, e.g. from another control plane) fails closed",
    set(entry(CLIENT, [{ headerMatches: [{ name: "Content-Length", value: "0", mismatch: "REPLACE" }] }])),
    CLIENT,
    { headers: { "content-length": "5" } },
    { allowed: false },
  ],
  [
    "an unknown action is Cilium's default: deny on mismatch",
    set(entry(CLIENT, [{ headerMatches: [{ name: "X-A", value: "1", mismatch: "MISMATCH_UNSPECIFIED" }] }])),
    CLIENT,
    {},
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
      if (!want.allowed) assert.deepEqual([v.rule, v.edits.length], ["", 0]);
    });
  }
  it(`has at least 40 cases (${cases.length})`, () => assert.ok(cases.length >= 40));

  const plans: [string, HeaderEdit[], { drop: string[]; add: string }][] = [
    [
      "replace drops then adds, delete drops, add adds, log does nothing",
      [
        { op: "add", name: "x-a", value: "1" },
        { op: "replace", name: "x-b", value: "2" },
        { op: "delete", name: "x-c", value: "" },
        { op: "log", name: "x-d", value: "4" },
      ],
      { drop: ["x-b", "x-c"], add: "x-a: 1\r\nx-b: 2\r\n" },
    ],
    [
      "an add after a delete of the same name survives",
      [
        { op: "delete", name: "x-a", value: "" },
        { op: "add", name: "x-a", value: "2" },
      ],
      { drop: ["x-a"], add: "x-a: 2\r\n" },
    ],
    [
      "a delete after an add removes both",
      [
        { op: "add", name: "x-a", value: "1" },
        { op: "delete", name: "x-a", value: "" },
      ],
      { drop: ["x-a"], add: "" },
    ],
    [
      "two adds: two fields",
      [
        { op: "add", name: "x-a", value: "1" },
        { op: "add", name: "x-a", value: "2" },
      ],
      { drop: [], add: "x-a: 1\r\nx-a: 2\r\n" },
    ],
    [
      "an add after a replace: both values, the received ones gone",
      [
        { op: "replace", name: "x-a", value: "1" },
        { op: "add", name: "x-a", value: "2" },
      ],
      { drop: ["x-a"], add: "x-a: 1\r\nx-a: 2\r\n" },
    ],
    ["nothing", [], { drop: [], add: "" }],
  ];
  for (const [name, edits, want] of plans) it(`HTTP/1 edit plan: ${name}`, () => assert.deepEqual(editPlan(edits), want));

  const h2: [string, Record<string, string | string[]>, HeaderEdit[], Record<string, string | string[]>][] = [
    ["add to an absent header", { a: "x" }, [{ op: "add", name: "x-t", value: "blue" }], { a: "x", "x-t": "blue" }],
    ["add to a present header keeps both", { "x-t": "red" }, [{ op: "add", name: "x-t", value: "blue" }], { "x-t": ["red", "blue"] }],
    ["add to a list appends", { "x-t": ["a", "b"] }, [{ op: "add", name: "x-t", value: "c" }], { "x-t": ["a", "b", "c"] }],
    ["replace", { "x-r": ["a", "b"] }, [{ op: "replace", name: "x-r", value: "reader", rejected: "a,b" }], { "x-r": "reader" }],
    ["delete", { "x-d": "yes", k: "v" }, [{ op: "delete", name: "x-d", value: "", rejected: "yes" }], { k: "v" }],
    ["log changes nothing", { "x-l": "bad" }, [{ op: "log", name: "x-l", value: "good" }], { "x-l": "bad" }],
  ];
  for (const [name, before, edits, want] of h2)
    it(`HTTP/2 edits: ${name}`, () => {
      const out: Record<string, string | string[]> = structuredClone(before);
      applyEdits(out, edits);
      assert.deepEqual(out, want);
    });

  it("flows log the actions as Cilium's access log does: missing (expected) and rejected (removed or overwritten)", () => {
    assert.deepEqual(headerActionLog([]), {});
    assert.deepEqual(headerActionLog(undefined), {});
    assert.deepEqual(
      headerActionLog([
        { op: "log", name: "x-a", value: "1" },
        { op: "add", name: "x-b", value: "2" },
        { op: "delete", name: "x-c", value: "", rejected: "3" },
        { op: "replace", name: "x-d", value: "4", rejected: "5" },
        { op: "replace", name: "x-e", value: "6" },
      ]),
      {
        missing_headers: [
          { key: "x-a", value: "1" },
          { key: "x-b", value: "2" },
          { key: "x-d", value: "4" },
          { key: "x-e", value: "6" },
        ],
        rejected_headers: [
          { key: "x-c", value: "3" },
          { key: "x-d", value: "5" },
        ],
      },
    );
  });

  const refusals: [string, string, string | undefined, string | undefined][] = [
    ["X-Tenant", "ADD", "blue", undefined],
    ["Host", "LOG", "a", undefined],
    ["Host", "REPLACE", "evil", "mismatch"],
    ["content-length", "ADD", "0", "mismatch"],
    ["Transfer-Encoding", "DELETE", "chunked", "mismatch"],
    ["X-Request-Id", "REPLACE", "1", "mismatch"],
    ["X-A", "ADD", "a\r\nx-b: 1", "value"],
    ["X-A", "REPLACE", "tab\tok", undefined],
    ["X-A", "SOMETIMES", "1", "mismatch"],
  ];
  for (const [name, action, value, field] of refusals)
    it(`header action ${action} ${name}${value !== undefined ? ` "${JSON.stringify(value)}"` : ""}: ${field ? `refused (${field})` : "enforced"}`, () =>
      assert.equal(headerActionRefusal(name, action, value)?.field, field));

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

  it("decides 20k requests with every mismatch action firing within a generous ceiling", () => {
    const rules: HttpRuleDoc[] = Array.from({ length: 49 }, (_, i) => ({ method: "GET", path: `/api/v${i}/items/[0-9]+` }));
    rules.push({
      method: "GET",
      path: "/api/v49/items/[0-9]+",
      headerMatches: [
        { name: "X-Audit", value: "on", mismatch: "LOG" },
        { name: "X-Tenant", value: "blue", mismatch: "ADD" },
        { name: "X-Debug", value: "off", mismatch: "DELETE" },
        { name: "X-Role", value: "reader", mismatch: "REPLACE" },
      ],
    });
    const pol = HttpPolicy.compile(set(entry(CLIENT, rules)));
    const hit = rq({ path: "/api/v49/items/42", headers: { "x-tenant": "red", "x-debug": "on", "x-role": "admin" } });
    const t0 = process.hrtime.bigint();
    let edits = 0;
    for (let i = 0; i < 20_000; i++) edits += pol.decide(CLIENT, hit).edits.length;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  20k decisions, 4 actions each on the 50th rule: ${ms.toFixed(0)} ms (${((ms * 1000) / 20_000).toFixed(1)} µs each)`);
    assert.equal(edits, 80_000);
    assert.ok(ms < 20_000);
  });

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
