// Services + EndpointSlices (Kubernetes shapes) → the exact contents of the agent-written service
// maps (lb4_services, lb4_backends, lb4_maglev) for the socket hooks (pods) and for traffic from
// outside the node (NodePort, ExternalIPs, LoadBalancer IPs: bpf/host), and the ordered writes that
// move the kernel from one content to the next without a moment where a live service lacks its
// entries. Pure: no I/O. I/O edges: lb-sync.ts, nodeport-sync.ts; docs/services.md, docs/nodeport.md.

import { type EncodedMapBatch, encodeMapBatch, MapBatchEncoder, type MapWrite } from "./loader.ts";
import { DEFAULT_MAGLEV_SIZE, isPrime, MAX_MAGLEV_SIZE, maglevTable } from "./maglev.ts";
import {
  BE_LOCAL,
  BE_TERMINATING,
  backendIdsOf,
  backendKey,
  backendValue,
  LB_MAPS,
  lb4Backend,
  lb4Key,
  lb4Service,
  lb4Slot,
  lbMaglevChunk,
  lbMaglevKey,
  MAGLEV_CHUNK,
  maglevChunkValue,
  maglevKey,
  NODEPORT_ADDRESS,
  PROTO,
  type Protocol,
  protocolName,
  SCOPE_EXTERNAL,
  SCOPE_INTERNAL,
  SLOTS_PER_ENTRY,
  type SlotBackend,
  SVC_AFFINITY,
  SVC_EXTERNAL,
  SVC_L7,
  SVC_LOCAL,
  SVC_MAGLEV,
  serviceEntries,
  serviceKey,
  serviceValue,
  slotsOf,
  slotsValue,
} from "./maps/lb.ts";

export const ANNOTATION_ALGORITHM = "service.weft.io/lb-algorithm";
export const ANNOTATION_MAGLEV_SIZE = "service.weft.io/maglev-table-size";
/** L7 load balancing in the node proxy (src/agent/l7lb.ts builds its xDS); its TCP frontends get SVC_L7. */
export const ANNOTATION_L7_LB = "service.weft.io/l7-lb";
export const L7_LB_ALGORITHMS = ["round-robin", "least-request", "ring-hash", "maglev"] as const;
export type L7LbAlgorithm = (typeof L7_LB_ALGORITHMS)[number];
/** The annotation names a known L7 algorithm (a bad value is reported by src/agent/l7lb.ts, not here: L4 stays). */
export function wantsL7Lb(annotations: Record<string, string> | undefined): boolean {
  const v = annotations?.[ANNOTATION_L7_LB];
  return v !== undefined && (L7_LB_ALGORITHMS as readonly string[]).includes(v);
}
/** Kubernetes' default and maximum sessionAffinityConfig.clientIP.timeoutSeconds. */
export const DEFAULT_AFFINITY_TIMEOUT = 10800;
export const MAX_AFFINITY_TIMEOUT = 86400;

// ---- inputs: the Kubernetes shapes (only the fields used) ----------------------------------------

export interface ServicePortInput {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  nodePort?: number;
}

export interface ServiceInput {
  metadata: { namespace?: string; name: string; annotations?: Record<string, string> };
  spec?: {
    type?: string;
    clusterIP?: string;
    externalIPs?: string[];
    ports?: ServicePortInput[];
    sessionAffinity?: string;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    internalTrafficPolicy?: string;
    externalTrafficPolicy?: string;
  };
  /** LoadBalancer ingress IPs, as a load-balancer controller publishes them. */
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
}

export interface EndpointInput {
  addresses: string[];
  /** Kubernetes: ready unset means ready; serving unset means as ready; terminating unset means false. */
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
  nodeName?: string;
}

export interface EndpointSliceInput {
  metadata: { namespace?: string; name?: string; labels?: Record<string, string> };
  addressType?: string;
  endpoints?: EndpointInput[] | null;
  /** Named as the service's ports; `port` is the resolved target port on these endpoints. */
  ports?: { name?: string | null; port?: number | null; protocol?: string | null }[] | null;
}

export interface LbOptions {
  /** This node's name: internalTrafficPolicy Local keeps the endpoints whose nodeName matches. */
  node?: string;
  /** Ids in use (from the previous state or the pinned maps), so they stay stable. */
  previous?: LbIds;
}

// ---- outputs ---------------------------------------------------------------------------------------

/** One VIP:port/protocol the hooks translate; its slots hold `backendIds` in order. */
export interface LbFrontend {
  address: string;
  port: number;
  proto: Protocol;
  serviceId: number;
  backendIds: number[];
  affinityTimeout: number;
  maglevSize: number;
  flags: number;
  /** "namespace/name:port" (for reports). */
  service: string;
  /** lb4_key.scope: SCOPE_INTERNAL (absent: the socket hooks) or SCOPE_EXTERNAL (bpf/host). */
  scope?: typeof SCOPE_INTERNAL | typeof SCOPE_EXTERNAL;
}

/** An endpoint of one service port; ids are per service port, so a backend names its service. */
export interface LbBackend {
  id: number;
  address: string;
  port: number;
  proto: Protocol;
  serviceId: number;
  flags: number;
}

export interface LbMaglevTable {
  serviceId: number;
  scope: 0 | 1;
  /** M entries of backend ids. */
  backendIds: Uint32Array;
}

export interface LbState {
  /** Frontends for pods (scope internal): ClusterIP, ExternalIPs, LoadBalancer IPs. */
  frontends: LbFrontend[];
  /**
   * Frontends for traffic from outside the node (scope external): NodePorts (address 0.0.0.0),
   * and with externalTrafficPolicy Local the ExternalIPs and LoadBalancer IPs (this node's
   * endpoints only); under Cluster those are served by their internal entry.
   */
  external?: LbFrontend[];
  backends: LbBackend[];
  maglev: LbMaglevTable[];
}

/** A service (or one of its ports) left out, and why; the rest of the state is unaffected. */
export interface ServiceProblem {
  code: "WEFT_SERVICE_INVALID" | "WEFT_SERVICE_UNSUPPORTED";
  service: string;
  port?: string;
  reason: string;
}

export interface LbIds {
  /** frontend "address:port/proto" → service id */
  services: Map<string, number>;
  /** "serviceId|address:port/proto" → backend id */
  backends: Map<string, number>;
  nextService: number;
  nextBackend: number;
}

// ---- validation helpers ----------------------------------------------------------------------------

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const PORT_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/; // IANA_SVC_NAME: <= 15, has a letter

function validPort(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function frontendId(address: string, port: number, proto: Protocol, scope = SCOPE_INTERNAL): string {
  const id = `${address}:${port}/${proto}`;
  return scope === SCOPE_EXTERNAL ? `external ${id}` : id;
}

/** How reports name an external frontend: "nodePort 30080/TCP" or "external 192.0.2.1:80/TCP". */
function externalName(address: string, port: number, proto: Protocol): string {
  return address === NODEPORT_ADDRESS ? `nodePort ${port}/${proto}` : `${address}:${port}/${proto} (external)`;
}

/** How a service's port is named ("namespace/name:port name or number"): a frontend's owner, and its `service`. */
function portOwner(key: string, portName: string | undefined, port: number): string {
  return `${key}:${portName || String(port)}`;
}

function backendId(serviceId: number, address: string, port: number, proto: Protocol): string {
  return `${serviceId}|${address}:${port}/${proto}`;
}

export function emptyIds(): LbIds {
  return { services: new Map(), backends: new Map(), nextService: 1, nextBackend: 1 };
}

/** The ids a state uses; pass as `previous` to keep them across recomputations. */
export function idsOf(state: LbState): LbIds {
  const ids = emptyIds();
  for (const f of [...state.frontends, ...(state.external ?? [])]) {
    ids.services.set(frontendId(f.address, f.port, f.proto, f.scope), f.serviceId);
    ids.nextService = Math.max(ids.nextService, f.serviceId + 1);
  }
  for (const b of state.backends) {
    ids.backends.set(backendId(b.serviceId, b.address, b.port, b.proto), b.id);
    ids.nextBackend = Math.max(ids.nextBackend, b.id + 1);
  }
  return ids;
}

interface Resolved {
  address: string;
  port: number;
  ready: boolean;
  terminating: boolean;
  local: boolean;
}
// ---- the computation ------------------------------------------------------------------------------

/** What one service contributes, in the order desiredLb lists entries, and its problems. */
interface ServiceUnit {
  /** The ids this service holds: frontend ids → service id, backend ids (LbIds' keys) → backend id. */
  serviceKeys: string[];
  serviceIds: number[];
  backendKeys: string[];
  backendIds: number[];
  frontends: LbFrontend[];
  external: LbFrontend[];
  backends: LbBackend[];
  maglev: LbMaglevTable[];
  problems: ServiceProblem[];
}

/** What a computation carries from one service to the next (services in namespace/name order). */
interface Pass {
  prev: LbIds;
  node: string | undefined;
  nextService: number;
  nextBackend: number;
  /** Service ids taken in this pass. */
  claimedIds: Set<number>;
  /** frontend id → "namespace/name:port" holding it in this pass. */
  usedFrontends: Map<string, string>;
}

function newPass(prev: LbIds, node: string | undefined, nextService = prev.nextService, nextBackend = prev.nextBackend): Pass {
  return { prev, node, nextService, nextBackend, claimedIds: new Set(), usedFrontends: new Map() };
}

const nameOf = (m: { namespace?: string; name: string }) => `${m.namespace ?? "default"}/${m.name}`;

/** namespace → name → T: lookups with the inputs' own strings, no "namespace/name" built per lookup. */
type ByName<T> = Map<string, Map<string, T>>;

function setIn<T>(m: ByName<T>, ns: string, name: string, value: T): void {
  const inner = m.get(ns);
  if (inner) inner.set(name, value);
  else m.set(ns, new Map([[name, value]]));
}

/** EndpointSlices by namespace and service (IPv4 slices with a service-name label), in input order. */
function slicesByService(slices: readonly EndpointSliceInput[]): ByName<EndpointSliceInput[]> {
  const out: ByName<EndpointSliceInput[]> = new Map();
  for (const s of slices) {
    const svcName = s.metadata.labels?.["kubernetes.io/service-name"];
    if (!svcName || (s.addressType !== undefined && s.addressType !== "IPv4")) continue;
    const ns = s.metadata.namespace ?? "default";
    const list = out.get(ns)?.get(svcName);
    if (list) list.push(s);
    else setIn(out, ns, svcName, [s]);
  }
  return out;
}

const slicesOf = (bySvc: ByName<EndpointSliceInput[]>, svc: ServiceInput): EndpointSliceInput[] =>
  bySvc.get(svc.metadata.namespace ?? "default")?.get(svc.metadata.name) ?? [];

const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The desired service maps for one node. Services are taken in namespace/name order, so when two
 * claim the same frontend the first keeps it and the second is reported.
 */
export function desiredLb(
  services: readonly ServiceInput[],
  slices: readonly EndpointSliceInput[],
  opts: LbOptions = {},
): { state: LbState; problems: ServiceProblem[] } {
  const pass = newPass(opts.previous ?? emptyIds(), opts.node);
  const bySvc = slicesByService(slices);
  const sorted = services.map((svc) => ({ key: nameOf(svc.metadata), svc })).sort(byKey); // stable
  const units = sorted.map(({ key, svc }) => computeService(svc, key, slicesOf(bySvc, svc), pass));
  return assemble(units);
}

function assemble(units: Iterable<ServiceUnit>): { state: LbState; problems: ServiceProblem[] } {
  const frontends: LbFrontend[] = [];
  const external: LbFrontend[] = [];
  const backends: LbBackend[] = [];
  const maglev: LbMaglevTable[] = [];
  const problems: ServiceProblem[] = [];
  for (const u of units) {
    for (const f of u.frontends) frontends.push(f);
    for (const f of u.external) external.push(f);
    for (const b of u.backends) backends.push(b);
    for (const t of u.maglev) maglev.push(t);
    for (const p of u.problems) problems.push(p);
  }
  return { state: { frontends, external, backends, maglev }, problems };
}

// biome-ignore lint/suspicious/noExplicitAny: the one shared empty list (never written: see own())
const NONE: any[] = Object.freeze([]) as unknown as any[];

/** `list`, or a new array in its place when it is the shared NONE. */
function own<T>(list: T[]): T[] {
  return list === NONE ? [] : list;
}

function reportProblem(unit: ServiceUnit, service: string, reason: string, port?: string, code: ServiceProblem["code"] = "WEFT_SERVICE_INVALID"): void {
  unit.problems = own(unit.problems);
  unit.problems.push(port === undefined ? { code, service, reason } : { code, service, port, reason });
}

/** IPV4.test(s) without the regex engine (the hot path: every endpoint address). */
function isIPv4(s: string): boolean {
  return parseIPv4(s) >= 0;
}

/** Checks a dotted quad and converts it in one pass: the address as ipv4Number gives it, or -1 when it is none. */
function parseIPv4(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let parts = 0;
  let digits = 0;
  let value = 0;
  let first = 0;
  let out = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || value > 255 || (digits > 1 && first === 48) || ++parts > 4) return -1;
      out = out * 256 + value;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 0) first = c;
      if (++digits > 3) return -1;
      value = value * 10 + (c - 48);
    } else return -1;
  }
  return parts === 4 ? out : -1;
}

/**
 * An empty unit (one place makes them all, so they share one shape). external, maglev and
 * problems start as the shared NONE and get an array of their own when first needed (most
 * services have none of them); every write goes through own().
 */
function newUnit(): ServiceUnit {
  return { serviceKeys: [], serviceIds: [], backendKeys: [], backendIds: [], frontends: [], external: NONE, backends: [], maglev: NONE, problems: NONE };
}

