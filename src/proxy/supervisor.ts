// The node's proxy supervisor: owns the proxy's listening socket and hands the same handle to N
// worker processes, restarting any that exits. It never accepts itself (it binds, the workers
// listen and accept), so while workers are down new connections wait in the kernel's backlog: they
// are never passed around the proxy. Serves the workers' summed counters on an admin Unix socket.

import { type ChildProcess, fork } from "node:child_process";
import { rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
import { loadClusterConfig, runDir } from "../cluster/state.ts";
import { WeftError } from "../core/errors.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { pinRoot } from "../datapath/loader.ts";
import type { SupervisorMessage, WorkerMessage, WorkerOptions } from "./worker.ts";

export const PROXY_PORT = 15001;

export interface SupervisorOptions {
  host: string;
  /** 0: any free port (tests); read it back from `port`. */
  port: number;
  /** A listening socket inherited at this file descriptor (host and port are then only labels). */
  fd?: number;
  /** Worker processes; default the node's cores. */
  workers?: number;
  worker: WorkerOptions;
  /** Unix socket for GET /stats and GET /workers. */
  adminSocket?: string;
  /** Extra node flags for the workers (a benchmark's --cpu-prof, for example). */
  workerExecArgv?: string[];
  log?: Logger;
}

interface TcpHandle {
  getsockname(out: { port?: number }): number;
  close(): void;
}

type StatsReply = Extract<WorkerMessage, { type: "stats" }>;

export class Supervisor {
  readonly port: number;
  private readonly children: (ChildProcess | undefined)[];
  private readonly restarts: number[];
  private readonly readyPids = new Set<number>();
  private stopping = false;
  private admin: http.Server | undefined;
  private statsId = 0;
  private readonly pendingStats = new Map<number, { replies: StatsReply[]; want: number; done: (r: StatsReply[]) => void }>();
  totalRestarts = 0;

  private constructor(
    private readonly opts: SupervisorOptions,
    private readonly handle: TcpHandle,
    private readonly log: Logger,
  ) {
    const out: { port?: number } = {};
    handle.getsockname(out);
    this.port = out.port ?? opts.port;
    const n = opts.workers ?? os.availableParallelism();
    this.children = new Array(n).fill(undefined);
    this.restarts = new Array(n).fill(0);
  }

  static async start(opts: SupervisorOptions): Promise<Supervisor> {
    const log = opts.log ?? createLogger(process.stderr, { component: "proxy-supervisor", node: opts.worker.nodeId });
    // Bound, not listening: the first worker's listen() puts the socket in LISTEN; it stays so while
    // this process holds it, whatever happens to the workers.
    const create = (net as unknown as { _createServerHandle(host: string | null, port: number | null, family: number, fd?: number): TcpHandle | number })
      ._createServerHandle;
    // An inherited socket (made with IP_TRANSPARENT by the loader helper, which Node cannot set) or our own.
    const handle = opts.fd !== undefined ? create(null, null, 4, opts.fd) : create(opts.host, opts.port, net.isIPv6(opts.host) ? 6 : 4);
    if (typeof handle === "number") throw new WeftError("WEFT_PREREQ_MISSING", `cannot bind ${opts.host}:${opts.port} (errno ${handle})`, "proxy-supervisor");
    const s = new Supervisor(opts, handle, log);
    for (let i = 0; i < s.children.length; i++) s.startWorker(i);
    if (opts.adminSocket) await s.serveAdmin(opts.adminSocket);
    log.info("proxy supervisor started", { pid: process.pid, port: s.port, workers: s.children.length });
    return s;
  }

  private startWorker(index: number): void {
    const entry = new URL("./worker.ts", import.meta.url).pathname;
    const child = fork(entry, [], {
      execArgv: ["--import", "tsx", ...(this.opts.workerExecArgv ?? [])],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: {
        ...process.env,
        WEFT_PROXY_WORKER: JSON.stringify(this.opts.worker),
        WEFT_PROXY_WORKER_INDEX: String(index),
        WEFT_PROXY_WORKERS: String(this.children.length),
      },
    });
    this.children[index] = child;
    const started = Date.now();
    child.on("spawn", () => child.send({ type: "listener" } satisfies SupervisorMessage, this.handle as unknown as net.Server));
    child.on("message", (m: WorkerMessage) => {
      if (m.type === "ready") this.readyPids.add(m.pid);
      else if (m.type === "stats") {
        const p = this.pendingStats.get(m.id);
        if (!p) return;
        p.replies.push(m);
        if (p.replies.length >= p.want) p.done(p.replies);
      }
    });
    child.on("exit", (code, signal) => {
      if (child.pid) this.readyPids.delete(child.pid);
      if (this.children[index] === child) this.children[index] = undefined;
      if (this.stopping) return;
      // Quick deaths back off (a crash loop must not spin); a worker that ran a while restarts at once.
      this.restarts[index] = Date.now() - started > 10_000 ? 0 : (this.restarts[index] ?? 0) + 1;
      this.totalRestarts++;
      const delay = Math.min(25 * 2 ** Math.min(this.restarts[index] as number, 7), 3000);
      this.log.warn("proxy worker exited; restarting", { index, pid: child.pid, code, signal, delayMs: delay });
      setTimeout(() => {
        if (!this.stopping) this.startWorker(index);
      }, delay);
    });
  }

  /** Worker pids by index (undefined while one restarts). */
  workerPids(): (number | undefined)[] {
    return this.children.map((c) => c?.pid);
  }

  readyCount(): number {
    return this.readyPids.size;
  }

  /** Every live worker's counters, and their sum. */
  async stats(timeoutMs = 1000): Promise<{ workers: StatsReply[]; total: Record<string, number> }> {
    const live = this.children.filter((c): c is ChildProcess => c?.connected === true);
    const id = ++this.statsId;
    const replies = await new Promise<StatsReply[]>((resolve) => {
      const timer = setTimeout(() => done(this.pendingStats.get(id)?.replies ?? []), timeoutMs);
      const done = (r: StatsReply[]) => {
        clearTimeout(timer);
        this.pendingStats.delete(id);
        resolve(r);
      };
      this.pendingStats.set(id, { replies: [], want: live.length, done });
      if (live.length === 0) done([]);
      for (const c of live) c.send({ type: "stats", id } satisfies SupervisorMessage, () => {});
    });
    const total: Record<string, number> = {};
    for (const r of replies) for (const [k, v] of Object.entries(r.stats)) total[k] = (total[k] ?? 0) + v;
    return { workers: replies.sort((a, b) => a.index - b.index), total };
  }

  private async serveAdmin(path: string): Promise<void> {
    rmSync(path, { force: true });
    this.admin = http.createServer((req, res) => {
      const send = (code: number, body: unknown) => {
        res.writeHead(code, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.url === "/stats") void this.stats().then((s) => send(200, s));
      else if (req.url === "/workers") send(200, { pids: this.workerPids(), ready: this.readyCount(), restarts: this.totalRestarts });
      else send(404, { error: "not found" });
    });
    await new Promise<void>((resolve) => this.admin?.listen(path, resolve));
  }

  async close(): Promise<void> {
    this.stopping = true;
    const exits = this.children
      .filter((c): c is ChildProcess => c !== undefined && c.exitCode === null && c.signalCode === null)
      .map(
        (c) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => c.kill("SIGKILL"), 8000);
            c.once("exit", () => {
              clearTimeout(t);
              resolve();
            });
            c.kill("SIGTERM");
          }),
      );
    await Promise.all(exits);
    this.handle.close();
    await new Promise<void>((resolve) => (this.admin ? this.admin.close(() => resolve()) : resolve()));
    if (this.opts.adminSocket) rmSync(this.opts.adminSocket, { force: true });
  }
}

