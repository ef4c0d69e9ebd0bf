// The cluster DNS server's resolver over a real object store: a Service applied is answered by the
// very next query (the store's revision is checked on each one), not up to 500 ms later, and a
// deleted one stops being answered at once.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type K8sObject, openStore } from "../../src/cluster/store.ts";
import { createResolver } from "../../src/workloads/dns.ts";

function query(name: string, id: number): Buffer {
  const labels = name.split(".").flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const header = Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]); // type A, class IN
}
/** rcode and the number of answers of a response. */
const summary = (r: Buffer) => ({ rcode: (r[3] as number) & 0x0f, answers: r.readUInt16BE(6) });
const svc = (name: string, clusterIP: string): K8sObject => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "default" },
  spec: { clusterIP, selector: { app: name }, ports: [{ port: 80 }] },
});

describe("cluster DNS resolver", () => {
  const root = mkdtempSync(join(tmpdir(), "weft-dns-"));
  after(() => rmSync(root, { recursive: true, force: true }));

  it("answers a Service applied just before the query, and forgets a deleted one at once", () => {
    const store = openStore("dnstest", root);
    store.write([svc("first", "10.96.0.10")]);
    const resolve = createResolver("dnstest", "cluster.local", root);
    assert.deepEqual(summary(resolve(query("first.default.svc.cluster.local", 1))), { rcode: 0, answers: 1 });
    assert.equal(summary(resolve(query("second.default.svc.cluster.local", 2))).rcode, 3, "not there yet: NXDOMAIN");
    store.write([svc("second", "10.96.0.11")]); // right after a query: within the 500 ms refresh
    const started = performance.now();
    const r = resolve(query("second.default.svc.cluster.local", 3));
    assert.deepEqual(summary(r), { rcode: 0, answers: 1 }, "the next query sees the new Service");
    assert.ok(r.includes(Buffer.from([10, 96, 0, 11])), "with its ClusterIP");
    store.delete([{ kind: "Service", metadata: { name: "first", namespace: "default" } }]);
    assert.equal(summary(resolve(query("first.default.svc.cluster.local", 4))).rcode, 3, "a deleted Service: NXDOMAIN");
    console.log(`# answered after the write in ${(performance.now() - started).toFixed(1)} ms`);
  });
});