/** One service's entries and problems; takes ids and frontends from `ctx` and records its own there. */
function computeService(svc: ServiceInput, name: string, svcSlices: readonly EndpointSliceInput[], ctx: Pass): ServiceUnit {
  const unit = newUnit();
  const spec = svc.spec ?? {};
  if (spec.type === "ExternalName") return unit;
  const clusterIP = spec.clusterIP;
  if (clusterIP === "None") return unit; // headless: DNS only
  // -- service-wide settings: any error leaves the whole service out --
  if (clusterIP !== undefined && clusterIP !== "" && !IPV4.test(clusterIP)) {
    reportProblem(
      unit,
      name,
      clusterIP.includes(":") ? `clusterIP ${clusterIP}: IPv6 is not supported yet` : `clusterIP "${clusterIP}" is not an IPv4 address`,
      undefined,
      clusterIP.includes(":") ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID",
    );
    return unit;
  }
  const externalIPs = spec.externalIPs ?? [];
  const badExternal = externalIPs.find((ip) => !IPV4.test(ip));
  if (badExternal !== undefined) {
    reportProblem(unit, name, `externalIPs: "${badExternal}" is not an IPv4 address`);
    return unit;
  }
  let affinityTimeout = 0;
  if (spec.sessionAffinity === "ClientIP") {
    const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT;
    if (!Number.isInteger(t) || t < 1 || t > MAX_AFFINITY_TIMEOUT) {
      reportProblem(unit, name, `sessionAffinityConfig.clientIP.timeoutSeconds ${t} is not in 1..${MAX_AFFINITY_TIMEOUT}`);
      return unit;
    }
    affinityTimeout = t;
  } else if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== "None") {
    reportProblem(unit, name, `sessionAffinity "${spec.sessionAffinity}" is not None or ClientIP`);
    return unit;
  }
  const itp = spec.internalTrafficPolicy ?? "Cluster";
  if (itp !== "Cluster" && itp !== "Local") {
    reportProblem(unit, name, `internalTrafficPolicy "${itp}" is not Cluster or Local`);
    return unit;
  }
  const etp = spec.externalTrafficPolicy ?? "Cluster";
  if (etp !== "Cluster" && etp !== "Local") {
    reportProblem(unit, name, `externalTrafficPolicy "${etp}" is not Cluster or Local`);
    return unit;
  }
  const type = spec.type ?? "ClusterIP";
  if (type !== "ClusterIP" && type !== "NodePort" && type !== "LoadBalancer") {
    reportProblem(unit, name, `type "${type}" is not ClusterIP, NodePort, LoadBalancer or ExternalName`);
    return unit;
  }
  // LoadBalancer ingress IPs (hostname-only entries name no address here).
  const lbIPs: string[] = [];
  if (type === "LoadBalancer") {
    for (const ing of svc.status?.loadBalancer?.ingress ?? []) if (ing.ip !== undefined && !lbIPs.includes(ing.ip)) lbIPs.push(ing.ip);
  }
  const badLb = lbIPs.find((ip) => !IPV4.test(ip));
  if (badLb !== undefined) {
    reportProblem(
      unit,
      name,
      badLb.includes(":")
        ? `status.loadBalancer.ingress ip ${badLb}: IPv6 is not supported yet`
        : `status.loadBalancer.ingress ip "${badLb}" is not an IPv4 address`,
      undefined,
      badLb.includes(":") ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID",
    );
    return unit;
  }
  const annotations = svc.metadata.annotations ?? {};
  const algorithm = annotations[ANNOTATION_ALGORITHM] ?? "random";
  if (algorithm !== "random" && algorithm !== "maglev") {
    reportProblem(unit, name, `annotation ${ANNOTATION_ALGORITHM}: "${algorithm}" is not random or maglev`);
    return unit;
  }
  let maglevSize = 0;
  if (algorithm === "maglev") {
    const raw = annotations[ANNOTATION_MAGLEV_SIZE];
    maglevSize = raw === undefined ? DEFAULT_MAGLEV_SIZE : /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!isPrime(maglevSize) || maglevSize < 7 || maglevSize > MAX_MAGLEV_SIZE) {
      reportProblem(unit, name, `annotation ${ANNOTATION_MAGLEV_SIZE}: "${raw}" is not a prime in 7..${MAX_MAGLEV_SIZE}`);
      return unit;
    }
  } else if (annotations[ANNOTATION_MAGLEV_SIZE] !== undefined) {
    reportProblem(unit, name, `annotation ${ANNOTATION_MAGLEV_SIZE} needs ${ANNOTATION_ALGORITHM}: maglev`);
    return unit;
  }
  const ports = spec.ports ?? [];
  if (ports.length > 1 && ports.some((p) => !p.name)) {
    reportProblem(unit, name, "every port must be named when a service has more than one");
    return unit;
  }
  let anyEndpoint = false;
  for (const s of svcSlices) if ((s.endpoints ?? []).length > 0) anyEndpoint = true;
  const seenPorts = ports.length > 1 ? new Set<string>() : undefined;

  // -- per port: an error leaves that port out, the service's other ports stay --
  for (const p of ports) {
    const portLabel = p.name || String(p.port);
    if (!validPort(p.port)) {
      reportProblem(unit, name, `port ${JSON.stringify(p.port)} is not in 1..65535`, portLabel);
      continue;
    }
    const protoRaw = p.protocol ?? "TCP";
    const proto = protoRaw === "TCP" || protoRaw === "UDP" ? (protoRaw as Protocol) : undefined;
    if (!proto) {
      reportProblem(
        unit,
        name,
        `protocol ${protoRaw} is not supported (TCP, UDP)`,
        portLabel,
        protoRaw === "SCTP" ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID",
      );
      continue;
    }
    if (seenPorts?.has(`${p.port}/${proto}`)) {
      reportProblem(unit, name, `port ${p.port}/${proto} appears twice`, portLabel);
      continue;
    }
    seenPorts?.add(`${p.port}/${proto}`);
    const target = p.targetPort ?? p.port;
    let targetNumber: number | undefined;
    if (typeof target === "number" || /^\d+$/.test(target)) {
      targetNumber = Number(target);
      if (!validPort(targetNumber)) {
        reportProblem(unit, name, `targetPort ${JSON.stringify(target)} is not in 1..65535`, portLabel);
        continue;
      }
    } else if (!PORT_NAME.test(target) || !/[a-z]/.test(target)) {
      reportProblem(unit, name, `targetPort "${target}" is neither a port number nor a port name`, portLabel);
      continue;
    }
    if (p.nodePort !== undefined && !validPort(p.nodePort)) {
      reportProblem(unit, name, `nodePort ${JSON.stringify(p.nodePort)} is not in 1..65535`, portLabel);
      continue;
    }

    // Endpoints of this port: a slice names its ports as the service does and gives the
    // resolved target port; a slice without the port gives nothing for a named targetPort.
    // In first-seen order; a duplicate address:port updates its entry in place. Found by a
    // linear search while small, through an index (address:port → position) once large.
    const resolved: Resolved[] = [];
    let index: Map<string, number> | undefined;
    let offered = false;
    const portName = p.name ?? "";
    for (const s of svcSlices) {
      let sp: NonNullable<EndpointSliceInput["ports"]>[number] | undefined;
      for (const x of s.ports ?? []) {
        if ((x.name ?? "") === portName && (x.protocol ?? "TCP") === proto) {
          sp = x;
          break;
        }
      }
      const port = sp && validPort(sp.port) ? sp.port : targetNumber;
      if (port === undefined) continue;
      offered = true;
      for (const e of s.endpoints ?? []) {
        const address = e.addresses[0];
        if (address === undefined || !isIPv4(address)) continue;
        const terminating = e.conditions?.terminating === true;
        const readyCondition = e.conditions?.ready ?? true; // unset means ready (Kubernetes)
        const ready = readyCondition && !terminating;
        const serving = e.conditions?.serving ?? readyCondition;
        if (!ready && !(terminating && serving)) continue; // neither ready nor draining: no entry
        let at = -1;
        if (index !== undefined) at = index.get(`${address}:${port}`) ?? -1;
        else {
          for (let i = 0; i < resolved.length; i++) {
            if ((resolved[i] as Resolved).port === port && (resolved[i] as Resolved).address === address) {
              at = i;
              break;
            }
          }
        }
        const local = ctx.node !== undefined && e.nodeName === ctx.node;
        const was = at >= 0 ? (resolved[at] as Resolved) : undefined;
        const r: Resolved = {
          address,
          port,
          // Duplicates happen while slices are rewritten: ready anywhere wins.
          ready: ready || (was?.ready ?? false),
          terminating: was ? was.terminating && terminating : terminating,
          local,
        };
        if (was) resolved[at] = r;
        else {
          resolved.push(r);
          if (index !== undefined) index.set(`${address}:${port}`, resolved.length - 1);
          else if (resolved.length === 16) {
            index = new Map();
            for (let i = 0; i < resolved.length; i++) index.set(`${(resolved[i] as Resolved).address}:${(resolved[i] as Resolved).port}`, i);
          }
        }
      }
    }
    if (!offered && anyEndpoint) {
      reportProblem(unit, name, `targetPort "${target}" is not a port of any endpoint`, portLabel);
      continue;
    }

    // Frontends of this port; a frontend another service already holds is reported. Pods reach
    // ExternalIPs and LoadBalancer IPs through every endpoint (as kube-proxy short-circuits
    // them); so does the outside under externalTrafficPolicy Cluster (bpf/host falls back to
    // the internal entry when it has SVC_EXTERNAL), so only Local needs external entries of its
    // own for them. NodePorts are external entries always (address 0.0.0.0).
    const wanted: { address: string; flags: number }[] = [];
    if (clusterIP) wanted.push({ address: clusterIP, flags: itp === "Local" ? SVC_LOCAL : 0 });
    for (const ip of [...externalIPs, ...lbIPs]) if (!wanted.some((w) => w.address === ip)) wanted.push({ address: ip, flags: SVC_EXTERNAL });
    const outside: { address: string; port: number; flags: number }[] = [];
    const etpFlags = etp === "Local" ? SVC_LOCAL : 0;
    if (p.nodePort !== undefined && type !== "ClusterIP") outside.push({ address: NODEPORT_ADDRESS, port: p.nodePort, flags: etpFlags });
    if (etp === "Local") {
      for (const w of wanted) if (w.flags & SVC_EXTERNAL) outside.push({ address: w.address, port: p.port, flags: SVC_EXTERNAL | SVC_LOCAL });
    }
    const clash = wanted.find((w) => ctx.usedFrontends.has(frontendId(w.address, p.port, proto)));
    if (clash) {
      reportProblem(
        unit,
        name,
        `${clash.address}:${p.port}/${proto} is already a frontend of ${ctx.usedFrontends.get(frontendId(clash.address, p.port, proto))}`,
        portLabel,
      );
      continue;
    }
    const clashOut = outside.find((o) => ctx.usedFrontends.has(frontendId(o.address, o.port, proto, SCOPE_EXTERNAL)));
    if (clashOut) {
      const other = ctx.usedFrontends.get(frontendId(clashOut.address, clashOut.port, proto, SCOPE_EXTERNAL));
      reportProblem(unit, name, `${externalName(clashOut.address, clashOut.port, proto)} is already a frontend of ${other}`, portLabel);
      continue;
    }
    if (wanted.length === 0 && outside.length === 0) continue; // no address allocated yet

    // A stable service id: the one any of these frontends had, unless already taken.
    const ids = [...wanted.map((w) => frontendId(w.address, p.port, proto)), ...outside.map((o) => frontendId(o.address, o.port, proto, SCOPE_EXTERNAL))];
    let serviceId: number | undefined;
    for (const fid of ids) {
      const old = ctx.prev.services.get(fid);
      if (old !== undefined && !ctx.claimedIds.has(old)) {
        serviceId = old;
        break;
      }
    }
    if (serviceId === undefined) serviceId = ctx.nextService++;
    ctx.claimedIds.add(serviceId);
    const sid = serviceId;
    for (const fid of ids) {
      unit.serviceKeys.push(fid);
      unit.serviceIds.push(sid);
    }

    const backends: LbBackend[] = [];
    let sorted = true;
    for (const r of resolved) {
      const key = backendId(sid, r.address, r.port, proto);
      const id = ctx.prev.backends.get(key) ?? ctx.nextBackend++;
      unit.backendKeys.push(key);
      unit.backendIds.push(id);
      if (backends.length > 0 && (backends[backends.length - 1] as LbBackend).id > id) sorted = false;
      backends.push({ id, address: r.address, port: r.port, proto, serviceId: sid, flags: (r.ready ? 0 : BE_TERMINATING) | (r.local ? BE_LOCAL : 0) });
    }
    if (!sorted) backends.sort((a, b) => a.id - b.id);
    for (const b of backends) unit.backends.push(b);
    const selectable = backends.filter((b) => !(b.flags & BE_TERMINATING));
    const local = selectable.filter((b) => b.flags & BE_LOCAL);

    const baseFlags = (affinityTimeout ? SVC_AFFINITY : 0) | (maglevSize ? SVC_MAGLEV : 0);
    // Only the frontends the socket hook serves (scope internal) redirect to the node proxy.
    const l7 = proto === "TCP" && wantsL7Lb(annotations);
    const service = portOwner(name, p.name, p.port);
    for (const w of wanted) {
      ctx.usedFrontends.set(frontendId(w.address, p.port, proto), service);
      const chosen = w.flags & SVC_LOCAL ? local : selectable;
      unit.frontends.push({
        address: w.address,
        port: p.port,
        proto,
        serviceId: sid,
        backendIds: chosen.map((b) => b.id),
        affinityTimeout,
        maglevSize,
        flags: baseFlags | w.flags | (l7 ? SVC_L7 : 0),
        service,
      });
    }
    for (const o of outside) {
      ctx.usedFrontends.set(frontendId(o.address, o.port, proto, SCOPE_EXTERNAL), service);
      const chosen = o.flags & SVC_LOCAL ? local : selectable;
      unit.external = own(unit.external);
      unit.external.push({
        address: o.address,
        port: o.port,
        proto,
        serviceId: sid,
        backendIds: chosen.map((b) => b.id),
        affinityTimeout,
        maglevSize,
        flags: baseFlags | o.flags,
        service,
        scope: SCOPE_EXTERNAL,
      });
    }
    if (maglevSize) {
      const scopes: [0 | 1, LbBackend[]][] = [[0, selectable]];
      if (wanted.some((w) => w.flags & SVC_LOCAL) || outside.some((o) => o.flags & SVC_LOCAL)) scopes.push([1, local]);
      for (const [scope, list] of scopes) {
        if (list.length === 0) continue;
        const idx = maglevTable(
          list.map((b) => ({ name: `${b.address}:${b.port}` })),
          maglevSize,
        );
        unit.maglev = own(unit.maglev);
        unit.maglev.push({ serviceId: sid, scope, backendIds: Uint32Array.from(idx, (i) => (list[i] as LbBackend).id) });
      }
    }
  }
  return unit;
}

