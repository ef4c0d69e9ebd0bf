// Visibility without enforcement: `enableDefaultDeny: {ingress: false}` with `http: [{}]` sends the
// port through the proxy, lets every request and every other peer through, and makes each request
// a flow.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO, TestCluster } from "../harness/cluster.ts";

describe("L7 visibility without enforcement", () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    assert.equal((await c.apply(join(REPO, "test", "fixtures", "manifests", "l7-visibility.yaml"))).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    await c.waitForRedirect();
  });
  after(async () => {
    await c?.down();
  });

  it("lets every request through and records each as an L7 flow", async () => {
    const paths = ["/anything", "/admin/secret", "/public/x"];
    for (const p of paths) {
      const r = await c.exec("client-1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", "DELETE", `http://echo${p}`]);
      assert.equal(r.stdout, "200", `${p} is not denied`);
    }
    const flows = await c.waitFor("L7 flows for every request", async () => {
      const l7 = (await c.flows()).filter((f) => f.Type === "L7" && f.l7?.http?.method === "DELETE");
      return paths.every((p) => l7.some((f) => f.l7?.http?.url.endsWith(p))) && l7;
    });
    for (const f of flows) {
      assert.equal(f.verdict, "FORWARDED");
      assert.equal(f.l7?.http?.code, 200);
    }
  });

  it("does not turn on default deny: a peer with no rule of its own still reaches the port", async () => {
    const r = await c.exec("client-2", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://echo/x"]);
    assert.equal(r.stdout, "200");
    const eps = JSON.parse((await c.cli(["endpoint", "list", "-o", "json"])).stdout) as { pod: string; ingressEnforced: boolean }[];
    assert.ok(
      eps.filter((e) => e.pod.startsWith("echo-")).every((e) => e.ingressEnforced === false),
      "ingress not enforced",
    );
  });
});