/** A node's worker options as `weft up` runs them: paths from the cluster's state, config from the agent's xDS. */
export function nodeWorkerOptions(cluster: string, node: string): WorkerOptions {
  const cfg = loadClusterConfig(cluster);
  const dir = runDir(cfg.stateDir, node);
  const root = pinRoot(cfg.name, node);
  const gateway = cfg.nodes.find((n) => n.name === node)?.gatewayIP ?? "0.0.0.0";
  const file = process.env.WEFT_PROXY_REDIRECTS;
  return {
    nodeId: node,
    xdsTarget: `unix://${join(dir, "xds.sock")}`,
    // The kernel's redirect records and upstream port map, pinned under the node's root.
    redirects: file ? { kind: "file", path: file } : { kind: "kernel", root },
    ports: file ? { kind: "memory" } : { kind: "kernel", root, address: gateway },
    portRange: [20000, 29999],
    flowSocket: join(dir, "agent.sock"),
  };
}

/** The node's supervisor as `weft up` runs it; the listening socket may be inherited (WEFT_PROXY_LISTEN_FD). */
export async function runSupervisor(cluster: string, node: string, port = PROXY_PORT): Promise<void> {
  const cfg = loadClusterConfig(cluster);
  const dir = runDir(cfg.stateDir, node);
  const workers = Number(process.env.WEFT_PROXY_WORKERS ?? os.availableParallelism());
  const inherited = process.env.WEFT_PROXY_LISTEN_FD ? Number(process.env.WEFT_PROXY_LISTEN_FD) : undefined;
  const s = await Supervisor.start({
    host: "0.0.0.0",
    port,
    ...(inherited !== undefined ? { fd: inherited } : {}),
    workers,
    adminSocket: join(dir, "proxy-admin.sock"),
    worker: nodeWorkerOptions(cluster, node),
  });
  await new Promise<void>((resolve) => process.once("SIGTERM", () => resolve()));
  await s.close();
}
