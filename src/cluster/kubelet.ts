// The node's kubelet on the local cluster: runs inside the node's network namespace, realises the
// pods the scheduler places on this node (sandbox, containers, probes, restarts, graceful
// termination), keeps the node's agent and proxy supervisor running, and publishes status.
// It reads the object store and never writes it.

import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { createLogger, type Logger } from "../core/log.ts";
import { transparentListenerArgv } from "../datapath/loader.ts";
import { PROXY_PORT } from "../proxy/supervisor.ts";
import { ensureCgroup, killCgroup, podCgroup, removeCgroupTree } from "./cgroup.ts";
import { type ClusterConfig, cgroupDir, type NodeConfig, podNetns, podVethName } from "./config.ts";
import { resolveCommand, WEFT_BIN } from "./images.ts";
import { createPodSandbox, deletePodSandbox } from "./net.ts";
import { execWithTimeout, runProbe } from "./probe.ts";
import { type DesiredPod, desiredPods, type ExistingPod, type NodeInfo, type ProbeSpec } from "./schedule.ts";
import { type ContainerStatus, loadClusterConfig, logDir, type NodeStatus, type PodStatusRecord, readNodeStatuses, runDir, writeNodeStatus } from "./state.ts";
import { openStore, type Store } from "./store.ts";

const TICK_MS = 300;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
/** A node component (agent, proxy supervisor) that exits comes back after 5 s, then 10 s, ... (a DaemonSet pod's back-off, shortened). */
const COMPONENT_BACKOFF_MS = 5000;

/** Runs `argv` in a cgroup, then (optionally) in a pod's network namespace with its /etc/netns files. */
export function spawnIn(cgroup: string, netns: string | undefined, argv: string[]): [string, string[]] {
  const inner = netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
  // Join the cgroup first: `ip netns exec` remounts /sys, hiding the cgroup tree from the child.
  return ["sh", ["-c", 'echo $$ > "$0" && exec "$@"', join(cgroup, "cgroup.procs"), ...inner]];
}

interface ContainerRuntime {
  status: ContainerStatus;
  child?: ChildProcess;
  cgroup: string;
  restartTimer?: NodeJS.Timeout;
  probeTimers: NodeJS.Timeout[];
  readinessOk: boolean;
  livenessFailures: number;
  readinessSuccesses: number;
  readinessFailures: number;
  liveGeneration: number;
}

interface PodRuntime {
  record: PodStatusRecord;
  cgroup: string;
  containers: Map<string, ContainerRuntime>;
  starting: boolean;
  killTimer?: NodeJS.Timeout;
  removed: boolean;
}

export class Kubelet {
  private readonly cfg: ClusterConfig;
  private readonly node: NodeConfig;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly pods = new Map<string, PodRuntime>();
  private readonly components = new Map<string, { child?: ChildProcess; restarts: number; healthy: boolean }>();
  private busy = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;

  constructor(cluster: string, nodeName: string) {
    this.cfg = loadClusterConfig(cluster);
    const node = this.cfg.nodes.find((n) => n.name === nodeName);
    if (!node) throw new Error(`node ${nodeName} is not part of cluster ${cluster}`);
    this.node = node;
    this.store = openStore(cluster);
    this.log = createLogger(process.stderr, { component: "kubelet", cluster, node: nodeName });
  }

  async start(): Promise<void> {
    this.log.info("kubelet started", { pid: process.pid });
    await this.removeLeftovers();
    this.startComponent("agent", ["agent", "--cluster", this.cfg.name, "--node", this.node.name]);
    this.startComponent("proxy-supervisor", ["proxy-supervisor", "--cluster", this.cfg.name, "--node", this.node.name]);
    const loop = async () => {
      if (this.stopped) return;
      try {
        await this.reconcile();
      } catch (err) {
        this.log.error("reconcile failed", { error: String(err) });
      }
      this.timer = setTimeout(loop, TICK_MS);
    };
    void loop();
  }

  /** A kubelet that restarts does not adopt the pods of its predecessor: it removes them, then recreates. */
  private async removeLeftovers(): Promise<void> {
    const previous = readNodeStatuses(this.cfg.stateDir).find((s) => s.node === this.node.name);
    for (const p of previous?.pods ?? []) {
      await killCgroup(podCgroup(this.cfg.name, this.node.name, p.uid));
      removeCgroupTree(podCgroup(this.cfg.name, this.node.name, p.uid));
      if (p.netns && p.veth && p.podIP) await deletePodSandbox(this.node, { netns: p.netns, veth: p.veth, ip: p.podIP });
    }
  }

