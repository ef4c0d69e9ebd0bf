// The scheduler's placement and rolling-update decisions, table by table.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { desiredPods, type ExistingPod, hashOf } from "../../../src/cluster/schedule.ts";
import type { K8sObject } from "../../../src/cluster/store.ts";

const nodes = [1, 2, 3].map((i) => ({ name: `node-${i}`, labels: { "kubernetes.io/hostname": `node-${i}`, zone: i === 3 ? "b" : "a" } }));
const container = { name: "c", image: "weft/echo" };

function deployment(name: string, replicas: number, extra: Record<string, unknown> = {}, env = "v1"): K8sObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: "default" },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ ...container, env: [{ name: "V", value: env }] }], ...extra } },
    },
  };
}

function pod(name: string, spec: Record<string, unknown> = {}): K8sObject {
  return { apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "default", labels: { app: name } }, spec: { containers: [container], ...spec } };
}

describe("placement", () => {
  const cases: { name: string; objects: K8sObject[]; expect: Record<string, string> }[] = [
    { name: "nodeName pins a pod", objects: [pod("a", { nodeName: "node-2" })], expect: { a: "node-2" } },
    { name: "nodeName of a missing node leaves it unplaced there", objects: [pod("a", { nodeName: "node-9" })], expect: { a: "node-9" } },
    { name: "nodeSelector restricts nodes", objects: [pod("a", { nodeSelector: { zone: "b" } })], expect: { a: "node-3" } },
    { name: "no eligible node: unschedulable", objects: [pod("a", { nodeSelector: { zone: "z" } })], expect: { a: "" } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = Object.fromEntries(desiredPods(c.objects, nodes).map((p) => [p.name, p.node]));
      assert.deepEqual(got, c.expect);
    });
  }

  it("spreads replicas round-robin over eligible nodes", () => {
    const got = desiredPods([deployment("web", 4)], nodes).map((p) => p.node);
    assert.deepEqual(got, ["node-1", "node-2", "node-3", "node-1"]);
  });

  it("spreads replicas over the nodes a nodeSelector allows", () => {
    const got = desiredPods([deployment("web", 3, { nodeSelector: { zone: "a" } })], nodes).map((p) => p.node);
    assert.deepEqual(got, ["node-1", "node-2", "node-1"]);
  });

  it("names replicas by template hash and index and labels them with pod-template-hash", () => {
    const d = deployment("web", 2);
    const hash = hashOf((d.spec as { template: unknown }).template);
    const got = desiredPods([d], nodes);
    assert.deepEqual(
      got.map((p) => p.name),
      [`web-${hash}-0`, `web-${hash}-1`],
    );
    assert.equal(got[0]?.labels["pod-template-hash"], hash);
    assert.equal(got[0]?.labels.app, "web");
  });

  it("scales to zero", () => {
    assert.deepEqual(desiredPods([deployment("web", 0)], nodes), []);
  });

  it("a changed pod spec changes the spec hash (the pod is recreated)", () => {
    const a = desiredPods([pod("a")], nodes)[0];
    const b = desiredPods([pod("a", { restartPolicy: "Never" })], nodes)[0];
    assert.notEqual(a?.specHash, b?.specHash);
  });
});

describe("rolling update", () => {
  const v1 = desiredPods([deployment("web", 2)], nodes);
  const existing = (ready: boolean[], terminating = false): ExistingPod[] =>
    v1.map((d, i) => ({ namespace: "default", name: d.name, node: d.node, ready: ready[i] ?? false, terminating, desired: d }));
  const v2Objects = [deployment("web", 2, {}, "v2")];

  it("keeps every old replica while no new replica is ready", () => {
    const got = desiredPods(v2Objects, nodes, existing([true, true]));
    assert.equal(got.length, 4);
    assert.deepEqual(
      got.slice(2).map((p) => p.name),
      v1.map((p) => p.name),
    );
  });

  it("drops an old replica once the new one of the same index is ready", () => {
    const v2 = desiredPods(v2Objects, nodes);
    const state = [
      ...existing([true, true]),
      { namespace: "default", name: v2[0]?.name ?? "", node: "node-1", ready: true, terminating: false, desired: v2[0] as never },
    ];
    const got = desiredPods(v2Objects, nodes, state).map((p) => p.name);
    assert.deepEqual(got, [v2[0]?.name, v2[1]?.name, v1[1]?.name]);
  });

  it("drops old replicas beyond the new replica count at once", () => {
    const got = desiredPods([deployment("web", 1, {}, "v2")], nodes, existing([true, true])).map((p) => p.name);
    assert.deepEqual(got.slice(1), [v1[0]?.name]);
  });

  it("does not keep an old replica that is already terminating", () => {
    const got = desiredPods(v2Objects, nodes, existing([true, true], true));
    assert.equal(got.length, 2);
  });

  it("ignores replicas of another deployment", () => {
    const got = desiredPods([deployment("api", 1)], nodes, existing([true, true]));
    assert.deepEqual(
      got.map((p) => p.owner?.name),
      ["api"],
    );
  });
});
