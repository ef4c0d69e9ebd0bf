// One proxy worker process: takes the listening socket from the supervisor, its configuration only
// from xDS, and serves connections. It starts accepting only once a first complete config is in
// force (until then new connections wait in the supervisor's backlog: never served without policy),
// applies each push as a new snapshot (requests in flight keep theirs), and drains on SIGTERM.

import net from "node:net";
import { createLogger, type Logger } from "../core/log.ts";
import { XdsClient, type XdsConfig } from "../xds/client.ts";
import { HCM_TYPE, type HttpConnectionManager, TYPE } from "../xds/resources.ts";
import { ClusterRegistry, ProxySnapshot } from "./config.ts";
import type { ProxyContext } from "./context.ts";
import { type FlowSink, NullFlowSink, UnixHttpFlowSink } from "./flow-sink.ts";
import { ForwardedPolicy } from "./forwarded.ts";
import { createConnectionHandler } from "./listener.ts";
import { openRedirects, type RedirectSource } from "./origdst.ts";
import { MemoryProxyPorts, openProxyPorts, PortAllocator, type ProxyPortsSource } from "./proxy-ports.ts";
import { ProxyStats } from "./stats.ts";
import { H1Pool } from "./upstream/h1-pool.ts";
import { H2Pool } from "./upstream/h2-pool.ts";

export interface WorkerOptions {
  /** The xDS node id (the agent's snapshot key): the node's name. */
  nodeId: string;
  /** "unix:///run/weft/.../xds.sock" */
  xdsTarget: string;
  redirects: RedirectSource;
  ports: ProxyPortsSource;
  /** Local ports for upstream connections, split between workers. */
  portRange: [number, number];
  /** The agent's Unix socket for flows (POST /v1/flows); none: flows are not exported. */
  flowSocket?: string;
  trustedCidrs?: string[];
  /** Longest wait for routes and endpoints after the first policies arrive before serving anyway. */
  readyWaitMs?: number;
  /** Drain time on SIGTERM. */
  drainMs?: number;
  /** Lowest level written (default info). */
  logLevel?: "debug" | "info" | "warn";
}

export interface WorkerIdentity {
  index: number;
  count: number;
}

/** Messages between supervisor and worker over the IPC channel. */
export type SupervisorMessage = { type: "listener" } | { type: "stats"; id: number };
export type WorkerMessage =
  | { type: "ready"; index: number; pid: number }
  | {
      type: "stats";
      id: number;
      index: number;
      pid: number;
      stats: Record<string, number>;
      ports: [number, number][];
      snapshot: number;
      versions: Record<string, string>;
    };

/** Is the config complete enough to serve: policies, listeners, clusters, and what they name? */
function complete(cfg: XdsConfig): boolean {
  if (!cfg.versions[TYPE.l7policy] || !cfg.versions[TYPE.listener] || !cfg.versions[TYPE.cluster]) return false;
  for (const l of cfg.listeners.values())
    for (const fc of l.filter_chains ?? [])
      for (const f of fc.filters ?? []) {
        const h = f.typed_config as HttpConnectionManager;
        if (h?.["@type"] === HCM_TYPE && h.rds && !cfg.routes.has(h.rds.route_config_name)) return false;
      }
  for (const [name, c] of cfg.clusters) if (!cfg.endpoints.has(c.eds_cluster_config?.service_name || name)) return false;
  return true;
}

