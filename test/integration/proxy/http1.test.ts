// The proxy on HTTP/1.1, as real processes (supervisor + 2 workers) configured only over xDS:
// redirect records gate every connection, L7 policy per request (200 / 403 "Access denied"),
// path tricks cannot reach a denied path and the backend sees the normalised path, smuggling-prone
// requests get 400, keep-alive, chunked, 100-continue, pipelining, WebSocket and CONNECT tunnels,
// forwarding headers, declared upstream ports, and one L7 flow per request at the agent's socket.

import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { cluster, clusterLoadAssignment, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { curl, EchoBackend, get, httpPolicy, type ProxyEnv, raw, record, startProxy, statusesOf, waitFor } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;
const VIP_A = "10.96.0.10";
const VIP_B = "10.96.0.11";

const RULES = [
  { method: "GET", path: "/public(/.*)?" },
  { method: "GET", path: "/public\\?.*" },
  { method: "POST", path: "/upload" },
  { method: "GET", path: "/ws" },
  { method: "CONNECT", path: "tunnel\\.test:443" },
];

function resources(echo: EchoBackend): XdsResource[] {
  return [
    { typeUrl: TYPE.cluster, message: cluster({ name: "echo", lbPolicy: "ROUND_ROBIN" }) },
    { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("echo", [{ address: "127.0.0.1", port: echo.port }]) },
    { typeUrl: TYPE.listener, message: listener({ name: "vip-a", address: VIP_A, port: 80, http: { routeConfigName: "routes-a" } }) },
    {
      typeUrl: TYPE.listener,
      message: listener({
        name: "vip-b",
        address: VIP_B,
        port: 80,
        http: { routeConfigName: "routes-b", mergeSlashes: true, escapedSlashes: "REJECT_REQUEST" },
      }),
    },
    { typeUrl: TYPE.route, message: routeConfiguration("routes-a", [{ name: "all", routes: [{ prefix: "/", cluster: "echo" }] }]) },
    { typeUrl: TYPE.route, message: routeConfiguration("routes-b", [{ name: "all", routes: [{ prefix: "/", cluster: "echo" }] }]) },
    httpPolicy(SERVER, echo.port, CLIENT, RULES),
  ];
}

describe("proxy: HTTP/1.1", () => {
  let env: ProxyEnv;
  const echo = new EchoBackend("echo");
  let t0 = 0;

  before(async () => {
    t0 = performance.now();
    await echo.start();
    env = await startProxy({
      workers: 2,
      resources: resources(echo),
      records: [
        // 127.0.0.2: the admitted client, through VIP A (default path handling).
        { remote: "127.0.0.2", ...record(VIP_A, 80, "127.0.0.1", echo.port, CLIENT, SERVER) },
        // 127.0.0.4: the same client through VIP B (merge_slashes on, escaped slashes rejected).
        { remote: "127.0.0.4", ...record(VIP_B, 80, "127.0.0.1", echo.port, CLIENT, SERVER) },
        // 127.0.0.5: another identity the rules do not name.
        { remote: "127.0.0.5", ...record(VIP_A, 80, "127.0.0.1", echo.port, 1002, SERVER) },
      ],
    });
    console.log(`# proxy up (2 workers) in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  after(async () => {
    await env?.stop();
    await echo.stop();
  });

  it("accepts nothing while no connection is redirected to it", async () => {
    // Traffic straight to the backend does not touch the proxy.
    for (let i = 0; i < 20; i++) assert.equal((await get(echo.port, "/public/direct")).status, 200);
    const s = await env.stats();
    assert.equal(s.workers.length, 2);
    assert.equal(s.total.downstream_cx_total, 0);
  });

  it("refuses (closes) a connection without a redirect record, and counts it", async () => {
    await assert.rejects(get(env.port, "/public/x", { localAddress: "127.0.0.3" }));
    const s = await env.stats();
    assert.equal(s.total.downstream_cx_no_record, 1);
    assert.equal(echo.seen.filter((x) => x.path === "/public/x").length, 0);
  });

  it("allows a matching request (200) and denies another (403 Access denied)", async () => {
    const ok = await get(env.port, "/public/hello");
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).path, "/public/hello");
    const no = await get(env.port, "/private");
    assert.equal(no.status, 403);
    assert.equal(no.body, "Access denied\r\n");
    const post = await get(env.port, "/public/hello", { method: "POST", body: "x" });
    assert.equal(post.status, 403, "method is part of the rule");
    const other = await get(env.port, "/public/hello", { localAddress: "127.0.0.5" });
    assert.equal(other.status, 403, "an identity the rule does not name");
  });

  it("curl: allowed 200 with the backend's answer, denied 403 Access denied", async () => {
    const c = (path: string) =>
      curl(["-s", "--max-time", "5", "--interface", "127.0.0.2", "-H", "Host: svc.test", "-w", "\n%{http_code}", `http://127.0.0.1:${env.port}${path}`]);
    const ok = (await c("/public/curl")).split("\n");
    assert.equal(ok.at(-1), "200");
    assert.equal(JSON.parse(ok[0] as string).path, "/public/curl");
    assert.equal(await c("/admin"), "Access denied\r\n\n403");
  });

  it("path tricks cannot reach a denied path; the backend sees the normalised path", async () => {
    const cases: [string, string, number, string | null][] = [
      // [via, target, status, path the backend must see (null: must not reach it)]
      ["127.0.0.2", "/public/../private", 403, null],
      ["127.0.0.2", "/public/%2e%2e/private", 403, null],
      ["127.0.0.2", "/public/%2E%2E/%2e%2e/private", 403, null],
      ["127.0.0.2", "/public/./a/../b", 200, "/public/b"],
      ["127.0.0.2", "/%70ublic/x", 200, "/public/x"],
      ["127.0.0.2", "/PUBLIC/x", 403, null],
      ["127.0.0.2", "//public/x", 403, null],
      // %2F kept (Envoy's KEEP_UNCHANGED): one segment under /public, sent exactly as received.
      ["127.0.0.2", "/public/..%2Fprivate", 200, "/public/..%2Fprivate"],
      // VIP B: merge_slashes on, escaped slashes rejected.
      ["127.0.0.4", "//public//y", 200, "/public/y"],
      ["127.0.0.4", "/public/..%2Fprivate", 400, null],
      ["127.0.0.4", "/public/%2fprivate", 400, null],
    ];
    for (const [via, target, status, want] of cases) {
      const before = echo.seen.length;
      const text = await raw(env.port, `GET ${target} HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n`, { localAddress: via });
      assert.equal(statusesOf(text)[0], status, `${via} ${target}`);
      const reached = echo.seen.slice(before);
      if (want === null) assert.equal(reached.length, 0, `${target} must not reach the backend`);
      else
        assert.deepEqual(
          reached.map((s) => s.path),
          [want],
          target,
        );
    }
    // absolute-form is normalised too, and becomes origin-form upstream.
    const abs = await raw(env.port, "GET http://svc.test/public/../private HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n");
    assert.equal(statusesOf(abs)[0], 403);
  });

  it("smuggling-prone requests get 400 (or the parser's 501/431) and never reach the backend", async () => {
    const cases: [string, number][] = [
      ["POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
      ["POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400],
      ["POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
      ["POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501],
      ["GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400],
      ["GET /public/x HTTP/1.1\r\nHost : a\r\n\r\n", 400],
      ["GET /public/x HTTP/1.1\nHost: a\n\n", 400],
      ["GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
      ["GET /public/x HTTP/1.1\r\n\r\n", 400],
      [`GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(70_000)}\r\n\r\n`, 431],
    ];
    for (const [req, status] of cases) {
      const before = echo.seen.length;
      const text = await raw(env.port, req);
      assert.equal(statusesOf(text)[0], status, JSON.stringify(req.slice(0, 80)));
      assert.match(text, /connection: close/i);
      assert.equal(echo.seen.length, before, "nothing reached the backend");
    }
  });

  it("keep-alive: several requests on one connection, through one worker", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.2" });
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const r = await get(env.port, `/public/ka/${i}`, { agent });
      assert.equal(r.status, 200);
      ports.add(echo.seen[echo.seen.length - 1]?.remotePort as number);
    }
    agent.destroy();
    assert.equal(ports.size, 1, "the upstream connection was reused");
  });

  it("chunked request body and 100-continue", async () => {
    const chunked = await raw(
      env.port,
      "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    );
    assert.equal(statusesOf(chunked)[0], 200);
    assert.match(chunked, /"bodyBytes":11/);

    // 100-continue: the proxy answers 100 only after policy allows, then the body flows.
    const s = net.connect({ host: "127.0.0.1", port: env.port, localAddress: "127.0.0.2" });
    await new Promise((r) => s.once("connect", r));
    let text = "";
    s.on("data", (c: Buffer) => {
      text += c.toString();
    });
    s.write("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    await waitFor("100 Continue", () => text.includes("100 Continue"), 3000);
    assert.equal(text.includes("200"), false);
    s.write("abcde");
    await waitFor("the final answer", () => text.includes('"bodyBytes":5'), 3000);
    s.destroy();
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200/);
    assert.equal(echo.seen[echo.seen.length - 1]?.headers.expect, undefined, "Expect is answered by the proxy, not forwarded");

    // Denied with Expect: 403 at once, no 100, and the body is never asked for.
    const denied = await raw(env.port, "POST /private HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert.deepEqual(statusesOf(denied), [403]);
  });

  it("pipelined requests are answered one at a time, in order, with policy per request", async () => {
    const text = await raw(
      env.port,
      "GET /public/p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /private HTTP/1.1\r\nHost: a\r\n\r\nGET /public/p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert.deepEqual(statusesOf(text), [200, 403, 200]);
    assert.ok(text.indexOf("/public/p1") < text.indexOf("Access denied") && text.indexOf("Access denied") < text.indexOf("/public/p3"));
  });

  it("WebSocket upgrade passes under policy and becomes a byte tunnel; a denied one gets 403", async () => {
    const s = net.connect({ host: "127.0.0.1", port: env.port, localAddress: "127.0.0.2" });
    await new Promise((r) => s.once("connect", r));
    let text = "";
    s.on("data", (c: Buffer) => {
      text += c.toString("latin1");
    });
    s.write(
      "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    await waitFor("101", () => text.includes("\r\n\r\n"), 3000);
    assert.match(text, /^HTTP\/1\.1 101/);
    const frame = Buffer.from([0x81, 0x05, ...Buffer.from("hello")]);
    s.write(frame);
    await waitFor("the echoed frame", () => text.includes("hello"), 3000);
    s.destroy();
    const denied = await raw(env.port, "GET /ws-admin HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert.deepEqual(statusesOf(denied), [403]);
  });

  it("CONNECT passes as a tunnel when a rule allows it", async () => {
    const ok = await raw(env.port, "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\nping", { until: (t) => t.includes("ping") });
    assert.match(ok, /^HTTP\/1\.1 200/);
    assert.match(ok, /ping$/);
    const no = await raw(env.port, "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n");
    assert.deepEqual(statusesOf(no), [403]);
  });

  it("adds X-Forwarded-For and x-request-id; a pod cannot forge its origin", async () => {
    const r = await get(env.port, "/public/fwd", { headers: { "x-forwarded-for": "6.6.6.6", "x-request-id": "abc-123" } });
    const h = JSON.parse(r.body).headers as Record<string, string>;
    assert.equal(h["x-forwarded-for"], "127.0.0.2");
    assert.equal(h["x-forwarded-proto"], "http");
    assert.equal(h["x-request-id"], "abc-123", "a mesh peer's request id is kept");
    const r2 = await get(env.port, "/public/fwd2");
    assert.match(JSON.parse(r2.body).headers["x-request-id"], /^[0-9a-f-]{36}$/);
  });

  it("upstream connections are bound to declared local ports carrying the client's identity", async () => {
    await get(env.port, "/public/ports");
    const port = echo.seen[echo.seen.length - 1]?.remotePort as number;
    const s = await env.stats();
    const declared = new Map(s.workers.flatMap((w) => w.ports));
    assert.equal(declared.get(port), CLIENT, `port ${port} declared for identity ${CLIENT}`);
    assert.ok(port >= 31000 && port <= 32999);
  });

  it("every request becomes an L7 flow at the agent's socket", async () => {
    await waitFor("flows", () => env.flows.flows.some((f) => f.l7?.http?.code === 403) && env.flows.flows.some((f) => f.l7?.http?.code === 200), 3000);
    const ok = env.flows.flows.find((f) => f.l7?.http?.url.endsWith("/public/hello") && f.l7.http.code === 200);
    assert.ok(ok, "a flow for the allowed request");
    assert.equal(ok.Type, "L7");
    assert.equal(ok.verdict, "FORWARDED");
    assert.equal(ok.source.identity, CLIENT);
    assert.equal(ok.destination.identity, SERVER);
    assert.equal(ok.traffic_direction, "INGRESS");
    assert.equal(ok.l7?.http?.method, "GET");
    assert.ok((ok.l7?.latency_ns ?? 0) > 0);
    const no = env.flows.flows.find((f) => f.l7?.http?.url.endsWith("/private") && f.l7.http.code === 403);
    assert.equal(no?.verdict, "DROPPED");
    console.log(`# ${env.flows.flows.length} flows received; suite ${(performance.now() - t0).toFixed(0)} ms`);
  });
});
