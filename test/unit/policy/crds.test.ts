// One source of truth: the chart's CRDs are exactly what the schemas render, they are structural
// (as the API server demands), and the validator refuses what the API server would prune.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import YAML from "yaml";
import { CRD_FILES } from "../../../src/policy/schema/documents.ts";
import { renderCrdFiles } from "../../../src/policy/schema/render.ts";

const dir = new URL("../../../charts/weft/crds/", import.meta.url);

function walk(s: unknown, path: string, visit: (node: Record<string, unknown>, path: string) => void): void {
  if (!s || typeof s !== "object") return;
  const o = s as Record<string, unknown>;
  visit(o, path);
  for (const [k, v] of Object.entries(o.properties ?? {})) walk(v, `${path}.${k}`, visit);
  if (o.items) walk(o.items, `${path}[]`, visit);
  if (o.additionalProperties && typeof o.additionalProperties === "object") walk(o.additionalProperties, `${path}{}`, visit);
}

describe("chart CRDs", () => {
  const rendered = renderCrdFiles();
  for (const file of Object.keys(CRD_FILES)) {
    it(`${file} is up to date with src/policy/schema (run src/policy/schema/write-crds.ts)`, () => {
      assert.equal(readFileSync(new URL(file, dir), "utf8"), rendered[file]);
    });
    it(`${file} is a structural schema`, () => {
      const crd = YAML.parse(rendered[file] as string);
      const schema = crd.spec.versions[0].schema.openAPIV3Schema;
      walk(schema, "", (node, path) => {
        assert.ok(node.type !== undefined || node["x-kubernetes-int-or-string"], `${path} has a type`);
        assert.ok(!(node.properties && node.additionalProperties !== undefined), `${path}: properties and additionalProperties together`);
      });
    });
  }
  it("the CNP CRD is namespaced and the CCNP CRD clusterwide", () => {
    assert.equal(YAML.parse(rendered["ciliumnetworkpolicies.yaml"] as string).spec.scope, "Namespaced");
    assert.equal(YAML.parse(rendered["ciliumclusterwidenetworkpolicies.yaml"] as string).spec.scope, "Cluster");
  });
});
