// The L7 proxy against its peers, same run, same backend, same load, all on 127.0.0.1, one core
// each (Weft: 1 worker; Envoy: --concurrency 1; nginx: 1 worker process; HAProxy: nbthread 1):
// req/s, p50, p99, proxy CPU time per request and RSS, with and without 50 L7 rules (the request
// matches the 50th: Weft's policy, Envoy's RBAC filter, nginx regex locations, HAProxy ACLs), and
// ratios against direct, Envoy and nginx, with the load average (the machine may be shared). Then
// the Weft worker with rules on, profiled: V8's --cpu-prof cut to the measured window (wall-clock
// samples; inclusive time of Weft's functions) and, where perf is installed, CPU time by object.
// Load: a bounded keep-alive generator of our own (raw sockets, one request in flight per
// connection) in its own process; the backend is a minimal raw-socket server in its own process.
// Run: node --import tsx bench/proxy.bench.ts   (Envoy: sh scripts/peers.sh envoy; nginx/HAProxy
// optional: apt-get install -y nginx haproxy). Quick A/B while changing the proxy: WEFT_BENCH_ONLY=weft
// (direct and Weft) or weft+rules (that row alone); WEFT_BENCH_PROFILE=1 adds the V8 profile.

import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { L7Set } from "../src/policy/compile.ts";
import { compileHttpRule } from "../src/policy/l7/http-match.ts";
import { Supervisor } from "../src/proxy/supervisor.ts";
import { cluster, clusterLoadAssignment, l7Policies, listener, routeConfiguration, TYPE, type XdsResource } from "../src/xds/resources.ts";
import { XdsServer } from "../src/xds/server.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CONNECTIONS = Number(process.env.WEFT_BENCH_CONNECTIONS ?? 32);
const WARM_MS = 1000;
const RUN_MS = Number(process.env.WEFT_BENCH_MS ?? 4000);
/** `weft`: only direct and the Weft rows; no peers, no profile unless WEFT_BENCH_PROFILE=1, no perf. */
const ONLY_WEFT = process.env.WEFT_BENCH_ONLY === "weft" || process.env.WEFT_BENCH_ONLY === "weft+rules";
/** `weft+rules`: only the Weft row with rules (repeated A/B runs of the target). */
const ONLY_RULES = process.env.WEFT_BENCH_ONLY === "weft+rules";
const PATH = "/api/v1/items/42";
const RULES = 50;
const CLIENT_ADDR = "127.0.0.2";

// ---- roles run in child processes --------------------------------------------------------------

const RESPONSE = Buffer.from("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nhello, world\n");

function runBackend(): void {
  const server = net.createServer({ noDelay: true }, (s) => {
    let pending = "";
    s.on("data", (c: Buffer) => {
      pending += c.toString("latin1");
      let n = 0;
      for (let i = pending.indexOf("\r\n\r\n"); i >= 0 && n < 1000; i = pending.indexOf("\r\n\r\n")) {
        pending = pending.slice(i + 4);
        n++;
      }
      if (n === 1) s.write(RESPONSE);
      else if (n > 1) s.write(Buffer.concat(Array.from({ length: n }, () => RESPONSE)));
    });
    s.on("error", () => {});
  });
  server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as net.AddressInfo).port }));
}

interface LoadResult {
  requests: number;
  errors: number;
  non200: number;
  rps: number;
  p50: number;
  p99: number;
  /** The measured window on the monotonic clock (µs), to cut a CPU profile to it. */
  windowUs: [number, number];
}

