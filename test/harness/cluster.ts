// The one harness that integration and e2e tests use to build and tear down local clusters: unique
// names per run, clean-up on failure, and removal of clusters left by a killed earlier run.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { getJson } from "../../src/core/unix-http.ts";
import type { Flow } from "../../src/observe/flow.ts";

export const REPO = new URL("../..", import.meta.url).pathname;
export const WEFT = join(REPO, "bin/weft.js");
/** Test clusters keep their state apart from a user's clusters. */
export const TEST_STATE_ROOT = "/var/lib/weft-test";
/** The node logs (kubelet, agent, proxy) of the last test clusters, kept after `down` for diagnosis. */
export const TEST_LOGS_ROOT = "/var/lib/weft-test-logs";
const KEEP_LOGS = 24;

/** Copies a cluster's logs to TEST_LOGS_ROOT/<name> and keeps only the newest KEEP_LOGS copies. */
function keepLogs(stateDir: string, name: string): void {
  try {
    mkdirSync(TEST_LOGS_ROOT, { recursive: true });
    cpSync(join(stateDir, "logs"), join(TEST_LOGS_ROOT, name), { recursive: true });
    const old = readdirSync(TEST_LOGS_ROOT)
      .map((n) => ({ n, t: statSync(join(TEST_LOGS_ROOT, n)).mtimeMs }))
      .sort((a, b) => b.t - a.t)
      .slice(KEEP_LOGS);
    for (const o of old) rmSync(join(TEST_LOGS_ROOT, o.n), { recursive: true, force: true });
  } catch {
    // no logs (the cluster never came up): nothing to keep
  }
}

