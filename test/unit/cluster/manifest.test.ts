// Manifest parsing and validation: every refusal names the document, the field and the reason.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { jsonPath, parseManifests } from "../../../src/cluster/manifest.ts";

const podDoc = (spec: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n${spec}`;

describe("manifest validation", () => {
  const invalid: [string, string, string, RegExp][] = [
    ["YAML syntax error", "kind: Pod\nmetadata: {name: x\n", "(yaml)", /./],
    ["not a mapping", "- a\n- b\n", "(document)", /mapping/],
    ["missing kind", "apiVersion: v1\nmetadata: {name: x}\n", "kind", /required/],
    ["unknown kind", "apiVersion: v1\nkind: Widget\nmetadata: {name: x}\n", "kind", /unknown kind "Widget"/],
    ["wrong apiVersion", "apiVersion: v2\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a}]}\n", "apiVersion", /must be one of "v1"/],
    ["missing name", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", "metadata.name", /required/],
    ["bad name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n", "metadata.name", /pattern/],
    ["unknown top-level field", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nextra: 1\n", "extra", /unknown field/],
    ["no containers", podDoc("  containers: []\n"), "spec.containers", /fewer than 1/],
    ["unknown container field", podDoc("  containers: [{name: a, imag: x}]\n"), "spec.containers[0].imag", /unknown field/],
    ["port out of range", podDoc("  containers: [{name: a, ports: [{containerPort: 0}]}]\n"), "spec.containers[0].ports[0].containerPort", /must be >= 1/],
    ["bad restartPolicy", podDoc("  restartPolicy: Sometimes\n  containers: [{name: a}]\n"), "spec.restartPolicy", /must be one of/],
    ["command not a list", podDoc("  containers: [{name: a, command: 'sleep 1'}]\n"), "spec.containers[0].command", /must be array/],
    [
      "probe without handler port",
      podDoc("  containers: [{name: a, readinessProbe: {httpGet: {path: /}}}]\n"),
      "spec.containers[0].readinessProbe.httpGet.port",
      /required/,
    ],
    ["deployment without template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {}}\n", "spec.template", /required/],
    [
      "negative replicas",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -1, selector: {}, template: {spec: {containers: [{name: a}]}}}\n",
      "spec.replicas",
      /must be >= 0/,
    ],
    [
      "service nodePort range",
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 80}]}\n",
      "spec.ports[0].nodePort",
      /must be >= 30000/,
    ],
    [
      "bad selector value",
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {app: 'no spaces!'}}\n",
      "spec.selector.app",
      /invalid label value/,
    ],
    [
      "bad label key",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {'bad key': x}}\nspec: {containers: [{name: a}]}\n",
      "metadata.labels.bad key",
      /invalid label key/,
    ],
    ["service bad affinity", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {sessionAffinity: Sticky}\n", "spec.sessionAffinity", /must be one of/],
  ];
  for (const [name, text, path, reason] of invalid) {
    it(`refuses: ${name}`, () => {
      const r = parseManifests(text, "f.yaml");
      assert.equal(r.objects.length, 0);
      const p = r.problems.find((x) => x.path === path);
      assert.ok(p, `expected a problem at ${path}, got ${JSON.stringify(r.problems)}`);
      assert.match(p.reason, reason);
      assert.equal(p.file, "f.yaml");
      assert.equal(p.document, 1);
    });
  }

  it("accepts a multi-document file with a List and defaults namespaces", () => {
    const text = [
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}",
      "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: a, namespace: shop}\n    spec: {containers: [{name: a, image: weft/echo}]}\n  - apiVersion: v1\n    kind: Service\n    metadata: {name: s}\n    spec: {ports: [{port: 80, targetPort: http}]}",
      "",
    ].join("\n---\n");
    const r = parseManifests(text, "f.yaml");
    assert.deepEqual(r.problems, []);
    assert.deepEqual(
      r.objects.map((o) => [o.kind, o.metadata.namespace, o.metadata.name]),
      [
        ["Namespace", undefined, "shop"],
        ["Pod", "shop", "a"],
        ["Service", "default", "s"],
      ],
    );
  });

  it("accepts Kubernetes fields the local cluster ignores", () => {
    const r = parseManifests(podDoc("  serviceAccountName: x\n  containers: [{name: a, resources: {limits: {cpu: 1}}, imagePullPolicy: Always}]\n"), "f.yaml");
    assert.deepEqual(r.problems, []);
  });

  it("reports the document number of the bad document", () => {
    const r = parseManifests(`apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Nope\nmetadata: {name: b}\n`, "f.yaml");
    assert.equal(r.problems[0]?.document, 2);
  });

  it("validates the policy kinds with the policy model and keeps its codes", () => {
    const good =
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {matchLabels: {app: echo}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]\n";
    const ok = parseManifests(good, "p.yaml");
    assert.deepEqual(ok.problems, []);
    assert.equal(ok.objects[0]?.metadata.namespace, "default");
    const typo = parseManifests(good.replace("fromEndpoints", "fromEndpoint"), "p.yaml");
    assert.equal(typo.problems[0]?.code, "WEFT_POLICY_INVALID");
    assert.match(typo.problems[0]?.path ?? "", /^spec\.ingress\[0\]\.fromEndpoint/);
    const unsupported = parseManifests(good.replace("fromEndpoints", "fromRequires"), "p.yaml");
    assert.equal(unsupported.problems[0]?.code, "WEFT_POLICY_UNSUPPORTED");
    const np = parseManifests(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n",
      "np.yaml",
    );
    assert.deepEqual(np.problems, []);
  });

  it("turns JSON pointers into field paths", () => {
    assert.equal(jsonPath("/spec/containers/0/ports/1/name"), "spec.containers[0].ports[1].name");
    assert.equal(jsonPath(""), "");
    assert.equal(jsonPath("/metadata/annotations/a~1b"), "metadata.annotations.a/b");
  });
});