// ---- map contents ---------------------------------------------------------------------------------

/** The agent-written maps' complete contents: key hex → value bytes, per map. */
export interface LbContents {
  services: Map<string, Buffer>;
  backends: Map<string, Buffer>;
  maglev: Map<string, Buffer>;
}

export function emptyContents(): LbContents {
  return { services: new Map(), backends: new Map(), maglev: new Map() };
}

// 10k services are ~50k entries, so the hot ones are encoded here without the generic mirror
// walk; the layout still comes from the mirrors (their offsets and sizes), and a sample of each
// is compared with the mirror's own encoding when this module loads.
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const KEY = lb4Key.offsets as Record<"address" | "dport" | "slot" | "proto" | "scope" | "pad", number>;
const SVC = lb4Service.offsets as Record<"service_id" | "count" | "affinity_timeout" | "maglev_size" | "flags" | "backend_ids" | "backends", number>;
const SLOT = lb4Slot.offsets as Record<"address" | "port" | "flags" | "pad", number>;
const BE = lb4Backend.offsets as Record<"address" | "port" | "proto" | "flags" | "service_id", number>;
const SLOT_HEX = 2 * KEY.slot;
const MK = lbMaglevKey.offsets as Record<"service_id" | "chunk" | "scope" | "pad", number>;

function putU32LE(b: Buffer, at: number, v: number): void {
  b[at] = v & 255;
  b[at + 1] = (v >>> 8) & 255;
  b[at + 2] = (v >>> 16) & 255;
  b[at + 3] = v >>> 24;
}
function putU32BE(b: Buffer, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 255;
  b[at + 2] = (v >>> 8) & 255;
  b[at + 3] = v & 255;
}
function putU16BE(b: Buffer, at: number, v: number): void {
  b[at] = (v >>> 8) & 255;
  b[at + 1] = v & 255;
}

// The encoders below write lb4_service values field by field: five u32 fields, the ids and their
// slots (address, port, flags, pad) must be all of it.
if (lb4Service.size !== 20 + (4 + lb4Slot.size) * SLOTS_PER_ENTRY || SVC.backend_ids !== 20 || lb4Slot.size !== 8) {
  throw new Error("services.ts: lb4_service is no longer five u32 fields, the backend ids and their slots; update the encoders");
}

/** A frontend's selectable backends in slot order: ids, addresses (host-order numbers), ports, LB_BE_* flags. */
interface Slots {
  ids: ArrayLike<number>;
  addrs: ArrayLike<number>;
  ports: ArrayLike<number>;
  flags: ArrayLike<number>;
}

/**
 * An lb4_service value at b[v..]: the fields, and slots [from, to) (at most SLOTS_PER_ENTRY) with
 * zeros after them. Entry 0 of a frontend: its fields and its first 8 backends; entry c: service id
 * only and backends from 8c.
 */
function putServiceValue(
  b: Buffer,
  v: number,
  serviceId: number,
  count: number,
  affinityTimeout: number,
  maglevSize: number,
  flags: number,
  slots: Slots,
  from: number,
  to: number,
): void {
  putU32LE(b, v + SVC.service_id, serviceId);
  putU32LE(b, v + SVC.count, count);
  putU32LE(b, v + SVC.affinity_timeout, affinityTimeout);
  putU32LE(b, v + SVC.maglev_size, maglevSize);
  putU32LE(b, v + SVC.flags, flags);
  const at = v + SVC.backend_ids;
  const n = to - from;
  for (let i = 0; i < SLOTS_PER_ENTRY; i++) putU32LE(b, at + 4 * i, i < n ? (slots.ids[from + i] as number) : 0);
  for (let i = 0, w = v + SVC.backends; i < SLOTS_PER_ENTRY; i++, w += 8) {
    if (i < n) {
      putU32BE(b, w + SLOT.address, slots.addrs[from + i] as number);
      putU16BE(b, w + SLOT.port, slots.ports[from + i] as number);
      b[w + SLOT.flags] = slots.flags[from + i] as number;
    } else {
      putU32LE(b, w + SLOT.address, 0);
      b[w + SLOT.port] = 0;
      b[w + SLOT.port + 1] = 0;
      b[w + SLOT.flags] = 0;
    }
    b[w + SLOT.pad] = 0;
  }
}

/** An lb4_key at b[at..]: frontend address (host-order number), port, protocol number, entry (`slot`), scope. */
function putServiceKey(b: Buffer, at: number, address: number, port: number, proto: number, slot: number, scope: number): void {
  putU32BE(b, at + KEY.address, address);
  putU16BE(b, at + KEY.dport, port);
  b[at + KEY.slot] = slot & 255;
  b[at + KEY.slot + 1] = slot >>> 8;
  b[at + KEY.proto] = proto;
  b[at + KEY.scope] = scope;
  b[at + KEY.pad] = 0;
  b[at + KEY.pad + 1] = 0;
}

/** An lb4_backends record at b[at..]: the id (u32 key), then the lb4_backend value. */
function putBackendRecord(b: Buffer, at: number, id: number, address: number, port: number, proto: number, flags: number, serviceId: number): void {
  putU32LE(b, at, id);
  putU32BE(b, at + 4 + BE.address, address);
  putU16BE(b, at + 4 + BE.port, port);
  b[at + 4 + BE.proto] = proto;
  b[at + 4 + BE.flags] = flags;
  putU32LE(b, at + 4 + BE.service_id, serviceId);
}

/** A unit's (or state's) backends by id, for the slots of its frontends. */
function backendsById(backends: readonly LbBackend[]): Map<number, LbBackend> {
  const m = new Map<number, LbBackend>();
  for (const b of backends) m.set(b.id, b);
  return m;
}

/** Frontend `f`'s slots, its backends found in `byId`. */
function frontendSlots(f: LbFrontend, byId: ReadonlyMap<number, LbBackend>): Slots {
  const n = f.backendIds.length;
  const slots = { ids: f.backendIds, addrs: new Array<number>(n), ports: new Array<number>(n), flags: new Array<number>(n) };
  for (let i = 0; i < n; i++) {
    const be = byId.get(f.backendIds[i] as number);
    if (be === undefined) throw new Error(`services.ts: ${f.service} names backend ${f.backendIds[i]}, which its unit lacks`);
    slots.addrs[i] = ipv4Number(be.address);
    slots.ports[i] = be.port;
    slots.flags[i] = be.flags;
  }
  return slots;
}

/** Writes entry `entry` of frontend `f` (its `slots`) at b[v..] (see putServiceValue). */
function putEntryValue(b: Buffer, v: number, f: LbFrontend, slots: Slots, entry: number): void {
  const n = f.backendIds.length;
  const from = entry * SLOTS_PER_ENTRY;
  const to = Math.min(n, from + SLOTS_PER_ENTRY);
  if (entry === 0) putServiceValue(b, v, f.serviceId, n, f.affinityTimeout, f.maglevSize, f.flags, slots, from, to);
  else putServiceValue(b, v, f.serviceId, 0, 0, 0, 0, slots, from, to);
}

/** Whether frontend flags make the kernel look a backend up by id (lb4_backends): ClientIP affinity, Maglev. */
const PICKS_BY_ID = SVC_AFFINITY | SVC_MAGLEV;

/** The service ports (ids) of a unit or state whose backends go to lb4_backends (see PICKS_BY_ID). */
function pickedById(u: { frontends: readonly LbFrontend[]; external?: readonly LbFrontend[] }): Set<number> {
  const out = new Set<number>();
  for (const f of u.frontends) if (f.flags & PICKS_BY_ID) out.add(f.serviceId);
  for (const f of u.external ?? NONE) if (f.flags & PICKS_BY_ID) out.add(f.serviceId);
  return out;
}

/** The backends of `u` that lb4_backends holds. */
function backendRecords(u: { frontends: readonly LbFrontend[]; external?: readonly LbFrontend[]; backends: readonly LbBackend[] }): LbBackend[] {
  const byId = pickedById(u);
  return byId.size === 0 ? NONE : u.backends.filter((b) => byId.has(b.serviceId));
}

/** The parts of a state or unit that become map entries. */
interface ServiceUnitView {
  frontends: readonly LbFrontend[];
  external?: readonly LbFrontend[];
  backends: readonly LbBackend[];
  maglev: readonly LbMaglevTable[];
}

/** A validated dotted quad as a host-order u32 whose big-endian bytes are the address. */
function ipv4Number(ip: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return n * 256 + part;
}

/** A frontend's key in hex, split around the slot (u16, little-endian) so slots cost a concatenation. */
function frontendKeyParts(f: LbFrontend): [string, string] {
  const b = Buffer.alloc(lb4Key.size);
  b.writeUInt32BE(ipv4Number(f.address), KEY.address);
  b.writeUInt16BE(f.port, KEY.dport);
  b.writeUInt8(PROTO[f.proto], KEY.proto);
  b.writeUInt8(f.scope ?? SCOPE_INTERNAL, KEY.scope);
  const hex = b.toString("hex");
  return [hex.slice(0, SLOT_HEX), hex.slice(SLOT_HEX + 4)];
}

const slotHex = (slot: number) => (HEX2[slot & 255] as string) + (HEX2[(slot >>> 8) & 255] as string);
const u32Hex = (n: number) => (HEX2[n & 255] as string) + HEX2[(n >>> 8) & 255] + HEX2[(n >>> 16) & 255] + HEX2[(n >>> 24) & 255];

function entryValue(f: LbFrontend, slots: Slots, entry: number): Buffer {
  const b = Buffer.alloc(lb4Service.size);
  putEntryValue(b, 0, f, slots, entry);
  return b;
}

function fastBackendValue(be: LbBackend): Buffer {
  const b = Buffer.alloc(lb4Backend.size);
  b.writeUInt32BE(ipv4Number(be.address), BE.address);
  b.writeUInt16BE(be.port, BE.port);
  b.writeUInt8(PROTO[be.proto], BE.proto);
  b.writeUInt8(be.flags, BE.flags);
  b.writeUInt32LE(be.serviceId, BE.service_id);
  return b;
}

