// CLI commands of the embedded local cluster: up, down, apply, delete, get, exec, logs, status, and
// the internal entry points of the per-node processes (kubelet, agent, proxy supervisor, proxy).

import { spawn } from "node:child_process";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { type AgentHealth, runAgent } from "../agent/main.ts";
import { applyObjects } from "../cluster/apply.ts";
import { podCgroup } from "../cluster/cgroup.ts";
import { parseLbMapMax } from "../cluster/config.ts";
import { Kubelet, spawnIn } from "../cluster/kubelet.ts";
import { down, up } from "../cluster/lifecycle.ts";
import { loadManifests } from "../cluster/manifest.ts";
import { findPod, listPodRecords } from "../cluster/pods.ts";
import { loadClusterConfig, type PodStatusRecord, readNodeStatuses } from "../cluster/state.ts";
import { objectKey, openStore } from "../cluster/store.ts";
import { WeftError } from "../core/errors.ts";
import { runProxy } from "../proxy/main.ts";
import { runSupervisor } from "../proxy/supervisor.ts";
import { startDns } from "../workloads/dns.ts";
import { startEcho } from "../workloads/echo.ts";
import { type Command, clusterFlag, parseFlags, printTable } from "./command.ts";
import { agentFile, agentGet } from "./operator.ts";

const DEFAULT_CLUSTER = process.env.WEFT_CLUSTER ?? "weft";
const DEFAULT_MANIFESTS = new URL("../../examples", import.meta.url).pathname;
const clusterOpt = clusterFlag;

const upCommand: Command = {
  name: "up",
  summary: "start the embedded local cluster (network namespaces, no Docker, no Kubernetes)",
  usage: `Usage: weft up [--nodes N] [--manifests DIR] [--cluster NAME] [--wait SECONDS] [--lb-map-max N]

Builds a local cluster on this machine: node namespaces joined by VXLAN over an underlay namespace,
an "outside" namespace standing for the world, pods as namespaces in child cgroups; starts one
kubelet, agent and proxy supervisor per node and applies the manifests (default: examples/).
  --nodes N          number of nodes (default 2)
  --manifests DIR    manifests to apply (file or folder; "" for none)
  --cluster NAME     cluster name (default "weft", or $WEFT_CLUSTER)
  --wait SECONDS     how long to wait for pods to become Ready (default 120)
  --lb-map-max N     entries of each node's service maps lb4_services and lb4_backends (default 65536;
                     = 18 MiB of preallocated kernel memory per node; Cilium's --bpf-lb-map-max;
                     a node started with another size rebuilds them, entries kept)`,
  async run(args) {
    const { values } = parseFlags(args, {
      ...clusterOpt,
      nodes: { type: "string", default: "2" },
      manifests: { type: "string", default: DEFAULT_MANIFESTS },
      wait: { type: "string", default: "120" },
      "lb-map-max": { type: "string" },
    });
    let lbMapMax: number | undefined;
    if (values["lb-map-max"] !== undefined) {
      try {
        lbMapMax = parseLbMapMax(values["lb-map-max"]);
      } catch (err) {
        throw new WeftError("WEFT_USAGE", `--lb-map-max: ${(err as Error).message}`);
      }
    }
    const cfg = await up({
      cluster: values.cluster,
      nodes: Number(values.nodes),
      manifests: values.manifests || undefined,
      waitSeconds: Number(values.wait),
      progress: (m) => process.stdout.write(`[weft up] ${m}\n`),
      ...(lbMapMax === undefined ? {} : { lbMapMax }),
    });
    process.stdout.write(`[weft up] cluster "${cfg.name}" is up with ${cfg.nodes.length} nodes. Try: npx weft get pods -o wide\n`);
    return 0;
  },
};

