// HTTP/1.1 upstream connections over raw `net` sockets, pooled per (host, client identity): every
// connection is bound to a local port the proxy chose and declared (ProxyPorts) before the SYN, so
// the datapath attributes it to the client. Idle connections are reused LIFO and closed after an
// idle timeout (one sweep for the pool, not a socket timer per request); circuit breaking bounds
// connections and pending requests per cluster. An idle connection is handed over synchronously
// (`idleFor`): no Promise, no microtask per request.

import net from "node:net";
import { ResponseParser } from "../http1/parser.ts";
import type { PortAllocator, ProxyPorts } from "../proxy-ports.ts";
import type { ProxyStats } from "../stats.ts";
import type { ClusterRuntime, UpstreamHost } from "./cluster.ts";

const IDLE_MS = 30_000;
/** Idle connections are closed IDLE_MS to IDLE_MS + SWEEP_MS after their last response. */
const SWEEP_MS = 5_000;
const MAX_IDLE_PER_KEY = 64;
const BIND_TRIES = 3;

export class UpstreamError extends Error {
  constructor(
    readonly kind: "connect" | "overflow" | "no-port" | "timeout",
    message: string,
  ) {
    super(message);
  }
}

/** What holds a connection for one request: called directly, no closure per request. */
export interface H1Holder {
  upstreamData(chunk: Buffer): void;
  upstreamEnd(err: Error | null): void;
}

export class H1Connection {
  readonly parser = new ResponseParser();
  /** The exchange that holds the connection (preferred over onData/onEnd). */
  holder: H1Holder | null = null;
  /** Set by whatever holds the connection without a holder (a tunnel). */
  onData: ((chunk: Buffer) => void) | null = null;
  onEnd: ((err: Error | null) => void) | null = null;
  closed = false;
  requests = 0;
  /** performance.now() when it went idle. */
  idleSince = 0;

  constructor(
    readonly socket: net.Socket,
    readonly key: string,
    readonly localPort: number,
    readonly cluster: ClusterRuntime,
  ) {}
}

type Waiter = (c: H1Connection | null) => void;

/** `n` bytes read from an upstream connection into `shared`, which the next read reuses: handed over as a copy. */
function received(conn: H1Connection, shared: Buffer, n: number): true {
  if (conn.holder || conn.onData) {
    const d = Buffer.allocUnsafe(n);
    shared.copy(d, 0, 0, n);
    if (conn.holder) conn.holder.upstreamData(d);
    else conn.onData?.(d);
  } else conn.socket.destroy(); // bytes while idle: the connection is not in a state we understand
  return true;
}

/** The pool key of (host, identity): connections never carry another identity's traffic. */
function keyOf(h: UpstreamHost, identity: number): string {
  return `${h.address}|${identity}`;
}

