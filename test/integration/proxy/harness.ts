// Shared setup of the proxy's integration tests: a real ADS server (src/xds/server.ts) with a
// snapshot, a redirect-record file, a flow receiver on a Unix socket (the agent's side), echo
// backends that report the exact request-target they received, and the supervisor with its
// workers as real processes. Every process is stopped by PID; every wait is bounded.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Flow } from "../../../src/observe/flow.ts";
import type { L7Entry, L7Set } from "../../../src/policy/compile.ts";
import { compileHttpRule, type HttpRuleDoc } from "../../../src/policy/l7/http-match.ts";
import type { RedirectFile, RedirectRecord } from "../../../src/proxy/origdst.ts";
import type { SupervisorOptions } from "../../../src/proxy/supervisor.ts";
import { l7Policies, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { XdsServer } from "../../../src/xds/server.ts";

export const NODE = "node-test";
const ROOT = new URL("../../../", import.meta.url).pathname;

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ms / 10; i++) {
    if (await cond()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** An L7 policy resource: `subject`'s ingress rules on `port` for `peer` (0 = any). */
export function httpPolicy(subject: number, port: number, peer: number, rules: HttpRuleDoc[] | null, direction: "ingress" | "egress" = "ingress"): XdsResource {
  const entry: L7Entry = {
    scope: peer,
    allowAll: rules === null,
    l7: rules === null ? null : { kind: "http", rules: rules.map(compileHttpRule) },
    rule: `test/${subject}`,
  };
  const set: L7Set = { proto: 6, port, kind: "http", entries: [entry] };
  return { typeUrl: TYPE.l7policy, message: l7Policies(subject, direction, [set])[0] as XdsResource["message"] } as XdsResource;
}

export interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  remotePort: number;
}

/** An HTTP/1 echo backend: answers JSON {name, method, path (exactly as received), headers, bodyBytes}. */
export class EchoBackend {
  readonly seen: Seen[] = [];
  server!: http.Server;
  port = 0;
  /** Status to answer with (outlier tests), and a delay before answering. */
  status = 200;
  delayMs = 0;
  constructor(readonly name: string) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      let n = 0;
      req.on("data", (c: Buffer) => {
        n += c.length;
      });
      req.on("end", () => {
        this.seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, bodyBytes: n, remotePort: req.socket.remotePort ?? 0 });
        const reply = () => {
          if (res.destroyed) return;
          res.writeHead(this.status, { "content-type": "application/json", "x-backend": this.name });
          res.end(`${JSON.stringify({ name: this.name, method: req.method, path: req.url, headers: req.headers, bodyBytes: n })}\n`);
        };
        if (this.delayMs) setTimeout(reply, this.delayMs);
        else reply();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    // WebSocket-style upgrade: 101, then echo every byte back.
    this.server.on("upgrade", (req, sock: net.Socket, head: Buffer) => {
      this.seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, bodyBytes: 0, remotePort: sock.remotePort ?? 0 });
      sock.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n");
      if (head.length) sock.write(head);
      sock.pipe(sock);
    });
    this.server.on("connect", (req, sock: net.Socket, head: Buffer) => {
      this.seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, bodyBytes: 0, remotePort: sock.remotePort ?? 0 });
      sock.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) sock.write(head);
      sock.pipe(sock);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** An h2c backend (prior knowledge) answering like EchoBackend, and gRPC-shaped calls under /weft.Echo/. */
export class H2Backend {
  readonly seen: { path: string; headers: http2.IncomingHttpHeaders }[] = [];
  server!: http2.Http2Server;
  port = 0;
  async start(): Promise<this> {
    this.server = http2.createServer();
    this.server.on("stream", (stream, headers) => {
      stream.on("error", () => {});
      const path = String(headers[":path"]);
      this.seen.push({ path, headers });
      stream.resume();
      stream.on("end", () => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/json", "x-backend": "h2" });
        stream.end(JSON.stringify({ path, protocol: "h2" }));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }
  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The agent's side of the flow sink: POST /v1/flows, JSON lines. */
export class FlowReceiver {
  readonly flows: Flow[] = [];
  server!: http.Server;
  constructor(readonly path: string) {}
  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => {
        body += c;
      });
      req.on("end", () => {
        for (const line of body.split("\n")) if (line.trim()) this.flows.push(JSON.parse(line) as Flow);
        res.end("{}");
      });
    });
    await new Promise<void>((r) => this.server.listen(this.path, r));
    return this;
  }
  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export interface ProxyEnv {
  dir: string;
  xds: XdsServer;
  flows: FlowReceiver;
  port: number;
  supervisor: ChildProcess;
  adminSocket: string;
  setRecords(records: RedirectFile["records"]): void;
  setSnapshot(resources: XdsResource[]): void;
  stats(): Promise<{
    workers: { index: number; pid: number; stats: Record<string, number>; ports: [number, number][]; snapshot: number; versions: Record<string, string> }[];
    total: Record<string, number>;
  }>;
  workers(): Promise<{ pids: (number | undefined)[]; ready: number; restarts: number }>;
  stop(): Promise<void>;
}

function admin(socketPath: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, timeout: 3000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve(JSON.parse(body)));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("admin timeout")));
    req.end();
  });
}