const downCommand: Command = {
  name: "down",
  summary: "remove the local cluster and everything it created",
  usage: "Usage: weft down [--cluster NAME]\n\nEnds the cluster's processes and removes its namespaces, cgroups, pinned BPF objects and state.",
  async run(args) {
    const { values } = parseFlags(args, clusterOpt);
    const r = await down(values.cluster);
    process.stdout.write(`[weft down] cluster "${values.cluster}" removed (${r.netns.length} network namespaces)\n`);
    return 0;
  },
};

/** The cluster and the validated objects of `-f FILE|DIR...` (apply and delete). */
function manifestArgs(args: string[], verb: string) {
  const { values } = parseFlags(args, { ...clusterOpt, filename: { type: "string", short: "f", multiple: true } });
  if (!values.filename?.length) throw new WeftError("WEFT_USAGE", `weft ${verb} needs -f FILE|DIR`);
  loadClusterConfig(values.cluster);
  return { store: openStore(values.cluster), objects: loadManifests(values.filename) };
}

const applyCommand: Command = {
  name: "apply",
  summary: "create or update objects from manifest files",
  usage: "Usage: weft apply -f FILE|DIR [-f ...] [--cluster NAME]\n\nValidates every document first; if any is invalid nothing is applied.",
  async run(args) {
    const { store, objects } = manifestArgs(args, "apply");
    for (const r of applyObjects(store, objects)) process.stdout.write(`${r.key} ${r.action}\n`);
    return 0;
  },
};

const deleteCommand: Command = {
  name: "delete",
  summary: "delete the objects named in manifest files",
  usage: "Usage: weft delete -f FILE|DIR [--cluster NAME]",
  async run(args) {
    const { store, objects } = manifestArgs(args, "delete");
    const removed = new Set(store.delete(objects));
    for (const o of objects) process.stdout.write(`${objectKey(o)} ${removed.has(objectKey(o)) ? "deleted" : "not found"}\n`);
    return 0;
  },
};

function age(since: string | undefined): string {
  if (!since) return "<unknown>";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export function podStatusText(p: PodStatusRecord): string {
  if (p.terminating) return "Terminating";
  const waiting = p.containers.find((c) => c.state === "waiting" && c.reason && c.reason !== "ContainerCreating");
  if (waiting?.reason) return waiting.reason;
  if (p.containers.some((c) => c.reason === "ContainerCreating")) return "ContainerCreating";
  if (p.phase === "Succeeded") return "Completed";
  if (p.phase === "Failed") return p.containers.find((c) => c.state === "terminated")?.reason ?? "Error";
  return p.phase;
}

/** A pod as kubectl's JSON shows it. */
export function podJson(p: PodStatusRecord, clusterName: string): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      labels: p.desired.labels,
      creationTimestamp: p.creationTimestamp,
      ...(p.deletionTimestamp ? { deletionTimestamp: p.deletionTimestamp } : {}),
      ...(p.desired.owner ? { ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: p.desired.owner.name }] } : {}),
      annotations: { "weft.io/cluster": clusterName },
    },
    spec: { ...p.desired.spec, nodeName: p.node },
    status: {
      phase: p.phase,
      podIP: p.podIP,
      podIPs: p.podIP ? [{ ip: p.podIP }] : [],
      hostIP: p.hostIP,
      startTime: p.startTime,
      ...(p.message ? { message: p.message } : {}),
      conditions: [
        { type: "PodScheduled", status: "True", lastTransitionTime: p.creationTimestamp },
        { type: "Initialized", status: "True", lastTransitionTime: p.creationTimestamp },
        { type: "ContainersReady", status: p.containers.every((c) => c.ready) ? "True" : "False", lastProbeTime: null, lastTransitionTime: now },
        { type: "Ready", status: p.ready ? "True" : "False", lastProbeTime: null, lastTransitionTime: now },
      ],
      containerStatuses: p.containers.map((c) => ({
        name: c.name,
        ready: c.ready,
        started: c.state === "running",
        restartCount: c.restartCount,
        image: p.desired.spec.containers.find((x) => x.name === c.name)?.image ?? "",
        state:
          c.state === "running"
            ? { running: { startedAt: c.startedAt } }
            : c.state === "terminated"
              ? { terminated: { exitCode: c.exitCode, reason: c.reason, finishedAt: c.finishedAt } }
              : { waiting: { reason: c.reason } },
      })),
    },
  };
}

