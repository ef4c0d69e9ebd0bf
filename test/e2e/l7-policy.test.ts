// L7 policy end to end on the local cluster (examples/l7): the admitted client gets 200 on the
// allowed request and 403 `Access denied` on others, with client and server on the same node and
// on different nodes; path tricks cannot reach a denied path; another client is dropped at L3/L4;
// flows show each verdict.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getJson } from "../../src/core/unix-http.ts";
import { type PodJson, REPO, TestCluster } from "../harness/cluster.ts";

describe("L7 policy through the node proxies", () => {
  let c: TestCluster;
  let echoPods: PodJson[];
  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    const r = await c.apply(join(REPO, "examples", "l7"));
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    await c.waitFor("intruder running", async () => (await c.pods()).some((p) => p.metadata.name === "intruder" && p.status.phase === "Running"));
    await c.waitForRedirect();
    echoPods = (await c.pods()).filter((p) => p.metadata.labels.app === "echo");
  });
  after(async () => {
    await c?.down();
  });

  /** HTTP status and body from a pod to a URL (curl keeps the path exactly as given). */
  const get = async (from: string, url: string) => {
    const r = await c.exec(from, ["curl", "-s", "--path-as-is", "--max-time", "5", "-w", "\n%{http_code}", url]);
    const lines = r.stdout.split("\n");
    return { code: lines.pop() ?? "", body: lines.join("\n") };
  };

  for (const [client, where] of [
    ["client-1", "node-1"],
    ["client-2", "node-2"],
  ] as const) {
    it(`${client} (${where}): 200 on GET /public/*, 403 Access denied on anything else, to pods on both nodes`, async () => {
      for (const pod of echoPods) {
        const base = `http://${pod.status.podIP}:8080`;
        const ok = await get(client, `${base}/public/hello`);
        assert.equal(ok.code, "200", `${client} → ${pod.metadata.name}`);
        assert.equal((JSON.parse(ok.body) as { path: string }).path, "/public/hello");
        const denied = await get(client, `${base}/private`);
        assert.equal(denied.code, "403");
        assert.equal(denied.body, "Access denied\r\n");
        const post = await c.exec(client, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", "POST", `${base}/public/hello`]);
        assert.equal(post.stdout, "403", "only GET is allowed");
      }
    });
  }

  it("through the service name too (the socket LB picks the backend, the proxy enforces)", async () => {
    for (let i = 0; i < 6; i++) {
      assert.equal((await get("client-1", "http://echo/public/x")).code, "200");
      assert.equal((await get("client-1", "http://echo/secret")).code, "403");
    }
  });

  it("path tricks cannot reach a denied path, and the backend gets the normalised path", async () => {
    const tricks = ["/public/../private", "/public/%2e%2e/private", "/public/%2E%2E/private", "/public/./../private", "//private", "/PUBLIC/x", "/public%2Fx"];
    for (const t of tricks) {
      const r = await get("client-1", `http://echo${t}`);
      assert.equal(r.code, "403", `${t} must be denied, got ${r.code}`);
    }
    const normalised = await get("client-1", "http://echo/public/a/./b/../c");
    assert.equal(normalised.code, "200");
    assert.equal((JSON.parse(normalised.body) as { path: string }).path, "/public/a/c", "the backend sees the normalised path");
  });

  it("one HTTP/2 connection carries a stream answered 200 and a stream answered 403", async () => {
    const target = echoPods.find((p) => p.spec.nodeName === "node-2")?.status.podIP as string;
    const script = `const h2=require("http2");const c=h2.connect("http://${target}:8080");const out=[];let n=0;
for (const p of ["/public/h2","/private"]) { const r=c.request({":path":p}); let s=0; r.on("response",h=>{s=h[":status"]}); r.resume(); r.on("end",()=>{out.push(p+" "+s); if(++n===2){console.log(out.sort().join(","));c.close()}}); r.end(); }
setTimeout(()=>process.exit(3),8000).unref();`;
    const r = await c.exec("client-1", [process.execPath, "-e", script]);
    assert.equal(r.stdout.trim(), "/private 403,/public/h2 200", r.stderr);
  });

  it("WebSocket passes under policy on an allowed path and is denied on another", async () => {
    const target = echoPods[0]?.status.podIP as string;
    const script = (
      path: string,
    ) => `const net=require("net");const s=net.connect(8080,"${target}",()=>s.write("GET ${path} HTTP/1.1\\r\\nHost: echo\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"));
let b="";let sent=false;s.on("data",d=>{b+=d;const head=b.split("\\r\\n")[0];if(!head.includes(" 101 ")){console.log(head);s.destroy();return}
if(!sent&&b.includes("\\r\\n\\r\\n")){sent=true;s.write("hello-ws")} if(b.endsWith("hello-ws")){console.log(head+" echoed");s.destroy()}});
setTimeout(()=>{console.log("timeout "+JSON.stringify(b.slice(0,40)));process.exit(3)},8000).unref();`;
    const ok = await c.exec("client-1", [process.execPath, "-e", script("/public/ws")]);
    assert.equal(ok.stdout.trim(), "HTTP/1.1 101 Switching Protocols echoed", ok.stderr);
    const denied = await c.exec("client-1", [process.execPath, "-e", script("/private/ws")]);
    assert.match(denied.stdout.trim(), /^HTTP\/1\.1 403/);
  });

  it("a malformed or smuggling request gets 400", async () => {
    const target = echoPods[0]?.status.podIP as string;
    const raw = "POST /public/x HTTP/1.1\\r\\nHost: echo\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n";
    const r = await c.exec("client-1", ["sh", "-c", `printf '${raw}' | socat -T3 - TCP:${target}:8080 | head -1`]);
    assert.match(r.stdout, /^HTTP\/1\.1 400/);
  });

  it("TLS on a port with HTTP rules and no termination is refused by the proxy, not passed through", async () => {
    const pod = echoPods.find((p) => p.spec.nodeName === "node-2");
    assert.ok(pod?.status.podIP);
    const tlsDenied = async () =>
      (await getJson<{ total: Record<string, number> }>(join(c.stateDir, "run", "node-2", "proxy-admin.sock"), "/stats", 5000))?.total
        .downstream_cx_tls_denied ?? 0;
    const before = await tlsDenied();
    const r = await c.exec("client-1", [
      "curl",
      "-sk",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--max-time",
      "5",
      `https://${pod.status.podIP}:8080/public/x`,
    ]);
    assert.equal(r.stdout, "000", "no HTTP answer over TLS");
    assert.equal((await tlsDenied()) - before, 1, "node-2's proxy refused one TLS connection");
  });

  it("another client is dropped at L3/L4 (no proxy involved)", async () => {
    const r = await c.exec("intruder", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "http://echo/public/x"]);
    assert.equal(r.stdout, "000");
  });

  it("from the outside namespace through a NodePort: the same L7 rules apply to the world", async () => {
    const file = join(REPO, "test", "fixtures", "manifests", "l7-nodeport.yaml");
    assert.equal((await c.apply(file)).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    for (const node of ["10.254.0.11", "10.254.0.12"]) {
      const ok = await c.execOutside(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", `http://${node}:30090/public/x`]);
      assert.equal(ok.stdout, "200", `GET /public/x through ${node}`);
      const denied = await c.execOutside(["curl", "-s", "--max-time", "5", "-w", " %{http_code}", `http://${node}:30090/private`]);
      assert.equal(denied.stdout, "Access denied\r\n 403", `GET /private through ${node}`);
    }
  });

  it("flows show the L7 verdicts with method, URL and code, and the L3/L4 drop", async () => {
    const flows = await c.flows();
    const l7 = flows.filter((f) => f.Type === "L7");
    assert.ok(l7.some((f) => f.verdict === "FORWARDED" && f.l7?.http?.code === 200 && f.l7.http.url.endsWith("/public/hello")));
    assert.ok(l7.some((f) => f.verdict === "DROPPED" && f.l7?.http?.code === 403 && f.l7.http.url.endsWith("/private")));
    assert.ok(
      l7.some((f) => f.source.pod_name === "client-1"),
      "flows name the client pod",
    );
    assert.ok(flows.some((f) => f.Type === "L3_L4" && f.verdict === "DROPPED" && f.source.pod_name === "intruder" && f.drop_reason === 133));
  });
});
