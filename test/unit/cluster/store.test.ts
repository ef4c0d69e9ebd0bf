// The object store's shared listing (what agents poll): unchanged files are not parsed again,
// a written, deleted or added object is seen at once, and the shared objects cannot be changed.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type K8sObject, Store } from "../../../src/cluster/store.ts";

const svc = (name: string, port: number): K8sObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "default" },
  spec: { ports: [{ port }] },
});

describe("Store.listShared", () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-store-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new Store(dir);

  it("parses a file again only when it changed, and sees writes, deletes and additions", () => {
    store.write([svc("a", 80), svc("b", 81), svc("c", 82)]);
    const first = store.listShared("Service");
    assert.deepEqual(
      first.map((o) => o.metadata.name),
      ["a", "b", "c"],
    );
    const again = store.listShared("Service");
    assert.ok(
      again.every((o, i) => o === first[i]),
      "unchanged files give the same parsed objects",
    );
    assert.deepEqual(again, store.list("Service"), "equal to a fresh parse");

    store.write([svc("b", 90)]);
    store.delete([{ kind: "Service", metadata: { name: "c", namespace: "default" } }]);
    store.write([svc("d", 83)]);
    const later = store.listShared("Service");
    assert.deepEqual(
      later.map((o) => [o.metadata.name, (o.spec as { ports: { port: number }[] }).ports[0]?.port]),
      [
        ["a", 80],
        ["b", 90],
        ["d", 83],
      ],
    );
    assert.equal(later[0], first[0], "a is still the object parsed first");
    assert.notEqual(later[1], first[1], "b was parsed again after its write");
    assert.deepEqual(later, store.list("Service"));
  });

  it("hands out frozen objects: changing one throws instead of changing what the next call returns", () => {
    const [a] = store.listShared("Service");
    assert.ok(a);
    assert.throws(() => {
      (a.metadata as { name: string }).name = "changed";
    }, TypeError);
    assert.throws(() => {
      (a.spec as { ports: unknown[] }).ports.push({ port: 1 });
    }, TypeError);
    assert.equal(store.listShared("Service")[0]?.metadata.name, "a");
  });

  it("lists in namespace/name key order, as the Kubernetes API does (not file-name order)", () => {
    const d = mkdtempSync(join(tmpdir(), "weft-store-order-"));
    try {
      const st = new Store(d);
      // names that continue with "-" (below "." and "/"), and namespaces likewise
      const objs = [
        ["a", "x"],
        ["a-b", "x"],
        ["a", "svc"],
        ["a", "svc-1"],
        ["a", "svc-10"],
        ["a", "svc-1-b"],
        ["b", "a"],
      ].map(([ns, name]) => ({ ...svc(name as string, 80), metadata: { name: name as string, namespace: ns as string } }));
      st.write(objs);
      const keys = objs.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);
      const want = [...keys].sort();
      assert.deepEqual(want, ["a-b/x", "a/svc", "a/svc-1", "a/svc-1-b", "a/svc-10", "a/x", "b/a"]);
      for (const listed of [st.list("Service"), st.listShared("Service")]) {
        assert.deepEqual(
          listed.map((o) => `${o.metadata.namespace}/${o.metadata.name}`),
          want,
        );
      }
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it("lists nothing for a kind that has no folder", () => {
    assert.deepEqual(store.listShared("Namespace"), []);
  });
});