{
  const f: LbFrontend = {
    address: "192.0.2.250",
    port: 30443,
    proto: "UDP",
    serviceId: 0x01020304,
    backendIds: [7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    affinityTimeout: 300,
    maglevSize: 251,
    flags: 0x0b,
    service: "",
    scope: SCOPE_EXTERNAL,
  };
  const be: LbBackend = { id: 0x0a0b0c0d, address: "10.200.255.1", port: 8443, proto: "UDP", serviceId: 0x01020304, flags: 3 };
  const bes = f.backendIds.map((id) => ({ ...be, id, address: `10.200.${id}.${250 - id}`, port: 8000 + id, flags: id & 3 }));
  const slots = frontendSlots(f, backendsById(bes));
  const [pre, post] = frontendKeyParts(f);
  const same =
    pre + slotHex(0x0102) + post === serviceKey(f, 0x0102).toString("hex") &&
    entryValue(f, slots, 0).equals(
      serviceValue({ serviceId: f.serviceId, count: 10, affinityTimeout: 300, maglevSize: 251, flags: 0x0b, backendIds: f.backendIds, backends: bes }),
    ) &&
    entryValue(f, slots, 1).equals(slotsValue(f.serviceId, f.backendIds, bes, 1)) &&
    fastBackendValue(be).equals(backendValue(be)) &&
    u32Hex(be.id) === backendKey(be.id).toString("hex");
  if (!same) throw new Error("services.ts: the fast lb4 encoders disagree with the mirrors in maps/lb.ts");
}

/** Entries of part of a state (one service's), as parallel key-hex / value lists per map. */
interface Entries {
  sk: string[];
  sv: Buffer[];
  bk: string[];
  bv: Buffer[];
  mk: string[];
  mv: Buffer[];
}

function entriesOf(u: {
  frontends: readonly LbFrontend[];
  external?: readonly LbFrontend[];
  backends: readonly LbBackend[];
  maglev: readonly LbMaglevTable[];
}): Entries {
  const e: Entries = { sk: [], sv: [], bk: [], bv: [], mk: [], mv: [] };
  const byId = backendsById(u.backends);
  const frontend = (f: LbFrontend) => {
    const [pre, post] = frontendKeyParts(f);
    const slots = frontendSlots(f, byId);
    const entries = serviceEntries(f.backendIds.length);
    for (let c = 0; c < entries; c++) {
      e.sk.push(pre + slotHex(c) + post);
      e.sv.push(entryValue(f, slots, c));
    }
  };
  for (const f of u.frontends) frontend(f);
  for (const f of u.external ?? []) frontend(f);
  for (const b of backendRecords(u)) {
    e.bk.push(u32Hex(b.id));
    e.bv.push(fastBackendValue(b));
  }
  for (const t of u.maglev) {
    const chunks = Math.ceil(t.backendIds.length / MAGLEV_CHUNK);
    for (let c = 0; c < chunks; c++) {
      e.mk.push(maglevKey(t.serviceId, t.scope, c).toString("hex"));
      e.mv.push(maglevChunkValue(t.backendIds, c));
    }
  }
  return e;
}

function addEntries(out: LbContents, e: Entries): void {
  for (let i = 0; i < e.sk.length; i++) out.services.set(e.sk[i] as string, e.sv[i] as Buffer);
  for (let i = 0; i < e.bk.length; i++) out.backends.set(e.bk[i] as string, e.bv[i] as Buffer);
  for (let i = 0; i < e.mk.length; i++) out.maglev.set(e.mk[i] as string, e.mv[i] as Buffer);
}

export function lbContents(state: LbState): LbContents {
  const out = emptyContents();
  addEntries(out, entriesOf(state));
  return out;
}

/** Whether an lb4_services key (hex) is a service's entry 0 rather than one holding its further backends. */
function isServiceEntry(keyHex: string): boolean {
  return keyHex.startsWith("0000", SLOT_HEX);
}

/** The ids pinned maps use (after an agent restart), decoded from their contents. */
export function idsFromContents(contents: LbContents): LbIds {
  const ids = emptyIds();
  const backend = (serviceId: number, address: string, port: number, proto: Protocol, id: number) => {
    ids.backends.set(backendId(serviceId, address, port, proto), id);
    ids.nextBackend = Math.max(ids.nextBackend, id + 1);
  };
  for (const [k, v] of contents.services) {
    const key = lb4Key.decode(Buffer.from(k, "hex"));
    const proto = protocolName(key.proto);
    if (!proto) continue;
    const service = lb4Service.decode(v);
    if (isServiceEntry(k)) {
      ids.services.set(frontendId(key.address, key.dport, proto, key.scope), service.service_id);
      ids.nextService = Math.max(ids.nextService, service.service_id + 1);
    }
    // The slots name the selectable backends of every service port; lb4_backends adds the
    // terminating ones of those that pick by id.
    const slotIds = backendIdsOf(service.backend_ids);
    const slots = slotsOf(service.backends, slotIds.length);
    for (const [i, id] of slotIds.entries()) {
      const s = slots[i] as SlotBackend;
      backend(service.service_id, s.address, s.port, proto, id);
    }
  }
  for (const [k, v] of contents.backends) {
    const b = lb4Backend.decode(v);
    const proto = protocolName(b.proto);
    if (proto) backend(b.service_id, b.address, b.port, proto, Buffer.from(k, "hex").readUInt32LE(0));
  }
  return ids;
}

/**
 * The writes that turn `old` into `next`. Order (never a lookup that finds nothing it needs):
 * updates of backends, Maglev chunks, further entries (backends 9 and on), then entries 0 (which
 * publish the new count); then deletes of entries 0, further entries, Maglev chunks, backends. So
 * an entry never names a backend not yet written, an entry 0 never counts backends in entries not
 * yet written, and nothing an existing entry 0 points to disappears before that entry has changed.
 */
export function lbDiff(old: LbContents, next: LbContents, pinOf: (map: string) => string): MapWrite[] {
  const [pS, pB, pM] = [pinOf(LB_MAPS.services), pinOf(LB_MAPS.backends), pinOf(LB_MAPS.maglev)];
  const up = (o: Map<string, Buffer>, n: Map<string, Buffer>, map: string, split?: MapWrite[]): MapWrite[] => {
    const out: MapWrite[] = [];
    for (const [k, v] of n) {
      const was = o.get(k);
      if (was?.equals(v)) continue;
      const w: MapWrite = { op: "update", map, key: Buffer.from(k, "hex"), value: v };
      (split && isServiceEntry(k) ? split : out).push(w);
    }
    return out;
  };
  const del = (o: Map<string, Buffer>, n: Map<string, Buffer>, map: string, split?: MapWrite[]): MapWrite[] => {
    const out: MapWrite[] = [];
    for (const k of o.keys()) {
      if (n.has(k)) continue;
      const w: MapWrite = { op: "delete", map, key: Buffer.from(k, "hex") };
      (split && !isServiceEntry(k) ? split : out).push(w);
    }
    return out;
  };
  const entryUpdates: MapWrite[] = [];
  const slotDeletes: MapWrite[] = [];
  const slotUpdates = up(old.services, next.services, pS, entryUpdates);
  const entryDeletes = del(old.services, next.services, pS, slotDeletes);
  return [
    ...up(old.backends, next.backends, pB),
    ...up(old.maglev, next.maglev, pM),
    ...slotUpdates,
    ...entryUpdates,
    ...entryDeletes,
    ...slotDeletes,
    ...del(old.maglev, next.maglev, pM),
    ...del(old.backends, next.backends, pB),
  ];
}

/**
 * lbDiff(empty, contents of `units`) encoded for the map server without building the contents:
 * the same records in the same order (backends, Maglev chunks, slots, service entries, each in
 * unit order), keys and values written straight into the batch from the mirrors' offsets.
 */
export function encodeCreate(units: readonly ServiceUnitView[], pinOf: (map: string) => string): EncodedMapBatch {
  let nb = 0;
  let nm = 0;
  let ns = 0;
  for (const u of units) {
    nb += backendRecords(u).length;
    for (const t of u.maglev) nm += Math.ceil(t.backendIds.length / MAGLEV_CHUNK);
    for (const f of u.frontends) ns += serviceEntries(f.backendIds.length);
    for (const f of u.external ?? []) ns += serviceEntries(f.backendIds.length);
  }
  const enc = new MapBatchEncoder(
    nb * (12 + 4 + lb4Backend.size) + nm * (12 + lbMaglevKey.size + lbMaglevChunk.size) + ns * (12 + lb4Key.size + lb4Service.size) + 3 * 4096,
  );
  // Maps are declared in the order lbDiff's writes first use them (encodeMapBatch's table order).
  if (nb > 0) enc.map(pinOf(LB_MAPS.backends));
  if (nm > 0) enc.map(pinOf(LB_MAPS.maglev));
  if (ns > 0) enc.map(pinOf(LB_MAPS.services));
  const part = encodeCreatePart(enc, units, pinOf);
  part.backends();
  part.maglev();
  part.slots();
  part.entries();
  return enc.finish();
}

/** encodeCreate's four phases for `units`, appending to `enc` (whose maps are declared already). */
function encodeCreatePart(enc: MapBatchEncoder, units: readonly ServiceUnitView[], pinOf: (map: string) => string) {
  const kS = lb4Key.size;
  const vS = lb4Service.size;
  const vB = lb4Backend.size;
  const kM = lbMaglevKey.size;
  const vM = lbMaglevChunk.size;
  const write = (mS: number, f: LbFrontend, slots: Slots, addr: number, entry: number) => {
    const at = enc.update(mS, kS, vS);
    putServiceKey(enc.buf, at, addr, f.port, PROTO[f.proto], entry, f.scope ?? SCOPE_INTERNAL);
    putEntryValue(enc.buf, at + kS, f, slots, entry);
  };
  /** Unit k's backends by id, built when a frontend of it is first written and kept for the other pass. */
  const byIds: (ReadonlyMap<number, LbBackend> | undefined)[] = [];
  const byIdOf = (k: number) => (byIds[k] ??= backendsById((units[k] as ServiceUnitView).backends));
  /** Entries 1.. (backends 9 and on). */
  const slots = (mS: number, f: LbFrontend, k: number) => {
    const entries = serviceEntries(f.backendIds.length);
    if (entries === 1) return;
    const addr = ipv4Number(f.address);
    const s = frontendSlots(f, byIdOf(k));
    for (let c = 1; c < entries; c++) write(mS, f, s, addr, c);
  };
  const entry = (mS: number, f: LbFrontend, k: number) => write(mS, f, frontendSlots(f, byIdOf(k)), ipv4Number(f.address), 0);
  /** Every frontend (internal, then external) of the units, with the services map opened at the first; `k`: its unit. */
  const eachFrontend = (write: (mS: number, f: LbFrontend, k: number) => void) => {
    let mS = -1;
    for (let k = 0; k < units.length; k++) {
      const u = units[k] as ServiceUnitView;
      for (const list of [u.frontends, u.external ?? NONE]) {
        for (const f of list) {
          if (mS < 0) mS = enc.map(pinOf(LB_MAPS.services));
          write(mS, f, k);
        }
      }
    }
  };
  return {
    backends() {
      let mB = -1;
      for (const u of units) {
        for (const be of backendRecords(u)) {
          if (mB < 0) mB = enc.map(pinOf(LB_MAPS.backends));
          putBackendRecord(enc.buf, enc.update(mB, 4, vB), be.id, ipv4Number(be.address), be.port, PROTO[be.proto], be.flags, be.serviceId);
        }
      }
    },
    maglev() {
      for (const u of units) {
        for (const t of u.maglev) {
          const mM = enc.map(pinOf(LB_MAPS.maglev));
          const ids = t.backendIds;
          const chunks = Math.ceil(ids.length / MAGLEV_CHUNK);
          for (let c = 0; c < chunks; c++) {
            const at = enc.update(mM, kM, vM);
            const b = enc.buf;
            putU32LE(b, at + MK.service_id, t.serviceId);
            b[at + MK.chunk] = c & 255;
            b[at + MK.chunk + 1] = c >>> 8;
            b[at + MK.scope] = t.scope;
            b[at + MK.pad] = 0;
            // As maglevChunkValue: entries past the table's end repeat it from the start.
            const v = at + kM;
            for (let i = 0, j = (c * MAGLEV_CHUNK) % ids.length; i < MAGLEV_CHUNK; i++) {
              putU32LE(b, v + 4 * i, ids[j] as number);
              if (++j === ids.length) j = 0;
            }
          }
        }
      }
    },
    slots() {
      eachFrontend(slots);
    },
    entries() {
      eachFrontend(entry);
    },
  };
}

// ---- incremental: the same computation, redone only for the services whose inputs changed ---------

/** The fields of a Service that computeService reads (a copy, so later edits of the input show). */
interface ServiceSnap {
  algorithm: string | undefined;
  maglevSize: string | undefined;
  l7lb: string | undefined;
  type: string | undefined;
  clusterIP: string | undefined;
  externalIPs: string[] | undefined;
  ports: ServicePortInput[] | undefined;
  affinity: string | undefined;
  timeout: number | undefined;
  itp: string | undefined;
  etp: string | undefined;
  ingress: (string | undefined)[] | undefined;
}

interface EndpointSnap {
  address: string | undefined;
  ready: boolean | null | undefined;
  serving: boolean | null | undefined;
  terminating: boolean | null | undefined;
  nodeName: string | undefined;
}

/** The fields of an EndpointSlice that computeService reads (membership is its service's key). */
interface SliceSnap {
  endpoints: EndpointSnap[];
  ports: { name: string | null | undefined; port: number | null | undefined; protocol: string | null | undefined }[];
}

function snapService(svc: ServiceInput): ServiceSnap {
  const spec = svc.spec ?? {};
  const ann = svc.metadata.annotations;
  return {
    algorithm: ann?.[ANNOTATION_ALGORITHM],
    maglevSize: ann?.[ANNOTATION_MAGLEV_SIZE],
    l7lb: ann?.[ANNOTATION_L7_LB],
    type: spec.type,
    clusterIP: spec.clusterIP,
    externalIPs: spec.externalIPs?.slice(),
    ports: spec.ports?.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: p.protocol, nodePort: p.nodePort })),
    affinity: spec.sessionAffinity,
    timeout: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds,
    itp: spec.internalTrafficPolicy,
    etp: spec.externalTrafficPolicy,
    ingress: svc.status?.loadBalancer?.ingress?.map((i) => i.ip),
  };
}

function sameList<T>(a: readonly T[] | undefined, b: readonly T[] | undefined, same: (x: T, y: T) => boolean): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!same(a[i] as T, b[i] as T)) return false;
  return true;
}

const sameValue = <T>(x: T, y: T) => x === y;

function sameService(svc: ServiceInput, s: ServiceSnap): boolean {
  const spec = svc.spec ?? {};
  const ann = svc.metadata.annotations;
  return (
    spec.clusterIP === s.clusterIP &&
    spec.type === s.type &&
    spec.sessionAffinity === s.affinity &&
    spec.sessionAffinityConfig?.clientIP?.timeoutSeconds === s.timeout &&
    spec.internalTrafficPolicy === s.itp &&
    spec.externalTrafficPolicy === s.etp &&
    ann?.[ANNOTATION_ALGORITHM] === s.algorithm &&
    ann?.[ANNOTATION_MAGLEV_SIZE] === s.maglevSize &&
    ann?.[ANNOTATION_L7_LB] === s.l7lb &&
    sameList(spec.externalIPs, s.externalIPs, sameValue) &&
    sameList(
      spec.ports,
      s.ports,
      (p, q) => p.port === q.port && p.name === q.name && p.targetPort === q.targetPort && p.protocol === q.protocol && p.nodePort === q.nodePort,
    ) &&
    sameIngress(svc.status?.loadBalancer?.ingress, s.ingress)
  );
}

function sameIngress(live: readonly { ip?: string }[] | undefined, snap: readonly (string | undefined)[] | undefined): boolean {
  if (live === undefined || snap === undefined) return live === snap;
  if (live.length !== snap.length) return false;
  for (let i = 0; i < live.length; i++) if (live[i]?.ip !== snap[i]) return false;
  return true;
}

function snapSlice(s: EndpointSliceInput): SliceSnap {
  return {
    endpoints: (s.endpoints ?? []).map((e) => ({
      address: e.addresses[0],
      ready: e.conditions?.ready,
      serving: e.conditions?.serving,
      terminating: e.conditions?.terminating,
      nodeName: e.nodeName,
    })),
    ports: (s.ports ?? []).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
  };
}

function sameSlice(s: EndpointSliceInput, snap: SliceSnap): boolean {
  const eps = s.endpoints ?? [];
  const ports = s.ports ?? [];
  if (eps.length !== snap.endpoints.length || ports.length !== snap.ports.length) return false;
  for (let i = 0; i < eps.length; i++) {
    const e = eps[i] as EndpointInput;
    const o = snap.endpoints[i] as EndpointSnap;
    const c = e.conditions;
    if (e.addresses[0] !== o.address || e.nodeName !== o.nodeName || c?.ready !== o.ready || c?.serving !== o.serving || c?.terminating !== o.terminating) {
      return false;
    }
  }
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i] as NonNullable<EndpointSliceInput["ports"]>[number];
    const o = snap.ports[i] as SliceSnap["ports"][number];
    if (p.port !== o.port || p.name !== o.name || p.protocol !== o.protocol) return false;
  }
  return true;
}

/**
 * Every "address:port/proto" a service could hold a frontend on, in either scope (a superset of
 * what computeService checks and claims). Two services interact — one's frontend blocks the
 * other's, or an id moves from one to the other — only if they share one of these.
 */
function tokensOf(s: ServiceSnap): string[] {
  const addresses: string[] = [];
  if (s.clusterIP) addresses.push(s.clusterIP);
  for (const ip of s.externalIPs ?? []) addresses.push(ip);
  for (const ip of s.ingress ?? []) if (ip !== undefined) addresses.push(ip);
  const out = new Set<string>();
  for (const p of s.ports ?? []) {
    const proto = p.protocol ?? "TCP";
    for (const a of addresses) out.add(`${a}:${p.port}/${proto}`);
    if (p.nodePort !== undefined) out.add(`${NODEPORT_ADDRESS}:${p.nodePort}/${proto}`);
  }
  return [...out];
}

