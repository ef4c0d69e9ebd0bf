// Services through the socket-level load balancer on the local cluster: DNS names, spreading over
// backends on both nodes, scaling, the VIP as the peer, refusal without backends, UDP.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO, TestCluster } from "../harness/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-services-"));
function manifest(name: string, yaml: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

/** A shell command: GET http://hashed/ from a fixed source port; prints the response body's last line. */
const GET_FROM_PORT = (port: string) =>
  `printf 'GET / HTTP/1.0\\r\\nHost: hashed\\r\\n\\r\\n' | socat -T3 - TCP:hashed:80,sourceport=${port},reuseaddr,linger=0 | tail -1`;

/** Runs `n` requests, each on a new connection, from a pod; returns the answering pods' names. */
async function spread(c: TestCluster, from: string, url: string, n: number): Promise<string[]> {
  const r = await c.exec(from, ["sh", "-c", `for i in $(seq ${n}); do curl -s --max-time 3 ${url}; echo; done`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => (JSON.parse(l) as { pod: string }).pod);
}

function count(names: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of names) m.set(n, (m.get(n) ?? 0) + 1);
  return m;
}

describe("services", () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
  });
  after(async () => {
    await c?.down();
  });

  it("spreads 300 new connections to the ClusterIP, by DNS name, over every backend on both nodes", async () => {
    const started = Date.now();
    const names = await spread(c, "client-1", "http://echo.default.svc.cluster.local/", 300);
    console.log(`# 300 requests in ${Date.now() - started} ms`);
    assert.equal(names.length, 300, "every request answered");
    const counts = count(names);
    assert.equal(counts.size, 3, `every backend answered: ${[...counts]}`);
    // Binomial(300, 1/3): mean 100, sd 8.2; 5 sd either side.
    for (const [pod, n] of counts) assert.ok(n >= 59 && n <= 141, `${pod} got ${n} of 300`);
    const pods = await c.pods();
    const nodes = new Set(pods.filter((p) => counts.has(p.metadata.name)).map((p) => p.spec.nodeName));
    assert.deepEqual([...nodes].sort(), ["node-1", "node-2"]);
  });

  it("short names resolve through the search domains and the peer is the VIP", async () => {
    const svc = JSON.parse((await c.cli(["get", "services", "-o", "json"])).stdout) as { items: { metadata: { name: string }; spec: { clusterIP: string } }[] };
    const vip = svc.items.find((s) => s.metadata.name === "echo")?.spec.clusterIP as string;
    const r = await c.exec("client-2", ["curl", "-s", "-o", "/dev/null", "-w", "%{remote_ip}:%{remote_port}", "--max-time", "3", "http://echo/"]);
    assert.equal(r.stdout, `${vip}:80`);
  });

  it("answers DNS over UDP on the cluster DNS ClusterIP: A, AAAA NODATA, NXDOMAIN", async () => {
    const a = await c.exec("client-1", ["dig", "+short", "echo.default.svc.cluster.local", "A"]);
    assert.match(a.stdout.trim(), /^10\.96\.\d+\.\d+$/);
    const aaaa = await c.exec("client-1", ["dig", "+noall", "+comments", "echo.default.svc.cluster.local", "AAAA"]);
    assert.match(aaaa.stdout, /status: NOERROR/);
    assert.match(aaaa.stdout, /ANSWER: 0/);
    const nx = await c.exec("client-1", ["dig", "+noall", "+comments", "nope.default.svc.cluster.local"]);
    assert.match(nx.stdout, /status: NXDOMAIN/);
  });

  it("updates backends when the Deployment scales 3 → 5 (delay printed)", async () => {
    const deploy = (replicas: number) =>
      manifest(
        "echo",
        `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo, labels: {app: echo}}\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      containers:\n        - name: echo\n          image: weft/echo\n          ports: [{name: http, containerPort: 8080}]\n          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 2}\n`,
      );
    const started = Date.now();
    assert.equal((await c.apply(deploy(5))).code, 0);
    await c.waitFor(
      "5 backends answer",
      async () => {
        const names = await spread(c, "client-1", "http://echo/", 40);
        return count(names).size === 5;
      },
      60_000,
    );
    console.log(`# scale 3 -> 5 to traffic on 5 backends: ${Date.now() - started} ms`);
  });

  it("rolls the Deployment under a request loop without failing a request", async () => {
    const template = (version: string) =>
      manifest(
        "echo",
        `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo, labels: {app: echo}}\nspec:\n  replicas: 5\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      containers:\n        - name: echo\n          image: weft/echo\n          env: [{name: VERSION, value: "${version}"}]\n          ports: [{name: http, containerPort: 8080}]\n          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}\n`,
      );
    const before = new Set((await c.pods()).filter((p) => p.metadata.labels.app === "echo").map((p) => p.metadata.name));
    const loop = c.exec("client-2", [
      "sh",
      "-c",
      "for i in $(seq 300); do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 3 http://echo/ || echo fail; sleep 0.02; done",
    ]);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await c.apply(template("v2"))).code, 0);
    const r = await loop;
    const codes = r.stdout.trim().split("\n");
    assert.equal(codes.length, 300);
    assert.deepEqual(
      codes.filter((x) => x !== "200"),
      [],
      "no failed request during the rolling update",
    );
    const rolled = await c.waitFor("all replicas replaced", async () => {
      const now = (await c.pods()).filter((p) => p.metadata.labels.app === "echo" && !p.metadata.deletionTimestamp);
      return now.length === 5 && now.every((p) => !before.has(p.metadata.name)) && now;
    });
    assert.equal(rolled.length, 5);
  });

  it("sessionAffinity ClientIP pins a client to one backend and expires after its timeout", async () => {
    assert.equal(
      (
        await c.apply(
          manifest(
            "sticky",
            "apiVersion: v1\nkind: Service\nmetadata: {name: sticky}\nspec:\n  selector: {app: echo}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}\n  ports: [{port: 80, targetPort: http}]\n",
          ),
        )
      ).code,
      0,
    );
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const pinned = count(await spread(c, "client-1", "http://sticky/", 30));
    assert.equal(pinned.size, 1, `one backend for the pinned client: ${[...pinned]}`);
    // After each expiry the choice is made afresh: over 6 expiries, more than one backend.
    const chosen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      chosen.add((await spread(c, "client-1", "http://sticky/", 1))[0] as string);
      await new Promise((r) => setTimeout(r, 2600));
    }
    assert.ok(chosen.size > 1, `affinity expired: ${[...chosen]}`);
  });

  it("Maglev (by annotation) keeps a flow's source on one backend and spreads different sources", async () => {
    assert.equal(
      (
        await c.apply(
          manifest(
            "maglev",
            "apiVersion: v1\nkind: Service\nmetadata: {name: hashed, annotations: {service.weft.io/lb-algorithm: maglev}}\nspec:\n  selector: {app: echo}\n  ports: [{port: 80, targetPort: http}]\n",
          ),
        )
      ).code,
      0,
    );
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const samePort = await c.exec("client-1", [
      "sh",
      "-c",
      // One source port for every request: SO_REUSEADDR and an RST close (no TIME_WAIT) let it be reused.
      `for i in $(seq 10); do ${GET_FROM_PORT("41000")}; echo; done`,
    ]);
    const answers = samePort.stdout.split("\n").filter((l) => l.startsWith("{"));
    assert.equal(answers.length, 10, `answers from one source port: ${answers.length} of 10`);
    const same = new Set(answers.map((l) => (JSON.parse(l) as { pod: string }).pod));
    assert.equal(same.size, 1, `one backend for one source: ${[...same]}`);
    const many = await c.exec("client-1", ["sh", "-c", `for p in $(seq 41100 41160); do ${GET_FROM_PORT("$p")}; echo; done`]);
    const spreadOver = new Set(
      many.stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => (JSON.parse(l) as { pod: string }).pod),
    );
    assert.ok(spreadOver.size >= 3, `different sources spread: ${[...spreadOver]}`);
  });

  it("reports a service the datapath cannot serve, with the reason, and disturbs no other", async () => {
    const bad = manifest(
      "bad",
      "apiVersion: v1\nkind: Service\nmetadata: {name: sctp}\nspec:\n  selector: {app: echo}\n  ports: [{port: 80, protocol: SCTP}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: misnamed}\nspec:\n  selector: {app: echo}\n  ports: [{port: 80, targetPort: nosuchport}]\n",
    );
    assert.equal((await c.apply(bad)).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const r = await c.cli(["get", "services"]);
    assert.match(r.stdout, /Warning: WEFT_SERVICE_UNSUPPORTED: default\/sctp.*SCTP/);
    assert.match(r.stdout, /Warning: WEFT_SERVICE_INVALID: default\/misnamed.*targetPort "nosuchport" is not a port of any endpoint/);
    const log = readFileSync(join(c.stateDir, "logs", "nodes", "node-1", "agent.log"), "utf8");
    assert.match(log, /"msg":"service refused".*default\/misnamed/);
    assert.equal((await spread(c, "client-1", "http://echo/", 5)).length, 5, "other services still answer");
  });

  it("no connection of these services touched a node proxy (no L7 rules, no L7 load balancing)", async () => {
    const { getJson } = await import("../../src/core/unix-http.ts");
    for (const node of ["node-1", "node-2"]) {
      const stats = await getJson<{ workers: unknown[]; total: Record<string, number> }>(join(c.stateDir, "run", node, "proxy-admin.sock"), "/stats", 3000);
      assert.ok(stats && stats.workers.length >= 1, `${node}'s proxy answers its admin socket`);
      assert.equal(stats.total.downstream_cx_total ?? 0, 0, `${node}'s proxy accepted nothing`);
    }
  });

  it("closes a connected UDP socket whose backend left the service", async () => {
    const udp = manifest(
      "udp",
      "apiVersion: v1\nkind: Pod\nmetadata: {name: udp-echo, labels: {app: udp-echo}}\nspec:\n  nodeName: node-2\n  containers: [{name: c, command: [socat, 'UDP4-RECVFROM:9000,fork', 'EXEC:cat']}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: udp-echo}\nspec:\n  selector: {app: udp-echo}\n  ports: [{port: 9000, protocol: UDP}]\n",
    );
    assert.equal((await c.apply(udp)).code, 0);
    await c.waitFor("udp-echo running", async () => (await c.pods()).some((p) => p.metadata.name === "udp-echo" && p.status.phase === "Running"));
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    // A client that connects once, then sends every 200 ms and reports how its socket fares.
    const client = `const dns=require("dns");dns.lookup("udp-echo.default.svc.cluster.local",(e,ip)=>{const d=require("dgram").createSocket("udp4");let ok=0;
d.on("message",()=>{ok++});d.on("error",(err)=>{console.log("error "+err.code+" after "+ok);process.exit(0)});
d.connect(9000,ip,()=>{const t=setInterval(()=>d.send("ping",(err)=>{if(err){console.log("error "+err.code+" after "+ok);process.exit(0)}}),200);});
setTimeout(()=>{console.log("still open after "+ok);process.exit(1)},30000).unref();});`;
    const running = c.exec("client-1", [process.execPath, "-e", client]);
    await new Promise((r) => setTimeout(r, 2000));
    // Only the backend pod goes; the service stays.
    const podOnly = manifest("udp-pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: udp-echo}\nspec:\n  containers: [{name: c, command: [socat]}]\n");
    assert.equal((await c.cli(["delete", "-f", podOnly])).code, 0);
    const r = await running;
    console.log(`# client: ${r.stdout.trim()}`);
    assert.match(r.stdout, /^error \w+ after [1-9]\d*/, "answers came, then the socket was closed");
  });

  it("refuses at once when a service has no ready backend", async () => {
    assert.equal(
      (await c.apply(manifest("empty", "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nobody}\n  ports: [{port: 80}]\n")))
        .code,
      0,
    );
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    const started = Date.now();
    const r = await c.exec("client-1", ["curl", "-sS", "--max-time", "5", "http://empty/"]);
    const ms = Date.now() - started;
    assert.equal(r.code, 7, `curl: ${r.stderr}`); // couldn't connect
    assert.match(r.stderr, /Connection refused|Couldn't connect/);
    assert.ok(ms < 3000, `refused in ${ms} ms`);
  });
});
