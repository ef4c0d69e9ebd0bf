// The per-node agent: sources (the state folder) → identities → policy → BPF maps, and datapath
// events → flows. Serves health, endpoints and flows on a Unix socket, and publishes the policy
// revision it enforces. It never writes the object store.

import { rmSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import type { ClusterConfig, NodeConfig } from "../cluster/config.ts";
import { cgroupDir } from "../cluster/config.ts";
import { loadClusterConfig, runDir } from "../cluster/state.ts";
import { openStore, writeAtomic } from "../cluster/store.ts";
import { isWeftError } from "../core/errors.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { getJson } from "../core/unix-http.ts";
import { decodeEvent, monotonicToDate } from "../datapath/events.ts";
import { requireKernelFeatures } from "../datapath/features.ts";
import { openRingBuffer, pins } from "../datapath/loader.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../datapath/maps/events.ts";
import { enableRedirect } from "../datapath/redirect.ts";
import { type Endpoint, type Flow, flowFromEvent, type Verdict } from "../observe/flow.ts";
import { FlowRing } from "../observe/flow-ring.ts";
import { compilePolicies, type SubjectPolicy, selectorCidrs } from "../policy/compile.ts";
import { allocateIdentities, type Identity, LOCAL_IDENTITY_SCOPE } from "../policy/identity.ts";
import { formatLabel } from "../policy/selectors.ts";
import { PROXY_PORT } from "../proxy/supervisor.ts";
import { l7Policies, TYPE, type XdsResource } from "../xds/resources.ts";
import { XdsServer } from "../xds/server.ts";
import { type LocalEndpoint, NodeDatapath } from "./datapath.ts";
import { l7LbResources } from "./l7lb.ts";
import { destroyUdpSockets, removedKeys, udpBackendKeys } from "./udp-sockets.ts";
import { type ClusterView, desiredIpcache, podIdentity, ViewReader } from "./view.ts";

const LOOP_MS = 200;
const FLOW_RING_SIZE = 65536;

export function agentSocket(stateDir: string, node: string): string {
  return join(runDir(stateDir, node), "agent.sock");
}

/** Where the node's proxy (or any xDS client, a real Envoy included) gets its configuration. */
export function xdsSocket(stateDir: string, node: string): string {
  return join(runDir(stateDir, node), "xds.sock");
}

/** The Weft L7 policy resources of the identities that have endpoints on this node. Pure. */
export function l7Resources(subjects: ReadonlyMap<number, SubjectPolicy>, local: ReadonlySet<number>): XdsResource[] {
  const out: XdsResource[] = [];
  for (const id of local) {
    const s = subjects.get(id);
    if (!s) continue;
    for (const p of [...l7Policies(id, "ingress", s.ingress.l7), ...l7Policies(id, "egress", s.egress.l7)]) out.push({ typeUrl: TYPE.l7policy, message: p });
  }
  return out;
}

export interface EndpointStatus {
  namespace: string;
  pod: string;
  ip: string;
  identity: number;
  labels: string[];
  policyRevision: number;
  ingressEnforced: boolean;
  egressEnforced: boolean;
}

export interface AgentHealth {
  node: string;
  pid: number;
  healthy: boolean;
  started: string;
  time: string;
  storeRevision: number;
  /** The store revision whose policies, services and endpoints this node's datapath enforces. */
  policyRevision: number;
  error?: string;
  /** L7-policed connections are steered into the node's proxy. */
  redirect?: boolean;
  serviceProblems: string[];
  policyProblems: string[];
  flows: { seen: number; lost: number };
}

class Agent {
  private readonly store;
  private readonly dp: NodeDatapath;
  private readonly views: ViewReader;
  private readonly ring = new FlowRing(FLOW_RING_SIZE);
  private view?: ClusterView;
  private identities = new Map<number, Identity>();
  private lastFingerprint = "";
  private lost = 0;
  readonly health: AgentHealth;
  endpoints: EndpointStatus[] = [];

  constructor(
    readonly cfg: ClusterConfig,
    readonly node: NodeConfig,
    readonly log: Logger,
  ) {
    this.store = openStore(cfg.name);
    this.dp = new NodeDatapath(cfg, node, log);
    this.views = new ViewReader(this.store, cfg);
    const now = new Date().toISOString();
    this.health = {
      node: node.name,
      pid: process.pid,
      healthy: false,
      started: now,
      time: now,
      storeRevision: 0,
      policyRevision: 0,
      serviceProblems: [],
      policyProblems: [],
      flows: { seen: 0, lost: 0 },
    };
  }

  async start(): Promise<void> {
    await requireKernelFeatures();
    await this.dp.start();
    this.xds = await XdsServer.start({ socketPath: xdsSocket(this.cfg.stateDir, this.node.name), log: this.log.child({ component: "xds" }) });
    await this.startEvents();
    this.health.healthy = true;
  }

  /** One pass: read the cluster, compile, and bring every map to what it asks for. */
  async syncOnce(): Promise<void> {
    const view = this.views.read();
    this.view = view;
    // (the store's revision and every node's pods: all a pass derives its maps from)
    const fingerprint = view.stamp;
    this.health.storeRevision = view.revision;
    if (fingerprint === this.lastFingerprint) return;

    const cidrs = selectorCidrs(view.policies);
    // CIDR identities keep their numbers while their prefix stays selected (as Cilium's do), so a
    // policy change never gives a prefix a number another prefix had a moment ago.
    const previous = new Map(view.identities);
    for (const [id, i] of this.identities) if (id > LOCAL_IDENTITY_SCOPE) previous.set(id, i);
    const local = allocateIdentities({ clusterName: this.cfg.name, cidrs, previous });
    const identities = new Map(view.identities);
    for (const [id, i] of local.table) if (id > LOCAL_IDENTITY_SCOPE) identities.set(id, i);
    this.identities = identities;
    const auditNamespaces = view.namespaces.filter((n) => n.metadata.annotations?.["weft.io/policy-audit-mode"] === "true").map((n) => n.metadata.name);
    const { subjects } = compilePolicies(view.policies, { clusterName: this.cfg.name, identities, audit: { namespaces: auditNamespaces } });

    const localEps: LocalEndpoint[] = [];
    for (const pod of view.pods) {
      if (pod.node !== this.node.name || !pod.podIP) continue;
      const identity = podIdentity(view, this.cfg.name, pod);
      if (identity === undefined) {
        this.log.warn("pod has no identity yet", { pod: `${pod.namespace}/${pod.name}` });
        continue;
      }
      localEps.push({ pod, identity });
    }
    const cidrIdentities = [...identities.values()].filter((i) => i.cidr);
    await this.dp.syncIpcache(desiredIpcache(view, this.cfg, this.node, cidrIdentities));
    await this.dp.syncPolicy(subjects, new Set(localEps.map((e) => e.identity)));
    await this.dp.syncEndpoints(localEps, subjects);
    const resources = l7Resources(subjects, new Set(localEps.map((e) => e.identity)));
    resources.push(...l7LbResources(view.services as never, view.slices));
    this.xds?.setSnapshot(this.node.name, resources);
    const services = await this.dp.syncServices(view.services as never, view.slices);
    const udp = udpBackendKeys(services.state.backends);
    const gone = this.udpBackends ? removedKeys(this.udpBackends, udp) : [];
    this.udpBackends = udp;
    if (gone.length > 0) {
      const netns = localEps.map((e) => e.pod.netns).filter((n): n is string => !!n);
      await destroyUdpSockets(netns, gone);
      this.log.info("closed connected UDP sockets of removed backends", { backends: gone, pods: netns.length });
    }
    this.health.serviceProblems = services.problems.map((p) => `${p.code}: ${p.service}${p.port ? ` port ${p.port}` : ""}: ${p.reason}`);
    for (const p of this.health.serviceProblems) if (!this.lastProblems.has(p)) this.log.warn("service refused", { problem: p });
    this.lastProblems = new Set(this.health.serviceProblems);
    this.health.policyProblems = view.policyProblems;
    this.health.policyRevision = view.revision;
    // Only endpoints whose datapath is in place: the kubelet starts a pod's containers once its
    // endpoint is listed here (as a CNI ADD returns), so a pod never sends unpoliced packets.
    this.endpoints = localEps
      .filter(({ pod }) => this.dp.isAttached(pod.uid))
      .map(({ pod, identity }) => this.endpointStatus(pod.namespace, pod.name, pod.podIP as string, identity, subjects.get(identity), view.revision));
    this.lastFingerprint = fingerprint;
  }
  private lastProblems = new Set<string>();
  private udpBackends?: Set<string>;
  private xds?: XdsServer;

  private redirectOn = false;

  /**
   * Turns L7 redirection on once the node's proxy serves (its supervisor reports a ready worker).
   * Never turned off again by the agent: a proxy that goes down means connections wait in its
   * listener's backlog or are refused, never a bypass.
   */
  async ensureRedirect(): Promise<void> {
    if (this.redirectOn) return;
    const workers = await getJson<{ ready: number }>(join(runDir(this.cfg.stateDir, this.node.name), "proxy-admin.sock"), "/workers");
    if (!workers || workers.ready < 1) return;
    await enableRedirect(this.dp.root, { address: this.node.gatewayIP, port: PROXY_PORT, cgroup: cgroupDir(this.cfg.name, this.node.name, "proxy") });
    this.redirectOn = true;
    this.health.redirect = true;
    this.log.info("L7 redirection enabled", { proxy: `${this.node.gatewayIP}:${PROXY_PORT}` });
  }

  /** Flows the node's proxy reports (L7). */
  pushFlows(flows: Flow[]): void {
    for (const f of flows) {
      // The proxy knows addresses and identities; names and labels come from the agent's view.
      if (!f.source?.pod_name && f.IP?.source) f.source = { ...this.endpointOf(f.source?.identity ?? 0, f.IP.source), ...f.source };
      if (!f.destination?.pod_name && f.IP?.destination)
        f.destination = { ...this.endpointOf(f.destination?.identity ?? 0, f.IP.destination), ...f.destination };
      this.ring.push(f);
    }
  }

  /** After a failed write, what is pinned is the truth: re-read it on the next pass. */
  resetAfterFailure(): void {
    this.lastFingerprint = "";
    this.dp.invalidate();
  }

  private endpointStatus(namespace: string, pod: string, ip: string, identity: number, s: SubjectPolicy | undefined, revision: number): EndpointStatus {
    return {
      namespace,
      pod,
      ip,
      identity,
      labels: this.identities.get(identity)?.labels.map(formatLabel) ?? [],
      policyRevision: revision,
      ingressEnforced: s?.ingress.enforced ?? false,
      egressEnforced: s?.egress.enforced ?? false,
    };
  }

  private endpointOf(identity: number, ip: string): Endpoint {
    const pod = this.view?.pods.find((p) => p.podIP === ip);
    const id = this.identities.get(identity);
    const e: Endpoint = { identity };
    if (id) e.labels = id.labels.map(formatLabel);
    if (pod) {
      e.namespace = pod.namespace;
      e.pod_name = pod.name;
    }
    return e;
  }

  private async startEvents(): Promise<void> {
    const reader = await openRingBuffer(pins.map(this.dp.root, EVENTS_MAP), { lostMap: pins.map(this.dp.root, EVENTS_LOST_MAP) });
    const ctx = { nodeName: this.node.name, endpointOf: (id: number, ip: string) => this.endpointOf(id, ip), timeOf: (ns: bigint) => monotonicToDate(ns) };
    void (async () => {
      for await (const batch of reader) {
        for (const rec of batch) {
          try {
            this.ring.push(flowFromEvent(decodeEvent(rec), ctx));
          } catch (err) {
            this.log.warn("undecodable datapath event", { bytes: rec.length, error: String(err) });
          }
        }
        this.lost = reader.lost;
      }
    })();
  }

  flows(last: number | undefined, verdict: Verdict[] | undefined) {
    this.health.flows = { seen: this.ring.seen, lost: this.lost };
    return this.ring.query({ ...(last ? { last } : {}), ...(verdict ? { verdict } : {}) });
  }
}

export async function runAgent(cluster: string, nodeName: string): Promise<void> {
  const cfg = loadClusterConfig(cluster);
  const node = cfg.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`node ${nodeName} is not part of cluster ${cluster}`);
  const log = createLogger(process.stderr, { component: "agent", cluster, node: nodeName });
  const agent = new Agent(cfg, node, log);
  const dir = runDir(cfg.stateDir, nodeName);
  const publish = () => {
    agent.health.time = new Date().toISOString();
    writeAtomic(join(dir, "agent.health.json"), JSON.stringify(agent.health));
    writeAtomic(join(dir, "endpoints.json"), JSON.stringify(agent.endpoints));
  };

  const sock = agentSocket(cfg.stateDir, nodeName);
  rmSync(sock, { force: true });
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://agent");
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === "/healthz") return send(agent.health.healthy ? 200 : 503, agent.health);
    if (url.pathname === "/v1/endpoints") return send(200, agent.endpoints);
    if (url.pathname === "/v1/flows" && req.method === "POST") {
      // The proxy's flows: JSON lines. A bad line is counted and skipped, never fatal.
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => {
        body += c;
        if (body.length > 16 * 1024 * 1024) req.destroy();
      });
      req.on("end", () => {
        const flows: Flow[] = [];
        let bad = 0;
        for (const line of body.split("\n")) {
          if (!line.trim()) continue;
          try {
            flows.push(JSON.parse(line) as Flow);
          } catch {
            bad++;
          }
        }
        agent.pushFlows(flows);
        send(bad ? 400 : 200, { accepted: flows.length, rejected: bad });
      });
      return;
    }
    if (url.pathname === "/v1/flows") {
      const last = url.searchParams.get("last");
      const verdict = url.searchParams.getAll("verdict") as Verdict[];
      return send(200, agent.flows(last ? Number(last) : undefined, verdict.length ? verdict : undefined));
    }
    send(404, { error: "not found" });
  });
  server.listen(sock);

  try {
    await agent.start();
  } catch (err) {
    // A missing kernel feature or a broken object: say what, and exit (the kubelet restarts us).
    agent.health.error = isWeftError(err) ? err.message : String(err);
    log.error("datapath start failed", { error: agent.health.error });
    publish();
    process.exit(1);
  }
  log.info("agent started", { pid: process.pid, socket: sock, pins: agent.cfg.name });
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
    server.close(() => process.exit(0));
  });
  for (; !stopping; ) {
    try {
      await agent.syncOnce();
      await agent.ensureRedirect();
      agent.health.error = undefined;
    } catch (err) {
      agent.health.error = isWeftError(err) ? err.message : String(err);
      log.error("sync failed", { error: agent.health.error });
      agent.resetAfterFailure();
      await new Promise((r) => setTimeout(r, 1000));
    }
    publish();
    await new Promise((r) => setTimeout(r, LOOP_MS));
  }
}