/** `connections` keep-alive connections, one request in flight each, for warm + run ms. */
async function runLoad(port: number, connections: number, warmMs: number, runMs: number): Promise<LoadResult> {
  const req = Buffer.from(`GET ${PATH} HTTP/1.1\r\nHost: svc.test\r\nUser-Agent: weft-bench\r\n\r\n`);
  const lat: number[] = [];
  let requests = 0;
  let errors = 0;
  let non200 = 0;
  const t0 = performance.now();
  const hr0 = Number(process.hrtime.bigint() / 1000n);
  const measureFrom = t0 + warmMs;
  const end = measureFrom + runMs;
  // The orchestrator reads the proxy's CPU time when the measured window opens.
  const opened = setTimeout(() => process.send?.({ window: true }), warmMs);
  const one = () =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: CLIENT_ADDR, noDelay: true });
      let buf = "";
      let sent = 0;
      let need = -1;
      const send = () => {
        if (performance.now() >= end) {
          s.destroy();
          resolve();
          return;
        }
        sent = performance.now();
        buf = "";
        need = -1;
        s.write(req);
      };
      s.on("connect", send);
      s.on("data", (c: Buffer) => {
        buf += c.toString("latin1");
        if (need < 0) {
          const h = buf.indexOf("\r\n\r\n");
          if (h < 0) return;
          const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, h));
          need = h + 4 + (m ? Number(m[1]) : 0);
          if (!buf.startsWith("HTTP/1.1 200")) non200++;
        }
        if (buf.length < need) return;
        const now = performance.now();
        if (sent >= measureFrom) {
          requests++;
          lat.push(now - sent);
        }
        send();
      });
      s.on("error", () => {
        errors++;
      });
      s.on("close", () => resolve());
    });
  await Promise.all(Array.from({ length: connections }, one));
  clearTimeout(opened);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  const windowUs: [number, number] = [hr0 + warmMs * 1000, hr0 + (warmMs + runMs) * 1000];
  return { requests, errors, non200, rps: requests / (runMs / 1000), p50: q(0.5), p99: q(0.99), windowUs };
}

if (process.env.WEFT_BENCH_ROLE === "backend") runBackend();
else if (process.env.WEFT_BENCH_ROLE === "load") {
  const { port, connections, warmMs, runMs } = JSON.parse(process.env.WEFT_BENCH_LOAD ?? "{}");
  const r = await runLoad(port, connections, warmMs, runMs);
  process.send?.(r, () => process.exit(0));
} else await main();

// ---- the orchestrator -----------------------------------------------------------------------------

function child(role: string, env: Record<string, string> = {}): ChildProcess {
  return fork(SELF, [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, WEFT_BENCH_ROLE: role, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function message<T>(c: ChildProcess, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("child did not answer")), ms);
    c.once("message", (m) => {
      clearTimeout(t);
      resolve(m as T);
    });
  });
}

/** CPU seconds (user + system) and RSS (MiB) of processes, from /proc. */
function usage(pids: number[]): { cpu: number; sys: number; rss: number } {
  let cpu = 0;
  let sys = 0;
  let rss = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      cpu += (Number(f[11]) + Number(f[12])) / 100;
      sys += Number(f[12]) / 100;
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      rss += m ? Number(m[1]) / 1024 : 0;
    } catch {
      // gone
    }
  }
  return { cpu, sys, rss };
}

interface Row extends LoadResult {
  name: string;
  cpuPerReqUs: number;
  rssMiB: number;
}

/** cpu/req: the proxy's CPU time (/proc, 10 ms ticks) over the measured window only, per request. */
async function measure(name: string, port: number, pids: () => number[]): Promise<Row> {
  let before = usage(pids());
  const load = child("load", { WEFT_BENCH_LOAD: JSON.stringify({ port, connections: CONNECTIONS, warmMs: WARM_MS, runMs: RUN_MS }) });
  const r = await new Promise<LoadResult>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("load generator did not answer")), WARM_MS + RUN_MS + 30_000);
    load.on("message", (m) => {
      if ((m as { window?: boolean }).window) {
        before = usage(pids());
        return;
      }
      clearTimeout(t);
      resolve(m as LoadResult);
    });
  });
  const after = usage(pids());
  const cpu = after.cpu - before.cpu;
  const sys = cpu > 0 ? ` (${((100 * (after.sys - before.sys)) / cpu).toFixed(0).padStart(2)}% sys)` : "";
  const row: Row = { name, ...r, cpuPerReqUs: pids().length ? (cpu / Math.max(1, r.requests)) * 1e6 : 0, rssMiB: after.rss };
  console.log(
    `  ${name.padEnd(24)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  cpu/req ${row.cpuPerReqUs.toFixed(0).padStart(4)} µs${sys || "          "}  rss ${row.rssMiB.toFixed(0).padStart(4)} MiB  errors ${r.errors} non-200 ${r.non200}`,
  );
  return row;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitListening(port: number, ms = 15_000): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.on("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}

function stop(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => c.kill("SIGKILL"), 5000);
    c.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    c.kill("SIGTERM");
  });
}