interface Memo {
  /** "namespace/name" (with a suffix for a name given twice), and its parts. */
  key: string;
  ns: string;
  name: string;
  svc: ServiceSnap;
  slices: SliceSnap[];
  tokens: string[];
  unit: ServiceUnit;
  /** The unit's map entries, encoded when first needed (a diff against this service, contents()). */
  entries: Entries | undefined;
  /** The update that last saw this service in the inputs, and the input it saw. */
  seen: number;
  input: ServiceInput;
}

export interface LbUpdate {
  /** The whole state (assembled when first read). */
  readonly state: LbState;
  problems: ServiceProblem[];
  /** What the recomputed services held before and hold now (built when first read); every other entry is unchanged. */
  readonly before: LbContents;
  readonly after: LbContents;
  /** How many services were recomputed (changed, added, removed, or sharing a frontend with one). */
  recomputed: number;
  /**
   * The writes of this update, encoded for the map server: the bytes of
   * encodeMapBatch(lbDiff(before, after, pinOf)). When the recomputed services held nothing before
   * (from empty, or only new services), they are encoded straight from the computed entries.
   */
  encode(pinOf: (map: string) => string): EncodedMapBatch;
  /**
   * Whether `update` already gave every write to its stream, in parts (the lean path from empty);
   * otherwise nothing was sent and the caller writes `encode()`'s batch.
   */
  streamed: boolean;
}

/**
 * Where a from-empty update sends its writes while it still computes (LbModel.update): every
 * `partServices` services (in namespace/name order), their writes as one part in the map server's
 * framing — backends, Maglev chunks, further entries, entries 0, as lbDiff orders them, within
 * the part. So every prefix of the parts is consistent (an entry never names a backend not yet
 * written, a count never covers a further entry not yet written), and the parts' records, taken
 * category by category, are `encode()`'s batch. Pure: `send` is the caller's.
 */
export interface LbStream {
  pinOf: (map: string) => string;
  send(part: EncodedMapBatch): void;
  /** A buffer of at least `bytes` to encode the next part into, free again once send() returns (by default a new one per part). */
  scratch?(bytes: number): Buffer;
  /** Services per part (default LB_STREAM_PART). */
  partServices?: number;
}

/**
 * Services per streamed part: 1,024 common services are ~3k records, ~0.14 MB (the map server's
 * pipe holds 1 MiB); the first part leaves early and the last one's write is short.
 */
export const LB_STREAM_PART = 1024;

const entriesOfMemo = (m: Memo): Entries => {
  m.entries ??= entriesOf(m.unit);
  return m.entries;
};

/** An LbUpdate whose before/after contents are built only when read. */
function lazyUpdate(state: () => LbState, problems: ServiceProblem[], recomputed: number, olds: readonly Memo[], news: readonly Memo[]): LbUpdate {
  let before: LbContents | undefined;
  let after: LbContents | undefined;
  const contentsOf = (memos: readonly Memo[]) => {
    const out = emptyContents();
    for (const m of memos) addEntries(out, entriesOfMemo(m));
    return out;
  };
  return {
    get state() {
      return state();
    },
    problems,
    recomputed,
    get before() {
      before ??= contentsOf(olds);
      return before;
    },
    get after() {
      after ??= contentsOf(news);
      return after;
    },
    encode(pinOf) {
      if (olds.length === 0)
        return encodeCreate(
          news.map((m) => m.unit),
          pinOf,
        );
      const ops = lbDiff(this.before, this.after, pinOf);
      return { bytes: encodeMapBatch(ops), records: ops.length };
    },
    streamed: false,
  };
}

// ---- from empty: the lean path ---------------------------------------------------------------------
// A model with nothing in it and no ids to keep (the first sync of 10k services, or after all were
// removed) computes the common shape of service — one TCP/UDP port on a ClusterIP, a numeric
// targetPort, no affinity, Maglev, ExternalIPs, NodePort or L7 annotation — straight into columns
// sized up front (typed arrays for numbers, plain arrays only for strings): no per-service or
// per-endpoint objects, no string keys, little for the young-generation GC to copy; the batch is
// encoded from the columns. Every other service goes through computeService in the same pass
// (same frontend claims, same id counters), so the result equals desiredLb. The memo that later
// updates compare against is built from the columns when first needed (LbModel.settle): they copy
// every field the computation reads, so an input edited in place meanwhile is still seen as changed.

// The hot loops read these as module locals: imports may compile to getter calls (CommonJS output).
const L_BE_LOCAL = BE_LOCAL;
const L_BE_TERMINATING = BE_TERMINATING;
const L_SCOPE_INTERNAL = SCOPE_INTERNAL;
const L_UDP = PROTO.UDP;
const L_TCP = PROTO.TCP;

/** The few values the lean path accepts for a Service's optional strings, as small codes (0: absent). */
const TYPE_CODES = [undefined, "ClusterIP"] as const;
const AFFINITY_CODES = [undefined, "None"] as const;
const ITP_CODES = [undefined, "Cluster"] as const;
const ETP_CODES = [undefined, "Cluster", "Local"] as const;
const PROTOCOL_CODES = [undefined, "TCP", "UDP"] as const;
/** An EndpointSlice port's protocol: these, else computeService. */
const SLICE_PROTOCOL_CODES = [undefined, null, "TCP", "UDP", "SCTP"] as const;
/** An endpoint condition (2 bits): absent, null, false, true. */
const condCode = (v: unknown): number => (v === undefined ? 0 : v === null ? 1 : v === false ? 2 : v === true ? 3 : -1);
const condValue = (c: number): boolean | null | undefined => (c === 0 ? undefined : c === 1 ? null : c === 3);
/** A slice port number: -1 absent, -2 null, else a whole number below 2^31 (anything else: computeService). */
const portCode = (v: unknown): number =>
  v === undefined ? -1 : v === null ? -2 : typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 31 ? v : -3;
const portValue = (c: number): number | null | undefined => (c === -1 ? undefined : c === -2 ? null : c);

/** What a from-empty update computed, column by column (one row per fast service, slice, endpoint, ...). */
interface FastRows {
  node: string | undefined;
  /** In namespace/name order: a fast row (>= 0) or a slow unit (-1 - index into `slow`). */
  seq: Int32Array;
  slow: { key: string; ns: string; name: string; input: ServiceInput; svc: ServiceSnap; slices: SliceSnap[]; unit: ServiceUnit }[];
  nSvc: number;
  nSlice: number;
  nEp: number;
  nSp: number;
  nBe: number;
  // per fast service: identity, the Service fields computeService reads, the computed entry
  ns: string[];
  name: string[];
  input: ServiceInput[];
  clusterIP: string[];
  portName: (string | undefined)[];
  /** type | affinity << 2 | itp << 4 | etp << 6 | protocol << 8 (indexes into the *_CODES lists) */
  codes: Int32Array;
  port: Int32Array;
  /** -1: absent */
  targetPort: Int32Array;
  serviceId: Uint32Array;
  vip: Uint32Array;
  proto: Uint8Array;
  slotCount: Int32Array;
  beStart: Int32Array;
  beEnd: Int32Array;
  sliceStart: Int32Array;
  sliceEnd: Int32Array;
  // per slice of a fast service: its endpoints and ports (ranges into the columns below)
  epStart: Int32Array;
  epEnd: Int32Array;
  spStart: Int32Array;
  spEnd: Int32Array;
  epAddress: (string | undefined)[];
  epNode: (string | undefined)[];
  /** ready | serving << 2 | terminating << 4 (condCode) */
  epCond: Uint8Array;
  spName: (string | null | undefined)[];
  spPort: Int32Array;
  spProtocol: Uint8Array;
  // per backend of a fast service, in id order
  beId: Uint32Array;
  beAddr: Uint32Array;
  bePort: Int32Array;
  beFlags: Uint8Array;
}

/** What settle built from a from-empty update's rows (for the update's state and `after`). */
interface Settled {
  units: ServiceUnit[];
  memos: Memo[];
}

/**
 * Settle's results, kept beside the rows rather than in a field of theirs: a field set only later
 * (or an array field given another kind of array) changes the rows' shape after the lean path's
 * functions were optimised for it, and the engine throws that code away (measured: `fillRows`
 * deoptimised at the start of every process's second sync from empty).
 */
const SETTLED = new WeakMap<FastRows, Settled>();

/**
 * An array of `n` holes whose elements kind is already the generic one: storing a string or
 * undefined never changes its shape, which would send the lean path's optimised code back to the
 * interpreter (a fresh [] starts as small-integers-only).
 */
function col<T>(n: number): T[] {
  const a = [undefined] as unknown as T[];
  a.length = n;
  return a;
}

function newRows(node: string | undefined, services: number, slices: readonly EndpointSliceInput[]): FastRows {
  let eps = 0;
  let sps = 0;
  for (const s of slices) {
    eps += (s.endpoints ?? NONE).length;
    sps += (s.ports ?? NONE).length;
  }
  const n = services;
  return {
    node,
    seq: new Int32Array(n),
    slow: [],
    nSvc: 0,
    nSlice: 0,
    nEp: 0,
    nSp: 0,
    nBe: 0,
    ns: col(n),
    name: col(n),
    input: col(n),
    clusterIP: col(n),
    portName: col(n),
    codes: new Int32Array(n),
    port: new Int32Array(n),
    targetPort: new Int32Array(n),
    serviceId: new Uint32Array(n),
    vip: new Uint32Array(n),
    proto: new Uint8Array(n),
    slotCount: new Int32Array(n),
    beStart: new Int32Array(n),
    beEnd: new Int32Array(n),
    sliceStart: new Int32Array(n),
    sliceEnd: new Int32Array(n),
    epStart: new Int32Array(slices.length),
    epEnd: new Int32Array(slices.length),
    spStart: new Int32Array(slices.length),
    spEnd: new Int32Array(slices.length),
    epAddress: col(eps),
    epNode: col(eps),
    epCond: new Uint8Array(eps),
    spName: col(sps),
    spPort: new Int32Array(sps),
    spProtocol: new Uint8Array(sps),
    beId: new Uint32Array(eps),
    beAddr: new Uint32Array(eps),
    bePort: new Int32Array(eps),
    beFlags: new Uint8Array(eps),
  };
}

/** `codes` of a Service of the common shape the lean path computes, or -1 (then computeService); `vip`: parseIPv4 of its clusterIP. */
function fastShape(svc: ServiceInput, vip: number): number {
  const spec = svc.spec;
  if (spec === undefined || vip < 0) return -1;
  const ann = svc.metadata.annotations;
  if (ann !== undefined && (ann[ANNOTATION_ALGORITHM] !== undefined || ann[ANNOTATION_MAGLEV_SIZE] !== undefined || ann[ANNOTATION_L7_LB] !== undefined))
    return -1;
  if (spec.externalIPs !== undefined || spec.sessionAffinityConfig !== undefined || svc.status?.loadBalancer?.ingress !== undefined) return -1;
  const ports = spec.ports;
  if (ports === undefined || ports.length !== 1) return -1;
  const p = ports[0] as ServicePortInput;
  if (!validPort(p.port) || p.nodePort !== undefined || (p.targetPort !== undefined && !validPort(p.targetPort))) return -1;
  const type = TYPE_CODES.indexOf(spec.type as never);
  const affinity = AFFINITY_CODES.indexOf(spec.sessionAffinity as never);
  const itp = ITP_CODES.indexOf(spec.internalTrafficPolicy as never);
  const etp = ETP_CODES.indexOf(spec.externalTrafficPolicy as never);
  const protocol = PROTOCOL_CODES.indexOf(p.protocol as never);
  if (type < 0 || affinity < 0 || itp < 0 || etp < 0 || protocol < 0) return -1;
  return type | (affinity << 2) | (itp << 4) | (etp << 6) | (protocol << 8);
}

/** Inputs the lean path can index in its sort keys (three base-255 digits). */
const SORT_INDEX_MAX = 255 ** 3;

/**
 * `prefix` + NUL + `i` as three base-255 digits (chars 1..255): sorted, such keys follow their
 * prefixes' order (NUL sorts before any character a name has), then the input order.
 */
function sortKey(prefix: string, i: number): string {
  return prefix + String.fromCharCode(0, 1 + Math.floor(i / 65025), 1 + (Math.floor(i / 255) % 255), 1 + (i % 255));
}

/** The input index a sortKey carries. */
function sortIndex(k: string): number {
  const n = k.length;
  return (k.charCodeAt(n - 3) - 1) * 65025 + (k.charCodeAt(n - 2) - 1) * 255 + (k.charCodeAt(n - 1) - 1);
}

/** Whether two sortKeys have the same prefix (compared from its end, where names usually differ). */
function sameSortPrefix(a: string, b: string): boolean {
  const n = a.length;
  if (b.length !== n) return false;
  for (let p = n - 5; p >= 0; p--) if (a.charCodeAt(p) !== b.charCodeAt(p)) return false;
  return true;
}

/**
 * When every slice that names a service (IPv4, with a service-name label) comes after the slices
 * of the services before its own in `services`' order — one run of the input per service, the
 * runs in service order — the runs: [start, end) of service i at 2i, 2i+1 (other slices inside a
 * run are skipped by the caller, as slicesByService skips them). Otherwise undefined.
 */
function sliceRuns(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[]): Int32Array | undefined {
  const n = services.length;
  const runs = new Int32Array(2 * n); // (a service without slices keeps the empty run [0, 0))
  let p = 0; // the service whose run is being read
  let started = false;
  for (let j = 0; j < slices.length; j++) {
    const sl = slices[j] as EndpointSliceInput;
    const svcName = sl.metadata.labels?.["kubernetes.io/service-name"];
    if (!svcName || (sl.addressType !== undefined && sl.addressType !== "IPv4")) continue;
    const ns = sl.metadata.namespace ?? "default";
    for (;;) {
      if (p === n) return undefined; // a slice of no service, or out of order
      const m = (services[p] as ServiceInput).metadata;
      if (m.name === svcName && (m.namespace ?? "default") === ns) break;
      p++;
      started = false;
    }
    if (!started) runs[2 * p] = j;
    started = true;
    runs[2 * p + 1] = j + 1;
  }
  return runs;
}

/** A numeric frontend key for the lean path's clash check: address, port, protocol (scope internal). */
const fastFrontend = (vip: number, port: number, udp: boolean) => vip * 131072 + port * 2 + (udp ? 1 : 0);

/**
 * Appends one fast-shaped service (its `codes` from fastShape; its slices `svcSlices[0, nSlices)`)
 * to `r`, ids from `pass`; false, with `r` and `pass` untouched, when its slices hold something
 * unusual (then computeService takes it). Index loops, not for-of: until the engine optimises this
 * function, each for-of step allocates an iterator result.
 */
