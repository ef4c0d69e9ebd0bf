// Cluster-wide identities are numbered at admission and never renumbered.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { applyObjects } from "../../../src/cluster/apply.ts";
import { identityOfPod, identityTable } from "../../../src/cluster/identities.ts";
import { type K8sObject, Store } from "../../../src/cluster/store.ts";

const root = mkdtempSync(join(tmpdir(), "weft-ids-"));
after(() => rmSync(root, { recursive: true, force: true }));

const pod = (name: string, labels: Record<string, string>, namespace = "default"): K8sObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace, labels },
  spec: { containers: [{ name: "c", image: "weft/client" }] },
});
const deploy = (name: string, labels: Record<string, string>): K8sObject => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace: "default" },
  spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: "c", image: "weft/echo" }] } } },
});

describe("identity allocation at apply", () => {
  const store = new Store(join(root, "c1"));
  const ids = () => identityTable(store.list("CiliumIdentity"));

  it("numbers each distinct label set once, from 256", () => {
    applyObjects(store, [pod("a", { app: "client" }), pod("b", { app: "client" }), deploy("echo", { app: "echo" })]);
    const t = ids();
    const numbers = [...t.keys()].filter((n) => n >= 256).sort();
    assert.deepEqual(numbers, [256, 257]);
    const client = identityOfPod(t, "c1", { namespace: "default", name: "a", labels: { app: "client" } }, undefined);
    const echo = identityOfPod(t, "c1", { namespace: "default", name: "echo-x-0", labels: { app: "echo", "pod-template-hash": "abc" } }, undefined);
    assert.ok(client && echo && client !== echo);
    assert.deepEqual(store.get("CiliumIdentity", undefined, String(client))?.["security-labels"], {
      "k8s:app": "client",
      "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "default",
      "k8s:io.cilium.k8s.policy.cluster": "c1",
      "k8s:io.kubernetes.pod.namespace": "default",
    });
  });

  it("keeps every number when more objects arrive, and numbers only the new set", () => {
    const before = [...ids().keys()].sort();
    applyObjects(store, [pod("c", { app: "client" }), pod("d", { app: "db" })]);
    const afterIds = [...ids().keys()].sort();
    assert.deepEqual(
      afterIds.filter((n) => !before.includes(n)),
      [258],
    );
    assert.equal(identityOfPod(ids(), "c1", { namespace: "default", name: "d", labels: { app: "db" } }, undefined), 258);
  });

  it("gives the same labels in another namespace another identity", () => {
    applyObjects(store, [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { team: "x" } } }, pod("a", { app: "client" }, "shop")]);
    const shop = identityOfPod(ids(), "c1", { namespace: "shop", name: "a", labels: { app: "client" } }, { team: "x" });
    const dflt = identityOfPod(ids(), "c1", { namespace: "default", name: "a", labels: { app: "client" } }, undefined);
    assert.ok(shop !== undefined && shop !== dflt);
  });

  it("re-applying the same objects allocates nothing", () => {
    const n = store.list("CiliumIdentity").length;
    applyObjects(store, [pod("a", { app: "client" }), deploy("echo", { app: "echo" })]);
    assert.equal(store.list("CiliumIdentity").length, n);
  });

  it("never reuses the number of a stored identity that no object uses any more", () => {
    const s2 = new Store(join(root, "c2"));
    applyObjects(s2, [pod("gone", { app: "gone" }), pod("stays", { app: "stays" })]);
    const before = identityTable(s2.list("CiliumIdentity"));
    const gone = identityOfPod(before, "c2", { namespace: "default", name: "gone", labels: { app: "gone" } }, undefined);
    assert.ok(gone !== undefined);
    s2.delete([{ kind: "Pod", metadata: { name: "gone", namespace: "default" } }]);
    applyObjects(s2, [pod("new", { app: "new" })]);
    const t = identityTable(s2.list("CiliumIdentity"));
    const fresh = identityOfPod(t, "c2", { namespace: "default", name: "new", labels: { app: "new" } }, undefined);
    assert.ok(fresh !== undefined, "the new label set is numbered and stored");
    assert.notEqual(fresh, gone);
    assert.equal(identityOfPod(t, "c2", { namespace: "default", name: "gone", labels: { app: "gone" } }, undefined), gone, "the old number keeps its labels");
  });
});
