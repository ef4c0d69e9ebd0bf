// The HTTP/1 proxy's per-request I/O path, byte for byte, against a scripted raw backend: a response
// the proxy would not change is forwarded as received; one with hop-by-hop fields, a head split
// across reads, a large body and a chunked body come out exactly as they should; request bodies sent
// with their head reach the backend intact on reused (idle, synchronously taken) connections; and
// pipelined requests are answered in order over one upstream connection.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { cluster, clusterLoadAssignment, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { httpPolicy, type ProxyEnv, record, startProxy } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;
const VIP = "10.96.0.20";
const BIG = 100 * 1024;

const PLAIN = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nhello, world\n";
const HOP = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\ncontent-length: 2\r\n\r\nok";
const CHUNKED = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n";
const BIG_BODY = Buffer.alloc(BIG, "abcdefghij").toString("latin1");

/** What the client must receive for each path. */
const EXPECTED: Record<string, string> = {
  "/plain": PLAIN,
  "/hop": "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
  "/split": "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nsplit",
  "/chunked": CHUNKED,
  "/big": `HTTP/1.1 200 OK\r\ncontent-length: ${BIG}\r\n\r\n${BIG_BODY}`,
};

/** A backend that answers by path with exact bytes, and records what it received. */
class ScriptedBackend {
  port = 0;
  readonly requests: { remotePort: number; head: string; body: string }[] = [];
  private readonly server = net.createServer({ noDelay: true }, (s) => this.serve(s));
  private readonly sockets = new Set<net.Socket>();

  start(): Promise<void> {
    return new Promise((resolve) =>
      this.server.listen(0, "127.0.0.1", () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve();
      }),
    );
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private serve(s: net.Socket): void {
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => {});
    let pending = "";
    s.on("data", (c: Buffer) => {
      pending += c.toString("latin1");
      for (let guard = 0; guard < 100; guard++) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = pending.slice(0, end + 4);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + len) return;
        const body = pending.slice(end + 4, end + 4 + len);
        pending = pending.slice(end + 4 + len);
        this.requests.push({ remotePort: s.remotePort as number, head, body });
        this.answer(s, head.slice(head.indexOf(" ") + 1, head.indexOf(" ", head.indexOf(" ") + 1)), body);
      }
    });
  }

  private answer(s: net.Socket, path: string, body: string): void {
    if (path === "/plain") s.write(PLAIN);
    else if (path === "/hop") s.write(HOP);
    else if (path === "/chunked") s.write(CHUNKED);
    else if (path === "/big") s.write(`HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: ${BIG}\r\n\r\n${BIG_BODY}`);
    else if (path === "/split") {
      s.write("HTTP/1.1 200 OK\r\ncontent-le");
      setTimeout(() => s.write("ngth: 5\r\n\r\nsplit"), 20);
    } else if (path === "/echo") s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    else s.write("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
  }
}

/** One keep-alive client connection: sends bytes, reads exactly `n` bytes back. */
class Client {
  private readonly s: net.Socket;
  private buf = "";
  private wake: (() => void) | null = null;

  constructor(port: number) {
    this.s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" });
    this.s.on("data", (c: Buffer) => {
      this.buf += c.toString("latin1");
      this.wake?.();
    });
    this.s.on("error", () => {});
  }

  async exchange(req: string, n: number, ms = 5000): Promise<string> {
    this.s.write(req);
    const end = performance.now() + ms;
    while (this.buf.length < n && performance.now() < end)
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    return out;
  }

  /** Bytes that arrived beyond what was asked for (there must be none). */
  extra(): string {
    return this.buf;
  }

  close(): void {
    this.s.destroy();
  }
}

function resources(port: number): XdsResource[] {
  return [
    { typeUrl: TYPE.cluster, message: cluster({ name: "scripted", lbPolicy: "ROUND_ROBIN" }) },
    { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("scripted", [{ address: "127.0.0.1", port }]) },
    { typeUrl: TYPE.listener, message: listener({ name: "vip", address: VIP, port: 80, http: { routeConfigName: "r" } }) },
    { typeUrl: TYPE.route, message: routeConfiguration("r", [{ name: "all", routes: [{ prefix: "/", cluster: "scripted" }] }]) },
    httpPolicy(SERVER, port, CLIENT, [
      { method: "GET", path: "/.*" },
      { method: "POST", path: "/echo" },
    ]),
  ];
}