export function record(vip: string, vport: number, backend: string, bport: number, identity: number, subject: number): RedirectRecord {
  return { vip, vport, backend, bport, identity, directions: [{ direction: "ingress", subject, peer: identity }] };
}

/** Starts xDS, the flow receiver and the supervisor (as a process) with `workers` workers. */
export async function startProxy(opts: { workers?: number; resources: XdsResource[]; records: RedirectFile["records"] }): Promise<ProxyEnv> {
  const dir = mkdtempSync(join(tmpdir(), "weft-proxy-"));
  const xds = await XdsServer.start({ socketPath: join(dir, "xds.sock") });
  xds.setSnapshot(NODE, opts.resources);
  const flows = await new FlowReceiver(join(dir, "agent.sock")).start();
  const recordsPath = join(dir, "redirects.json");
  const setRecords = (records: RedirectFile["records"]) => {
    writeFileSync(`${recordsPath}.tmp`, JSON.stringify({ records }));
    renameSync(`${recordsPath}.tmp`, recordsPath);
  };
  setRecords(opts.records);
  const adminSocket = join(dir, "admin.sock");
  const sopts: SupervisorOptions = {
    host: "127.0.0.1",
    port: 0,
    workers: opts.workers ?? 2,
    adminSocket,
    worker: {
      nodeId: NODE,
      xdsTarget: xds.target,
      redirects: { kind: "file", path: recordsPath },
      ports: { kind: "memory" },
      portRange: [31000, 32999],
      flowSocket: join(dir, "agent.sock"),
      drainMs: 1000,
    },
  };
  const supervisor = spawn(process.execPath, ["--import", "tsx", join(ROOT, "test/integration/proxy/fixtures/supervisor.ts")], {
    cwd: ROOT,
    env: { ...process.env, WEFT_TEST_SUPERVISOR: JSON.stringify(sopts) },
    stdio: ["ignore", "pipe", process.env.WEFT_TEST_VERBOSE ? "inherit" : "ignore"],
  });
  const first = await new Promise<{ port: number; ready: number }>((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("supervisor did not start within 20 s")), 20_000);
    supervisor.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(out.slice(0, nl)));
      }
    });
    supervisor.once("exit", (code) => reject(new Error(`supervisor exited (${code})`)));
  });
  const env: ProxyEnv = {
    dir,
    xds,
    flows,
    port: first.port,
    supervisor,
    adminSocket,
    setRecords,
    setSnapshot: (r) => xds.setSnapshot(NODE, r),
    stats: () => admin(adminSocket, "/stats") as ReturnType<ProxyEnv["stats"]>,
    workers: () => admin(adminSocket, "/workers") as ReturnType<ProxyEnv["workers"]>,
    async stop() {
      if (supervisor.exitCode === null && supervisor.pid) {
        const exited = new Promise<void>((r) => supervisor.once("exit", () => r()));
        supervisor.kill("SIGTERM");
        const t = setTimeout(() => supervisor.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      }
      await xds.close();
      await flows.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return env;
}

/** One HTTP/1 request from a chosen local address; resolves with status, headers and body text. */
export function get(
  port: number,
  path: string,
  opts: { localAddress?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; agent?: http.Agent; timeoutMs?: number } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "GET",
        localAddress: opts.localAddress ?? "127.0.0.2",
        headers: { host: "svc.test", ...opts.headers },
        agent: opts.agent ?? false,
        timeout: opts.timeoutMs ?? 5000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("client timeout")));
    req.end(opts.body);
  });
}

/** Raw bytes in, every byte out until the server closes or `idleMs` of silence. */
export function raw(
  port: number,
  bytes: string | Buffer,
  opts: { localAddress?: string; idleMs?: number; until?: (s: string) => boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: opts.localAddress ?? "127.0.0.2" });
    let out = "";
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, opts.idleMs ?? 400);
    };
    s.on("connect", () => {
      s.write(bytes);
      arm();
    });
    s.on("data", (c: Buffer) => {
      out += c.toString("latin1");
      if (opts.until?.(out)) done();
      else arm();
    });
    s.on("close", done);
    s.on("error", (e: Error) => (out ? done() : reject(e)));
  });
}

export function statusesOf(rawText: string): number[] {
  return [...rawText.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}

/** curl, asynchronously: the backends live in the test process, whose event loop must keep running. */
export function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("curl", args, { encoding: "utf8", timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
}
