// Operator commands over a running local cluster's agents and pinned maps: `weft observe`,
// `weft endpoint list`, `weft service list`, `weft bpf lb|ipcache|policy ...`. Maps are read
// straight from bpffs (like `cilium bpf ...`), so they work while an agent is down.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AgentHealth, agentSocket, type EndpointStatus } from "../agent/main.ts";
import type { ClusterConfig } from "../cluster/config.ts";
import { findPod } from "../cluster/pods.ts";
import { loadClusterConfig } from "../cluster/state.ts";
import { WeftError } from "../core/errors.ts";
import { getJson } from "../core/unix-http.ts";
import { dumpMap, pinRoot, pins } from "../datapath/loader.ts";
import { ENDPOINTS_MAP, endpointKey, endpointValue } from "../datapath/maps/endpoints.ts";
import { IPCACHE_MAP, ipcacheKey, ipcacheValue } from "../datapath/maps/ipcache.ts";
import { backendIdsOf, LB_MAPS, lb4Key, lb4Service, SLOTS_PER_ENTRY, type SlotBackend, slotsOf } from "../datapath/maps/lb.ts";
import { policyKey, policyValue, subjectMapPin } from "../datapath/maps/policy.ts";
import type { Flow } from "../observe/flow.ts";
import { type Command, clusterFlag, parseFlags, printTable } from "./command.ts";

const clusterOpt = clusterFlag;

/** GET a JSON document from a node's agent; undefined when the agent does not answer. */
export function agentGet<T>(cfg: ClusterConfig, node: string, path: string, timeoutMs = 3000): Promise<T | undefined> {
  return getJson<T>(agentSocket(cfg.stateDir, node), path, timeoutMs);
}