function fastService(
  r: FastRows,
  svc: ServiceInput,
  ns: string,
  codes: number,
  vip: number,
  svcSlices: readonly EndpointSliceInput[],
  nSlices: number,
  pass: Pass,
): boolean {
  const spec = svc.spec as NonNullable<ServiceInput["spec"]>;
  const p = (spec.ports as ServicePortInput[])[0] as ServicePortInput;
  const udp = p.protocol === "UDP";
  const protoName = udp ? "UDP" : "TCP";
  const target = (p.targetPort ?? p.port) as number;
  const portName = p.name ?? "";
  const node = r.node;
  const be0 = r.nBe;
  const slice0 = r.nSlice;
  let nBe = be0;
  let nEp = r.nEp;
  let nSp = r.nSp;
  let nSlice = slice0;
  let nextBackend = pass.nextBackend;
  for (let j = 0; j < nSlices; j++) {
    const s = svcSlices[j] as EndpointSliceInput;
    const eps = s.endpoints ?? (NONE as EndpointInput[]);
    const sps = s.ports ?? (NONE as NonNullable<EndpointSliceInput["ports"]>);
    r.epStart[nSlice] = nEp;
    r.spStart[nSlice] = nSp;
    let port = target;
    let found = false;
    for (let q = 0; q < sps.length; q++) {
      const x = sps[q] as NonNullable<EndpointSliceInput["ports"]>[number];
      const pc = portCode(x.port);
      const proto = SLICE_PROTOCOL_CODES.indexOf(x.protocol as never);
      if (pc === -3 || proto < 0) return false;
      r.spName[nSp] = x.name;
      r.spPort[nSp] = pc;
      r.spProtocol[nSp] = proto;
      nSp++;
      if (!found && (x.name ?? "") === portName && (x.protocol ?? "TCP") === protoName) {
        found = true;
        if (validPort(x.port)) port = x.port;
      }
    }
    for (let q = 0; q < eps.length; q++) {
      const e = eps[q] as EndpointInput;
      const address = e.addresses[0];
      const c = e.conditions;
      const cr = condCode(c?.ready);
      const cs = condCode(c?.serving);
      const ct = condCode(c?.terminating);
      if (cr < 0 || cs < 0 || ct < 0) return false;
      r.epAddress[nEp] = address;
      r.epNode[nEp] = e.nodeName;
      r.epCond[nEp] = cr | (cs << 2) | (ct << 4);
      nEp++;
      const addr = address === undefined ? -1 : parseIPv4(address);
      if (addr < 0) continue;
      const terminating = ct === 3;
      const readyCondition = cr !== 2; // absent or null: ready (Kubernetes)
      const ready = readyCondition && !terminating;
      const serving = cs === 3 || (cs < 2 && readyCondition);
      if (!ready && !(terminating && serving)) continue;
      const local = node !== undefined && e.nodeName === node ? L_BE_LOCAL : 0;
      let at = -1;
      for (let i = be0; i < nBe; i++) {
        if (r.bePort[i] === port && r.beAddr[i] === addr) {
          at = i;
          break;
        }
      }
      if (at >= 0) {
        // As computeService: ready anywhere wins, terminating only if every copy is, local from the last.
        const wasReady = !((r.beFlags[at] as number) & L_BE_TERMINATING);
        r.beFlags[at] = (ready || wasReady ? 0 : L_BE_TERMINATING) | local;
        continue;
      }
      if (nBe - be0 === 64) return false; // many endpoints: computeService's index is faster
      r.beId[nBe] = nextBackend++;
      r.beAddr[nBe] = addr;
      r.bePort[nBe] = port;
      r.beFlags[nBe] = (ready ? 0 : L_BE_TERMINATING) | local;
      nBe++;
    }
    r.epEnd[nSlice] = nEp;
    r.spEnd[nSlice] = nSp;
    nSlice++;
  }
  let slots = 0;
  for (let i = be0; i < nBe; i++) if (!((r.beFlags[i] as number) & L_BE_TERMINATING)) slots++;
  // (No pass.claimedIds: it only keeps previous ids from being handed out twice, and the lean path has none.)
  const sid = pass.nextService++;
  pass.nextBackend = nextBackend;
  const i = r.nSvc++;
  r.nBe = nBe;
  r.nEp = nEp;
  r.nSp = nSp;
  r.nSlice = nSlice;
  r.ns[i] = ns;
  r.name[i] = svc.metadata.name;
  r.input[i] = svc;
  r.clusterIP[i] = spec.clusterIP as string;
  r.portName[i] = p.name;
  r.codes[i] = codes;
  r.port[i] = p.port;
  r.targetPort[i] = p.targetPort === undefined ? -1 : (p.targetPort as number);
  r.serviceId[i] = sid;
  r.vip[i] = vip;
  r.proto[i] = udp ? L_UDP : L_TCP;
  r.slotCount[i] = slots;
  r.beStart[i] = be0;
  r.beEnd[i] = nBe;
  r.sliceStart[i] = slice0;
  r.sliceEnd[i] = nSlice;
  return true;
}

/** The snapshot snapService would take of fast row `i`. */
function fastSnap(r: FastRows, i: number): ServiceSnap {
  const c = r.codes[i] as number;
  const target = r.targetPort[i] as number;
  return {
    algorithm: undefined,
    maglevSize: undefined,
    l7lb: undefined,
    type: TYPE_CODES[c & 3],
    clusterIP: r.clusterIP[i],
    externalIPs: undefined,
    ports: [
      {
        name: r.portName[i],
        port: r.port[i] as number,
        targetPort: target < 0 ? undefined : target,
        protocol: PROTOCOL_CODES[(c >> 8) & 3],
        nodePort: undefined,
      },
    ],
    affinity: AFFINITY_CODES[(c >> 2) & 3],
    timeout: undefined,
    itp: ITP_CODES[(c >> 4) & 3],
    etp: ETP_CODES[(c >> 6) & 3],
    ingress: undefined,
  };
}

/** The snapshots snapSlice would take of fast row `i`'s slices. */
function fastSliceSnaps(r: FastRows, i: number): SliceSnap[] {
  const out: SliceSnap[] = [];
  for (let s = r.sliceStart[i] as number; s < (r.sliceEnd[i] as number); s++) {
    const endpoints: EndpointSnap[] = [];
    for (let e = r.epStart[s] as number; e < (r.epEnd[s] as number); e++) {
      const c = r.epCond[e] as number;
      endpoints.push({
        address: r.epAddress[e],
        ready: condValue(c & 3),
        serving: condValue((c >> 2) & 3),
        terminating: condValue((c >> 4) & 3),
        nodeName: r.epNode[e],
      });
    }
    const ports: SliceSnap["ports"] = [];
    for (let q = r.spStart[s] as number; q < (r.spEnd[s] as number); q++) {
      ports.push({ name: r.spName[q], port: portValue(r.spPort[q] as number), protocol: SLICE_PROTOCOL_CODES[r.spProtocol[q] as number] });
    }
    out.push({ endpoints, ports });
  }
  return out;
}

/**
 * The unit computeService gives for fast row `i` (the common shape: one port on a ClusterIP, a
 * numeric target, nothing else), with the ids the lean path gave out; `key` is "namespace/name".
 * Built from the row rather than by computeService on inputs rebuilt from it: those inputs had
 * another shape than the agent's, and computeService's optimised code, fed both, was thrown away
 * and recompiled again and again (~150 ms of compile CPU each time).
 */
function fastUnit(r: FastRows, i: number, key: string): ServiceUnit {
  const proto: Protocol = r.proto[i] === L_UDP ? "UDP" : "TCP";
  const sid = r.serviceId[i] as number;
  const port = r.port[i] as number;
  const address = r.clusterIP[i] as string;
  const unit = newUnit();
  unit.serviceKeys.push(frontendId(address, port, proto));
  unit.serviceIds.push(sid);
  const selectable: number[] = [];
  for (let k = r.beStart[i] as number; k < (r.beEnd[i] as number); k++) {
    const a = r.beAddr[k] as number;
    // (parseIPv4 takes only canonical dotted quads: this is the input's text)
    const text = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    const id = r.beId[k] as number;
    const flags = r.beFlags[k] as number;
    unit.backendKeys.push(backendId(sid, text, r.bePort[k] as number, proto));
    unit.backendIds.push(id);
    unit.backends.push({ id, address: text, port: r.bePort[k] as number, proto, serviceId: sid, flags });
    if (!(flags & L_BE_TERMINATING)) selectable.push(id);
  }
  unit.frontends.push({
    address,
    port,
    proto,
    serviceId: sid,
    backendIds: selectable,
    affinityTimeout: 0,
    maglevSize: 0,
    flags: 0,
    service: portOwner(key, r.portName[i], port),
  });
  return unit;
}

/** encodeRows' scratch: a fast row's selectable backends, in order (fastService keeps <= 64). */
const SELECTABLE = { ids: new Uint32Array(64), addrs: new Uint32Array(64), ports: new Uint16Array(64), flags: new Uint8Array(64) };

/** Fills SELECTABLE with fast row i's selectable (not terminating) backends; returns how many. */
function selectableIds(r: FastRows, i: number): number {
  let n = 0;
  for (let k = r.beStart[i] as number; k < (r.beEnd[i] as number); k++) {
    const flags = r.beFlags[k] as number;
    if (flags & L_BE_TERMINATING) continue;
    SELECTABLE.ids[n] = r.beId[k] as number;
    SELECTABLE.addrs[n] = r.beAddr[k] as number;
    SELECTABLE.ports[n] = r.bePort[k] as number;
    SELECTABLE.flags[n++] = flags;
  }
  return n;
}

/**
 * lbDiff(empty, what rows seq[from..to) hold) encoded for the map server, as encodeCreate over
 * their units (the whole range: the update's batch; a part of it: one streamed part).
 */
function encodeRows(r: FastRows, pinOf: (map: string) => string, from = 0, to = r.seq.length, stream?: LbStream): EncodedMapBatch {
  const seq = from === 0 && to === r.seq.length ? r.seq : r.seq.subarray(from, to);
  const slowUnits: ServiceUnit[] = [];
  let nb = 0;
  let nm = 0;
  let ns = 0;
  for (let p = 0; p < seq.length; p++) {
    const i = seq[p] as number;
    if (i >= 0) {
      ns += serviceEntries(r.slotCount[i] as number); // (no lb4_backends records: a fast row picks at random)
      continue;
    }
    const u = (r.slow[-1 - i] as FastRows["slow"][number]).unit;
    slowUnits.push(u);
    nb += backendRecords(u).length;
    for (const t of u.maglev) nm += Math.ceil(t.backendIds.length / MAGLEV_CHUNK);
    for (const f of u.frontends) ns += serviceEntries(f.backendIds.length);
    for (const f of u.external) ns += serviceEntries(f.backendIds.length);
  }
  if (slowUnits.length === seq.length) return encodeCreate(slowUnits, pinOf);
  const kS = lb4Key.size;
  const vS = lb4Service.size;
  const expected = nb * (12 + 4 + lb4Backend.size) + nm * (12 + lbMaglevKey.size + lbMaglevChunk.size) + ns * (12 + kS + vS) + 3 * 4096;
  const enc = new MapBatchEncoder(expected, stream?.scratch?.(expected + 16));
  if (nb > 0) enc.map(pinOf(LB_MAPS.backends));
  if (nm > 0) enc.map(pinOf(LB_MAPS.maglev));
  const mS = ns > 0 ? enc.map(pinOf(LB_MAPS.services)) : -1;
  const slowPart = (i: number) => encodeCreatePart(enc, [(r.slow[-1 - i] as FastRows["slow"][number]).unit], pinOf);
  const key = (at: number, i: number, entry: number) =>
    putServiceKey(enc.buf, at, r.vip[i] as number, r.port[i] as number, r.proto[i] as number, entry, L_SCOPE_INTERNAL);
  for (let p = 0; p < seq.length; p++) if ((seq[p] as number) < 0) slowPart(seq[p] as number).backends();
  for (let p = 0; p < seq.length; p++) if ((seq[p] as number) < 0) slowPart(seq[p] as number).maglev();
  for (let p = 0; p < seq.length; p++) {
    const i = seq[p] as number;
    if (i < 0) {
      slowPart(i).slots();
      continue;
    }
    if ((r.slotCount[i] as number) <= SLOTS_PER_ENTRY) continue; // (entry 0 only)
    const count = selectableIds(r, i);
    for (let c = 1; c < serviceEntries(count); c++) {
      const at = enc.update(mS, kS, vS);
      key(at, i, c);
      putServiceValue(enc.buf, at + kS, r.serviceId[i] as number, 0, 0, 0, 0, SELECTABLE, c * SLOTS_PER_ENTRY, Math.min(count, (c + 1) * SLOTS_PER_ENTRY));
    }
  }
  for (let p = 0; p < seq.length; p++) {
    const i = seq[p] as number;
    if (i < 0) {
      slowPart(i).entries();
      continue;
    }
    const count = selectableIds(r, i);
    const at = enc.update(mS, kS, vS);
    key(at, i, 0);
    putServiceValue(enc.buf, at + kS, r.serviceId[i] as number, count, 0, 0, 0, SELECTABLE, 0, Math.min(count, SLOTS_PER_ENTRY));
  }
  return enc.finish();
}

/**
 * What fromEmpty's look at the services (input order) found: all of them first when they are not
 * in key order, part by part when they are. A class, not an object
 * literal: the second object a literal makes may get another shape than the first, and then the
 * engine threw away scanChunk's and fillRows' optimised code at the process's second sync from
 * empty (`--trace-deopt`: "code dependencies"); a constructor makes every scan the same way.
 */
class ServiceScan {
  /** fastShape, -1: computeService */
  readonly codes: Int32Array;
  /** parseIPv4 of the clusterIP, -1: none */
  readonly vips: Float64Array;
  /** fastFrontend of a lean-path service (its only port) */
  readonly frontends: Float64Array;
  /** some service needs computeService, or claims a frontend another lean-path one has: every frontend is claimed as computeService does */
  mixed = false;

  constructor(n: number) {
    this.codes = new Int32Array(n);
    this.vips = new Float64Array(n);
    this.frontends = new Float64Array(n);
  }
}