  // --- node components (agent, proxy supervisor) -------------------------------------------------

  private startComponent(name: string, args: string[]): void {
    const state = this.components.get(name) ?? { restarts: 0, healthy: false };
    this.components.set(name, state);
    const cg = ensureCgroup(cgroupDir(this.cfg.name, this.node.name, name === "proxy-supervisor" ? "proxy" : name));
    const logFd = openSync(join(logDir(this.cfg.stateDir, "nodes", this.node.name), `${name}.log`), "a");
    let program = [process.execPath, WEFT_BIN, ...args];
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (name === "proxy-supervisor") {
      // The proxy's listener is made with IP_TRANSPARENT by the loader helper and inherited at fd 3.
      program = transparentListenerArgv("0.0.0.0", PROXY_PORT, 3, program);
      env.WEFT_PROXY_LISTEN_FD = "3";
      // The nodes share this machine's cores.
      env.WEFT_PROXY_WORKERS ??= String(Math.max(1, Math.floor(availableParallelism() / this.cfg.nodes.length)));
      // SIGUSR2 makes a worker (or the supervisor) write a Node diagnostic report (JS stack, handles)
      // into the node's logs: for a proxy that stops answering.
      env.NODE_OPTIONS =
        `${env.NODE_OPTIONS ?? ""} --report-on-signal --report-signal=SIGUSR2 --report-directory=${logDir(this.cfg.stateDir, "nodes", this.node.name)}`.trim();
    }
    const [cmd, argv] = spawnIn(cg, undefined, program);
    const child = spawn(cmd, argv, { stdio: ["ignore", logFd, logFd], env });
    closeSync(logFd);
    state.child = child;
    state.healthy = true;
    child.on("exit", (code, signal) => {
      state.healthy = false;
      state.child = undefined;
      if (this.stopped) return;
      state.restarts++;
      this.log.warn("node component exited; restarting", { name, code, signal, restarts: state.restarts });
      setTimeout(() => this.startComponent(name, args), Math.min(COMPONENT_BACKOFF_MS * 2 ** (state.restarts - 1), BACKOFF_MAX_MS));
    });
  }

  // --- reconcile ---------------------------------------------------------------------------------

  private nodes(): NodeInfo[] {
    return this.cfg.nodes.map((n) => ({ name: n.name, labels: { "kubernetes.io/hostname": n.name } }));
  }