const getCommand: Command = {
  name: "get",
  summary: "list pods, services or nodes (-o wide|json)",
  usage: "Usage: weft get pods|services|nodes [-n NS | -A] [-o wide|json] [--cluster NAME]",
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      { ...clusterOpt, output: { type: "string", short: "o" }, namespace: { type: "string", short: "n" }, "all-namespaces": { type: "boolean", short: "A" } },
      true,
    );
    const what = positionals[0] ?? "";
    const cfg = loadClusterConfig(values.cluster);
    const nsFilter = values["all-namespaces"] ? undefined : (values.namespace ?? (what.startsWith("node") ? undefined : "default"));
    const out = values.output;
    if (out && out !== "wide" && out !== "json") throw new WeftError("WEFT_USAGE", `-o must be wide or json, got "${out}"`);
    if (["pods", "pod", "po"].includes(what)) {
      const pods = listPodRecords(cfg.name).filter((p) => !nsFilter || p.namespace === nsFilter);
      pods.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
      if (out === "json") return json({ apiVersion: "v1", kind: "List", items: pods.map((p) => podJson(p, cfg.name)) });
      const header = ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"];
      if (out === "wide") header.push("IP", "NODE");
      printTable(
        nsFilter ? header.slice(1) : header,
        pods.map((p) => {
          const row = [
            p.namespace,
            p.name,
            `${p.containers.filter((c) => c.ready).length}/${p.containers.length}`,
            podStatusText(p),
            String(p.containers.reduce((n, c) => n + c.restartCount, 0)),
            age(p.creationTimestamp),
          ];
          if (out === "wide") row.push(p.podIP ?? "<none>", p.node);
          return nsFilter ? row.slice(1) : row;
        }),
      );
      return 0;
    }
    if (["services", "service", "svc"].includes(what)) {
      const svcs = openStore(cfg.name)
        .list("Service")
        .filter((s) => !nsFilter || s.metadata.namespace === nsFilter);
      if (out === "json") return json({ apiVersion: "v1", kind: "List", items: svcs });
      const header = ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"].concat(out === "wide" ? ["SELECTOR"] : []);
      printTable(
        nsFilter ? header.slice(1) : header,
        svcs.map((s) => {
          const spec = s.spec as {
            type?: string;
            clusterIP?: string;
            selector?: Record<string, string>;
            ports?: { port: number; nodePort?: number; protocol?: string }[];
          };
          const ports = (spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol ?? "TCP"}`).join(",");
          const row = [
            s.metadata.namespace ?? "default",
            s.metadata.name,
            spec.type ?? "ClusterIP",
            spec.clusterIP ?? "<none>",
            ports || "<none>",
            age(s.metadata.creationTimestamp),
          ];
          if (out === "wide")
            row.push(
              Object.entries(spec.selector ?? {})
                .map(([k, v]) => `${k}=${v}`)
                .join(",") || "<none>",
            );
          return nsFilter ? row.slice(1) : row;
        }),
      );
      // What the datapath refused (every agent reports the same for a cluster-wide service).
      const problems = new Set(cfg.nodes.flatMap((n) => agentFile<AgentHealth>(cfg, n.name, "agent.health.json")?.serviceProblems ?? []));
      for (const p of problems) process.stdout.write(`Warning: ${p}\n`);
      return 0;
    }
    if (["nodes", "node", "no"].includes(what)) {
      const statuses = readNodeStatuses(cfg.stateDir);
      const items = cfg.nodes.map((n) => {
        const st = statuses.find((s) => s.node === n.name);
        const ready = !!st && Date.now() - Date.parse(st.updated) < 5000;
        return { n, ready, st };
      });
      if (out === "json") {
        return json({
          apiVersion: "v1",
          kind: "List",
          items: items.map(({ n, ready }) => ({
            apiVersion: "v1",
            kind: "Node",
            metadata: { name: n.name, labels: { "kubernetes.io/hostname": n.name } },
            spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
            status: { addresses: [{ type: "InternalIP", address: n.underlayIP }], conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
          })),
        });
      }
      printTable(
        ["NAME", "STATUS", "INTERNAL-IP", "POD-CIDR", "PODS"],
        items.map(({ n, ready, st }) => [n.name, ready ? "Ready" : "NotReady", n.underlayIP, n.podCIDR, String(st?.pods.length ?? 0)]),
      );
      return 0;
    }
    throw new WeftError("WEFT_USAGE", `weft get: unknown resource "${what}" (pods, services, nodes)`);
  },
};

function json(value: unknown): number {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  return 0;
}

const execCommand: Command = {
  name: "exec",
  summary: "run a command in a pod (its network namespace, cgroup and resolv.conf)",
  usage: "Usage: weft exec POD [-n NS] [-c CONTAINER] [--cluster NAME] -- CMD [ARGS...]",
  async run(args) {
    const sep = args.indexOf("--");
    if (sep < 0 || sep === args.length - 1) throw new WeftError("WEFT_USAGE", "weft exec POD -- CMD...: the command goes after --");
    const { values, positionals } = parseFlags(
      args.slice(0, sep),
      { ...clusterOpt, namespace: { type: "string", short: "n", default: "default" }, container: { type: "string", short: "c" } },
      true,
    );
    const name = positionals[0];
    if (!name) throw new WeftError("WEFT_USAGE", "weft exec needs a pod name");
    const cfg = loadClusterConfig(values.cluster);
    const pod = findPod(cfg.name, values.namespace, name);
    if (!pod.netns || pod.terminating || pod.phase !== "Running") {
      throw new WeftError("WEFT_CLUSTER_STATE", `pod is not running (status ${podStatusText(pod)})`, `${pod.namespace}/${pod.name}`);
    }
    const container = values.container ?? pod.desired.spec.containers[0]?.name ?? "";
    const [cmd, argv] = spawnIn(join(podCgroup(cfg.name, pod.node, pod.uid), container), pod.netns, args.slice(sep + 1));
    const child = spawn(cmd, argv, { stdio: "inherit", env: { ...process.env, HOSTNAME: pod.name, POD_NAME: pod.name, POD_NAMESPACE: pod.namespace } });
    return await new Promise<number>((resolve) => {
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
      child.on("error", () => resolve(127));
    });
  },
};

const logsCommand: Command = {
  name: "logs",
  summary: "print a pod container's output",
  usage: "Usage: weft logs POD [-n NS] [-c CONTAINER] [-f] [--cluster NAME]",
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      {
        ...clusterOpt,
        namespace: { type: "string", short: "n", default: "default" },
        container: { type: "string", short: "c" },
        follow: { type: "boolean", short: "f" },
      },
      true,
    );
    const name = positionals[0];
    if (!name) throw new WeftError("WEFT_USAGE", "weft logs needs a pod name");
    const cfg = loadClusterConfig(values.cluster);
    const pod = findPod(cfg.name, values.namespace, name);
    const dir = join(cfg.stateDir, "logs", "pods", `${pod.namespace}_${pod.name}`);
    const container = values.container ?? pod.desired.spec.containers[0]?.name ?? "";
    const file = join(dir, `${container}.log`);
    if (!existsSync(file)) throw new WeftError("WEFT_NOT_FOUND", "no logs yet", file);
    if (!values.follow) {
      process.stdout.write(readFileSync(file));
      return 0;
    }
    let offset = 0;
    for (;;) {
      const size = statSync(file).size;
      if (size > offset) {
        await new Promise<void>((r) =>
          createReadStream(file, { start: offset, end: size - 1 })
            .on("end", r)
            .pipe(process.stdout, { end: false }),
        );
        offset = size;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  },
};

const statusCommand: Command = {
  name: "status",
  summary: "health of the local cluster: nodes, kubelets, agents, proxies, pods",
  usage: "Usage: weft status [--cluster NAME] [-o json]",
  async run(args) {
    const { values } = parseFlags(args, { ...clusterOpt, output: { type: "string", short: "o" } });
    const cfg = loadClusterConfig(values.cluster);
    const statuses = readNodeStatuses(cfg.stateDir);
    const rows = [];
    for (const n of cfg.nodes) {
      const st = statuses.find((s) => s.node === n.name);
      const kubelet = !!st && Date.now() - Date.parse(st.updated) < 5000;
      const agent = await agentGet<AgentHealth>(cfg, n.name, "/healthz");
      const proxy = st?.components["proxy-supervisor"];
      const pods = st?.pods ?? [];
      rows.push({
        node: n.name,
        kubelet: kubelet ? "ok" : "down",
        agent: agent?.healthy ? "ok" : "down",
        proxySupervisor: proxy?.healthy ? "ok" : "down",
        pods: `${pods.filter((p) => p.ready).length}/${pods.length} ready`,
      });
    }
    if (values.output === "json") return json({ cluster: cfg.name, stateDir: cfg.stateDir, nodes: rows });
    process.stdout.write(`cluster ${cfg.name} (state ${cfg.stateDir})\n`);
    printTable(
      ["NODE", "KUBELET", "AGENT", "PROXY-SUPERVISOR", "PODS"],
      rows.map((r) => [r.node, r.kubelet, r.agent, r.proxySupervisor, r.pods]),
    );
    return rows.every((r) => r.kubelet === "ok" && r.agent === "ok" && r.proxySupervisor === "ok") ? 0 : 1;
  },
};

/** Entry points of the per-node processes; `weft up` starts them, users do not. */
function nodeProcess(name: string, summary: string, body: (cluster: string, node: string) => Promise<void>): Command {
  return {
    name,
    summary: `(internal) ${summary}`,
    usage: `Usage: weft ${name} --cluster NAME --node NODE`,
    async run(args) {
      const { values } = parseFlags(args, { ...clusterOpt, node: { type: "string" } });
      if (!values.node) throw new WeftError("WEFT_USAGE", `weft ${name} needs --node`);
      await body(values.cluster, values.node);
      return 0;
    },
  };
}

const workloadCommand: Command = {
  name: "workload",
  summary: "(internal) run a built-in workload (echo, dns)",
  usage: "Usage: weft workload echo|dns [--port N]",
  async run(args) {
    const { values, positionals } = parseFlags(args, { port: { type: "string" } }, true);
    if (positionals[0] === "echo") startEcho(Number(values.port ?? 8080));
    else if (positionals[0] === "dns") await startDns(process.env.WEFT_CLUSTER ?? DEFAULT_CLUSTER, Number(values.port ?? 53));
    else throw new WeftError("WEFT_USAGE", `unknown workload "${positionals[0] ?? ""}" (echo, dns)`);
    await new Promise(() => {});
    return 0;
  },
};

export const clusterCommands: Command[] = [
  upCommand,
  downCommand,
  applyCommand,
  deleteCommand,
  getCommand,
  execCommand,
  logsCommand,
  statusCommand,
  nodeProcess("kubelet", "run a node's kubelet", async (c, n) => {
    const k = new Kubelet(c, n);
    await k.start();
    await new Promise<void>((resolve) => process.on("SIGTERM", resolve));
    await k.stop();
  }),
  nodeProcess("agent", "run a node's agent", runAgent),
  nodeProcess("proxy-supervisor", "run a node's proxy supervisor", runSupervisor),
  nodeProcess("proxy", "run a node's proxy", runProxy),
  workloadCommand,
];
