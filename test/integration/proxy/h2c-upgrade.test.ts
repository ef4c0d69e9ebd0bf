// The proxy takes HTTP/1.1 `Upgrade: h2c` (RFC 7540 §3.2) with real clients: curl --http2 gets
// 101 and then HTTP/2 on the same connection, the upgrading request answered on stream 1 under the
// per-stream L7 policy (200 with the upstream's body, 403 "Access denied"), later requests on the
// connection as further streams, a POST body carried into stream 1; a raw client reads stream 1's
// frames; what the proxy declines (bad HTTP2-Settings, a body over 64 KiB, an upstream that does
// not speak h2c) is served over HTTP/1.1; WebSocket upgrades are still tunnelled.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cluster, clusterLoadAssignment, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { EchoBackend, httpPolicy, type ProxyEnv, raw, record, startProxy, waitFor } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

interface Echoed {
  protocol: string;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
  sha256: string;
}

/** A backend speaking HTTP/1.1 and h2c (prior knowledge) on one port, answering what it received as JSON. */
class DualBackend {
  readonly seen: Echoed[] = [];
  private server!: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(): Promise<this> {
    const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const e: Echoed = {
          protocol: req.httpVersion === "2.0" ? "h2" : `http/${req.httpVersion}`,
          method: req.method ?? "",
          path: req.url ?? "",
          headers: req.headers,
          bodyBytes: body.length,
          sha256: createHash("sha256").update(body).digest("hex"),
        };
        this.seen.push(e);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(`${JSON.stringify(e)}\n`);
      });
    };
    const h1 = http.createServer(handler);
    h1.keepAliveTimeout = 60_000;
    const h2 = http2.createServer(handler);
    this.server = net.createServer((sock) => {
      this.sockets.add(sock);
      sock.on("close", () => this.sockets.delete(sock));
      sock.on("error", () => {});
      let seen = Buffer.alloc(0);
      const onData = (c: Buffer) => {
        seen = Buffer.concat([seen, c]);
        const k = Math.min(seen.length, PREFACE.length);
        const h2ish = seen.subarray(0, k).equals(PREFACE.subarray(0, k));
        if (h2ish && k < PREFACE.length) return;
        sock.off("data", onData);
        sock.pause();
        sock.unshift(seen);
        (h2ish ? h2 : h1).emit("connection", sock);
        if (!h2ish) sock.resume();
      };
      sock.on("data", onData);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** curl with its verbose trace: the backends live in this process, so it runs asynchronously. */
function curlV(args: string[]): Promise<{ out: string; trace: string }> {
  return new Promise((resolve, reject) =>
    execFile("curl", ["-sv", "--max-time", "5", ...args], { encoding: "utf8", timeout: 10_000, maxBuffer: 4 << 20 }, (err, out, trace) =>
      err ? reject(new Error(`${err.message}\n${trace}`)) : resolve({ out, trace }),
    ),
  );
}

const W = "\n%{http_version} %{http_code} %{num_connects}\n";

/** Splits curl's output of `-w W` per URL into bodies and "version code connects" lines. */
function answers(out: string): { body: string; version: string; code: number; connects: number }[] {
  const res: { body: string; version: string; code: number; connects: number }[] = [];
  const re = /([\s\S]*?)\n(1\.1|2) (\d{3}) (\d+)\n/g;
  for (const m of out.matchAll(re)) res.push({ body: m[1] ?? "", version: m[2] ?? "", code: Number(m[3]), connects: Number(m[4]) });
  return res;
}

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** A client written by hand: sends the upgrade request, reads the 101, then reads HTTP/2 frames until stream 1 ends (or 5 s). */
function rawUpgrade(port: number, request: string, localAddress: string): Promise<{ head: string; frames: Frame[] }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    let buf = Buffer.alloc(0);
    let head = "";
    const frames: Frame[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw h2c client: no end of stream 1 within 5 s (head ${JSON.stringify(head)}, ${frames.length} frames)`));
    }, 5000);
    s.on("error", reject);
    s.on("connect", () => s.write(request));
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!head) {
        const e = buf.indexOf("\r\n\r\n");
        if (e < 0) return;
        head = buf.toString("latin1", 0, e + 4);
        buf = buf.subarray(e + 4);
        if (!head.startsWith("HTTP/1.1 101")) {
          clearTimeout(timer);
          s.destroy();
          resolve({ head: head + buf.toString("latin1"), frames });
          return;
        }
        // The client's preface and an empty SETTINGS frame.
        s.write(Buffer.concat([PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
      }
      for (let guard = 0; guard < 1000 && buf.length >= 9; guard++) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        frames.push({ type: buf[3] as number, flags: buf[4] as number, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
        buf = buf.subarray(9 + len);
      }
      if (frames.some((f) => f.stream === 1 && f.flags & 0x1 && (f.type === 0 || f.type === 1))) {
        clearTimeout(timer);
        s.destroy();
        resolve({ head, frames });
      }
    });
  });
}

function upgradeRequest(path: string, settings = "AAMAAABkAAQAoAAAAAIAAAAA", extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: svc.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${settings}\r\n${extra}\r\n`;
}

describe("proxy: HTTP/1.1 Upgrade: h2c", () => {
  let env: ProxyEnv;
  const dual = new DualBackend();
  const h1only = new EchoBackend("h1");
  let url = "";
  const viaDual = ["--interface", "127.0.0.2"];

  before(async () => {
    await dual.start();
    await h1only.start();
    const resources: XdsResource[] = [
      { typeUrl: TYPE.cluster, message: cluster({ name: "dual" }) },
      { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("dual", [{ address: "127.0.0.1", port: dual.port }]) },
      { typeUrl: TYPE.listener, message: listener({ name: "dual", address: "10.96.3.1", port: 80, http: { routeConfigName: "dual" } }) },
      { typeUrl: TYPE.route, message: routeConfiguration("dual", [{ name: "all", routes: [{ prefix: "/", cluster: "dual" }] }]) },
      httpPolicy(SERVER, dual.port, CLIENT, [
        { method: "GET", path: "/public(/.*)?" },
        { method: "POST", path: "/upload(/.*)?" },
      ]),
      httpPolicy(SERVER, h1only.port, CLIENT, [{ method: "GET", path: "/public(/.*)?" }]),
    ];
    env = await startProxy({
      workers: 2,
      resources,
      records: [
        { remote: "127.0.0.2", ...record("10.96.3.1", 80, "127.0.0.1", dual.port, CLIENT, SERVER) },
        { remote: "127.0.0.6", ...record("10.96.3.2", 80, "127.0.0.1", h1only.port, CLIENT, SERVER) },
      ],
    });
    url = `http://127.0.0.1:${env.port}`;
  });

  after(async () => {
    await env?.stop();
    await dual.stop();
    await h1only.stop();
  });

  it("curl --http2: 101, then the allowed upgrading request is answered HTTP/2 200 on stream 1 with the upstream's body", async () => {
    const t0 = performance.now();
    const { out, trace } = await curlV([...viaDual, "--http2", "-w", W, `${url}/public/one?x=1`]);
    console.log(`# upgrade + answer in ${(performance.now() - t0).toFixed(1)} ms`);
    assert.match(trace, /< HTTP\/1\.1 101 Switching Protocols/i);
    assert.match(trace, /< HTTP\/2 200/);
    const [a] = answers(out);
    assert.equal(a?.version, "2");
    assert.equal(a?.code, 200);
    const e = JSON.parse(a?.body ?? "") as Echoed;
    assert.equal(e.path, "/public/one?x=1");
    assert.equal(e.protocol, "h2");
    assert.equal(e.headers["x-forwarded-for"], "127.0.0.2");
    assert.equal(e.headers.upgrade, undefined);
    assert.equal(e.headers["http2-settings"], undefined);
    assert.equal(e.headers.connection, undefined);
  });

  it("curl --http2: a denied upgrading request gets HTTP/2 403 Access denied on stream 1, never reaching the upstream", async () => {
    const before = dual.seen.length;
    const { out, trace } = await curlV([...viaDual, "--http2", "-w", W, `${url}/private`]);
    assert.match(trace, /< HTTP\/1\.1 101 Switching Protocols/i);
    assert.match(trace, /< HTTP\/2 403/);
    const [a] = answers(out);
    assert.deepEqual([a?.version, a?.code, a?.body], ["2", 403, "Access denied\r\n"]);
    assert.equal(dual.seen.length, before);
  });

  it("curl --http2 URL URL: after the upgrade the next request is a further stream on the same connection (both orders)", async () => {
    const s0 = (await env.stats()).total;
    const one = await curlV([...viaDual, "--http2", "-w", W, `${url}/public/a`, `${url}/admin`]);
    const two = await curlV([...viaDual, "--http2", "-w", W, `${url}/admin`, `${url}/public/b`]);
    const first = answers(one.out);
    const second = answers(two.out);
    // The upgrading request was stream 1, so curl's next stream on the connection is 3.
    for (const r of [one, two]) {
      assert.match(r.trace, /Received 101/);
      assert.match(r.trace, /Re-using existing connection/);
      assert.match(r.trace, /Using Stream ID: 3 /);
    }
    const s1 = (await env.stats()).total;
    assert.deepEqual(
      first.map((x) => [x.version, x.code, x.connects]),
      [
        ["2", 200, 1],
        ["2", 403, 0],
      ],
    );
    assert.deepEqual(
      second.map((x) => [x.version, x.code, x.connects]),
      [
        ["2", 403, 1],
        ["2", 200, 0],
      ],
    );
    assert.equal((JSON.parse(first[0]?.body ?? "") as Echoed).path, "/public/a");
    assert.equal((JSON.parse(second[1]?.body ?? "") as Echoed).path, "/public/b");
    assert.equal(first[1]?.body, "Access denied\r\n");
    // One connection per curl run, each upgraded.
    assert.equal((s1.downstream_cx_total ?? 0) - (s0.downstream_cx_total ?? 0), 2);
    assert.equal((s1.downstream_cx_http2 ?? 0) - (s0.downstream_cx_http2 ?? 0), 2);
  });

  it("curl --http2 with a POST body: the body travels into stream 1 and reaches the upstream intact", async () => {
    const body = Buffer.alloc(20_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + 3) & 0xff;
    const file = join(env.dir, "body.bin");
    writeFileSync(file, body);
    const { out, trace } = await curlV([...viaDual, "--http2", "--data-binary", `@${file}`, "-w", W, `${url}/upload/x`]);
    assert.match(trace, /< HTTP\/1\.1 101 Switching Protocols/i);
    const [a] = answers(out);
    assert.deepEqual([a?.version, a?.code], ["2", 200]);
    const e = JSON.parse(a?.body ?? "") as Echoed;
    assert.equal(e.method, "POST");
    assert.equal(e.protocol, "h2");
    assert.equal(e.bodyBytes, body.length);
    assert.equal(e.sha256, createHash("sha256").update(body).digest("hex"));
    assert.equal(e.headers["content-length"], String(body.length));
  });

  it("a body over 64 KiB: the upgrade is ignored and the request served over HTTP/1.1, body intact", async () => {
    const body = Buffer.alloc(100 * 1024, 0x61);
    const file = join(env.dir, "big.bin");
    writeFileSync(file, body);
    const { out, trace } = await curlV([...viaDual, "--http2", "--data-binary", `@${file}`, "-w", W, `${url}/upload/big`]);
    assert.doesNotMatch(trace, /101 Switching Protocols/i);
    const [a] = answers(out);
    assert.deepEqual([a?.version, a?.code], ["1.1", 200]);
    const e = JSON.parse(a?.body ?? "") as Echoed;
    assert.equal(e.protocol, "http/1.1");
    assert.equal(e.bodyBytes, body.length);
    assert.equal(e.headers.upgrade, undefined);
  });

  it("malformed HTTP2-Settings: served over HTTP/1.1, the upgrade fields not forwarded", async () => {
    for (const settings of ["not base64!", "AAMAAA", "AAIAAAAC"]) {
      const before = dual.seen.length;
      const text = await raw(env.port, upgradeRequest(`/public/bad`, settings), {
        localAddress: "127.0.0.2",
        until: (s) => s.includes("\n}\n") || s.endsWith("}\n"),
      });
      assert.match(text, /^HTTP\/1\.1 200 /, `HTTP2-Settings ${JSON.stringify(settings)}`);
      assert.equal(dual.seen.length, before + 1);
      const e = dual.seen[dual.seen.length - 1] as Echoed;
      assert.equal(e.protocol, "http/1.1");
      assert.equal(e.headers.upgrade, undefined);
      assert.equal(e.headers["http2-settings"], undefined);
    }
  });

  it("an upstream that speaks only HTTP/1.1: the upgrade is ignored, answers over HTTP/1.1 under policy", async () => {
    const ok = answers((await curlV(["--interface", "127.0.0.6", "--http2", "-w", W, `${url}/public/h1`])).out);
    assert.deepEqual([ok[0]?.version, ok[0]?.code], ["1.1", 200]);
    const seen = h1only.seen[h1only.seen.length - 1];
    assert.equal(seen?.path, "/public/h1");
    assert.equal(seen?.headers.upgrade, undefined);
    const no = answers((await curlV(["--interface", "127.0.0.6", "--http2", "-w", W, `${url}/private`])).out);
    assert.deepEqual([no[0]?.version, no[0]?.code, no[0]?.body], ["1.1", 403, "Access denied\r\n"]);
  });

  it("a raw client: the server's SETTINGS first, then stream 1 carries the upgrading request's answer", async () => {
    const t0 = performance.now();
    const ok = await rawUpgrade(env.port, upgradeRequest("/public/raw"), "127.0.0.2");
    console.log(`# raw client: upgrade request to the end of stream 1 in ${(performance.now() - t0).toFixed(1)} ms`);
    assert.match(ok.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(ok.head, /\r\nupgrade: h2c\r\n/i);
    assert.equal(ok.frames[0]?.type, 4, "the server's connection preface is a SETTINGS frame");
    const h = ok.frames.find((f) => f.type === 1 && f.stream === 1);
    assert.equal(h?.payload[0], 0x88, ":status 200 (HPACK static index 8)");
    const data = Buffer.concat(ok.frames.filter((f) => f.type === 0 && f.stream === 1).map((f) => f.payload)).toString();
    assert.equal((JSON.parse(data) as Echoed).path, "/public/raw");
    assert.ok(!ok.frames.some((f) => f.stream > 1), "no other stream");
    const no = await rawUpgrade(env.port, upgradeRequest("/private"), "127.0.0.2");
    const denied = Buffer.concat(no.frames.filter((f) => f.type === 0 && f.stream === 1).map((f) => f.payload)).toString();
    assert.equal(denied, "Access denied\r\n");
  });

  it("a client that answers 101 with something else than the HTTP/2 preface is disconnected", async () => {
    const text = await raw(env.port, `${upgradeRequest("/public/x")}GET / HTTP/1.1\r\nHost: svc.test\r\n\r\n`, { localAddress: "127.0.0.2" });
    assert.match(text, /^HTTP\/1\.1 101 /);
    assert.doesNotMatch(text, /HTTP\/1\.1 200/);
  });

  it("WebSocket upgrades are still tunnelled to the upstream", async () => {
    const text = await raw(
      env.port,
      "GET /public/ws HTTP/1.1\r\nHost: svc.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nping",
      { localAddress: "127.0.0.6", until: (s) => s.endsWith("ping") },
    );
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(text, /upgrade: websocket/i);
    assert.ok(text.endsWith("\r\n\r\nping"));
  });

  it("upgraded streams become L7 flows with protocol HTTP/2 (200 and 403)", async () => {
    await waitFor(
      "upgrade flows",
      () => env.flows.flows.some((f) => f.l7?.http?.protocol === "HTTP/2" && f.l7.http.url.endsWith("/public/one?x=1") && f.l7.http.code === 200),
      3000,
    );
    const h2 = env.flows.flows.filter((f) => f.l7?.http?.protocol === "HTTP/2");
    assert.ok(h2.some((f) => f.l7?.http?.url.endsWith("/private") && f.l7.http.code === 403 && f.verdict === "DROPPED"));
  });
});