export class H1Pool {
  private readonly idle = new Map<string, H1Connection[]>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly ports: ProxyPorts,
    private readonly alloc: PortAllocator,
    private readonly stats: ProxyStats,
    /** Idle lifetime and sweep interval (ms); shorter in tests. */
    private readonly timing: { idleMs: number; sweepMs: number } = { idleMs: IDLE_MS, sweepMs: SWEEP_MS },
  ) {}

  /** An idle keep-alive connection to `h` carrying `identity`'s traffic, taken now; null when none. */
  idleFor(h: UpstreamHost, identity: number): H1Connection | null {
    const list = this.idle.get(keyOf(h, identity));
    while (list?.length) {
      const c = list.pop() as H1Connection;
      if (!c.closed && !c.socket.destroyed) return c;
    }
    return null;
  }

  /** A connection to `h` carrying `identity`'s traffic: an idle one, a new one, or after a wait. */
  acquire(cluster: ClusterRuntime, h: UpstreamHost, identity: number): Promise<H1Connection> {
    const idle = this.idleFor(h, identity);
    if (idle) return Promise.resolve(idle);
    const key = keyOf(h, identity);
    if (cluster.breaker.tryConnection()) return this.connect(cluster, h, identity, key);
    if (!cluster.breaker.tryPending()) {
      cluster.stats.upstream_rq_pending_overflow++;
      return Promise.reject(new UpstreamError("overflow", "circuit breaker: too many connections and pending requests"));
    }
    return new Promise((resolve, reject) => {
      let q = this.waiters.get(key);
      if (!q) this.waiters.set(key, (q = []));
      const timer = setTimeout(() => {
        const i = q.indexOf(w);
        if (i >= 0) q.splice(i, 1);
        cluster.breaker.releasePending();
        reject(new UpstreamError("timeout", "timed out waiting for an upstream connection"));
      }, cluster.connectTimeoutMs);
      const w: Waiter = (c) => {
        clearTimeout(timer);
        cluster.breaker.releasePending();
        if (c) resolve(c);
        else if (cluster.breaker.tryConnection()) this.connect(cluster, h, identity, key).then(resolve, reject);
        else reject(new UpstreamError("overflow", "circuit breaker: too many connections"));
      };
      q.push(w);
    });
  }

  private connect(cluster: ClusterRuntime, h: UpstreamHost, identity: number, key: string, attempt = 1): Promise<H1Connection> {
    const port = this.alloc.take();
    if (port === 0) {
      cluster.breaker.releaseConnection();
      return Promise.reject(new UpstreamError("no-port", "no local port left in this worker's range"));
    }
    const declared = this.ports.register(port, identity);
    if (declared instanceof Promise)
      return declared.then(
        () => this.dial(cluster, h, identity, key, attempt, port),
        (err: Error) => {
          this.alloc.give(port);
          cluster.breaker.releaseConnection();
          throw new UpstreamError("no-port", `cannot declare local port ${port}: ${err.message}`);
        },
      );
    return this.dial(cluster, h, identity, key, attempt, port);
  }

  /** Connects from `port`, already declared for `identity`. */
  private dial(cluster: ClusterRuntime, h: UpstreamHost, identity: number, key: string, attempt: number, port: number): Promise<H1Connection> {
    this.stats.upstream_cx_total++;
    return new Promise((resolve, reject) => {
      // Reads land in one buffer shared by the pool's sockets and are handed over as a copy: no
      // stream machinery ('data' events, push, read-more ticks) per upstream read.
      let conn: H1Connection | null = null;
      const socket = net.connect({
        host: h.ip,
        port: h.port,
        localPort: port,
        noDelay: true,
        ...(this.ports.localAddress ? { localAddress: this.ports.localAddress } : {}),
        onread: { buffer: this.readBuffer, callback: (n: number) => received(conn as H1Connection, this.readBuffer, n) },
      });
      conn = new H1Connection(socket, key, port, cluster);
      let connected = false;
      const timer = setTimeout(() => socket.destroy(new Error(`connect timeout after ${cluster.connectTimeoutMs} ms`)), cluster.connectTimeoutMs);
      socket.once("connect", () => {
        connected = true;
        clearTimeout(timer);
        this.stats.upstream_cx_active++;
        resolve(conn);
      });
      socket.on("error", () => {});
      socket.on("timeout", () => socket.destroy());
      socket.on("close", (hadError) => {
        clearTimeout(timer);
        conn.closed = true;
        void this.ports.release(port);
        this.alloc.give(port);
        cluster.breaker.releaseConnection();
        this.dropIdle(conn);
        if (!connected) {
          const code = (socket as net.Socket & { errored?: { code?: string } }).errored?.code;
          if (code === "EADDRINUSE" && attempt < BIND_TRIES && cluster.breaker.tryConnection()) {
            this.connect(cluster, h, identity, key, attempt + 1).then(resolve, reject);
            return;
          }
          this.stats.upstream_cx_connect_fail++;
          cluster.stats.upstream_cx_connect_fail++;
          reject(new UpstreamError("connect", `connect to ${h.address} failed${code ? ` (${code})` : ""}`));
          this.wakeOne(key, null);
          return;
        }
        this.stats.upstream_cx_active--;
        const holder = conn.holder;
        const cb = conn.onEnd;
        conn.holder = null;
        conn.onEnd = null;
        conn.onData = null;
        const err = hadError ? new Error("upstream reset") : null;
        if (holder) holder.upstreamEnd(err);
        else cb?.(err);
        this.wakeOne(key, null);
      });
    });
  }

  /** Back to the pool (`reusable`: the response ended cleanly and keep-alive holds), or closed. */
  release(c: H1Connection, reusable: boolean): void {
    c.holder = null;
    c.onData = null;
    c.onEnd = null;
    if (!reusable || c.closed || c.socket.destroyed) {
      c.socket.destroy();
      return;
    }
    const q = this.waiters.get(c.key);
    if (q?.length) {
      (q.shift() as Waiter)(c);
      return;
    }
    let list = this.idle.get(c.key);
    if (!list) this.idle.set(c.key, (list = []));
    if (list.length >= MAX_IDLE_PER_KEY) {
      c.socket.destroy();
      return;
    }
    c.idleSince = performance.now();
    list.push(c);
    this.sweeper ??= setInterval(() => this.sweep(), this.timing.sweepMs).unref();
  }

  /** Closes connections idle for idleMs (the oldest sit first in each LIFO list). */
  private sweep(): void {
    const before = performance.now() - this.timing.idleMs;
    let left = 0;
    for (const list of this.idle.values()) {
      let n = 0;
      while (n < list.length && (list[n] as H1Connection).idleSince <= before) n++;
      for (const c of list.splice(0, n)) c.socket.destroy();
      left += list.length;
    }
    if (left === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private dropIdle(c: H1Connection): void {
    const list = this.idle.get(c.key);
    if (!list) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
  }

  /** A connection closed: a waiter of that key may now open its own. */
  private wakeOne(key: string, c: H1Connection | null): void {
    const q = this.waiters.get(key);
    if (q?.length) (q.shift() as Waiter)(c);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
  }
}