export async function runWorker(opts: WorkerOptions, me: WorkerIdentity, log: Logger): Promise<void> {
  const stats = new ProxyStats();
  const ports = openProxyPorts(opts.ports);
  const alloc = new PortAllocator(opts.portRange, me.index, me.count);
  const clusters = new ClusterRegistry();
  let snapshot = ProxySnapshot.empty(clusters);
  const flows: FlowSink = opts.flowSocket ? new UnixHttpFlowSink({ socketPath: opts.flowSocket }) : new NullFlowSink();
  const ctx: ProxyContext = {
    snapshot: () => snapshot,
    redirects: openRedirects(opts.redirects, (problem) => log.warn("redirect records unreadable", { problem })),
    h1: new H1Pool(ports, alloc, stats),
    h2: new H2Pool(ports, alloc, stats),
    flows,
    forwarded: new ForwardedPolicy({ trustedCidrs: opts.trustedCidrs ?? [] }),
    stats,
    nodeName: opts.nodeId,
    log,
  };
  const onConnection = createConnectionHandler(ctx);

  let handle: unknown;
  let server: net.Server | undefined;
  let ready = false;
  let firstPolicyAt = 0;
  const maybeListen = (cfg: XdsConfig) => {
    if (ready || !handle) return;
    if (!firstPolicyAt && cfg.versions[TYPE.l7policy]) firstPolicyAt = performance.now();
    const waited = firstPolicyAt ? performance.now() - firstPolicyAt : 0;
    if (!complete(cfg) && !(firstPolicyAt && waited >= (opts.readyWaitMs ?? 2000))) return;
    ready = true;
    server = net.createServer({ noDelay: true }, onConnection);
    server.on("error", (err) => log.error("listener error", { error: err.message }));
    server.listen(handle as net.ListenOptions & object, () => {
      log.info("proxy worker serving", { index: me.index, pid: process.pid, snapshot: snapshot.version });
      process.send?.({ type: "ready", index: me.index, pid: process.pid } satisfies WorkerMessage);
    });
  };

  const xds = new XdsClient({
    target: opts.xdsTarget,
    node: { id: opts.nodeId, cluster: "weft-proxy" },
    log: log.child({ component: "xds" }),
    backoff: { initialMs: 50, maxMs: 2000 },
  });
  xds.on("config", (cfg: XdsConfig) => {
    clusters.apply(cfg);
    snapshot = new ProxySnapshot(snapshot.version + 1, cfg, clusters);
    stats.config_snapshots++;
    maybeListen(cfg);
  });
  const readyTimer = setInterval(() => maybeListen(xds.config()), 100);
  xds.start();

  process.on("message", (msg: SupervisorMessage, h?: unknown) => {
    if (msg.type === "listener" && h) {
      handle = h;
      maybeListen(xds.config());
    } else if (msg.type === "stats") {
      const map = ports instanceof MemoryProxyPorts ? [...ports.map].slice(0, 10_000) : [];
      process.send?.({
        type: "stats",
        id: msg.id,
        index: me.index,
        pid: process.pid,
        stats: stats.toJSON(),
        ports: map,
        snapshot: snapshot.version,
        versions: xds.config().versions,
      } satisfies WorkerMessage);
    }
  });

  await new Promise<void>((resolve) => {
    const stop = () => {
      clearInterval(readyTimer);
      server?.close();
      xds.close();
      // Drain: requests in flight finish, bounded by drainMs.
      const until = Date.now() + (opts.drainMs ?? 5000);
      const tick = setInterval(() => {
        if (stats.downstream_cx_active === 0 || Date.now() >= until) {
          clearInterval(tick);
          resolve();
        }
      }, 50);
    };
    process.once("SIGTERM", stop);
    process.once("disconnect", stop);
  });
  ctx.h1.close();
  ctx.h2.close();
  await flows.close();
}

/** Drops lines below `level`. */
function leveled(l: Logger, level: "debug" | "info" | "warn"): Logger {
  const rank = { debug: 0, info: 1, warn: 2 }[level];
  const noop = () => {};
  return {
    debug: rank <= 0 ? l.debug : noop,
    info: rank <= 1 ? l.info : noop,
    warn: l.warn,
    error: l.error,
    child: (f) => leveled(l.child(f), level),
  };
}

// Forked by the supervisor: options and identity come in the environment.
if (process.env.WEFT_PROXY_WORKER && process.send) {
  const opts = JSON.parse(process.env.WEFT_PROXY_WORKER) as WorkerOptions;
  const me: WorkerIdentity = { index: Number(process.env.WEFT_PROXY_WORKER_INDEX ?? 0), count: Number(process.env.WEFT_PROXY_WORKERS ?? 1) };
  const log = leveled(createLogger(process.stderr, { component: "proxy", node: opts.nodeId, worker: me.index }), opts.logLevel ?? "info");
  runWorker(opts, me, log).then(
    () => process.exit(0),
    (err: Error) => {
      log.error("proxy worker failed", { error: err.message });
      process.exit(1);
    },
  );
}
