// Egress L7 rules run in the client node's proxy: a client whose egress policy allows only some
// HTTP requests gets 403 from its own node's proxy for the rest, whichever node the server is on,
// and the server's node proxy never sees the connection when the server has no L7 rules. With
// ingress L7 rules on the server too (examples/l7), a same-node connection is decided by both rule
// sets in one pass through one proxy: a request must pass both.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getJson } from "../../src/core/unix-http.ts";
import { type PodJson, REPO, TestCluster } from "../harness/cluster.ts";

describe("egress L7 rules in the client's node proxy", () => {
  let c: TestCluster;
  let echoOn: Record<string, string | undefined>; // node → an echo pod IP there
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    assert.equal((await c.apply(join(REPO, "test", "fixtures", "manifests", "l7-egress.yaml"))).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    await c.waitForRedirect();
    const echo = (await c.pods()).filter((p: PodJson) => p.metadata.labels.app === "echo");
    echoOn = Object.fromEntries(echo.map((p) => [p.spec.nodeName, p.status.podIP]));
    assert.ok(echoOn["node-1"] && echoOn["node-2"], "echo pods on both nodes");
  });
  after(async () => {
    await c?.down();
  });

  const code = async (from: string, url: string, method = "GET") =>
    (await c.exec(from, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", method, url])).stdout;
  const stats = async (node: string) =>
    (await getJson<{ total: Record<string, number> }>(join(c.stateDir, "run", node, "proxy-admin.sock"), "/stats", 5000))?.total ?? {};

  it("client-1 (node-1): allowed requests pass, others get 403 from node-1's proxy; node-2's proxy sees nothing", async () => {
    const before1 = await stats("node-1");
    const before2 = await stats("node-2");
    for (const node of ["node-1", "node-2"]) {
      const base = `http://${echoOn[node]}:8080`;
      assert.equal(await code("client-1", `${base}/public/x`), "200", `GET /public/x → echo on ${node}`);
      assert.equal(await code("client-1", `${base}/private`), "403", `GET /private → echo on ${node}`);
      assert.equal(await code("client-1", `${base}/public/x`, "POST"), "403", `POST /public/x → echo on ${node}`);
    }
    assert.equal(await code("client-1", "http://echo/public/by-name"), "200", "by service name (DNS allowed at L4)");
    assert.equal(await code("client-1", "http://echo/private"), "403");
    const after1 = await stats("node-1");
    const after2 = await stats("node-2");
    const d = (a: Record<string, number>, b: Record<string, number>, k: string) => (a[k] ?? 0) - (b[k] ?? 0);
    console.log(
      `# node-1 proxy: +${d(after1, before1, "downstream_rq_allowed")} allowed, +${d(after1, before1, "downstream_rq_denied")} denied; node-2 proxy: +${d(after2, before2, "downstream_cx_total")} connections`,
    );
    assert.equal(d(after1, before1, "downstream_rq_denied"), 5, "node-1's proxy denied the 5 requests");
    assert.equal(d(after1, before1, "downstream_rq_allowed"), 3, "and allowed the 3 others");
    assert.equal(d(after2, before2, "downstream_cx_total"), 0, "the server side has no L7 rules: node-2's proxy is not involved");
  });

  it("flows show the egress L7 verdicts", async () => {
    const flows = (await c.flows()).filter((f) => f.Type === "L7" && f.source.pod_name === "client-1");
    assert.ok(flows.some((f) => f.traffic_direction === "EGRESS" && f.verdict === "DROPPED" && f.l7?.http?.code === 403 && f.l7.http.url.endsWith("/private")));
    assert.ok(
      flows.some((f) => f.traffic_direction === "EGRESS" && f.verdict === "FORWARDED" && f.l7?.http?.code === 200 && f.l7.http.url.endsWith("/public/x")),
    );
  });

  it("with ingress L7 rules on the server as well, a request must pass both rule sets (one pass on a shared node)", async () => {
    assert.equal((await c.apply(join(REPO, "examples", "l7"))).code, 0); // echo ingress: GET /public/.* only
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const base = `http://${echoOn["node-1"]}:8080`;
    // /both is allowed by the client's egress rules but not by the server's ingress rules.
    await c.waitFor("ingress rules in force", async () => (await code("client-1", `${base}/both`)) === "403", 30_000);
    const before1 = await stats("node-1");
    assert.equal(await code("client-1", `${base}/public/y`), "200");
    assert.equal(await code("client-1", `${base}/both`), "403");
    assert.equal(await code("client-1", `${base}/private`), "403");
    const after1 = await stats("node-1");
    const d = (k: string) => (after1[k] ?? 0) - (before1[k] ?? 0);
    console.log(
      `# node-1 proxy, same-node client and server: +${d("downstream_cx_total")} connections, +${d("upstream_cx_total")} upstream connections for 3 requests`,
    );
    assert.equal(d("downstream_cx_total"), 3, "each connection enters node-1's proxy once");
    assert.equal(d("downstream_rq_allowed"), 1);
    assert.equal(d("downstream_rq_denied"), 2);
    // Cross-node: the client's proxy applies egress, the server's proxy ingress.
    const far = `http://${echoOn["node-2"]}:8080`;
    assert.equal(await code("client-1", `${far}/public/z`), "200");
    assert.equal(await code("client-1", `${far}/both`), "403", "denied by node-2's ingress rules after node-1's egress rules allowed it");
  });
});
