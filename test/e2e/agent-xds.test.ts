// The agent serves each node's L7 policy over xDS (ADS on a Unix socket): an L7 rule applied to the
// cluster reaches the node's xDS clients as a Weft L7 policy resource, and the proxy's flows
// posted to the agent show in `weft observe`.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { XdsClient, type XdsConfig } from "../../src/xds/client.ts";
import { TYPE } from "../../src/xds/resources.ts";
import { REPO, TestCluster } from "../harness/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-agent-xds-"));

describe("agent xDS and L7 flows", () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
  });
  after(async () => {
    await c?.down();
  });

  it("serves the L7 rules of the node's endpoints as Weft L7 policy resources", async () => {
    const file = join(dir, "l7.yaml");
    writeFileSync(
      file,
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-l7}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
          rules: {http: [{method: GET, path: "/public/.*"}]}
`,
    );
    assert.equal((await c.apply(file)).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const client = new XdsClient({ target: `unix://${join(c.stateDir, "run", "node-2", "xds.sock")}`, node: { id: "node-2" }, types: [TYPE.l7policy] });
    try {
      const config = await new Promise<XdsConfig>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no L7 policy from the agent in 15 s")), 15_000);
        client.on("config", (cfg: XdsConfig) => {
          if (cfg.l7policies.size > 0) {
            clearTimeout(t);
            resolve(cfg);
          }
        });
        client.start();
      });
      const policies = [...config.l7policies.values()];
      const p = policies.find((x) => x.direction === "INGRESS" && x.port === 8080);
      assert.ok(p, `an ingress policy for port 8080: ${policies.map((x) => x.name).join(", ")}`);
      assert.equal(p.kind, "HTTP");
      const entry = p.entries?.[0];
      assert.equal(entry?.http?.[0]?.method, "GET");
      assert.equal(entry?.http?.[0]?.path, "/public/.*");
    } finally {
      client.close();
    }
  });

  it("takes the proxy's flows and shows them in weft observe", async () => {
    const flow = {
      time: new Date().toISOString(),
      verdict: "DROPPED",
      IP: { source: "10.200.1.2", destination: "10.200.2.3", ipVersion: "IPv4" },
      source: { identity: 256, namespace: "default", pod_name: "client-1" },
      destination: { identity: 257, namespace: "default", pod_name: "echo-x" },
      Type: "L7",
      traffic_direction: "INGRESS",
      node_name: "node-2",
      Summary: "HTTP/1.1 GET /private 403",
    };
    const body = `${JSON.stringify(flow)}\nnot json\n`;
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: join(c.stateDir, "run", "node-2", "agent.sock"), path: "/v1/flows", method: "POST" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(body);
    });
    assert.equal(status, 400, "a bad line is reported");
    const r = await c.cli(["observe", "--last", "5000", "-o", "json"]);
    assert.match(r.stdout, /"Summary":"HTTP\/1\.1 GET \/private 403"/);
  });
});
