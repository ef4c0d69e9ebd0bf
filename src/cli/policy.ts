// `weft policy`: validate policy files, show the cluster's policies, and trace a flow through them
// (like `cilium policy trace`). Reads files and cluster state; the deciding is in src/policy.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import YAML from "yaml";
import type { AgentHealth } from "../agent/main.ts";
import { loadClusterConfig } from "../cluster/state.ts";
import { openStore } from "../cluster/store.ts";
import { isWeftError, WeftError } from "../core/errors.ts";
import type { AuditConfig } from "../policy/compile.ts";
import type { EndpointInput, NamespaceInput } from "../policy/identity.ts";
import { type Policy, policyName } from "../policy/model.ts";
import { parsePortProto } from "../policy/ports.ts";
import { buildScenario, type PeerSpec, parseLabelList } from "../policy/scenario.ts";
import { formatTrace, type TraceRequest, traceFlow } from "../policy/trace.ts";
import { type Problem, problemWhere, validateDocument, validateText } from "../policy/validate.ts";
import { type Command, printTable } from "./command.ts";
import { agentFile } from "./operator.ts";

export interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

const USAGE = `Usage:
  weft policy validate FILE|DIR...
      Validate NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy documents.
      Exit 1 listing every problem (code, file, JSON path, reason).
  weft policy wait [--revision N] [--timeout SECONDS] [--cluster NAME]
      Wait until every node's agent enforces store revision N (default: the current revision).
  weft policy get [--cluster NAME | -f FILE...] [-n NAMESPACE] [-o table|yaml|json]
      Show policies of a cluster (default cluster: weft) or of files.
  weft policy trace SOURCE DESTINATION --dport PORT[/tcp|udp|sctp|icmp|icmpv6] [L7] [--cluster NAME | -f FILE...]
      SOURCE: --src-pod NS/NAME | --src-labels K=V,... | --src-cidr IP[/LEN] | --src-entity NAME
      DESTINATION: --dst-pod NS/NAME | --dst-labels K=V,... | --dst-cidr IP[/LEN] | --dst-fqdn NAME | --dst-entity NAME
      (labels may include io.kubernetes.pod.namespace=NS; default namespace: default)
      L7: --http-method M --http-path P [--http-host H] [--http-header "Name: value"]...
          --dns-name NAME | --kafka-api-key KEY [--kafka-topic T] [--kafka-client-id C] [--kafka-api-version N]
      --audit-namespace NS (repeatable) traces as if NS were in policy audit mode; -o json for JSON.
      With -f, policies come from the files (Namespace and Pod documents in them give labels and
      named ports) and no cluster is needed.`;

function listFiles(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      throw new WeftError("WEFT_NOT_FOUND", "no such file or directory", p);
    }
    if (st.isDirectory()) {
      for (const f of readdirSync(p).sort()) if (/\.(ya?ml|json)$/.test(f)) out.push(join(p, f));
    } else out.push(p);
  }
  return out;
}

function loadFiles(paths: string[]): { policies: Policy[]; context: unknown[]; problems: Problem[] } {
  const all = { policies: [] as Policy[], context: [] as unknown[], problems: [] as Problem[] };
  for (const file of listFiles(paths)) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new WeftError("WEFT_NOT_FOUND", (err as Error).message, file);
    }
    const r = validateText(text, file);
    all.policies.push(...r.policies);
    all.context.push(...r.context);
    all.problems.push(...r.problems);
  }
  return all;
}

function formatProblem(p: Problem): string {
  return `${p.code}: ${problemWhere(p)}: ${p.reason}`;
}

async function validate(args: string[], io: Io): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { output: { type: "string", short: "o" } } });
  if (!positionals.length) throw new WeftError("WEFT_USAGE", "weft policy validate needs at least one FILE or DIR");
  const files = listFiles(positionals);
  let bad = 0;
  const report: { file: string; policies: number; problems: Problem[] }[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new WeftError("WEFT_NOT_FOUND", (err as Error).message, file);
    }
    const r = validateText(text, file);
    report.push({ file, policies: r.policies.length, problems: r.problems });
    if (r.problems.length) bad++;
  }
  if (values.output === "json") io.out.write(`${JSON.stringify(report, null, 2)}\n`);
  else
    for (const r of report) {
      if (!r.problems.length) io.out.write(`${r.file}: OK (${r.policies} ${r.policies === 1 ? "policy" : "policies"})\n`);
      for (const p of r.problems) io.err.write(`${formatProblem(p)}\n`);
    }
  if (bad && values.output !== "json") io.err.write(`${bad} of ${files.length} file(s) refused\n`);
  return bad ? 1 : 0;
}

