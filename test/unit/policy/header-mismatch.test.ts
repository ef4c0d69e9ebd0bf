// headerMatches mismatch actions from policy to proxy: a CiliumNetworkPolicy with LOG, ADD, DELETE
// and REPLACE validates, the compiler's L7 set carries each action, the set survives the trip
// through Weft's L7Policy xDS resource (protobuf encode and decode), and the proxy's filter built
// from the decoded resource decides and edits exactly as one built from the compiler's set.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PolicyCompiler } from "../../../src/policy/compile.ts";
import { allocateIdentities, type EndpointInput } from "../../../src/policy/identity.ts";
import { HttpPolicy } from "../../../src/proxy/filters/l7-policy.ts";
import { decodeAny, encodeAny } from "../../../src/xds/codec.ts";
import { type L7Policy, l7Policies, l7SetOf, TYPE } from "../../../src/xds/resources.ts";
import { cnp, sel, validated } from "./harness.ts";

const MATCHES = [
  { name: "X-Audit", value: "on", mismatch: "LOG" },
  { name: "X-Tenant", value: "blue", mismatch: "ADD" },
  { name: "X-Debug", value: "off", mismatch: "DELETE" },
  { name: "X-Role", value: "reader", mismatch: "REPLACE" },
  { name: "X-Key", value: "k" },
];

describe("headerMatches mismatch actions: validate → compile → xDS → proxy filter", () => {
  const eps: EndpointInput[] = ["client", "api"].map((a) => ({ namespace: "default", name: a, labels: { app: a } }));
  const alloc = allocateIdentities({ clusterName: "weft", endpoints: eps });
  const client = alloc.byEndpoint.get("default/client") as number;
  const api = alloc.byEndpoint.get("default/api") as number;
  const [policy] = validated([
    cnp(
      {
        endpointSelector: sel("app=api"),
        ingress: [
          {
            fromEndpoints: [sel("app=client")],
            toPorts: [{ ports: [{ port: "8080", protocol: "TCP" }], rules: { http: [{ method: "GET", path: "/h/.*", headerMatches: MATCHES }] } }],
          },
        ],
      },
      { name: "mismatch" },
    ),
  ]);
  const c = new PolicyCompiler({ clusterName: "weft", identities: alloc.table });
  if (policy) c.setPolicy(policy);
  const set = c.subject(api)?.ingress.l7.find((s) => s.port === 8080);

  it("the compiler's L7 set carries every headerMatch with its action", () => {
    assert.ok(set, "an L7 set on 8080");
    assert.equal(set.kind, "http");
    const rules = set.entries.flatMap((e) => (e.l7?.kind === "http" ? e.l7.rules : []));
    assert.equal(rules.length, 1);
    assert.deepEqual(rules[0]?.doc.headerMatches, MATCHES);
    assert.ok(set.entries.every((e) => e.scope === client));
  });

  const resources = set ? l7Policies(api, "ingress", [set]) : [];
  const decoded = resources.map((r) => decodeAny(encodeAny({ typeUrl: TYPE.l7policy, message: r })).message as unknown as L7Policy);

  it("the L7Policy resource carries the actions through protobuf, and the absent one stays absent", () => {
    assert.equal(decoded.length, 1);
    const hm = decoded[0]?.entries?.[0]?.http?.[0]?.header_matches;
    assert.deepEqual(hm, [
      { name: "X-Audit", value: "on", mismatch: "LOG" },
      { name: "X-Tenant", value: "blue", mismatch: "ADD" },
      { name: "X-Debug", value: "off", mismatch: "DELETE" },
      { name: "X-Role", value: "reader", mismatch: "REPLACE" },
      { name: "X-Key", value: "k" },
    ]);
    assert.deepEqual(decoded[0], resources[0], "decodes back equal");
    const l7 = l7SetOf(decoded[0] as L7Policy).entries[0]?.l7;
    assert.equal(l7?.kind, "http");
    assert.deepEqual(l7?.kind === "http" ? l7.rules[0]?.doc.headerMatches : undefined, MATCHES);
  });

  const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n] });
  const requests: [string, string, Record<string, string>, boolean, unknown[]][] = [
    ["everything as the rule wants: no action", "/h/1", { "x-audit": "on", "x-tenant": "blue", "x-debug": "off", "x-role": "reader", "x-key": "k" }, true, []],
    [
      "everything wrong: each action runs",
      "/h/2",
      { "x-tenant": "red", "x-debug": "on", "x-role": "admin", "x-key": "k" },
      true,
      [
        { op: "log", name: "x-audit", value: "on" },
        { op: "add", name: "x-tenant", value: "blue" },
        { op: "delete", name: "x-debug", value: "", rejected: "on" },
        { op: "replace", name: "x-role", value: "reader", rejected: "admin" },
      ],
    ],
    ["the headerMatch without action still decides", "/h/3", { "x-key": "nope" }, false, []],
    ["a path outside the rule: denied, no action", "/other", { "x-key": "k" }, false, []],
  ];
  for (const [name, path, h, allowed, edits] of requests)
    it(`filter from the compiler and from the decoded resource agree: ${name}`, () => {
      const fromCompiler = HttpPolicy.compile(set).decide(client, { method: "GET", path, authority: "api", headers: headers(h) });
      const fromXds = HttpPolicy.compile(l7SetOf(decoded[0] as L7Policy)).decide(client, { method: "GET", path, authority: "api", headers: headers(h) });
      assert.equal(fromCompiler.allowed, allowed);
      assert.deepEqual(fromCompiler.edits, edits);
      assert.deepEqual({ ...fromXds }, { ...fromCompiler });
    });

  it("an unset action on the wire (MISMATCH_UNSPECIFIED) is Cilium's default: a mismatch denies", () => {
    const p = structuredClone(decoded[0] as L7Policy);
    const rule = p.entries?.[0]?.http?.[0];
    assert.ok(rule?.header_matches);
    rule.header_matches = [{ name: "X-Tenant", value: "blue", mismatch: "MISMATCH_UNSPECIFIED" as never }];
    const v = HttpPolicy.compile(l7SetOf(p)).decide(client, { method: "GET", path: "/h/1", authority: "api", headers: headers({}) });
    assert.equal(v.allowed, false);
  });
});
