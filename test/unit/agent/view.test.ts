// The agent's ViewReader: a view is derived again only when the store or a node's pods changed,
// not when a kubelet only rewrote its status with a new time (src/agent/view.ts).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ViewReader } from "../../../src/agent/view.ts";
import type { ClusterConfig } from "../../../src/cluster/config.ts";
import { type NodeStatus, type PodStatusRecord, statusContent, writeNodeStatus } from "../../../src/cluster/state.ts";
import { type K8sObject, openStore } from "../../../src/cluster/store.ts";

const svc = (name: string): K8sObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "default" },
  spec: { clusterIP: "10.96.0.20", selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
});

function pod(name: string, app: string, ready: boolean, extraLabel = ""): PodStatusRecord {
  const labels: Record<string, string> = { app, ...(extraLabel ? { note: extraLabel } : {}) };
  return {
    namespace: "default",
    name,
    uid: `uid-${name}`,
    node: "n1",
    desired: { namespace: "default", name, node: "n1", labels, spec: { containers: [{ name: "c", image: "x" }] } as never, specHash: "h" },
    podIP: "10.200.1.5",
    hostIP: "192.168.0.2",
    phase: "Running",
    ready,
    terminating: false,
    creationTimestamp: "2026-11-26T00:00:00Z",
    containers: [{ name: "c", state: "running", restartCount: 0, ready, started: true }],
  };
}

const status = (pods: PodStatusRecord[], updated: string): NodeStatus => ({ node: "n1", updated, kubeletPid: 1, pods, components: {} });

describe("agent view reader", () => {
  const root = mkdtempSync(join(tmpdir(), "weft-view-"));
  after(() => rmSync(root, { recursive: true, force: true }));

  it("re-derives pods and slices only when the store or a node's pods changed, not for a new status time", () => {
    const store = openStore("vt", root);
    const cfg = { name: "vt", stateDir: join(root, "vt"), nodes: [] } as unknown as ClusterConfig;
    store.write([svc("web")]);
    writeNodeStatus(cfg.stateDir, status([pod("web-1", "web", false)], "2026-11-26T10:00:00.000Z"));
    const reader = new ViewReader(store, cfg);
    const v1 = reader.read();
    assert.equal(v1.slices.length, 1);
    assert.equal(v1.slices[0]?.endpoints[0]?.conditions.ready, false);

    writeNodeStatus(cfg.stateDir, status([pod("web-1", "web", false)], "2026-11-26T10:00:00.200Z"));
    assert.equal(reader.read(), v1, "only the kubelet's time moved: the same view");

    writeNodeStatus(cfg.stateDir, status([pod("web-1", "web", true)], "2026-11-26T10:00:00.400Z"));
    const v2 = reader.read();
    assert.notEqual(v2.stamp, v1.stamp);
    assert.equal(v2.slices[0]?.endpoints[0]?.conditions.ready, true, "the pod's readiness is in the new slices");

    store.write([svc("api")]);
    const v3 = reader.read();
    assert.notEqual(v3.stamp, v2.stamp, "a store write moves the stamp");
    assert.deepEqual(v3.services.map((s) => s.metadata.name).sort(), ["api", "web"]);
    assert.equal(reader.read(), v3);
  });

  it("a status's content leaves out only its own time, never a label that looks like it", () => {
    const cases: { a: NodeStatus; b: NodeStatus; same: boolean }[] = [
      { a: status([], "2026-11-26T10:00:00Z"), b: status([], "2026-11-26T11:00:00Z"), same: true },
      { a: status([pod("p", "x", true)], "t1"), b: status([pod("p", "x", false)], "t1"), same: false },
      { a: status([pod("p", "x", true, '"updated":"a",')], "t1"), b: status([pod("p", "x", true, '"updated":"b",')], "t2"), same: false },
    ];
    for (const c of cases) assert.equal(statusContent(JSON.stringify(c.a)) === statusContent(JSON.stringify(c.b)), c.same, JSON.stringify(c));
  });
});
