// The proxy on HTTP/2 (h2c prior knowledge) with node:http2 on both sides: policy per stream (one
// connection carries a 200 stream and a 403 stream), a real gRPC client (@grpc/grpc-js) denied with
// PERMISSION_DENIED and allowed through to a gRPC server, an h2c upgrade over curl --http2 (stream 1
// and a further stream on one connection), and an h2c upgrade towards an HTTP/1-only upstream
// answered over HTTP/1.1 (the proxy ignores it, as RFC 7540 §3.2 allows). More upgrade cases:
// h2c-upgrade.test.ts.

import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { cluster, clusterLoadAssignment, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { curl, EchoBackend, get, H2Backend, httpPolicy, type ProxyEnv, record, startProxy, waitFor } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;
const GRPC_SERVER = 2002;

const passthrough = (b: Buffer) => b;
const SAY = {
  path: "/weft.Echo/Say",
  requestStream: false,
  responseStream: false,
  requestSerialize: passthrough,
  requestDeserialize: passthrough,
  responseSerialize: passthrough,
  responseDeserialize: passthrough,
};
const ADMIN = { ...SAY, path: "/weft.Echo/Admin" };

describe("proxy: HTTP/2 and gRPC", () => {
  let env: ProxyEnv;
  const h2 = new H2Backend();
  const echo = new EchoBackend("h1");
  let grpcServer: grpc.Server;
  let grpcPort = 0;

  before(async () => {
    await h2.start();
    await echo.start();
    grpcServer = new grpc.Server();
    grpcServer.addService({ Say: SAY, Admin: ADMIN } as grpc.ServiceDefinition, {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.concat([Buffer.from("echo:"), call.request])),
      Admin: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from("admin")),
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    const resources: XdsResource[] = [
      { typeUrl: TYPE.cluster, message: cluster({ name: "h2" }) },
      { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("h2", [{ address: "127.0.0.1", port: h2.port }]) },
      { typeUrl: TYPE.listener, message: listener({ name: "h2", address: "10.96.1.1", port: 80, http: { routeConfigName: "h2" } }) },
      { typeUrl: TYPE.route, message: routeConfiguration("h2", [{ name: "all", routes: [{ prefix: "/", cluster: "h2" }] }]) },
      httpPolicy(SERVER, h2.port, CLIENT, [{ method: "GET", path: "/public(/.*)?" }]),
      httpPolicy(SERVER, echo.port, CLIENT, [{ method: "GET", path: "/public(/.*)?" }]),
      httpPolicy(GRPC_SERVER, grpcPort, 0, [{ method: "POST", path: "/weft\\.Echo/Say" }]),
    ];
    env = await startProxy({
      workers: 2,
      resources,
      records: [
        { remote: "127.0.0.2", ...record("10.96.1.1", 80, "127.0.0.1", h2.port, CLIENT, SERVER) },
        // grpc-js cannot choose its source address: its connections come from 127.0.0.1.
        { remote: "127.0.0.1", ...record("10.96.1.2", 50051, "127.0.0.1", grpcPort, CLIENT, GRPC_SERVER) },
        { remote: "127.0.0.6", ...record("10.96.1.3", 80, "127.0.0.1", echo.port, CLIENT, SERVER) },
      ],
    });
  });

  after(async () => {
    await env?.stop();
    await h2.stop();
    await echo.stop();
    grpcServer?.forceShutdown();
  });

  it("one HTTP/2 connection carries a stream answered 200 and a stream answered 403", async () => {
    const session = http2.connect(`http://127.0.0.1:${env.port}`, {
      createConnection: () => net.connect({ host: "127.0.0.1", port: env.port, localAddress: "127.0.0.2" }),
    });
    session.on("error", () => {});
    const ask = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ":path": path, ":method": "GET", ":authority": "svc.test" });
        let status = 0;
        let body = "";
        req.on("response", (h) => {
          status = Number(h[":status"]);
        });
        req.setEncoding("utf8");
        req.on("data", (c: string) => {
          body += c;
        });
        req.on("end", () => resolve({ status, body }));
        req.on("error", reject);
        req.end();
      });
    const t0 = performance.now();
    const [ok, no, trick] = await Promise.all([ask("/public/a"), ask("/private"), ask("/public/../private")]);
    console.log(`# three streams on one connection in ${(performance.now() - t0).toFixed(1)} ms`);
    session.close();
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).path, "/public/a");
    assert.equal(no.status, 403);
    assert.equal(no.body, "Access denied\r\n");
    assert.equal(trick.status, 403);
    assert.deepEqual(
      h2.seen.map((s) => s.path),
      ["/public/a"],
    );
    assert.equal(h2.seen[0]?.headers["x-forwarded-for"], "127.0.0.2");
    const s = await env.stats();
    assert.equal(s.total.downstream_cx_http2, 1);
  });

  it("curl --http2-prior-knowledge: 200 and 403 over HTTP/2", async () => {
    const c = (path: string) =>
      curl([
        "-s",
        "--max-time",
        "5",
        "--http2-prior-knowledge",
        "--interface",
        "127.0.0.2",
        "-w",
        "\n%{http_version} %{http_code}",
        `http://127.0.0.1:${env.port}${path}`,
      ]);
    assert.match(await c("/public/curl"), /"path":"\/public\/curl"[\s\S]*\n2 200$/);
    assert.equal(await c("/admin"), "Access denied\r\n\n2 403");
  });

  it("gRPC: a denied method gets PERMISSION_DENIED (status 7), an allowed one the server's answer", async () => {
    const client = new grpc.Client(`127.0.0.1:${env.port}`, grpc.credentials.createInsecure());
    const call = (path: string) =>
      new Promise<{ err: grpc.ServiceError | null; value?: Buffer }>((resolve) => {
        client.makeUnaryRequest(path, passthrough, passthrough, Buffer.from("hi"), (err, value) => resolve({ err, value }));
      });
    const ok = await call("/weft.Echo/Say");
    assert.equal(ok.err, null);
    assert.equal(ok.value?.toString(), "echo:hi");
    const no = await call("/weft.Echo/Admin");
    assert.equal(no.err?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(no.err?.details, "Access denied");
    client.close();
  });

  it("curl --http2 (h2c upgrade): stream 1 answered 200 with the upstream's body, the next URL 403 on the same connection", async () => {
    const out = await curl([
      "-s",
      "--max-time",
      "5",
      "--http2",
      "--interface",
      "127.0.0.2",
      "-w",
      "\n%{http_version} %{http_code} %{num_connects}\n",
      `http://127.0.0.1:${env.port}/public/upgraded`,
      `http://127.0.0.1:${env.port}/admin`,
    ]);
    assert.match(out, /"path":"\/public\/upgraded","protocol":"h2"\}\n2 200 1\nAccess denied\r\n\n2 403 0\n$/);
  });

  it("an h2c upgrade towards an upstream that speaks only HTTP/1.1 is ignored: answered over HTTP/1.1 under policy", async () => {
    const r = await get(env.port, "/public/up", {
      localAddress: "127.0.0.6",
      headers: { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "AAMAAABkAAQAoAAAAAIAAAAA" },
    });
    assert.equal(r.status, 200);
    const seen = echo.seen[echo.seen.length - 1];
    assert.equal(seen?.headers.upgrade, undefined);
    assert.equal(seen?.headers["http2-settings"], undefined);
    const d = await get(env.port, "/private", {
      localAddress: "127.0.0.6",
      headers: { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "AAMAAABkAAQAoAAAAAIAAAAA" },
    });
    assert.equal(d.status, 403);
  });

  it("HTTP/2 streams become L7 flows with protocol HTTP/2", async () => {
    await waitFor("h2 flows", () => env.flows.flows.filter((f) => f.l7?.http?.protocol === "HTTP/2").length >= 5, 3000);
    const codes = env.flows.flows.filter((f) => f.l7?.http?.protocol === "HTTP/2").map((f) => f.l7?.http?.code);
    assert.ok(codes.includes(200) && codes.includes(403));
  });
});
