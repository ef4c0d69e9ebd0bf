// L3/L4 policy on the local cluster: CiliumNetworkPolicy and NetworkPolicy, ingress and egress,
// from the same node and the other node; allowed flows pass with their replies, denied ones are
// dropped with a drop flow and reason; deny beats allow; TCP, UDP and ICMP; a bad policy is refused
// and the previous one stays enforced.

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type PodJson, TestCluster } from "../harness/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-policy-"));
function manifest(name: string, yaml: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

const WORKLOADS = `
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: node-1
  containers:
    - name: http
      image: weft/echo
      ports: [{containerPort: 8080}]
    - name: udp
      # Answers every datagram with "pong" (a socat EXEC:echo server can lose the answer when the
      # child exits before the datagram is written to it: broken pipe, nothing sent).
      command: [node, -e, "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('pong',r.port,r.address));s.bind(9000)"]
---
apiVersion: v1
kind: Pod
metadata: {name: friend-near, labels: {app: friend}}
spec: {nodeName: node-1, containers: [{name: c, image: weft/client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: friend-far, labels: {app: friend}}
spec: {nodeName: node-2, containers: [{name: c, image: weft/client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger-near, labels: {app: stranger}}
spec: {nodeName: node-1, containers: [{name: c, image: weft/client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger-far, labels: {app: stranger}}
spec: {nodeName: node-2, containers: [{name: c, image: weft/client}]}
`;

describe("L3/L4 policy", () => {
  let c: TestCluster;
  let server: PodJson;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: manifest("workloads", WORKLOADS) });
    server = (await c.pods()).find((p) => p.metadata.name === "server") as PodJson;
  });
  after(async () => {
    await c?.down();
  });

  async function enforce(file: string): Promise<void> {
    const r = await c.apply(file);
    assert.equal(r.code, 0, r.stderr);
    const w = await c.cli(["policy", "wait", "--timeout", "30"]);
    assert.equal(w.code, 0, w.stderr);
  }
  const tcp = async (from: string, port = 8080) =>
    (await c.exec(from, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", `http://${server.status.podIP}:${port}/`])).stdout;
  const udpOnce = async (from: string, wait = 2) =>
    (await c.exec(from, ["sh", "-c", `echo ping | socat -T${wait} - UDP4:${server.status.podIP}:9000`])).stdout.trim();
  /** UDP has no retransmission: on a loaded machine a datagram may be late, so an answer gets 3 tries. */
  const udp = async (from: string) => {
    for (let i = 0; i < 2; i++) {
      const r = await udpOnce(from, 4);
      if (r) return r;
      console.log(`# UDP from ${from}: no answer in 4 s; trying again`);
    }
    return udpOnce(from, 4);
  };
  const ping = async (from: string) => (await c.exec(from, ["ping", "-c", "1", "-W", "2", server.status.podIP as string])).code;

  it("without policy everything reaches the server", async () => {
    assert.equal(await tcp("stranger-far"), "200");
    assert.equal(await udp("stranger-near"), "pong");
    assert.equal(await ping("stranger-far"), 0);
  });

  it("CiliumNetworkPolicy ingress admits one label on TCP, UDP and ICMP, from both nodes; others are dropped", async () => {
    await enforce(
      manifest(
        "cnp",
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: friend}}]
      toPorts:
        - ports: [{port: "8080", protocol: TCP}, {port: "9000", protocol: UDP}]
    - fromEndpoints: [{matchLabels: {app: friend}}]
      icmps: [{fields: [{type: 8, family: IPv4}]}]
`,
      ),
    );
    for (const friend of ["friend-near", "friend-far"]) {
      assert.equal(await tcp(friend), "200", `${friend} TCP`);
      assert.equal(await udp(friend), "pong", `${friend} UDP (reply passes)`);
      assert.equal(await ping(friend), 0, `${friend} ICMP`);
    }
    for (const stranger of ["stranger-near", "stranger-far"]) {
      assert.equal(await tcp(stranger), "000", `${stranger} TCP must time out`);
      assert.equal(await udpOnce(stranger), "", `${stranger} UDP gets no answer`);
      assert.notEqual(await ping(stranger), 0, `${stranger} ICMP`);
    }
  });

  it("records the drops as flows with Cilium's reason", async () => {
    const flows = await c.flows({ verdict: "DROPPED", last: 200 });
    for (const proto of ["TCP", "UDP", "ICMPv4"]) {
      const f = flows.find((x) => x.source.pod_name === "stranger-far" && x.destination.pod_name === "server" && x.l4 && proto in x.l4);
      assert.ok(f, `a ${proto} drop flow from stranger-far`);
      assert.equal(f.drop_reason, 133);
      assert.equal(f.drop_reason_desc, "POLICY_DENIED");
      assert.equal(f.traffic_direction, "INGRESS");
    }
  });

  it("a deny rule beats an allow that covers the same traffic", async () => {
    await enforce(
      manifest(
        "deny",
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-far-friend}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: friend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`,
      ),
    );
    assert.equal(await tcp("friend-near"), "000");
    assert.equal(await udp("friend-near"), "pong", "the deny covers only TCP 8080");
    const flows = (await c.cli(["observe", "--verdict", "DROPPED", "--last", "50", "-o", "json"])).stdout;
    assert.match(flows, /"drop_reason":181/);
    assert.equal((await c.cli(["delete", "-f", join(dir, "deny.yaml")])).code, 0);
    await c.cli(["policy", "wait"]);
    assert.equal(await tcp("friend-near"), "200");
  });

  it("refuses an invalid policy and keeps enforcing the previous one", async () => {
    const bad = manifest(
      "bad",
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: server-ingress}\nspec:\n  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n    - fromEndpoint: [{}]\n",
    );
    const r = await c.apply(bad);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /WEFT_POLICY_INVALID: .*bad\.yaml \(document 1\): spec\.ingress\[0\]\.fromEndpoint/);
    assert.equal(await tcp("stranger-far"), "000");
    assert.equal(await tcp("friend-far"), "200");
  });

  it("NetworkPolicy egress: a pod may only reach the server on 8080", async () => {
    await enforce(
      manifest(
        "np",
        `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: stranger-egress}
spec:
  podSelector: {matchLabels: {app: stranger}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: server}}}]
      ports: [{port: 8080, protocol: TCP}]
`,
      ),
    );
    // The server's ingress still refuses strangers; open it to them to see the egress side alone.
    await enforce(
      manifest(
        "open",
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-open}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{}]}]
`,
      ),
    );
    assert.equal(await tcp("stranger-near"), "200", "egress to server:8080 allowed");
    assert.equal(await udpOnce("stranger-near"), "", "egress UDP denied");
    const flows = (await c.cli(["observe", "--verdict", "DROPPED", "--last", "50", "-o", "json"])).stdout;
    assert.match(flows, /"traffic_direction":"EGRESS"/);
  });
});