/** What each agent last published (readable while the agent is down). */
export function agentFile<T>(cfg: ClusterConfig, node: string, file: string): T | undefined {
  const path = join(cfg.stateDir, "run", node, file);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

const VERDICTS = ["FORWARDED", "DROPPED", "AUDIT"];

function endpointText(f: Flow, side: "source" | "destination"): string {
  const e = f[side];
  const ip = f.IP[side];
  const l4 = f.l4 && ("TCP" in f.l4 ? f.l4.TCP : "UDP" in f.l4 ? f.l4.UDP : undefined);
  const port = l4 ? `:${side === "source" ? l4.source_port : l4.destination_port}` : "";
  const who = e.pod_name ? `${e.namespace}/${e.pod_name}` : ip;
  return `${who}${port} (ID:${e.identity})`;
}

export function flowLine(f: Flow): string {
  const t = new Date(f.time);
  const time = `${t.toLocaleString("en-US", { month: "short", timeZone: "UTC" })} ${String(t.getUTCDate()).padStart(2, "0")} ${t.toISOString().slice(11, 23)}`;
  const flags = f.l4 && "TCP" in f.l4 && f.l4.TCP.flags ? ` (TCP Flags: ${Object.keys(f.l4.TCP.flags).join(", ")})` : "";
  const icmp = f.l4 && "ICMPv4" in f.l4 ? ` ICMPv4 type ${f.l4.ICMPv4.type}` : "";
  return `${time} [${f.node_name}]: ${endpointText(f, "source")} -> ${endpointText(f, "destination")} ${f.Summary ?? f.verdict}${flags}${icmp}`.replace(
    /\s+/g,
    " ",
  );
}

const observeCommand: Command = {
  name: "observe",
  summary: "show the flows the datapath saw (Hubble's fields)",
  usage: `Usage: weft observe [--last N] [--verdict FORWARDED|DROPPED|AUDIT]... [--pod NS/NAME] [-o json|compact] [--cluster NAME]

Flows from every node's agent, oldest first. -o json prints one Hubble-shaped JSON flow per line.`,
  async run(args) {
    const { values } = parseFlags(args, {
      ...clusterOpt,
      last: { type: "string", default: "20" },
      verdict: { type: "string", multiple: true },
      pod: { type: "string" },
      output: { type: "string", short: "o", default: "compact" },
    });
    const cfg = loadClusterConfig(values.cluster);
    for (const v of values.verdict ?? [])
      if (!VERDICTS.includes(v)) throw new WeftError("WEFT_USAGE", `--verdict must be one of ${VERDICTS.join(", ")}, got "${v}"`);
    const last = Number(values.last);
    if (!Number.isInteger(last) || last < 1) throw new WeftError("WEFT_USAGE", `--last must be a positive whole number, got "${values.last}"`);
    const query = new URLSearchParams();
    for (const v of values.verdict ?? []) query.append("verdict", v);
    const flows: Flow[] = [];
    for (const n of cfg.nodes) {
      const got = await agentGet<Flow[]>(cfg, n.name, `/v1/flows?${query.toString()}`);
      if (got) flows.push(...got);
      else process.stderr.write(`weft observe: the agent of ${n.name} does not answer; its flows are missing\n`);
    }
    const podFilter = values.pod?.includes("/") ? values.pod : values.pod ? `default/${values.pod}` : undefined;
    const selected = flows
      .filter(
        (f) => !podFilter || `${f.source.namespace}/${f.source.pod_name}` === podFilter || `${f.destination.namespace}/${f.destination.pod_name}` === podFilter,
      )
      .sort((a, b) => a.time.localeCompare(b.time))
      .slice(-last);
    for (const f of selected)
      process.stdout.write(`${values.output === "json" ? JSON.stringify({ flow: f, node_name: f.node_name, time: f.time }) : flowLine(f)}\n`);
    return 0;
  },
};

const endpointCommand: Command = {
  name: "endpoint",
  summary: "list endpoints with their identity and enforced policy revision",
  usage: "Usage: weft endpoint list [-o json] [--cluster NAME]",
  async run(args) {
    const { values, positionals } = parseFlags(args, { ...clusterOpt, output: { type: "string", short: "o" } }, true);
    if (positionals[0] !== "list") throw new WeftError("WEFT_USAGE", "weft endpoint list");
    const cfg = loadClusterConfig(values.cluster);
    const rows: (EndpointStatus & { node: string })[] = [];
    for (const n of cfg.nodes) for (const e of agentFile<EndpointStatus[]>(cfg, n.name, "endpoints.json") ?? []) rows.push({ ...e, node: n.name });
    if (values.output === "json") {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return 0;
    }
    printTable(
      ["NODE", "ENDPOINT", "IP", "IDENTITY", "POLICY (ingress)", "POLICY (egress)", "REVISION", "LABELS"],
      rows.map((e) => [
        e.node,
        `${e.namespace}/${e.pod}`,
        e.ip,
        String(e.identity),
        e.ingressEnforced ? "Enabled" : "Disabled",
        e.egressEnforced ? "Enabled" : "Disabled",
        String(e.policyRevision),
        e.labels.filter((l) => !l.includes("io.cilium.k8s")).join(","),
      ]),
    );
    return 0;
  },
};

const serviceCommand: Command = {
  name: "service",
  summary: "list services with their frontends and backends as the datapath has them",
  usage: "Usage: weft service list [--node NODE] [--cluster NAME]",
  async run(args) {
    const { values, positionals } = parseFlags(args, { ...clusterOpt, node: { type: "string" } }, true);
    if (positionals[0] !== "list") throw new WeftError("WEFT_USAGE", "weft service list");
    const cfg = loadClusterConfig(values.cluster);
    const node = values.node ?? cfg.nodes[0]?.name ?? "";
    const rows = await lbRows(pinRoot(cfg.name, node));
    printTable(
      ["ID", "FRONTEND", "SERVICE TYPE", "BACKENDS"],
      rows.map((r) => [String(r.id), r.frontend, r.flags, r.backends.join(", ") || "(none)"]),
    );
    const problems = agentFile<AgentHealth>(cfg, node, "agent.health.json")?.serviceProblems ?? [];
    for (const p of problems) process.stdout.write(`refused: ${p}\n`);
    return 0;
  },
};

export interface LbRow {
  id: number;
  frontend: string;
  flags: string;
  backends: string[];
}

/** One row per frontend of the service maps pinned under `root`, backends in slot order. */
export async function lbRows(root: string): Promise<LbRow[]> {
  const services = await dumpMap(pins.map(root, LB_MAPS.services));
  const byFrontend = new Map<string, LbRow>();
  const slots: { fe: string; slot: number; backend: SlotBackend }[] = [];
  for (const e of services.entries) {
    const k = lb4Key.decode(e.key);
    const v = lb4Service.decode(e.value);
    const proto = k.proto === 17 ? "UDP" : "TCP";
    // Scope 1 frontends serve traffic from outside the node (NodePort, externalTrafficPolicy Local).
    const fe = `${k.address}:${k.dport}/${proto}${k.scope === 1 ? " (external)" : ""}`;
    if (k.slot === 0) {
      const flags = [
        v.flags & 0x8 ? "External" : "ClusterIP",
        v.flags & 0x1 ? `affinity ${v.affinity_timeout}s` : "",
        v.flags & 0x2 ? `maglev ${v.maglev_size}` : "",
        v.flags & 0x4 ? "Local" : "",
      ]
        .filter(Boolean)
        .join(", ");
      byFrontend.set(fe, { id: v.service_id, frontend: fe, flags, backends: [] });
    }
    // Entry c holds the backends in slots 8c + 1 .. 8c + 8, each with where it is.
    for (const [i, backend] of slotsOf(v.backends, backendIdsOf(v.backend_ids).length).entries())
      slots.push({ fe, slot: k.slot * SLOTS_PER_ENTRY + i + 1, backend });
  }
  slots.sort((a, b) => a.slot - b.slot);
  for (const s of slots) byFrontend.get(s.fe)?.backends.push(`${s.backend.address}:${s.backend.port}`);
  return [...byFrontend.values()].sort((a, b) => a.id - b.id);
}

const bpfCommand: Command = {
  name: "bpf",
  summary: "show the datapath's maps: lb list, ipcache list, policy get POD, endpoint list",
  usage: "Usage: weft bpf lb list | ipcache list | endpoint list | policy get POD [-n NS]  [--node NODE] [--cluster NAME]",
  async run(args) {
    const { values, positionals } = parseFlags(
      args,
      { ...clusterOpt, node: { type: "string" }, namespace: { type: "string", short: "n", default: "default" } },
      true,
    );
    const cfg = loadClusterConfig(values.cluster);
    const [what, verb, target] = positionals;
    let node = values.node ?? cfg.nodes[0]?.name ?? "";
    if (what === "policy" && verb === "get" && target) node = findPod(cfg.name, values.namespace, target).node;
    const root = pinRoot(cfg.name, node);
    if (what === "lb" && verb === "list") {
      const rows = await lbRows(root);
      printTable(
        ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"],
        rows.flatMap((r) => [[r.frontend, `0.0.0.0:0 (${r.id}) (0) [${r.flags}]`], ...r.backends.map((b, i) => ["", `${b} (${r.id}) (${i + 1})`])]),
      );
      return 0;
    }
    if (what === "ipcache" && verb === "list") {
      const dump = await dumpMap(pins.map(root, IPCACHE_MAP));
      const rows = dump.entries.map((e) => {
        const k = ipcacheKey.decode(e.key);
        const v = ipcacheValue.decode(e.value);
        return [`${k.addr}/${k.prefixlen}`, `identity=${v.identity} tunnelendpoint=${v.tunnel_endpoint} flags=${v.flags}`];
      });
      rows.sort((a, b) => (a[0] as string).localeCompare(b[0] as string, undefined, { numeric: true }));
      printTable(["IP PREFIX/ADDRESS", "IDENTITY"], rows);
      return 0;
    }
    if (what === "endpoint" && verb === "list") {
      const dump = await dumpMap(pins.map(root, ENDPOINTS_MAP));
      printTable(
        ["IP ADDRESS", "IDENTITY", "IFINDEX", "ENDPOINT", "FLAGS"],
        dump.entries.map((e) => {
          const v = endpointValue.decode(e.value);
          return [endpointKey.decode(e.key).addr, String(v.identity), String(v.ifindex), String(v.endpoint_id), `0x${v.flags.toString(16)}`];
        }),
      );
      return 0;
    }
    if (what === "policy" && verb === "get" && target) {
      const pod = findPod(cfg.name, values.namespace, target);
      const ep = (agentFile<EndpointStatus[]>(cfg, node, "endpoints.json") ?? []).find((e) => e.namespace === pod.namespace && e.pod === pod.name);
      if (!ep) throw new WeftError("WEFT_NOT_FOUND", "the agent has not registered this pod yet", `${pod.namespace}/${pod.name}`);
      const pin = subjectMapPin(root, ep.identity);
      const dump = existsSync(pin) ? await dumpMap(pin) : { entries: [] };
      process.stdout.write(
        `${pod.namespace}/${pod.name} identity ${ep.identity} (ingress ${ep.ingressEnforced ? "enforced" : "not enforced"}, egress ${ep.egressEnforced ? "enforced" : "not enforced"})\n`,
      );
      printTable(
        ["POLICY", "DIRECTION", "IDENTITY", "PORT/PROTO", "PREFIX", "PROXY PORT", "ACTION"],
        dump.entries.map((e) => {
          const k = policyKey.decode(e.key);
          const v = policyValue.decode(e.value);
          const proto = k.protocol === 6 ? "TCP" : k.protocol === 17 ? "UDP" : k.protocol === 1 ? "ICMP" : k.protocol === 0 ? "ANY" : String(k.protocol);
          return [
            v.flags & 1 ? "Deny" : "Allow",
            k.direction === 0 ? "Ingress" : "Egress",
            k.identity === 0 ? "ANY" : String(k.identity),
            k.prefixlen <= 40 ? "ANY" : k.prefixlen === 48 ? `ANY/${proto}` : `${k.dport}/${proto}`,
            String(k.prefixlen),
            String(v.proxy_port),
            `${v.flags & 2 ? "redirect " : ""}${v.flags & 4 ? "audit" : ""}`.trim() || "-",
          ];
        }),
      );
      return 0;
    }
    throw new WeftError("WEFT_USAGE", bpfCommand.usage);
  },
};

export const operatorCommands: Command[] = [observeCommand, endpointCommand, serviceCommand, bpfCommand];