interface ClusterState {
  policies: Policy[];
  namespaces: NamespaceInput[];
  pods: EndpointInput[];
  problems: Problem[];
}

const POLICY_KIND_NAMES = ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"];

/** Imported when needed, so validate and -f traces work where no cluster code or state exists. */
async function clusterModule<T>(path: string, cluster: string): Promise<T> {
  try {
    return (await import(path)) as T;
  } catch (err) {
    throw new WeftError(
      "WEFT_CLUSTER_STATE",
      `cannot load cluster code (${(err as Error).message.split("\n")[0]}); give policies with -f FILE to work without a cluster`,
      `cluster ${cluster}`,
    );
  }
}

type ClusterStore = { list(kind: string): { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } }[] };
type PodViews = { listPodViews(c: string): Promise<{ namespace: string; name: string; labels: Record<string, string> }[]> };

/** Reading the cluster's state: its failures become WEFT_CLUSTER_STATE, never a stack trace. */
async function readCluster<T>(cluster: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isWeftError(err)) throw err;
    throw new WeftError("WEFT_CLUSTER_STATE", (err as Error).message, `cluster ${cluster}`);
  }
}

async function loadCluster(cluster: string, withPods: boolean): Promise<ClusterState> {
  const { openStore } = await clusterModule<{ openStore(c: string): ClusterStore }>("../cluster/store.ts", cluster);
  const store = await readCluster(cluster, () => openStore(cluster));
  const out: ClusterState = { policies: [], namespaces: [], pods: [], problems: [] };
  for (const kind of POLICY_KIND_NAMES) {
    for (const o of await readCluster(cluster, () => store.list(kind))) {
      const where = `${kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;
      const r = validateDocument(o, { file: where, document: 1 });
      out.problems.push(...r.problems);
      if (r.policy) out.policies.push(r.policy);
    }
  }
  for (const n of await readCluster(cluster, () => store.list("Namespace"))) out.namespaces.push({ name: n.metadata.name, labels: n.metadata.labels ?? {} });
  if (withPods) {
    const { listPodViews } = await clusterModule<PodViews>("../cluster/pods.ts", cluster);
    for (const p of await readCluster(cluster, () => listPodViews(cluster))) out.pods.push({ namespace: p.namespace, name: p.name, labels: p.labels });
  }
  return out;
}

/** Namespace and Pod documents given beside policies with -f. */
function contextObjects(context: unknown[]): { namespaces: NamespaceInput[]; pods: EndpointInput[] } {
  const namespaces: NamespaceInput[] = [];
  const pods: EndpointInput[] = [];
  for (const c of context) {
    const o = c as {
      kind: string;
      metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
      spec?: { containers?: { ports?: { name?: string; containerPort?: number; protocol?: string }[] }[] };
    };
    const name = o.metadata?.name;
    if (typeof name !== "string") continue;
    const labels = Object.fromEntries(Object.entries(o.metadata?.labels ?? {}).map(([k, v]) => [k, String(v)]));
    if (o.kind === "Namespace") namespaces.push({ name, labels });
    else {
      const namedPorts: Record<string, { port: number; protocol?: string }> = {};
      for (const ctr of o.spec?.containers ?? [])
        for (const p of ctr.ports ?? [])
          if (p.name && typeof p.containerPort === "number") namedPorts[p.name] = { port: p.containerPort, protocol: p.protocol ?? "TCP" };
      pods.push({ namespace: o.metadata?.namespace ?? "default", name, labels, namedPorts });
    }
  }
  return { namespaces, pods };
}

async function get(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: "string", default: "weft" },
      file: { type: "string", short: "f", multiple: true },
      namespace: { type: "string", short: "n" },
      output: { type: "string", short: "o", default: "table" },
    },
  });
  if (!["table", "yaml", "json"].includes(values.output ?? "")) throw new WeftError("WEFT_USAGE", `-o ${values.output}: want table, yaml or json`);
  const src = values.file?.length ? loadFiles(values.file) : await loadCluster(values.cluster ?? "weft", false);
  for (const p of src.problems) io.err.write(`${formatProblem(p)}\n`);
  const ps = src.policies.filter((p) => values.namespace === undefined || p.namespace === values.namespace);
  if (values.output === "json") io.out.write(`${JSON.stringify({ apiVersion: "v1", kind: "List", items: ps.map((p) => p.raw) }, null, 2)}\n`);
  else if (values.output === "yaml") io.out.write(ps.map((p) => YAML.stringify(p.raw)).join("---\n"));
  else
    printTable(
      ["KIND", "NAMESPACE", "NAME", "RULES", "DIRECTIONS"],
      ps.map((p) => {
        const rules =
          p.kind === "NetworkPolicy"
            ? [p.spec as unknown as Record<string, unknown[] | undefined>]
            : p.rules.map((r) => r.rule as unknown as Record<string, unknown[] | undefined>);
        const dirs = new Set<string>();
        for (const r of rules) for (const d of ["ingress", "ingressDeny", "egress", "egressDeny"]) if (r[d]?.length) dirs.add(d);
        return [p.kind, p.namespace ?? "", p.name, String(rules.length), [...dirs].join(",") || "-"];
      }),
      io.out,
    );
  return src.problems.length ? 1 : 0;
}

function peerSpec(values: Record<string, unknown>, role: "src" | "dst"): PeerSpec {
  const given: PeerSpec[] = [];
  const v = (k: string) => values[`${role}-${k}`] as string | undefined;
  if (v("pod") !== undefined) given.push({ pod: v("pod") as string });
  if (v("labels") !== undefined) {
    const l = parseLabelList(v("labels") as string);
    if (typeof l === "string") throw new WeftError("WEFT_USAGE", l, `--${role}-labels`);
    given.push({ labels: l });
  }
  if (v("cidr") !== undefined) given.push({ cidr: v("cidr") as string });
  if (role === "dst" && v("fqdn") !== undefined) given.push({ fqdn: v("fqdn") as string });
  if (v("entity") !== undefined) given.push({ entity: v("entity") as string });
  if (given.length !== 1)
    throw new WeftError(
      "WEFT_USAGE",
      `give exactly one ${role === "src" ? "source" : "destination"}: --${role}-pod, --${role}-labels, --${role}-cidr${role === "dst" ? ", --dst-fqdn" : ""} or --${role}-entity`,
    );
  return given[0] as PeerSpec;
}

export interface TraceOutcome {
  verdict: string;
  text: string;
  json: unknown;
}

/** Runs a trace from CLI arguments; shared by the command and by tests. */
export async function runTrace(args: string[]): Promise<TraceOutcome> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      cluster: { type: "string", default: "weft" },
      file: { type: "string", short: "f", multiple: true },
      output: { type: "string", short: "o", default: "text" },
      "src-pod": { type: "string" },
      "src-labels": { type: "string" },
      "src-cidr": { type: "string" },
      "src-entity": { type: "string" },
      "dst-pod": { type: "string" },
      "dst-labels": { type: "string" },
      "dst-cidr": { type: "string" },
      "dst-fqdn": { type: "string" },
      "dst-entity": { type: "string" },
      dport: { type: "string" },
      "http-method": { type: "string" },
      "http-path": { type: "string" },
      "http-host": { type: "string" },
      "http-header": { type: "string", multiple: true },
      "dns-name": { type: "string" },
      "kafka-api-key": { type: "string" },
      "kafka-topic": { type: "string" },
      "kafka-client-id": { type: "string" },
      "kafka-api-version": { type: "string" },
      "audit-namespace": { type: "string", multiple: true },
    },
  });
  if (!values.dport) throw new WeftError("WEFT_USAGE", "--dport PORT[/tcp|udp|sctp|icmp|icmpv6] is required");
  const pp = parsePortProto(values.dport);
  if (typeof pp === "string") throw new WeftError("WEFT_USAGE", pp, "--dport");
  const req: TraceRequest = { proto: pp.proto, port: pp.port };
  if (values["http-method"] !== undefined || values["http-path"] !== undefined || values["http-host"] !== undefined || values["http-header"]?.length) {
    const headers: Record<string, string> = {};
    for (const h of values["http-header"] ?? []) {
      const i = h.indexOf(":");
      if (i <= 0) throw new WeftError("WEFT_USAGE", `"${h}" is not "Name: value"`, "--http-header");
      headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
    req.http = {
      method: values["http-method"] ?? "GET",
      path: values["http-path"] ?? "/",
      ...(values["http-host"] !== undefined ? { host: values["http-host"] } : {}),
      headers,
    };
  }
  if (values["dns-name"] !== undefined) req.dns = { name: values["dns-name"] };
  if (values["kafka-api-key"] !== undefined) {
    const ver = values["kafka-api-version"];
    req.kafka = {
      apiKey: /^\d+$/.test(values["kafka-api-key"]) ? Number(values["kafka-api-key"]) : values["kafka-api-key"],
      ...(values["kafka-topic"] !== undefined ? { topic: values["kafka-topic"] } : {}),
      ...(values["kafka-client-id"] !== undefined ? { clientID: values["kafka-client-id"] } : {}),
      ...(ver !== undefined ? { apiVersion: Number(ver) } : {}),
    };
  }
  const src = peerSpec(values, "src");
  const dst = peerSpec(values, "dst");
  const files = [...(values.file ?? []), ...positionals];
  let state: ClusterState;
  if (files.length) {
    const f = loadFiles(files);
    if (f.problems.length)
      throw new WeftError(
        f.problems[0]?.code ?? "WEFT_POLICY_INVALID",
        `${f.problems.length} problem(s) in the policies:\n${f.problems.map(formatProblem).join("\n")}`,
        "-f",
      );
    state = { policies: f.policies, ...contextObjects(f.context), problems: [] };
  } else state = await loadCluster(values.cluster ?? "weft", true);
  const audit: AuditConfig | undefined = values["audit-namespace"]?.length ? { namespaces: values["audit-namespace"] } : undefined;
  const sc = buildScenario({
    clusterName: values.cluster ?? "weft",
    policies: state.policies,
    namespaces: state.namespaces,
    pods: state.pods,
    src,
    dst,
    ...(audit ? { audit } : {}),
  });
  const result = traceFlow((id) => sc.compiler.subject(id), sc.src, sc.dst, req);
  let text = formatTrace(result, sc.src, sc.dst, req, sc.compiler.identityTable());
  if (state.problems.length) text = `${state.problems.map((p) => `refused (not enforced): ${formatProblem(p)}`).join("\n")}\n${text}`;
  return { verdict: result.verdict, text, json: { ...result, source: sc.src, destination: sc.dst, policies: state.policies.map(policyName) } };
}

async function trace(args: string[], io: Io): Promise<number> {
  const r = await runTrace(args);
  const json = args.some((a, i) => (a === "-o" || a === "--output") && args[i + 1] === "json") || args.includes("-ojson") || args.includes("--output=json");
  io.out.write(json ? `${JSON.stringify(r.json, null, 2)}\n` : r.text);
  return 0;
}

/**
 * `weft policy wait [--revision N] [--timeout S]`: returns once every node's agent enforces the
 * store revision N (default: the current one) — what tests wait on instead of sleeping.
 */
async function wait(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: "string", default: process.env.WEFT_CLUSTER ?? "weft" },
      revision: { type: "string" },
      timeout: { type: "string", default: "60" },
    },
    strict: true,
  });
  const cfg = loadClusterConfig(values.cluster);
  const target = values.revision ? Number(values.revision) : openStore(cfg.name).revision();
  if (!Number.isInteger(target) || target < 0) throw new WeftError("WEFT_USAGE", `--revision must be a whole number, got "${values.revision}"`);
  const deadline = Date.now() + Number(values.timeout) * 1000;
  const started = Date.now();
  for (;;) {
    const behind = cfg.nodes.filter((n) => (agentFile<AgentHealth>(cfg, n.name, "agent.health.json")?.policyRevision ?? -1) < target).map((n) => n.name);
    if (behind.length === 0) {
      io.out.write(`revision ${target} enforced on ${cfg.nodes.length} nodes (${Date.now() - started} ms)\n`);
      return 0;
    }
    if (Date.now() > deadline) throw new WeftError("WEFT_TIMEOUT", `revision ${target} not enforced after ${values.timeout}s on: ${behind.join(", ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The whole `weft policy` command against explicit streams (tests use this). */
export async function runPolicy(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "validate":
        return await validate(rest, io);
      case "get":
        return await get(rest, io);
      case "trace":
        return await trace(rest, io);
      case "wait":
        return await wait(rest, io);
      default:
        io.err.write(`WEFT_USAGE: ${sub ? `unknown subcommand "${sub}"` : "a subcommand is required"}\n${USAGE}\n`);
        return 2;
    }
  } catch (err) {
    if (isWeftError(err)) {
      io.err.write(`${err.message}\n`);
      return err.code === "WEFT_USAGE" ? 2 : 1;
    }
    // parseArgs reports unknown or malformed flags with a TypeError carrying a code.
    const code = (err as { code?: string }).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
      io.err.write(`WEFT_USAGE: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}

export const policyCommand: Command = {
  name: "policy",
  summary: "validate, show and trace network policies",
  usage: USAGE,
  run(args) {
    return runPolicy(args, { out: process.stdout, err: process.stderr });
  },
};