function ruleRegexes(): string[] {
  return Array.from({ length: RULES }, (_, i) => (i === RULES - 1 ? "/api/v1/items/.*" : `/api/v1/other${i}/.*`));
}

async function weft(
  dir: string,
  backendPort: number,
  rules: boolean,
  workerExecArgv?: string[],
): Promise<{ port: number; pids: () => number[]; close: () => Promise<void> }> {
  const xds = await XdsServer.start({ socketPath: join(dir, `xds-${rules}.sock`) });
  const set: L7Set = {
    proto: 6,
    port: backendPort,
    kind: "http",
    entries: [{ scope: 0, allowAll: false, l7: { kind: "http", rules: ruleRegexes().map((path) => compileHttpRule({ method: "GET", path })) }, rule: "bench" }],
  };
  const res: XdsResource[] = [
    { typeUrl: TYPE.cluster, message: cluster({ name: "backend" }) },
    { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("backend", [{ address: "127.0.0.1", port: backendPort }]) },
    { typeUrl: TYPE.listener, message: listener({ name: "svc", address: "10.96.0.1", port: 80, http: { routeConfigName: "r" } }) },
    { typeUrl: TYPE.route, message: routeConfiguration("r", [{ name: "all", routes: [{ prefix: "/", cluster: "backend" }] }]) },
    ...(rules ? l7Policies(2001, "ingress", [set]).map((m): XdsResource => ({ typeUrl: TYPE.l7policy, message: m })) : []),
  ];
  xds.setSnapshot("bench", res);
  const redirects = join(dir, "redirects.json");
  writeFileSync(
    redirects,
    JSON.stringify({
      records: [
        {
          remote: CLIENT_ADDR,
          vip: "10.96.0.1",
          vport: 80,
          backend: "127.0.0.1",
          bport: backendPort,
          identity: 1001,
          directions: [{ direction: "ingress", subject: 2001, peer: 1001 }],
        },
      ],
    }),
  );
  const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
  const sup = await Supervisor.start({
    host: "127.0.0.1",
    port: 0,
    workers: 1,
    log: silent,
    ...(workerExecArgv ? { workerExecArgv } : {}),
    worker: {
      logLevel: "warn",
      nodeId: "bench",
      xdsTarget: xds.target,
      redirects: { kind: "file", path: redirects },
      ports: { kind: "memory" },
      portRange: [33000, 34999],
    },
  });
  for (let i = 0; i < 400 && sup.readyCount() < 1; i++) await new Promise((r) => setTimeout(r, 25));
  return {
    port: sup.port,
    pids: () => sup.workerPids().filter((p): p is number => p !== undefined),
    close: async () => {
      await sup.close();
      await xds.close();
    },
  };
}

async function envoy(dir: string, backendPort: number, rules: boolean): Promise<{ port: number; proc: ChildProcess } | undefined> {
  const bin = join(REPO, ".cache/peers/bin/envoy");
  if (!existsSync(bin)) return undefined;
  const port = await freePort();
  const policies: Record<string, unknown> = {};
  ruleRegexes().forEach((re, i) => {
    policies[`r${String(i).padStart(2, "0")}`] = {
      permissions: [
        { and_rules: { rules: [{ header: { name: ":method", string_match: { exact: "GET" } } }, { url_path: { path: { safe_regex: { regex: re } } } }] } },
      ],
      principals: [{ any: true }],
    };
  });
  const filters: unknown[] = [];
  if (rules)
    filters.push({
      name: "envoy.filters.http.rbac",
      typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", rules: { action: "ALLOW", policies } },
    });
  filters.push({ name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } });
  const cfg = {
    static_resources: {
      listeners: [
        {
          name: "l",
          address: { socket_address: { address: "127.0.0.1", port_value: port } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "bench",
                    normalize_path: true,
                    route_config: {
                      name: "r",
                      virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "backend" } }] }],
                    },
                    http_filters: filters,
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: "backend",
          type: "STATIC",
          connect_timeout: "1s",
          load_assignment: {
            cluster_name: "backend",
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: backendPort } } } }] }],
          },
        },
      ],
    },
  };
  const file = join(dir, `envoy-${rules}.json`);
  writeFileSync(file, JSON.stringify(cfg));
  const proc = spawn(
    bin,
    ["-c", file, "--concurrency", "1", "--disable-hot-restart", "--log-level", "error", "--base-id", String(40000 + Math.floor(Math.random() * 10000))],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  await waitListening(port);
  return { port, proc };
}

