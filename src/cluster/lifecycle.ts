// `weft up` and `weft down`: build a whole local cluster (network, cgroups, pin folders, object
// store, one kubelet per node) and remove every trace of one, also after a crash.

import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { WeftError } from "../core/errors.ts";
import { applyObjects } from "./apply.ts";
import { cgroupTreeProcs, ensureCgroup, killCgroup, removeCgroupTree } from "./cgroup.ts";
import { BPF_ROOT, bpfPinDir, CGROUP_ROOT, type ClusterConfig, cgroupDir, clusterConfig, defaultStateRoot } from "./config.ts";
import { WEFT_BIN } from "./images.ts";
import { loadManifests } from "./manifest.ts";
import { buildClusterNetwork, removeClusterNetwork } from "./net.ts";
import { requirePrerequisites } from "./prereq.ts";
import { desiredPods } from "./schedule.ts";
import { clusterDir, logDir, readNodeStatuses, saveClusterConfig } from "./state.ts";
import { openStore } from "./store.ts";
import { systemObjects } from "./system.ts";

export interface UpOptions {
  cluster: string;
  nodes: number;
  manifests?: string;
  waitSeconds: number;
  progress: (msg: string) => void;
  /** Size of each node's service maps (ClusterConfig.lbMapMax). */
  lbMapMax?: number;
}

export function clusterIsRunning(cluster: string): boolean {
  return cgroupTreeProcs(cgroupDir(cluster)).length > 0;
}

export async function up(opts: UpOptions): Promise<ClusterConfig> {
  requirePrerequisites();
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 16) {
    throw new WeftError("WEFT_USAGE", `--nodes must be a whole number from 1 to 16, got ${opts.nodes}`);
  }
  if (clusterIsRunning(opts.cluster)) {
    throw new WeftError("WEFT_CLUSTER_STATE", `cluster "${opts.cluster}" is already up (weft down --cluster ${opts.cluster} first)`);
  }
  const cfg = clusterConfig(opts.cluster, opts.nodes, undefined, opts.lbMapMax === undefined ? {} : { lbMapMax: opts.lbMapMax });
  // Validate the manifests before building anything: bad input changes nothing.
  const objects = opts.manifests ? loadManifests([opts.manifests]) : [];
  const started = Date.now();
  const step = (msg: string) => opts.progress(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

  if (existsSync(cfg.stateDir) || existsSync(cgroupDir(opts.cluster))) {
    step(`removing leftovers of an earlier "${opts.cluster}" cluster`);
    await down(opts.cluster);
  }
  try {
    saveClusterConfig(cfg);
    await buildClusterNetwork(cfg, step);
    for (const n of cfg.nodes) {
      for (const part of ["kubelet", "agent", "proxy", "pods"]) ensureCgroup(cgroupDir(cfg.name, n.name, part));
      mkdirSync(bpfPinDir(cfg.name, n.name), { recursive: true });
    }
    step("cgroups and BPF pin folders ready");
    const store = openStore(cfg.name);
    const applied = applyObjects(store, [...systemObjects(cfg), ...objects]);
    step(`applied ${applied.length} objects from ${opts.manifests ?? "(none)"}`);
    for (const n of cfg.nodes) startKubelet(cfg, n.name);
    step(`started kubelet, agent and proxy supervisor on ${cfg.nodes.length} nodes`);
    await waitForPods(cfg, opts.waitSeconds, step);
    return cfg;
  } catch (err) {
    step("start failed; removing what was created");
    await down(opts.cluster);
    throw err;
  }
}

function startKubelet(cfg: ClusterConfig, node: string): void {
  const logFd = openSync(join(logDir(cfg.stateDir, "nodes", node), "kubelet.log"), "a");
  const procs = join(cgroupDir(cfg.name, node, "kubelet"), "cgroup.procs");
  // Join the node's cgroup, then its network namespace (nsenter keeps /sys and bpffs visible).
  const child = spawn(
    "sh",
    [
      "-c",
      'echo $$ > "$0" && exec "$@"',
      procs,
      "nsenter",
      `--net=/run/netns/weft-${cfg.name}-${node}`,
      process.execPath,
      WEFT_BIN,
      "kubelet",
      "--cluster",
      cfg.name,
      "--node",
      node,
    ],
    { detached: true, stdio: ["ignore", logFd, logFd], env: { ...process.env, WEFT_STATE_DIR: defaultStateRoot() } },
  );
  closeSync(logFd);
  child.unref();
}

/** Waits until every desired pod is Ready (or Succeeded), printing progress; throws on timeout. */
export async function waitForPods(cfg: ClusterConfig, seconds: number, step: (msg: string) => void): Promise<void> {
  const store = openStore(cfg.name);
  const deadline = Date.now() + seconds * 1000;
  let last = "";
  for (;;) {
    const nodes = cfg.nodes.map((n) => ({ name: n.name, labels: { "kubernetes.io/hostname": n.name } }));
    const wanted = desiredPods([...store.list("Pod"), ...store.list("Deployment")], nodes);
    const pods = readNodeStatuses(cfg.stateDir).flatMap((s) => s.pods);
    const done = wanted.filter((w) => pods.some((p) => p.name === w.name && p.namespace === w.namespace && (p.ready || p.phase === "Succeeded")));
    const line = `pods ready: ${done.length}/${wanted.length}`;
    if (line !== last) step(line);
    last = line;
    if (done.length === wanted.length) return;
    if (Date.now() > deadline) {
      const missing = wanted.filter((w) => !done.includes(w)).map((w) => `${w.namespace}/${w.name}`);
      throw new WeftError("WEFT_TIMEOUT", `pods not ready after ${seconds}s: ${missing.join(", ")} (see weft get pods, weft logs)`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Removes everything of a cluster: processes (by cgroup), namespaces, cgroups, pins, state. */
export async function down(cluster: string): Promise<{ netns: string[] }> {
  await killCgroup(cgroupDir(cluster));
  const netns = await removeClusterNetwork(cluster);
  // A task still being released keeps its cgroup busy for a moment: retry for up to 5 s.
  let cgroupsGone = removeCgroupTree(cgroupDir(cluster));
  for (let i = 0; !cgroupsGone && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    cgroupsGone = removeCgroupTree(cgroupDir(cluster));
  }
  removeIfEmpty(join(CGROUP_ROOT, "weft"));
  rmSync(bpfPinDir(cluster), { recursive: true, force: true });
  removeIfEmpty(join(BPF_ROOT, "weft"));
  rmSync(clusterDir(cluster), { recursive: true, force: true });
  if (!cgroupsGone) {
    throw new WeftError(
      "WEFT_CLUSTER_STATE",
      `cluster ${cluster} removed except its cgroups: ${cgroupDir(cluster)} stays busy (run weft down --cluster ${cluster} again)`,
    );
  }
  return { netns };
}

function removeIfEmpty(dir: string): void {
  try {
    if (readdirSync(dir).filter((e) => !e.startsWith("cgroup.") && !e.includes(".")).length === 0) rmdirSync(dir);
  } catch {}
}
