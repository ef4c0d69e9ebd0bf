// NodePort from the outside namespace (the world): reaches backends on both nodes through either
// node; externalTrafficPolicy Local keeps the client's address; ingress policy sees the world.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO, TestCluster } from "../harness/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-nodeport-"));
function manifest(name: string, yaml: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}
const NODE1 = "10.254.0.11";
const NODE2 = "10.254.0.12";

describe("NodePort from outside", () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    const services = `apiVersion: v1
kind: Service
metadata: {name: echo-np}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: http, nodePort: 30081}]
`;
    assert.equal((await c.apply(manifest("svc", services))).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
  });
  after(async () => {
    await c?.down();
  });

  const fromOutside = async (ip: string, port: number, n = 1) => {
    const r = await c.execOutside(["sh", "-c", `for i in $(seq ${n}); do curl -s --max-time 3 http://${ip}:${port}/np; echo; done`]);
    return r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { pod: string; node: string; remote: string; path: string });
  };

  it("reaches backends on both nodes through either node's address", async () => {
    for (const nodeIP of [NODE1, NODE2]) {
      const answers = await fromOutside(nodeIP, 30080, 40);
      assert.equal(answers.length, 40, `every request through ${nodeIP} answered`);
      assert.deepEqual([...new Set(answers.map((a) => a.node))].sort(), ["node-1", "node-2"], `local and remote backends through ${nodeIP}`);
      assert.equal(answers[0]?.path, "/np");
    }
  });

  it("externalTrafficPolicy Local keeps the client address and uses only the node's own backends", async () => {
    const answers = await fromOutside(NODE2, 30081, 10);
    assert.equal(answers.length, 10);
    for (const a of answers) {
      assert.equal(a.node, "node-2");
      assert.equal(a.remote.split(":")[0], "10.254.0.2", "the pod sees the outside client's address");
    }
  });

  it("ingress policy sees the world: fromEntities world admits it, a label-only rule drops it", async () => {
    const allow = manifest(
      "world",
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: echo-ingress}\nspec:\n  endpointSelector: {matchLabels: {app: echo}}\n  ingress: [{fromEntities: [world]}]\n",
    );
    assert.equal((await c.apply(allow)).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    assert.equal((await fromOutside(NODE2, 30081, 3)).length, 3);
    const labelsOnly = manifest(
      "labels",
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: echo-ingress}\nspec:\n  endpointSelector: {matchLabels: {app: echo}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]\n",
    );
    assert.equal((await c.apply(labelsOnly)).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    assert.equal((await fromOutside(NODE2, 30081, 2)).length, 0, "dropped");
    const drops = (await c.cli(["observe", "--verdict", "DROPPED", "--last", "20", "-o", "json"])).stdout;
    assert.match(drops, /"source":\{"identity":2,"labels":\["reserved:world"\]\}/);
    assert.match(drops, /"drop_reason":133/);
  });
});