  private async reconcile(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const objects = [...this.store.list("Pod"), ...this.store.list("Deployment")];
      const existing: ExistingPod[] = readNodeStatuses(this.cfg.stateDir)
        .filter((s) => s.node !== this.node.name)
        .flatMap((s) => s.pods)
        .concat([...this.pods.values()].map((p) => p.record))
        .map((p) => ({ namespace: p.namespace, name: p.name, node: p.node, ready: p.ready, terminating: p.terminating, desired: p.desired }));
      const mine = desiredPods(objects, this.nodes(), existing).filter((d) => d.node === this.node.name);
      const wanted = new Map(mine.map((d) => [`${d.namespace}/${d.name}`, d]));

      for (const [key, pod] of this.pods) {
        const d = wanted.get(key);
        if (!pod.record.terminating && (!d || d.specHash !== pod.record.desired.specHash)) this.terminate(pod, "deleted");
        else if (d && !pod.record.terminating) pod.record.desired.labels = d.labels; // labels change in place, as in Kubernetes
      }
      for (const [key, d] of wanted) {
        if (!this.pods.has(key)) void this.createPod(d);
      }
      this.publish();
    } finally {
      this.busy = false;
    }
  }

  private publish(): void {
    const status: NodeStatus = {
      node: this.node.name,
      updated: new Date().toISOString(),
      kubeletPid: process.pid,
      pods: [...this.pods.values()].map((p) => p.record),
      components: Object.fromEntries([...this.components].map(([name, c]) => [name, { pid: c.child?.pid, healthy: c.healthy, restarts: c.restarts }])),
    };
    writeNodeStatus(this.cfg.stateDir, status);
  }

  // --- pod lifecycle -----------------------------------------------------------------------------

  private allocateIP(): string {
    const used = new Set([...this.pods.values()].map((p) => p.record.podIP));
    const base = this.node.podCIDR.split(".").slice(0, 3).join(".");
    for (let i = 2; i < 255; i++) {
      const ip = `${base}.${i}`;
      if (!used.has(ip)) return ip;
    }
    throw new Error(`pod CIDR ${this.node.podCIDR} of ${this.node.name} is full`);
  }

  private async createPod(d: DesiredPod): Promise<void> {
    const key = `${d.namespace}/${d.name}`;
    const uid = randomUUID();
    const record: PodStatusRecord = {
      namespace: d.namespace,
      name: d.name,
      uid,
      node: this.node.name,
      desired: d,
      hostIP: this.node.underlayIP,
      phase: "Pending",
      ready: false,
      terminating: false,
      creationTimestamp: new Date().toISOString(),
      containers: d.spec.containers.map((c) => ({
        name: c.name,
        state: "waiting",
        reason: "ContainerCreating",
        restartCount: 0,
        ready: false,
        started: false,
      })),
    };
    const pod: PodRuntime = { record, cgroup: podCgroup(this.cfg.name, this.node.name, uid), containers: new Map(), starting: true, removed: false };
    this.pods.set(key, pod);
    try {
      const sandbox = { netns: podNetns(this.cfg.name, this.node.name, d.namespace, d.name), veth: podVethName(d.namespace, d.name), ip: this.allocateIP() };
      record.podIP = sandbox.ip;
      record.netns = sandbox.netns;
      record.veth = sandbox.veth;
      await createPodSandbox(this.cfg, this.node, sandbox, { namespace: d.namespace, hostname: d.name });
      ensureCgroup(pod.cgroup);
      // As a CNI ADD returns only once the endpoint is programmed: no container runs before the
      // node's agent polices and load-balances the pod's traffic.
      if (!(await this.endpointProgrammed(pod, key))) return;
      record.startTime = new Date().toISOString();
      record.phase = "Running";
      for (const c of d.spec.containers) {
        const status = record.containers.find((s) => s.name === c.name) as ContainerStatus;
        const rt: ContainerRuntime = {
          status,
          cgroup: ensureCgroup(join(pod.cgroup, c.name)),
          probeTimers: [],
          readinessOk: !c.readinessProbe,
          livenessFailures: 0,
          readinessSuccesses: 0,
          readinessFailures: 0,
          liveGeneration: 0,
        };
        pod.containers.set(c.name, rt);
        if (pod.record.terminating) break;
        this.startContainer(pod, c.name);
      }
      this.log.info("pod started", { pod: key, ip: sandbox.ip, uid });
    } catch (err) {
      record.phase = "Failed";
      record.message = String(err instanceof Error ? err.message : err);
      this.log.error("pod sandbox failed", { pod: key, error: record.message });
    } finally {
      pod.starting = false;
      this.updatePodConditions(pod);
      if (pod.record.terminating) this.maybeFinishTermination(pod);
    }
  }

  /**
   * Waits until the node's agent lists the pod among its endpoints (programs attached, entry
   * written); false when the pod is deleted meanwhile. Waits as long as it takes: a node whose agent
   * is down starts no pods (Cilium's CNI plugin refuses likewise), and says so in the pod's status.
   */
  private async endpointProgrammed(pod: PodRuntime, key: string): Promise<boolean> {
    const file = join(runDir(this.cfg.stateDir, this.node.name), "endpoints.json");
    const { namespace, name, podIP } = pod.record;
    const started = Date.now();
    for (let warned = false; ; ) {
      if (pod.record.terminating || pod.removed) return false;
      try {
        const eps = JSON.parse(readFileSync(file, "utf8")) as { namespace: string; pod: string; ip: string }[];
        if (eps.some((e) => e.namespace === namespace && e.pod === name && e.ip === podIP)) {
          delete pod.record.message;
          return true;
        }
      } catch {
        // no agent output yet
      }
      if (!warned && Date.now() - started > 10_000) {
        warned = true;
        pod.record.message = "waiting for the node's agent to program the endpoint";
        this.log.warn("pod waits for its endpoint", { pod: key, ip: podIP });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private containerSpec(pod: PodRuntime, name: string) {
    const c = pod.record.desired.spec.containers.find((x) => x.name === name);
    if (!c) throw new Error(`container ${name} not in pod spec`);
    return c;
  }

  private startContainer(pod: PodRuntime, name: string): void {
    const rt = pod.containers.get(name);
    if (!rt || pod.record.terminating) return;
    const c = this.containerSpec(pod, name);
    let argv: string[];
    try {
      argv = resolveCommand(c).argv;
    } catch (err) {
      rt.status.state = "waiting";
      rt.status.reason = "ImageNotBuiltIn";
      pod.record.message = String(err instanceof Error ? err.message : err);
      this.updatePodConditions(pod);
      return;
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      HOSTNAME: pod.record.name,
      POD_NAME: pod.record.name,
      POD_NAMESPACE: pod.record.namespace,
      POD_IP: pod.record.podIP,
      NODE_NAME: this.node.name,
    };
    for (const e of c.env ?? []) env[e.name] = e.value ?? "";
    const logFd = openSync(join(logDir(this.cfg.stateDir, "pods", `${pod.record.namespace}_${pod.record.name}`), `${name}.log`), "a");
    const [cmd, args] = spawnIn(rt.cgroup, pod.record.netns, argv);
    const child = spawn(cmd, args, { stdio: ["ignore", logFd, logFd], env, cwd: c.workingDir ?? "/" });
    closeSync(logFd);
    rt.child = child;
    rt.liveGeneration++;
    rt.readinessOk = !c.readinessProbe;
    rt.readinessSuccesses = 0;
    rt.readinessFailures = 0;
    rt.livenessFailures = 0;
    Object.assign(rt.status, { state: "running", reason: undefined, exitCode: undefined, pid: child.pid, started: true, startedAt: new Date().toISOString() });
    child.on("error", (err) => this.log.error("container spawn failed", { pod: pod.record.name, container: name, error: String(err) }));
    child.on("exit", (code, signal) => this.onContainerExit(pod, name, child, code, signal));
    this.startProbes(pod, name);
    this.updatePodConditions(pod);
  }

  private onContainerExit(pod: PodRuntime, name: string, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    const rt = pod.containers.get(name);
    if (!rt || rt.child !== child) return;
    rt.child = undefined;
    this.stopProbes(rt);
    const exitCode = code ?? (signal ? 128 + (signalNumber(signal) ?? 9) : 1);
    Object.assign(rt.status, {
      state: "terminated",
      exitCode,
      reason: exitCode === 0 ? "Completed" : "Error",
      pid: undefined,
      finishedAt: new Date().toISOString(),
      ready: false,
    });
    this.log.info("container exited", { pod: pod.record.name, container: name, exitCode });
    if (pod.record.terminating) {
      this.maybeFinishTermination(pod);
      return;
    }
    const policy = pod.record.desired.spec.restartPolicy ?? "Always";
    if (policy === "Always" || (policy === "OnFailure" && exitCode !== 0)) {
      const delay = Math.min(BACKOFF_BASE_MS * 2 ** rt.status.restartCount, BACKOFF_MAX_MS);
      rt.status.restartCount++;
      rt.status.state = "waiting";
      rt.status.reason = "CrashLoopBackOff";
      rt.restartTimer = setTimeout(() => {
        rt.restartTimer = undefined;
        this.startContainer(pod, name);
      }, delay);
    }
    this.updatePodConditions(pod);
  }

  private startProbes(pod: PodRuntime, name: string): void {
    const rt = pod.containers.get(name);
    if (!rt) return;
    const c = this.containerSpec(pod, name);
    const generation = rt.liveGeneration;
    const schedule = (probe: ProbeSpec, onResult: (ok: boolean) => void) => {
      const tick = async () => {
        if (pod.record.terminating || rt.liveGeneration !== generation || !rt.child) return;
        const ok = await runProbe(probe, {
          podIP: pod.record.podIP ?? "",
          container: c,
          exec: (argv, timeoutMs) => execWithTimeout(argv, timeoutMs, (a) => spawnIn(rt.cgroup, pod.record.netns, a)),
        });
        if (pod.record.terminating || rt.liveGeneration !== generation || !rt.child) return;
        onResult(ok);
        rt.probeTimers.push(setTimeout(tick, (probe.periodSeconds ?? 10) * 1000));
      };
      rt.probeTimers.push(setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000));
    };
    if (c.readinessProbe) {
      const p = c.readinessProbe;
      schedule(p, (ok) => {
        if (ok) {
          rt.readinessFailures = 0;
          rt.readinessSuccesses++;
          if (rt.readinessSuccesses >= (p.successThreshold ?? 1)) rt.readinessOk = true;
        } else {
          rt.readinessSuccesses = 0;
          rt.readinessFailures++;
          if (rt.readinessFailures >= (p.failureThreshold ?? 3) || !rt.status.ready) rt.readinessOk = false;
        }
        this.updatePodConditions(pod);
      });
    }
    if (c.livenessProbe) {
      const p = c.livenessProbe;
      schedule(p, (ok) => {
        rt.livenessFailures = ok ? 0 : rt.livenessFailures + 1;
        if (rt.livenessFailures >= (p.failureThreshold ?? 3)) {
          this.log.warn("liveness probe failed; killing container", { pod: pod.record.name, container: name });
          rt.livenessFailures = 0;
          void killCgroup(rt.cgroup);
        }
      });
    }
  }

  private stopProbes(rt: ContainerRuntime): void {
    for (const t of rt.probeTimers) clearTimeout(t);
    rt.probeTimers = [];
  }

  private updatePodConditions(pod: PodRuntime): void {
    const statuses = [...pod.containers.values()];
    for (const rt of statuses) rt.status.ready = rt.status.state === "running" && rt.readinessOk && !pod.record.terminating;
    pod.record.ready = !pod.record.terminating && statuses.length === pod.record.desired.spec.containers.length && statuses.every((rt) => rt.status.ready);
    if (pod.record.phase !== "Failed" || statuses.length > 0) {
      const policy = pod.record.desired.spec.restartPolicy ?? "Always";
      const allDone = statuses.length > 0 && statuses.every((rt) => rt.status.state === "terminated" && !rt.restartTimer);
      if (allDone && policy !== "Always") {
        pod.record.phase = statuses.every((rt) => rt.status.exitCode === 0) ? "Succeeded" : "Failed";
      } else if (statuses.length > 0) {
        pod.record.phase = "Running";
      }
    }
  }

  /** Graceful termination: SIGTERM now, SIGKILL (cgroup.kill) after the grace period. */
  private terminate(pod: PodRuntime, reason: string): void {
    if (pod.record.terminating) return;
    pod.record.terminating = true;
    pod.record.deletionTimestamp = new Date().toISOString();
    pod.record.ready = false;
    this.log.info("pod terminating", { pod: pod.record.name, reason });
    for (const rt of pod.containers.values()) {
      this.stopProbes(rt);
      if (rt.restartTimer) {
        clearTimeout(rt.restartTimer);
        rt.restartTimer = undefined;
      }
      rt.child?.kill("SIGTERM");
    }
    this.updatePodConditions(pod);
    const graceMs = (pod.record.desired.spec.terminationGracePeriodSeconds ?? 30) * 1000;
    pod.killTimer = setTimeout(() => void killCgroup(pod.cgroup), graceMs);
    this.maybeFinishTermination(pod);
  }

  private maybeFinishTermination(pod: PodRuntime): void {
    if (pod.starting || pod.removed) return;
    if ([...pod.containers.values()].some((rt) => rt.child)) return;
    pod.removed = true;
    if (pod.killTimer) clearTimeout(pod.killTimer);
    void (async () => {
      await killCgroup(pod.cgroup); // anything the containers left behind
      removeCgroupTree(pod.cgroup);
      if (pod.record.netns && pod.record.veth && pod.record.podIP) {
        await deletePodSandbox(this.node, { netns: pod.record.netns, veth: pod.record.veth, ip: pod.record.podIP });
      }
      this.pods.delete(`${pod.record.namespace}/${pod.record.name}`);
      this.log.info("pod removed", { pod: pod.record.name });
      this.publish();
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const c of this.components.values()) c.child?.kill("SIGTERM");
    for (const pod of this.pods.values()) {
      for (const rt of pod.containers.values()) rt.child?.kill("SIGKILL");
      await killCgroup(pod.cgroup);
    }
  }
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };
  return table[signal];
}