function has(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function nginx(dir: string, backendPort: number, rules: boolean): Promise<{ port: number; proc: ChildProcess } | undefined> {
  if (!has("nginx")) return undefined;
  const port = await freePort();
  const d = join(dir, `nginx-${rules}`);
  execFileSync("mkdir", ["-p", join(d, "logs"), join(d, "tmp")]);
  const proxy = 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";';
  const locations = rules
    ? `${ruleRegexes()
        .map((re) => `location ~ ^${re.replace(".*", ".*")}$ { if ($request_method != GET) { return 403; } ${proxy} }`)
        .join("\n    ")}\n    location / { return 403; }`
    : `location / { ${proxy} }`;
  writeFileSync(
    join(d, "nginx.conf"),
    `daemon off; master_process off; worker_processes 1; pid ${d}/nginx.pid; error_log ${d}/logs/error.log error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${d}/tmp; proxy_temp_path ${d}/tmp; fastcgi_temp_path ${d}/tmp; uwsgi_temp_path ${d}/tmp; scgi_temp_path ${d}/tmp;
  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; keepalive_requests 1000000;
    ${locations}
  }
}
`,
  );
  const proc = spawn("nginx", ["-p", d, "-c", join(d, "nginx.conf")], { stdio: ["ignore", "ignore", "inherit"] });
  await waitListening(port);
  return { port, proc };
}

async function haproxy(dir: string, backendPort: number, rules: boolean): Promise<{ port: number; proc: ChildProcess } | undefined> {
  if (!has("haproxy")) return undefined;
  const port = await freePort();
  // One ACL named by many lines ORs them; the request must be a GET and match one.
  const acls = rules
    ? `${ruleRegexes()
        .map((re) => `  acl allowed path_reg ^${re}$`)
        .join("\n")}\n  http-request deny deny_status 403 unless METH_GET allowed\n`
    : "";
  const file = join(dir, `haproxy-${rules}.cfg`);
  writeFileSync(
    file,
    `global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:${port}
${acls}  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:${backendPort}
`,
  );
  const proc = spawn("haproxy", ["-db", "-f", file], { stdio: ["ignore", "ignore", "inherit"] });
  await waitListening(port);
  return { port, proc };
}

/** The machine is shared: a run's numbers mean little without the load next to them. */
function loadLine(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function frameKey(f: { functionName: string; url: string; lineNumber: number }): string {
  // Lines of src/ files are tsx's output lines, not the source's: name the file only.
  const file = f.url.replace(/^.*\/(src|node_modules)\//, "$1/");
  const where = !f.url ? "" : file.startsWith("src/") ? file : `${file}:${f.lineNumber + 1}`;
  return `${f.functionName || "(anonymous)"} ${where}`.trim();
}

function area(k: string): string {
  if (k === "(garbage collector)") return "GC";
  if (k === "(idle)" || k === "(program)") return "idle/program";
  if (/re2js/.test(k)) return "RE2JS (policy regexes)";
  if (/ src\/(proxy|policy|xds|observe|core)\//.test(k)) return "Weft TypeScript";
  // Frames without a script are V8/libuv natives (writeBuffer, writev, ...): Node's side of the sockets.
  if (/node:|internal\//.test(k) || !k.includes(" ") || k.startsWith("(")) return "Node core (net, streams, syscalls)";
  return "other (tsx, grpc, yaml, ...)";
}

/**
 * Where the worker's CPU went while the load ran: samples inside `[fromUs, toUs]` (V8 stamps
 * profiles with the monotonic clock that process.hrtime reads), so start-up and xDS loading are
 * left out. Self time by area and by function, and inclusive time of Weft's own functions.
 */
function profileSummary(file: string, fromUs: number, toUs: number, top = 14): string[] {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let t = p.startTime;
  const inWindow = p.samples.some((_, i) => {
    t += p.timeDeltas[i] ?? 0;
    return t >= fromUs && t <= toUs;
  });
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  t = p.startTime;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (inWindow && (t < fromUs || t > toUs)) return;
    const n = byId.get(id);
    if (!n) return;
    total += dt;
    const key = frameKey(n.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id, depth = 0; at !== undefined && depth < 500; at = parent.get(at), depth++) {
      const f = byId.get(at);
      if (!f) break;
      const k = frameKey(f.callFrame);
      if (area(k) !== "Weft TypeScript" || seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  });
  const groups = new Map<string, number>();
  for (const [k, v] of self) groups.set(area(k), (groups.get(area(k)) ?? 0) + v);
  const pct = (v: number) => `${((100 * v) / Math.max(1, total)).toFixed(1)}%`;
  const rank = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${pct(v).padStart(6)}  ${k}`);
  return [
    `  ${(total / 1e6).toFixed(1)} s of samples ${inWindow ? "while the load ran" : "(whole worker life: no sample in the load window)"}`,
    `  by area (self): ${[...groups]
      .sort((a, b) => b[1] - a[1])
      .map(([g, v]) => `${g} ${pct(v)}`)
      .join(", ")}`,
    "  top functions (self):",
    ...rank(self, top),
    "  Weft functions (inclusive: with what they call):",
    ...rank(inclusive, 10),
    `  L7 policy (HttpPolicy.decide, inclusive): ${pct([...inclusive].filter(([k]) => k.startsWith("decide ")).reduce((a, [, v]) => a + v, 0))}`,
  ];
}

/**
 * CPU time (not wall time) of the Weft worker by where it runs — kernel, Node's C++ and V8's
 * builtins, JIT-compiled JavaScript — sampled by `perf record` over the measured window of one more
 * run with rules on. Needs perf and the right to profile our own child (perf_event_paranoid ≤ 2).
 */
async function perfRun(dir: string, backendPort: number): Promise<void> {
  const w = await weft(dir, backendPort, true, ["--perf-basic-prof-only-functions"]);
  const pid = w.pids()[0];
  const data = join(dir, "perf.data");
  let rec: ChildProcess | undefined;
  try {
    if (pid === undefined) return;
    // The load child needs ~1 s to start, then warms up: count from after that, until the run ends.
    const delayMs = WARM_MS + 1000;
    rec = spawn(
      "perf",
      ["record", "-q", "-F", "499", "-g", "-p", String(pid), "-o", data, "-D", String(delayMs), "--", "sleep", String((WARM_MS + RUN_MS) / 1000)],
      {
        stdio: ["ignore", "ignore", "ignore"],
      },
    );
    const recorded = new Promise<void>((resolve) => rec?.once("exit", () => resolve()));
    await measure("weft +50 rules (perf)", w.port, w.pids);
    await Promise.race([recorded, new Promise((r) => setTimeout(r, 20_000))]);
    const report = (sort: string, limit: string) =>
      execFileSync("perf", ["report", "-i", data, "--stdio", "--no-children", "-g", "none", "--sort", sort, "--percent-limit", limit], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
        maxBuffer: 64 << 20,
      })
        .split("\n")
        .filter((l) => /^\s+[\d.]+%/.test(l))
        .map((l) => `  ${l.trim().replace(/\s+/g, " ")}`);
    // [unknown]: executable anonymous memory perf has no map for, in practice V8's JIT code too.
    console.log(
      "perf (CPU time of the Weft worker, +50 rules) by object: [kernel.kallsyms] = syscalls, TCP, scheduling; node = Node's C++ and V8 builtins; JIT/[unknown] = compiled JavaScript",
    );
    for (const l of report("dso", "1")) console.log(l.replace(/perf-\d+\.map|\[JIT\] tid \d+/, "JIT"));
    console.log("  top symbols:");
    for (const l of report("dso,sym", "1.5").slice(0, 20)) console.log(l.replace(/perf-\d+\.map|\[JIT\] tid \d+/, "JIT"));
  } catch (err) {
    console.log(`  perf: not available here (${(err as Error).message.split("\n")[0]})`);
  } finally {
    await stop(rec);
    await w.close();
    if (pid !== undefined) rmSync(`/tmp/perf-${pid}.map`, { force: true });
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-proxy-"));
  const backend = child("backend");
  const procs: ChildProcess[] = [backend];
  try {
    const { port: backendPort } = await message<{ port: number }>(backend, 20_000);
    console.log(`proxy bench: ${CONNECTIONS} keep-alive connections, ${RUN_MS} ms per run after ${WARM_MS} ms warm-up, one core per proxy, GET ${PATH}`);
    console.log(`load average at start (1/5/15 min): ${loadLine()}`);
    const rows: Row[] = [];
    if (!ONLY_RULES) rows.push(await measure("direct", backendPort, () => []));
    for (const rules of ONLY_RULES ? [true] : [false, true]) {
      const w = await weft(dir, backendPort, rules);
      rows.push(await measure(`weft${rules ? " +50 rules" : ""}`, w.port, w.pids));
      await w.close();
      if (ONLY_WEFT) continue;
      const e = await envoy(dir, backendPort, rules);
      if (e) {
        procs.push(e.proc);
        rows.push(await measure(`envoy${rules ? " +50 RBAC" : ""}`, e.port, () => (e.proc.pid ? [e.proc.pid] : [])));
        await stop(e.proc);
      }
      const n = await nginx(dir, backendPort, rules);
      if (n) {
        procs.push(n.proc);
        rows.push(await measure(`nginx${rules ? " +50 locations" : ""}`, n.port, () => (n.proc.pid ? [n.proc.pid] : [])));
        await stop(n.proc);
      }
      const h = await haproxy(dir, backendPort, rules);
      if (h) {
        procs.push(h.proc);
        rows.push(await measure(`haproxy${rules ? " +50 ACLs" : ""}`, h.port, () => (h.proc.pid ? [h.proc.pid] : [])));
        await stop(h.proc);
      }
    }
    const by = (n: string) => rows.find((r) => r.name === n);
    const ratio = (a: string, b: string) => {
      const x = by(a);
      const y = by(b);
      return x && y && y.rps > 0 ? `${(x.rps / y.rps).toFixed(2)}x` : "n/a";
    };
    if (!ONLY_RULES) {
      console.log("ratios (req/s, same run):");
      console.log(`  weft / direct             ${ratio("weft", "direct")}`);
      console.log(`  weft+rules / weft         ${ratio("weft +50 rules", "weft")}`);
      console.log(`  weft / envoy              ${ratio("weft", "envoy")}      weft+rules / envoy+RBAC       ${ratio("weft +50 rules", "envoy +50 RBAC")}`);
      console.log(`  weft / nginx              ${ratio("weft", "nginx")}      weft+rules / nginx+locations  ${ratio("weft +50 rules", "nginx +50 locations")}`);
      console.log(`  weft / haproxy            ${ratio("weft", "haproxy")}      weft+rules / haproxy+ACLs     ${ratio("weft +50 rules", "haproxy +50 ACLs")}`);
    }
    console.log(`load average after the runs (1/5/15 min): ${loadLine()}`);
    if (ONLY_WEFT && process.env.WEFT_BENCH_PROFILE !== "1") return;

    // Where the Weft worker's time goes with rules on.
    const profDir = join(dir, "prof");
    const w = await weft(dir, backendPort, true, ["--cpu-prof", `--cpu-prof-dir=${profDir}`]);
    const profiled = await measure("weft +50 rules (profiled)", w.port, w.pids);
    await w.close();
    const prof = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
    if (prof) {
      // V8 samples on wall-clock ticks: a thread preempted inside a syscall (writing to loopback wakes
      // the peer, which may take the core) is charged to that syscall. /proc's cpu/req is the CPU.
      console.log("CPU profile of the Weft worker (+50 rules; wall-clock samples, see cpu/req for CPU):");
      for (const line of profileSummary(join(profDir, prof), ...profiled.windowUs)) console.log(line);
    }
    if (has("perf") && !ONLY_WEFT) await perfRun(dir, backendPort);
  } finally {
    for (const p of procs) await stop(p);
    rmSync(dir, { recursive: true, force: true });
  }
}