/** The services' lean-path shapes, VIPs and frontends (`mixed` when one needs computeService). */
function scanServices(services: readonly ServiceInput[]): ServiceScan {
  const n = services.length;
  const scan = new ServiceScan(n);
  // In chunks: the engine optimises a function called several times in the first sync from empty
  // during that sync; one called once per sync only during the next (measured with --trace-opt).
  for (let from = 0; from < n; from += SCAN_CHUNK) if (scanChunk(services, scan, from, Math.min(n, from + SCAN_CHUNK))) scan.mixed = true;
  return scan;
}

const SCAN_CHUNK = 1024;

/** scanServices for services [from, to): whether one of them takes computeService. */
function scanChunk(services: readonly ServiceInput[], scan: ServiceScan, from: number, to: number): boolean {
  let mixed = false;
  for (let i = from; i < to; i++) {
    const svc = services[i] as ServiceInput;
    const clusterIP = svc.spec?.clusterIP;
    const vip = clusterIP === undefined ? -1 : parseIPv4(clusterIP);
    const c = fastShape(svc, vip);
    scan.codes[i] = c;
    scan.vips[i] = vip;
    if (c === -1) mixed = true;
    else {
      const p = ((svc.spec as NonNullable<ServiceInput["spec"]>).ports as ServicePortInput[])[0] as ServicePortInput;
      scan.frontends[i] = fastFrontend(vip, p.port, p.protocol === "UDP");
    }
  }
  return mixed;
}

/**
 * 1 when each service's "namespace/name" sorts strictly after the one before it's (as the store
 * lists them), 0 when not, -1 when a name holds sortKey's separator.
 */
function keysInOrder(services: readonly ServiceInput[]): number {
  let inOrder = 1;
  for (let i = 0; i < services.length; i++) {
    const m = (services[i] as ServiceInput).metadata;
    if (m.name.includes("\u0000") || m.namespace?.includes("\u0000")) return -1;
    if (inOrder === 1 && i > 0 && !keyBefore((services[i - 1] as ServiceInput).metadata, m)) inOrder = 0;
  }
  return inOrder;
}

/**
 * Whether `a`'s "namespace/name" sorts strictly before `b`'s (as desiredLb orders services),
 * without building them when the namespaces are equal.
 */
function keyBefore(a: ServiceInput["metadata"], b: ServiceInput["metadata"]): boolean {
  const nsA = a.namespace ?? "default";
  const nsB = b.namespace ?? "default";
  if (nsA === nsB) return a.name < b.name;
  return `${nsA}/${a.name}` < `${nsB}/${b.name}`;
}

/** sortKey of each service, in input order. */
function sortKeys(services: readonly ServiceInput[]): string[] {
  const keys: string[] = col(services.length);
  for (let i = 0; i < services.length; i++) {
    const m = (services[i] as ServiceInput).metadata;
    keys[i] = sortKey(`${m.namespace ?? "default"}/${m.name}`, i);
  }
  return keys;
}

/**
 * The lean-path services' numeric frontends claimed so far, in an open-addressing table (a sort of
 * 10k of them took ~0.9 ms, all of it before the first part could be sent).
 */
class FrontendClaims {
  private readonly table: Float64Array;
  private readonly mask: number;

  constructor(n: number) {
    let size = 16;
    while (size < 2 * n) size *= 2;
    this.table = new Float64Array(size).fill(-1); // (frontends are >= 0)
    this.mask = size - 1;
  }

  /** Claims the frontends of the lean-path services [from, to) of `scan`; true when one is claimed already. */
  claim(scan: ServiceScan, from: number, to: number): boolean {
    const table = this.table;
    const mask = this.mask;
    for (let i = from; i < to; i++) {
      if (scan.codes[i] === -1) continue;
      const f = scan.frontends[i] as number;
      // (f < 2^49: its low and high 32 bits, mixed)
      let h = Math.imul((f >>> 0) ^ Math.imul(Math.floor(f / 4294967296), 0x9e3779b1), 0x85ebca6b);
      h ^= h >>> 15;
      for (let at = h & mask; ; at = (at + 1) & mask) {
        const x = table[at] as number;
        if (x === f) return true;
        if (x === -1) {
          table[at] = f;
          break;
        }
      }
    }
    return false;
  }
}

/**
 * Claims the frontends of the lean rows so far in `pass`, as computeService claims its own: from
 * the service on, every service's frontends are checked and claimed there (the pass turned mixed).
 */
function claimRows(r: FastRows, pass: Pass): void {
  for (let i = 0; i < r.nSvc; i++) {
    const port = r.port[i] as number;
    const fid = frontendId(r.clusterIP[i] as string, port, r.proto[i] === L_UDP ? "UDP" : "TCP");
    pass.usedFrontends.set(fid, portOwner(`${r.ns[i]}/${r.name[i]}`, r.portName[i], port));
  }
}

/**
 * The input indices of sorted sort keys, or undefined when a name is given twice (not possible in
 * Kubernetes: the general path keeps them in input order).
 */
function sortedPerm(order: readonly string[]): Int32Array | undefined {
  const n = order.length;
  for (let k = 1; k < n; k++) if (sameSortPrefix(order[k] as string, order[k - 1] as string)) return undefined;
  const perm = new Int32Array(n);
  for (let k = 0; k < n; k++) perm[k] = sortIndex(order[k] as string);
  return perm;
}

/** The sort keys of the slices slicesByService takes (IPv4, with a service name), sorted. */
function sortedSliceKeys(slices: readonly EndpointSliceInput[]): string[] {
  const out: string[] = [];
  for (let j = 0; j < slices.length; j++) {
    const sl = slices[j] as EndpointSliceInput;
    const svcName = sl.metadata.labels?.["kubernetes.io/service-name"];
    if (!svcName || (sl.addressType !== undefined && sl.addressType !== "IPv4")) continue;
    const prefix = `${sl.metadata.namespace ?? "default"}/${svcName}`;
    if (prefix.includes("\u0000")) continue; // no service has such a name
    out.push(sortKey(prefix, j));
  }
  return out.sort();
}

/** Sorted slice keys walked beside the sorted services (when the slices are not in runs). */
interface SliceWalk {
  /** the services' sorted sort keys */
  order: readonly string[];
  sliceKeys: readonly string[];
  /** next of sliceKeys */
  q: number;
}

/**
 * fillRows' scratch list of one service's slices: `items[0, n)` (fastService keeps none). Emptied
 * by its count, not by `length = 0`, which gives the array's storage back: the next push then
 * allocated a new one, ~1.5 MB per sync from empty at 10k services (and the setter was ~5% of
 * the lean path's CPU).
 */
class SliceList {
  readonly items: EndpointSliceInput[] = [];
  n = 0;

  add(sl: EndpointSliceInput): void {
    this.items[this.n++] = sl;
  }
}

const MINE = new SliceList();

/** Service `k` (sorted)'s slices as slicesByService takes them, into `mine`. */
function slicesOfSorted(slices: readonly EndpointSliceInput[], runs: Int32Array | undefined, walk: SliceWalk, k: number, idx: number, mine: SliceList): void {
  mine.n = 0;
  if (runs !== undefined) {
    for (let j = runs[2 * idx] as number; j < (runs[2 * idx + 1] as number); j++) {
      const sl = slices[j] as EndpointSliceInput;
      if (sl.metadata.labels?.["kubernetes.io/service-name"] && (sl.addressType === undefined || sl.addressType === "IPv4")) mine.add(sl);
    }
    return;
  }
  const sk = walk.order[k] as string;
  while (walk.q < walk.sliceKeys.length) {
    const x = walk.sliceKeys[walk.q] as string;
    if (sameSortPrefix(x, sk)) mine.add(slices[sortIndex(x)] as EndpointSliceInput);
    else if (x > sk) break; // (a slice of no service sorts before the next service)
    walk.q++;
  }
}

/** Services perm[from..to) into `r` (the lean path) or as computeService units, ids from `pass`. */
function fillRows(
  r: FastRows,
  pass: Pass,
  problems: ServiceProblem[],
  services: readonly ServiceInput[],
  slices: readonly EndpointSliceInput[],
  scan: ServiceScan,
  perm: Int32Array | undefined,
  runs: Int32Array | undefined,
  walk: SliceWalk,
  from: number,
  to: number,
): void {
  const mine = MINE;
  for (let k = from; k < to; k++) {
    const idx = perm === undefined ? k : (perm[k] as number);
    const svc = services[idx] as ServiceInput;
    const ns = svc.metadata.namespace ?? "default";
    slicesOfSorted(slices, runs, walk, k, idx, mine);
    const c = scan.codes[idx] as number;
    if (c !== -1) {
      const spec = svc.spec as NonNullable<ServiceInput["spec"]>;
      const p = (spec.ports as ServicePortInput[])[0] as ServicePortInput;
      let fid = "";
      let free = true;
      if (scan.mixed) {
        fid = frontendId(spec.clusterIP as string, p.port, p.protocol === "UDP" ? "UDP" : "TCP");
        free = !pass.usedFrontends.has(fid);
      }
      if (free && fastService(r, svc, ns, c, scan.vips[idx] as number, mine.items, mine.n, pass)) {
        if (scan.mixed) pass.usedFrontends.set(fid, portOwner(`${ns}/${svc.metadata.name}`, p.name, p.port));
        r.seq[k] = r.nSvc - 1;
        continue;
      }
    }
    r.seq[k] = slowRow(r, pass, problems, svc, ns, mine.items.slice(0, mine.n));
  }
  // (no input kept past the part)
  mine.items.length = 0;
  mine.n = 0;
}

/** A service fromEmpty's lean path does not take: computeService's unit, in `r.slow`. */
function slowRow(r: FastRows, pass: Pass, problems: ServiceProblem[], svc: ServiceInput, ns: string, own: EndpointSliceInput[]): number {
  const key = `${ns}/${svc.metadata.name}`;
  const unit = computeService(svc, key, own, pass);
  for (const x of unit.problems) problems.push(x);
  r.slow.push({ key, ns, name: svc.metadata.name, input: svc, svc: snapService(svc), slices: own.map(snapSlice), unit });
  return -r.slow.length;
}

function addOwner(index: Map<string, string[]>, token: string, key: string): void {
  const owners = index.get(token);
  if (owners) owners.push(key);
  else index.set(token, [key]);
}

/** A service an update found no memo for. */
interface Added {
  ns: string;
  name: string;
  svc: ServiceInput;
}

/** Snapshots of a changed service's inputs. */
interface Fresh {
  svc: ServiceSnap;
  slices: SliceSnap[];
  tokens: string[];
}

/** Whether a service's slices (`mine`, as slicesByService groups them) equal its memo's snapshots. */
function sameSlices(mine: readonly EndpointSliceInput[] | undefined, snaps: readonly SliceSnap[]): boolean {
  const count = mine === undefined ? 0 : mine.length;
  if (count !== snaps.length) return false;
  for (let i = 0; i < count; i++) if (!sameSlice((mine as readonly EndpointSliceInput[])[i] as EndpointSliceInput, snaps[i] as SliceSnap)) return false;
  return true;
}

/** The units' problems, in order. */
function problemsOf(units: readonly ServiceUnit[]): ServiceProblem[] {
  const out: ServiceProblem[] = [];
  for (let k = 0; k < units.length; k++) for (const p of (units[k] as ServiceUnit).problems) out.push(p);
  return out;
}

/**
 * desiredLb kept up to date: `update` takes the full inputs each time and recomputes only the
 * services whose inputs (the Service's fields that matter, its EndpointSlices in order) changed,
 * plus those sharing a frontend address:port with one of them, in namespace/name order — so its
 * state, problems and ids equal a from-scratch desiredLb given the ids before the update (with
 * the same next ids), and `before`/`after` cover every key that changed. Ids are never reused:
 * the next service and backend ids only grow. Pure: no I/O (a memo, no clock, no randomness).
 */
export class LbModel {
  private readonly node: string | undefined;
  private readonly memo = new Map<string, Memo>();
  private readonly memoByName: ByName<Memo> = new Map();
  /** Current services' keys (namespace/name, with a suffix for duplicates) in namespace/name order. */
  private order: string[] = [];
  /** address:port/proto → the keys of the services that could claim it. */
  private readonly tokenIndex = new Map<string, string[]>();
  private readonly serviceIds: Map<string, number>;
  private readonly backendIds: Map<string, number>;
  private nextService: number;
  private nextBackend: number;
  private generation = 0;
  private problems: ServiceProblem[] = [];
  private state: LbState | undefined = { frontends: [], external: [], backends: [], maglev: [] };
  /** The units of the last update, in order (the state is assembled from them when read). */
  private units: ServiceUnit[] = [];
  /** A from-empty update's rows whose memo is not built yet (settle). */
  private pending: FastRows | undefined;

  constructor(opts: LbOptions = {}) {
    this.node = opts.node;
    const prev = opts.previous ?? emptyIds();
    this.serviceIds = new Map(prev.services);
    this.backendIds = new Map(prev.backends);
    this.nextService = prev.nextService;
    this.nextBackend = prev.nextBackend;
  }

  /** The ids in use and the next ones to give out (copies). */
  ids(): LbIds {
    this.settle();
    return { services: new Map(this.serviceIds), backends: new Map(this.backendIds), nextService: this.nextService, nextBackend: this.nextBackend };
  }

  /** The next service and backend ids to give out. */
  nextIds(): { service: number; backend: number } {
    return { service: this.nextService, backend: this.nextBackend };
  }

  /** The complete contents of the current state (as lbContents of it). */
  contents(): LbContents {
    this.settle();
    const out = emptyContents();
    for (const key of this.order) addEntries(out, entriesOfMemo(this.memo.get(key) as Memo));
    return out;
  }

  /** The state now, assembled at most once per change and only when read. */
  private stateGetter(): () => LbState {
    if (this.state) {
      const state = this.state;
      return () => state;
    }
    const units = this.units;
    let state: LbState | undefined;
    return () => {
      state ??= assemble(units).state;
      if (this.units === units) this.state = state;
      return state;
    };
  }