describe("proxy: HTTP/1 I/O path, byte for byte", () => {
  let env: ProxyEnv;
  const backend = new ScriptedBackend();

  before(async () => {
    const t0 = performance.now();
    await backend.start();
    env = await startProxy({
      workers: 1,
      resources: resources(backend.port),
      records: [{ remote: "127.0.0.2", ...record(VIP, 80, "127.0.0.1", backend.port, CLIENT, SERVER) }],
    });
    console.log(`# proxy up (1 worker) in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  after(async () => {
    await env?.stop();
    await backend.stop();
  });

  it("each response comes out exactly as it should; one upstream connection serves them all", async () => {
    const t0 = performance.now();
    const c = new Client(env.port);
    const from = backend.requests.length;
    for (let round = 0; round < 3; round++)
      for (const [path, want] of Object.entries(EXPECTED)) {
        const got = await c.exchange(`GET ${path} HTTP/1.1\r\nHost: svc\r\n\r\n`, want.length);
        assert.equal(got.length, want.length, `${path}: length`);
        assert.ok(got === want, `${path}: bytes differ: ${JSON.stringify(got.slice(0, 120))}`);
      }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.extra(), "", "nothing beyond the answers");
    c.close();
    const ports = new Set(backend.requests.slice(from).map((r) => r.remotePort));
    assert.equal(backend.requests.length - from, 15);
    assert.equal(ports.size, 1, "the idle upstream connection was reused for every request");
    console.log(`# 15 exchanges in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok(performance.now() - t0 < 10_000);
  });

  it("a request body sent with its head reaches the backend intact, also on a reused connection", async () => {
    const c = new Client(env.port);
    const from = backend.requests.length;
    for (const size of [1, 100, 5000, 70_000]) {
      const body = Buffer.alloc(size, "0123456789ABCDEF").toString("latin1");
      const want = `HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n${body}`;
      const got = await c.exchange(`POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: ${size}\r\n\r\n${body}`, want.length);
      assert.ok(got === want, `body of ${size} bytes: ${JSON.stringify(got.slice(0, 80))}`);
    }
    c.close();
    const seen = backend.requests.slice(from);
    assert.deepEqual(
      seen.map((r) => r.body.length),
      [1, 100, 5000, 70_000],
    );
    assert.equal(new Set(seen.map((r) => r.remotePort)).size, 1, "one upstream connection");
    for (const r of seen) {
      assert.match(r.head, /^POST \/echo HTTP\/1\.1\r\n/);
      assert.match(r.head, /\r\nx-forwarded-for: 127\.0\.0\.2\r\nx-forwarded-proto: http\r\nx-request-id: [0-9a-f-]{36}\r\n\r\n$/);
    }
  });

  it("pipelined requests in one write are answered in order, each exactly", async () => {
    const c = new Client(env.port);
    const paths = ["/plain", "/hop", "/chunked", "/plain", "/split", "/plain"];
    const want = paths.map((p) => EXPECTED[p]).join("");
    const got = await c.exchange(paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: svc\r\n\r\n`).join(""), want.length);
    assert.ok(got === want, `pipelined answers: ${JSON.stringify(got.slice(0, 200))}`);
    c.close();
  });

  it("X-Forwarded-For from the client is replaced on every request of a connection, not only the first", async () => {
    const c = new Client(env.port);
    const from = backend.requests.length;
    await c.exchange("GET /plain HTTP/1.1\r\nHost: svc\r\n\r\n", PLAIN.length);
    await c.exchange("GET /plain HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n", PLAIN.length);
    await c.exchange("GET /plain HTTP/1.1\r\nHost: svc\r\n\r\n", PLAIN.length);
    c.close();
    const heads = backend.requests.slice(from).map((r) => r.head);
    assert.equal(heads.length, 3);
    for (const h of heads) {
      assert.doesNotMatch(h, /6\.6\.6\.6|https/);
      assert.match(h, /\r\nx-forwarded-for: 127\.0\.0\.2\r\nx-forwarded-proto: http\r\n/);
    }
  });

  it("after a large answer (written under back-pressure), the next client on the reused upstream connection is served", async () => {
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) {
      const a = new Client(env.port);
      const big = EXPECTED["/big"] as string;
      assert.equal((await a.exchange("GET /big HTTP/1.1\r\nHost: svc\r\n\r\n", big.length)).length, big.length);
      a.close();
      const b = new Client(env.port);
      const got = await b.exchange("GET /plain HTTP/1.1\r\nHost: svc\r\n\r\n", PLAIN.length, 3000);
      b.close();
      assert.ok(got === PLAIN, `round ${i}: the next client got ${JSON.stringify(got)}`);
    }
    console.log(`# 3 rounds in ${(performance.now() - t0).toFixed(0)} ms`);
  });
});
