// Validation details beyond the fixtures: where problems point (file, document), multi-document
// files and Lists, context documents, WeftError conversion, and refusal of Cilium fields Weft does
// not enforce yet — each named, never ignored.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isWeftError } from "../../../src/core/errors.ts";
import { policyKindValidator, problemError, validateDocument, validateText } from "../../../src/policy/validate.ts";
import { cnp, knp, sel } from "./harness.ts";

const problems = (doc: object) => validateDocument(doc, { file: "f.yaml", document: 1 }).problems.map((p) => `${p.code} ${p.path}`);

describe("validation", () => {
  it("a problem in the second document names it", () => {
    const text = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: b}\nspec: {endpointSelector: {}, egress: [{toCIDR: [nope]}]}\n`;
    const r = validateText(text, "two.yaml");
    assert.equal(r.policies.length, 1);
    assert.equal(r.problems[0]?.document, 2);
    const e = problemError(r.problems[0] as never);
    assert.ok(isWeftError(e));
    assert.equal(e.code, "WEFT_POLICY_INVALID");
    assert.equal(e.where, "two.yaml (document 2): spec.egress[0].toCIDR[0]");
  });
  it("a List's items are validated one by one", () => {
    const text = JSON.stringify({ apiVersion: "v1", kind: "List", items: [cnp({ endpointSelector: {} }), cnp({ endpointSelector: {}, bogus: 1 })] });
    const r = validateText(text, "list.json");
    assert.equal(r.policies.length, 1);
    assert.deepEqual(
      r.problems.map((p) => p.path),
      ["spec.bogus"],
    );
  });
  it("Namespace and Pod documents beside policies are context, not problems", () => {
    const text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n";
    const r = validateText(text, "ctx.yaml");
    assert.equal(r.problems.length, 0);
    assert.equal(r.context.length, 2);
  });
  it("a scalar document is refused", () =>
    assert.deepEqual(
      validateText("just text\n", "s.yaml").problems.map((p) => p.code),
      ["WEFT_POLICY_INVALID"],
    ));
  it("duplicate keys are refused", () => assert.equal(validateText("apiVersion: a\napiVersion: b\n", "d.yaml").problems.length, 1));
  it("the namespace defaults to default", () =>
    assert.equal(validateDocument(cnp({ endpointSelector: {} }), { file: "f", document: 1 }).policy?.namespace, "default"));
  it("a clusterwide policy has no namespace", () => {
    const r = validateDocument(
      { apiVersion: "cilium.io/v2", kind: "CiliumClusterwideNetworkPolicy", metadata: { name: "c" }, spec: { endpointSelector: {} } },
      { file: "f", document: 1 },
    );
    assert.equal(r.policy?.namespace, undefined);
  });
  it("the registered kind validator reports path and code", () => {
    assert.deepEqual(
      policyKindValidator(cnp({ endpointSelector: {}, ingress: [{ fromRequires: [sel("a=b")] }] })).map((p) => p.path),
      ["spec.ingress[0].fromRequires"],
    );
  });

  const table: [string, object, string[]][] = [
    [
      "NetworkPolicy unknown peer field",
      knp({ podSelector: {}, ingress: [{ from: [{ podSelectr: {} }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].from[0].podSelectr"],
    ],
    [
      "NetworkPolicy port out of range",
      knp({ podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].ports[0].port"],
    ],
    [
      "NetworkPolicy bad port name",
      knp({ podSelector: {}, ingress: [{ ports: [{ port: "HTTP_PORT" }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].ports[0].port"],
    ],
    [
      "NetworkPolicy endPort below port",
      knp({ podSelector: {}, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].ports[0].endPort"],
    ],
    [
      "NetworkPolicy except outside",
      knp({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["11.0.0.0/8"] } }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].from[0].ipBlock.except[0]"],
    ],
    [
      "exists with values",
      cnp({ endpointSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }),
      ["WEFT_POLICY_INVALID spec.endpointSelector.matchExpressions[0].values"],
    ],
    ["both selectors", cnp({ endpointSelector: {}, nodeSelector: {} }), ["WEFT_POLICY_INVALID spec.nodeSelector", "WEFT_POLICY_UNSUPPORTED spec.nodeSelector"]],
    ["log field", cnp({ endpointSelector: {}, log: { value: "x" } }), ["WEFT_POLICY_UNSUPPORTED spec.log"]],
    ["ingress entity", cnp({ endpointSelector: {}, ingress: [{ fromEntities: ["ingress"] }] }), ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].fromEntities[0]"]],
    [
      "header mismatch action LOG",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", value: "b", mismatch: "LOG" }] }] } }] },
        ],
      }),
      [],
    ],
    [
      "header mismatch action ADD",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", value: "b", mismatch: "ADD" }] }] } }] },
        ],
      }),
      [],
    ],
    [
      "header mismatch action DELETE",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", value: "b", mismatch: "DELETE" }] }] } }] },
        ],
      }),
      [],
    ],
    [
      "header mismatch action REPLACE",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", value: "b", mismatch: "REPLACE" }] }] } }] },
        ],
      }),
      [],
    ],
    [
      "header mismatch action on a presence match",
      cnp({
        endpointSelector: {},
        ingress: [{ toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", mismatch: "LOG" }] }] } }] }],
      }),
      [],
    ],
    [
      "header mismatch LOG of a framing header (only logged)",
      cnp({
        endpointSelector: {},
        ingress: [
          {
            toPorts: [
              { ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "Content-Length", value: "0", mismatch: "LOG" }] }] } },
            ],
          },
        ],
      }),
      [],
    ],
    [
      "header mismatch REPLACE of a framing header",
      cnp({
        endpointSelector: {},
        ingress: [
          {
            toPorts: [
              {
                ports: [{ port: "80", protocol: "TCP" }],
                rules: { http: [{ headerMatches: [{ name: "Transfer-Encoding", value: "chunked", mismatch: "REPLACE" }] }] },
              },
            ],
          },
        ],
      }),
      ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch"],
    ],
    [
      "header mismatch ADD of Host",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "host", value: "evil", mismatch: "ADD" }] }] } }] },
        ],
      }),
      ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch"],
    ],
    [
      "header mismatch ADD of a value with CR LF",
      cnp({
        endpointSelector: {},
        ingress: [
          {
            toPorts: [
              {
                ports: [{ port: "80", protocol: "TCP" }],
                rules: { http: [{ headerMatches: [{ name: "X-A", value: "a\r\nX-Injected: 1", mismatch: "ADD" }] }] },
              },
            ],
          },
        ],
      }),
      ["WEFT_POLICY_INVALID spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].value"],
    ],
    [
      "header mismatch action in lower case (the CRD enum is upper case)",
      cnp({
        endpointSelector: {},
        ingress: [
          { toPorts: [{ ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", value: "b", mismatch: "log" }] }] } }] },
        ],
      }),
      ["WEFT_POLICY_INVALID spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch"],
    ],
    [
      "header secret still refused next to a mismatch action",
      cnp({
        endpointSelector: {},
        ingress: [
          {
            toPorts: [
              { ports: [{ port: "80", protocol: "TCP" }], rules: { http: [{ headerMatches: [{ name: "X-A", secret: { name: "s" }, mismatch: "LOG" }] }] } },
            ],
          },
        ],
      }),
      ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].secret"],
    ],
    [
      "L7 on port 0",
      cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "0", protocol: "TCP" }], rules: { http: [{}] } }] }] }),
      ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].toPorts[0].ports[0].port"],
    ],
    [
      "cidrGroupSelector",
      cnp({ endpointSelector: {}, egress: [{ toCIDRSet: [{ cidrGroupSelector: {} }] }] }),
      ["WEFT_POLICY_UNSUPPORTED spec.egress[0].toCIDRSet[0].cidrGroupSelector"],
    ],
    [
      "fromGroups",
      cnp({ endpointSelector: {}, ingress: [{ fromGroups: [{ aws: { region: "x" } }] }] }),
      ["WEFT_POLICY_UNSUPPORTED spec.ingress[0].fromGroups"],
    ],
    ["toPorts with nothing", cnp({ endpointSelector: {}, ingress: [{ toPorts: [{}] }] }), ["WEFT_POLICY_INVALID spec.ingress[0].toPorts[0].ports"]],
    [
      "L7 without ports",
      cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ rules: { http: [{}] } }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].toPorts[0].ports"],
    ],
    [
      "kafka on UDP",
      cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "9092", protocol: "UDP" }], rules: { kafka: [{}] } }] }] }),
      ["WEFT_POLICY_INVALID spec.ingress[0].toPorts[0].ports[0].protocol"],
    ],
    [
      "FQDN in egressDeny",
      cnp({ endpointSelector: {}, egressDeny: [{ toFQDNs: [{ matchName: "a.com" }] }] }),
      ["WEFT_POLICY_INVALID spec.egressDeny[0].toFQDNs"],
    ],
    ["authentication disabled is accepted", cnp({ endpointSelector: {}, ingress: [{ fromEntities: ["host"], authentication: { mode: "disabled" } }] }), []],
    ["status is accepted and ignored", { ...cnp({ endpointSelector: {} }), status: { anything: 1 } }, []],
  ];
  for (const [name, doc, want] of table) it(`${name}: ${want.join(", ") || "accepted"}`, () => assert.deepEqual(problems(doc), want));
});