  /**
   * Builds the memo a from-empty update left as columns (snapshots, units, id maps, the token
   * index). Any other method that needs it calls this first; an I/O edge may call it when idle
   * (ServiceSync does, after the writes), so the next update does not pay for it.
   */
  settle(): void {
    const r = this.pending;
    if (r === undefined) return;
    this.pending = undefined;
    const gen = this.generation;
    const memos: Memo[] = [];
    // (pushed, not into col(): the order is a packed array whichever update set it last, so the
    // loops over it keep one shape of array)
    const keys: string[] = [];
    for (let k = 0; k < r.seq.length; k++) {
      const i = r.seq[k] as number;
      keys.push(i >= 0 ? `${r.ns[i]}/${r.name[i]}` : (r.slow[-1 - i] as FastRows["slow"][number]).key); // "namespace/name"
    }
    this.order = keys;
    for (let k = 0; k < r.seq.length; k++) {
      const i = r.seq[k] as number;
      const key = keys[k] as string;
      if (i < 0) {
        const x = r.slow[-1 - i] as FastRows["slow"][number];
        memos.push({
          key,
          ns: x.ns,
          name: x.name,
          svc: x.svc,
          slices: x.slices,
          tokens: tokensOf(x.svc),
          unit: x.unit,
          entries: undefined,
          seen: gen,
          input: x.input,
        });
        continue;
      }
      const ns = r.ns[i] as string;
      const name = r.name[i] as string;
      const snap = fastSnap(r, i);
      const slices = fastSliceSnaps(r, i);
      const unit = fastUnit(r, i, key);
      memos.push({ key, ns, name, svc: snap, slices, tokens: tokensOf(snap), unit, entries: undefined, seen: gen, input: r.input[i] as ServiceInput });
    }
    for (const m of memos) this.remember(m);
    this.units = memos.map((m) => m.unit);
    SETTLED.set(r, { units: this.units, memos });
  }

  /** Files a service's memo: its ids, its tokens' owner, and under its key and name. */
  private remember(m: Memo): void {
    for (let i = 0; i < m.unit.serviceKeys.length; i++) this.serviceIds.set(m.unit.serviceKeys[i] as string, m.unit.serviceIds[i] as number);
    for (let i = 0; i < m.unit.backendKeys.length; i++) this.backendIds.set(m.unit.backendKeys[i] as string, m.unit.backendIds[i] as number);
    for (const t of m.tokens) addOwner(this.tokenIndex, t, m.key);
    this.memo.set(m.key, m);
    setIn(this.memoByName, m.ns, m.name, m);
  }

  /**
   * From empty with no ids to keep: the lean path (FastRows), or undefined when the inputs need
   * the general one (a name given twice, or a frontend claimed twice among lean-path services).
   */
  private fromEmpty(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[], stream: LbStream | undefined): LbUpdate | undefined {
    const n = services.length;
    if (n >= SORT_INDEX_MAX || slices.length >= SORT_INDEX_MAX) return undefined;
    // Each step is its own small function with one loop: the engine optimises such a function
    // whole after its first calls, where one function of several long loops is compiled loop by
    // loop on the stack and thrown back to the interpreter whenever it reaches a loop it has no
    // type feedback for yet (measured: the first five syncs from empty took 2-9x the later ones).
    const inOrder = keysInOrder(services);
    if (inOrder < 0) return undefined;
    // Services in key order — as the store lists them, like the Kubernetes API — take ids in input
    // order, and are looked at part by part below, so the first part goes to the kernel soon.
    // Otherwise they are looked at first, then sorted by key (a name given twice: the general path).
    let scan: ServiceScan;
    let perm: Int32Array | undefined;
    let order: string[] = [];
    if (inOrder === 0) {
      scan = scanServices(services);
      // Only lean-path services: their frontends are checked among themselves by number, before
      // anything is computed or streamed (any frontend claimed twice: the general path); with
      // computeService in the mix, every frontend is claimed in the pass as computeService does.
      if (!scan.mixed && new FrontendClaims(n).claim(scan, 0, n)) return undefined;
      order = sortKeys(services).sort();
      perm = sortedPerm(order);
      if (perm === undefined) return undefined;
    } else scan = new ServiceScan(n);
    // Slices as slicesByService takes them (IPv4, with a service name), per service in input
    // order. Usually they come in their services' order (the cluster's endpoints controller writes
    // them so): then each service's slices are one run of the input (`runs`, by service input
    // index); otherwise by sorted keys, walked beside the sorted services.
    const runs = sliceRuns(services, slices);
    // The sort keys themselves are kept only to walk sorted slices (otherwise dropped now:
    // garbage, not survivors a scavenge during the loop would copy).
    if (runs !== undefined) order.length = 0;
    else if (inOrder === 1) order = sortKeys(services); // (sorted as they come)
    const walk: SliceWalk = runs === undefined ? { order, sliceKeys: sortedSliceKeys(slices), q: 0 } : { order, sliceKeys: [], q: 0 };
    const r = newRows(this.node, n, slices);
    const pass = newPass(emptyIds(), this.node, this.nextService, this.nextBackend);
    const problems: ServiceProblem[] = [];
    // In key order, lean-path frontends are claimed by number part by part; the first service that
    // needs computeService, or claims a frontend claimed already, turns the pass mixed (the rows so
    // far are claimed as computeService claims, and from there on every service is), which gives
    // the general path's result: the later claimant reported, as computeService reports it.
    const claims = inOrder === 1 ? new FrontendClaims(n) : undefined;
    const every = Math.max(1, stream?.partServices ?? LB_STREAM_PART);
    for (let from = 0; from < n; from += every) {
      const to = Math.min(n, from + every);
      if (claims !== undefined) {
        const slow = scanChunk(services, scan, from, to);
        if (!scan.mixed && (slow || claims.claim(scan, from, to))) {
          scan.mixed = true;
          claimRows(r, pass);
        }
      }
      fillRows(r, pass, problems, services, slices, scan, perm, runs, walk, from, to);
      if (stream !== undefined) stream.send(encodeRows(r, stream.pinOf, from, to, stream));
    }
    this.generation++;
    this.nextService = pass.nextService;
    this.nextBackend = pass.nextBackend;
    this.pending = r;
    this.state = undefined;
    this.units = [];
    this.problems = problems;
    let state: LbState | undefined;
    let after: LbContents | undefined;
    const settled = () => {
      this.settle();
      return SETTLED.get(r) as Settled;
    };
    return {
      get state() {
        state ??= assemble(settled().units).state;
        return state;
      },
      problems,
      recomputed: n,
      get before() {
        return emptyContents();
      },
      get after() {
        if (after === undefined) {
          after = emptyContents();
          for (const m of settled().memos) addEntries(after, entriesOfMemo(m));
        }
        return after;
      },
      encode: (pinOf) => encodeRows(r, pinOf),
      streamed: stream !== undefined,
    };
  }

  /**
   * `stream`: where a from-empty update (the lean path) sends its writes in parts while it computes
   * (then `streamed` is true); any other update sends nothing and the caller writes `encode()`.
   */
  update(services: readonly ServiceInput[], slices: readonly EndpointSliceInput[], stream?: LbStream): LbUpdate {
    this.settle();
    if (this.memo.size === 0 && this.serviceIds.size === 0 && this.backendIds.size === 0 && services.length > 0) {
      const lean = this.fromEmpty(services, slices, stream);
      if (lean) return lean;
    }
    // Each step is a method of its own: the engine recompiles a function whose optimised code met
    // an object of another shape, and one method for all of it took ~50 ms per recompile (12 in
    // a 13 s run of the bench's sequence, on a 2-CPU machine whose other CPU writes the maps).
    const gen = ++this.generation;
    const bySvc = slicesByService(slices);
    const added = new Map<string, Added>();
    const changed: string[] = [];
    const seen = this.matchInputs(services, bySvc, gen, added, changed);
    const removed = this.removedSince(seen, gen);
    if (changed.length === 0 && removed.length === 0) return lazyUpdate(this.stateGetter(), this.problems, 0, [], []);
    if (added.size > 0 || removed.length > 0) this.reorder(added, gen);
    const inputOf = (key: string) => added.get(key)?.svc ?? (this.memo.get(key) as Memo).input;
    const fresh = this.snapChanged(changed, inputOf, bySvc);
    const dirty = this.dirtyClosure(changed, removed, fresh);
    const next = this.recompute(dirty, inputOf, fresh, added, bySvc, gen);
    const olds = this.swap(dirty, next);
    this.state = undefined;
    this.units = this.unitsInOrder();
    this.problems = problemsOf(this.units);
    return lazyUpdate(this.stateGetter(), this.problems, dirty.size, olds, next);
  }

  /**
   * Marks the memos of `services` seen in update `gen`, and lists the services that are new
   * (`added`, `changed`) or whose inputs differ from their memo's (`changed`); returns how many
   * memos were seen.
   */
  private matchInputs(
    services: readonly ServiceInput[],
    bySvc: ByName<EndpointSliceInput[]>,
    gen: number,
    added: Map<string, Added>,
    changed: string[],
  ): number {
    let seen = 0;
    for (let k = 0; k < services.length; k++) {
      const svc = services[k] as ServiceInput;
      const ns = svc.metadata.namespace ?? "default";
      let name = svc.metadata.name;
      let m = this.memoByName.get(ns)?.get(name);
      // A name given twice (not possible in Kubernetes) keeps its input order, as desiredLb's stable sort.
      for (let n = 1; m === undefined ? added.has(`${ns}/${name}`) : m.seen === gen; n++) {
        name = `${svc.metadata.name}\u0000${n}`;
        m = this.memoByName.get(ns)?.get(name);
      }
      if (m === undefined) {
        const key = `${ns}/${name}`;
        added.set(key, { ns, name, svc });
        changed.push(key);
        continue;
      }
      seen++;
      m.seen = gen;
      m.input = svc;
      if (!sameService(svc, m.svc) || !sameSlices(bySvc.get(ns)?.get(svc.metadata.name), m.slices)) changed.push(m.key);
    }
    return seen;
  }

  /** The keys of the memos update `gen` did not see (`seen` of them it did). */
  private removedSince(seen: number, gen: number): string[] {
    const removed: string[] = [];
    if (seen !== this.memo.size) for (const m of this.memo.values()) if (m.seen !== gen) removed.push(m.key);
    return removed;
  }

  /** The order after services were added or removed: the memos update `gen` saw, and the added ones. */
  private reorder(added: Map<string, Added>, gen: number): void {
    const keys = this.order.filter((k) => this.memo.get(k)?.seen === gen);
    for (const k of added.keys()) keys.push(k);
    this.order = keys.sort();
  }

  /** Snapshots of the changed services' inputs, and their frontend tokens. */
  private snapChanged(changed: readonly string[], inputOf: (key: string) => ServiceInput, bySvc: ByName<EndpointSliceInput[]>): Map<string, Fresh> {
    const fresh = new Map<string, Fresh>();
    for (const key of changed) {
      const svc = inputOf(key);
      const snap = snapService(svc);
      fresh.set(key, { svc: snap, slices: slicesOf(bySvc, svc).map(snapSlice), tokens: tokensOf(snap) });
    }
    return fresh;
  }

  /** The changed and removed services, and every service that shares a frontend token with one of them (transitively). */
  private dirtyClosure(changed: readonly string[], removed: readonly string[], fresh: Map<string, Fresh>): Set<string> {
    const newOwners = new Map<string, string[]>();
    // (from empty: no closure to find)
    if (this.memo.size > 0) for (const [key, f] of fresh) for (const t of f.tokens) addOwner(newOwners, t, key);
    const dirty = new Set<string>(changed);
    for (const k of removed) dirty.add(k);
    // (From empty there is nothing clean to reach.)
    const queue = this.memo.size > 0 ? [...dirty] : [];
    const visit = (owners: string[] | undefined) => {
      if (owners === undefined) return;
      for (const other of owners) {
        if (dirty.has(other)) continue;
        dirty.add(other);
        queue.push(other);
      }
    };
    for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
      for (const tokens of [this.memo.get(key)?.tokens, fresh.get(key)?.tokens]) {
        for (const t of tokens ?? []) {
          visit(this.tokenIndex.get(t));
          visit(newOwners.get(t));
        }
      }
    }
    return dirty;
  }

  /** The dirty services computed again, in namespace/name order, against the ids before this update. */
  private recompute(
    dirty: Set<string>,
    inputOf: (key: string) => ServiceInput,
    fresh: Map<string, Fresh>,
    added: Map<string, Added>,
    bySvc: ByName<EndpointSliceInput[]>,
    gen: number,
  ): Memo[] {
    const pass = newPass({ services: this.serviceIds, backends: this.backendIds, nextService: this.nextService, nextBackend: this.nextBackend }, this.node);
    const next: Memo[] = [];
    for (const key of this.order) {
      if (!dirty.has(key)) continue;
      const svc = inputOf(key);
      const f = fresh.get(key) ?? (this.memo.get(key) as Memo);
      const where = added.get(key) ?? (this.memo.get(key) as Memo);
      const unit = computeService(svc, nameOf(svc.metadata), slicesOf(bySvc, svc), pass);
      next.push({ key, ns: where.ns, name: where.name, svc: f.svc, slices: f.slices, tokens: f.tokens, unit, entries: undefined, seen: gen, input: svc });
    }
    this.nextService = pass.nextService;
    this.nextBackend = pass.nextBackend;
    return next;
  }

  /** Swaps the dirty services' memos, ids and tokens for `next`; returns the memos they replace (for the diff). */
  private swap(dirty: Set<string>, next: readonly Memo[]): Memo[] {
    const olds: Memo[] = [];
    for (const key of dirty) {
      const old = this.memo.get(key);
      if (!old) continue;
      olds.push(old);
      for (const k of old.unit.serviceKeys) this.serviceIds.delete(k);
      for (const k of old.unit.backendKeys) this.backendIds.delete(k);
      for (const t of old.tokens) {
        const owners = this.tokenIndex.get(t);
        if (owners === undefined) continue;
        const rest = owners.filter((o) => o !== key);
        if (rest.length === 0) this.tokenIndex.delete(t);
        else this.tokenIndex.set(t, rest);
      }
      this.memo.delete(key);
      this.memoByName.get(old.ns)?.delete(old.name);
    }
    for (const m of next) this.remember(m);
    return olds;
  }

  /** Every service's unit, in namespace/name order. */
  private unitsInOrder(): ServiceUnit[] {
    const units: ServiceUnit[] = [];
    for (let k = 0; k < this.order.length; k++) units.push((this.memo.get(this.order[k] as string) as Memo).unit);
    return units;
  }
}