/** Which test process owns each test cluster (kept outside the state folder, which `up` rewrites). */
const OWNERS = "/var/lib/weft-test-owners";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the real `weft` CLI. */
export function weft(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WEFT, ...args], { env: { ...process.env, WEFT_STATE_DIR: TEST_STATE_ROOT }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`weft ${args.join(" ")} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.stdin.end(opts.input ?? "");
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The names TestCluster.start gives. */
const TEST_NAME = /^t[0-9a-f]{8}$/;

/** Removes test clusters whose creating test process is gone (a killed earlier run). */
export async function removeStaleClusters(): Promise<string[]> {
  // Test clusters' cgroups too: a `down` that could not remove them leaves no state folder.
  const cgroups = listDir("/sys/fs/cgroup/unified/weft").filter((n) => TEST_NAME.test(n));
  const names = new Set([...listDir(TEST_STATE_ROOT), ...listDir(OWNERS), ...cgroups]);
  const removed: string[] = [];
  for (const name of names) {
    const owner = Number(readFileSafe(join(OWNERS, name)) || 0);
    if (owner && pidAlive(owner)) continue;
    await weft(["down", "--cluster", name]);
    rmSync(join(OWNERS, name), { force: true });
    removed.push(name);
  }
  return removed;
}

function listDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export interface PodJson {
  metadata: { name: string; namespace: string; labels: Record<string, string>; uid: string; deletionTimestamp?: string };
  spec: { nodeName: string };
  status: {
    phase: string;
    podIP?: string;
    conditions: { type: string; status: string }[];
    containerStatuses: { name: string; ready: boolean; restartCount: number; state: Record<string, { reason?: string; exitCode?: number }> }[];
  };
}

export class TestCluster {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /** Starts a cluster named t<random>; prints how long it took. */
  static async start(opts: { nodes?: number; manifests?: string; waitSeconds?: number; upArgs?: string[] } = {}): Promise<TestCluster> {
    await removeStaleClusters();
    const name = `t${randomBytes(4).toString("hex")}`;
    mkdirSync(OWNERS, { recursive: true });
    writeFileSync(join(OWNERS, name), String(process.pid));
    const c = new TestCluster(name);
    const r = await weft(
      [
        "up",
        "--cluster",
        name,
        "--nodes",
        String(opts.nodes ?? 2),
        "--manifests",
        opts.manifests ?? "",
        "--wait",
        String(opts.waitSeconds ?? 90),
        ...(opts.upArgs ?? []),
      ],
      { timeoutMs: 180_000 },
    );
    if (r.code !== 0) {
      await c.down();
      throw new Error(`weft up failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    console.log(`# cluster ${name} up in ${r.ms} ms`);
    return c;
  }

  cli(args: string[], opts?: { timeoutMs?: number }): Promise<CliResult> {
    return weft([...args, "--cluster", this.name], opts);
  }

  /** The `--` of exec must stay last, so the cluster flag goes before it. */
  exec(pod: string, cmd: string[], namespace = "default"): Promise<CliResult> {
    return weft(["exec", pod, "-n", namespace, "--cluster", this.name, "--", ...cmd]);
  }

  async apply(file: string): Promise<CliResult> {
    return this.cli(["apply", "-f", file]);
  }

  async pods(namespace = "default"): Promise<PodJson[]> {
    const r = await this.cli(["get", "pods", "-n", namespace, "-o", "json"]);
    if (r.code !== 0) throw new Error(`weft get pods failed: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { items: PodJson[] }).items;
  }

  /** Polls until `check` returns a value (not undefined/false); bounded in time. */
  async waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
    const started = Date.now();
    for (;;) {
      const v = await check();
      if (v !== undefined && v !== false) {
        console.log(`# ${what}: ${Date.now() - started} ms`);
        return v;
      }
      if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Waits until each node's agent reports L7 redirection on (its proxy serves and was told so). */
  async waitForRedirect(nodes: string[] = ["node-1", "node-2"], timeoutMs = 60_000): Promise<void> {
    await this.waitFor(
      `L7 redirection on for ${nodes.join(", ")}`,
      async () =>
        nodes.every((n) => {
          try {
            return (JSON.parse(readFileSync(join(this.stateDir, "run", n, "agent.health.json"), "utf8")) as { redirect?: boolean }).redirect === true;
          } catch {
            return false;
          }
        }),
      timeoutMs,
    );
  }

  /**
   * What the node proxies and the datapath show, for a failure's message: each proxy's non-zero
   * counters and workers (state and CPU time from /proc), its listener's accept queue, and the
   * flows to or from `ip`. Each worker is asked for a Node diagnostic report (its JS stack), which
   * lands in the node's logs (kept after down: TEST_LOGS_ROOT); a worker spinning in JavaScript
   * writes none (the signal waits for its event loop), and its growing CPU time tells instead.
   */
  async diagnoseProxies(ip?: string, nodes: string[] = ["node-1", "node-2"]): Promise<string> {
    const out: string[] = [];
    for (const n of nodes) {
      const admin = join(this.stateDir, "run", n, "proxy-admin.sock");
      const t = (await getJson<{ total: Record<string, number> }>(admin, "/stats", 5000))?.total;
      out.push(`${n} proxy counters: ${t ? JSON.stringify(Object.fromEntries(Object.entries(t).filter(([, v]) => v !== 0))) : "no answer"}`);
      const w = await getJson<{ pids: (number | undefined)[]; ready: number; restarts: number }>(admin, "/workers", 5000);
      for (const pid of w?.pids ?? []) {
        if (!pid) continue;
        const stat = readFileSafe(`/proc/${pid}/stat`).split(") ")[1]?.split(" ") ?? [];
        out.push(`${n} worker ${pid}: state ${stat[0] ?? "?"}, utime ${stat[11] ?? "?"} stime ${stat[12] ?? "?"} ticks`);
        try {
          process.kill(pid, "SIGUSR2"); // --report-on-signal (set by the kubelet): a report in the node's logs
        } catch {}
      }
      out.push(`${n} workers: ${JSON.stringify(w ?? "no answer")}`);
      const listener = (await this.execNode(n, ["ss", "-ltn", "sport = :15001"])).stdout.trim().split("\n").slice(1).join(" | ");
      out.push(`${n} listener (Recv-Q = connections not accepted yet): ${listener}`);
    }
    if (ip) {
      const flows = (await this.flows({ last: 400 })).filter((f) => f.IP?.destination === ip || f.IP?.source === ip).slice(-12);
      for (const f of flows) out.push(`flow: ${f.Summary ?? ""} ${f.verdict} ${f.drop_reason_desc ?? ""} ${f.node_name ?? ""}`);
    }
    return out.join("\n");
  }

  /** The last flows of every node, as `weft observe -o json` prints them. */
  async flows(opts: { last?: number; verdict?: string } = {}): Promise<Flow[]> {
    const r = await this.cli(["observe", "--last", String(opts.last ?? 3000), ...(opts.verdict ? ["--verdict", opts.verdict] : []), "-o", "json"]);
    if (r.code !== 0) throw new Error(`weft observe failed: ${r.stderr}`);
    return r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { flow: Flow }).flow);
  }

  private readonly outsideProcs: ChildProcess[] = [];

  /** Starts a long-running process in the "outside" namespace (the world); ended by down(). */
  spawnOutside(argv: string[]): ChildProcess {
    const child = spawn("ip", ["netns", "exec", `weft-${this.name}-outside`, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    this.outsideProcs.push(child);
    return child;
  }

  /** Runs a command in the "outside" namespace to completion. */
  execOutside(argv: string[], timeoutMs = 30_000): Promise<CliResult> {
    return this.execIn(`weft-${this.name}-outside`, argv, timeoutMs);
  }

  /** Runs a command in a node's namespace (as the node itself) to completion. */
  execNode(node: string, argv: string[], timeoutMs = 30_000): Promise<CliResult> {
    return this.execIn(`weft-${this.name}-${node}`, argv, timeoutMs);
  }

  private execIn(netns: string, argv: string[], timeoutMs: number): Promise<CliResult> {
    const started = Date.now();
    return new Promise((resolve) => {
      const child = spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
      });
    });
  }

  get stateDir(): string {
    return join(TEST_STATE_ROOT, this.name);
  }

  async down(): Promise<CliResult> {
    for (const p of this.outsideProcs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    keepLogs(this.stateDir, this.name);
    console.log(`# logs of ${this.name} kept in ${join(TEST_LOGS_ROOT, this.name)}`);
    const r = await weft(["down", "--cluster", this.name]);
    if (r.code !== 0) console.log(`# weft down --cluster ${this.name} failed: ${r.stderr.trim()}`);
    rmSync(join(OWNERS, this.name), { force: true });
    return r;
  }
}
