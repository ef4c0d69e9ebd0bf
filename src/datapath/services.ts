// Services + EndpointSlices (Kubernetes shapes) → the exact contents of the agent-written service
// maps (lb4_services, lb4_backends, lb4_maglev) for the socket hooks (pods) and for traffic from
// outside the node (NodePort, ExternalIPs, LoadBalancer IPs: bpf/host), and the ordered writes that
// move the kernel from one content to the next without a moment where a live service lacks its
// entries. Pure: no I/O. I/O edges: lb-sync.ts, nodeport-sync.ts; docs/services.md, docs/nodeport.md.

import type { MapWrite } from "./loader.ts";
import { DEFAULT_MAGLEV_SIZE, isPrime, MAX_MAGLEV_SIZE, maglevTable } from "./maglev.ts";
import {
  BE_LOCAL,
  BE_TERMINATING,
  backendKey,
  backendValue,
  LB_MAPS,
  lb4Backend,
  lb4Key,
  lb4Service,
  MAGLEV_CHUNK,
  maglevChunkValue,
  maglevKey,
  NODEPORT_ADDRESS,
  type Protocol,
  protocolName,
  SCOPE_EXTERNAL,
  SCOPE_INTERNAL,
  SVC_AFFINITY,
  SVC_EXTERNAL,
  SVC_LOCAL,
  SVC_MAGLEV,
  serviceKey,
  serviceValue,
  slotValue,
} from "./maps/lb.ts";

export const ANNOTATION_ALGORITHM = "service.weft.io/lb-algorithm";
export const ANNOTATION_MAGLEV_SIZE = "service.weft.io/maglev-table-size";
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

/**
 * The desired service maps for one node. Services are taken in namespace/name order, so when two
 * claim the same frontend the first keeps it and the second is reported.
 */
export function desiredLb(
  services: readonly ServiceInput[],
  slices: readonly EndpointSliceInput[],
  opts: LbOptions = {},
): { state: LbState; problems: ServiceProblem[] } {
  const prev = opts.previous ?? emptyIds();
  let nextService = prev.nextService;
  let nextBackend = prev.nextBackend;
  const claimedIds = new Set<number>();
  const usedFrontends = new Map<string, string>();
  const state: LbState = { frontends: [], external: [], backends: [], maglev: [] };
  const external = state.external as LbFrontend[];
  const problems: ServiceProblem[] = [];

  const slicesBySvc = new Map<string, EndpointSliceInput[]>();
  for (const s of slices) {
    const svcName = s.metadata.labels?.["kubernetes.io/service-name"];
    if (!svcName || (s.addressType !== undefined && s.addressType !== "IPv4")) continue;
    const key = `${s.metadata.namespace ?? "default"}/${svcName}`;
    const list = slicesBySvc.get(key) ?? [];
    list.push(s);
    slicesBySvc.set(key, list);
  }

  const sorted = [...services].sort((a, b) => {
    const ka = `${a.metadata.namespace ?? "default"}/${a.metadata.name}`;
    const kb = `${b.metadata.namespace ?? "default"}/${b.metadata.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });

  for (const svc of sorted) {
    const name = `${svc.metadata.namespace ?? "default"}/${svc.metadata.name}`;
    const spec = svc.spec ?? {};
    const problem = (reason: string, port?: string, code: ServiceProblem["code"] = "WEFT_SERVICE_INVALID") => {
      problems.push(port === undefined ? { code, service: name, reason } : { code, service: name, port, reason });
    };
    if (spec.type === "ExternalName") continue;
    const clusterIP = spec.clusterIP;
    if (clusterIP === "None") continue; // headless: DNS only
    // -- service-wide settings: any error leaves the whole service out --
    if (clusterIP !== undefined && clusterIP !== "" && !IPV4.test(clusterIP)) {
      problem(
        clusterIP.includes(":") ? `clusterIP ${clusterIP}: IPv6 is not supported yet` : `clusterIP "${clusterIP}" is not an IPv4 address`,
        undefined,
        clusterIP.includes(":") ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID",
      );
      continue;
    }
    const externalIPs = spec.externalIPs ?? [];
    const badExternal = externalIPs.find((ip) => !IPV4.test(ip));
    if (badExternal !== undefined) {
      problem(`externalIPs: "${badExternal}" is not an IPv4 address`);
      continue;
    }
    let affinityTimeout = 0;
    if (spec.sessionAffinity === "ClientIP") {
      const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT;
      if (!Number.isInteger(t) || t < 1 || t > MAX_AFFINITY_TIMEOUT) {
        problem(`sessionAffinityConfig.clientIP.timeoutSeconds ${t} is not in 1..${MAX_AFFINITY_TIMEOUT}`);
        continue;
      }
      affinityTimeout = t;
    } else if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== "None") {
      problem(`sessionAffinity "${spec.sessionAffinity}" is not None or ClientIP`);
      continue;
    }
    const itp = spec.internalTrafficPolicy ?? "Cluster";
    if (itp !== "Cluster" && itp !== "Local") {
      problem(`internalTrafficPolicy "${itp}" is not Cluster or Local`);
      continue;
    }
    const etp = spec.externalTrafficPolicy ?? "Cluster";
    if (etp !== "Cluster" && etp !== "Local") {
      problem(`externalTrafficPolicy "${etp}" is not Cluster or Local`);
      continue;
    }
    const type = spec.type ?? "ClusterIP";
    if (type !== "ClusterIP" && type !== "NodePort" && type !== "LoadBalancer") {
      problem(`type "${type}" is not ClusterIP, NodePort, LoadBalancer or ExternalName`);
      continue;
    }
    // LoadBalancer ingress IPs (hostname-only entries name no address here).
    const lbIPs: string[] = [];
    if (type === "LoadBalancer") {
      for (const ing of svc.status?.loadBalancer?.ingress ?? []) if (ing.ip !== undefined && !lbIPs.includes(ing.ip)) lbIPs.push(ing.ip);
    }
    const badLb = lbIPs.find((ip) => !IPV4.test(ip));
    if (badLb !== undefined) {
      problem(
        badLb.includes(":")
          ? `status.loadBalancer.ingress ip ${badLb}: IPv6 is not supported yet`
          : `status.loadBalancer.ingress ip "${badLb}" is not an IPv4 address`,
        undefined,
        badLb.includes(":") ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID",
      );
      continue;
    }
    const annotations = svc.metadata.annotations ?? {};
    const algorithm = annotations[ANNOTATION_ALGORITHM] ?? "random";
    if (algorithm !== "random" && algorithm !== "maglev") {
      problem(`annotation ${ANNOTATION_ALGORITHM}: "${algorithm}" is not random or maglev`);
      continue;
    }
    let maglevSize = 0;
    if (algorithm === "maglev") {
      const raw = annotations[ANNOTATION_MAGLEV_SIZE];
      maglevSize = raw === undefined ? DEFAULT_MAGLEV_SIZE : /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
      if (!isPrime(maglevSize) || maglevSize < 7 || maglevSize > MAX_MAGLEV_SIZE) {
        problem(`annotation ${ANNOTATION_MAGLEV_SIZE}: "${raw}" is not a prime in 7..${MAX_MAGLEV_SIZE}`);
        continue;
      }
    } else if (annotations[ANNOTATION_MAGLEV_SIZE] !== undefined) {
      problem(`annotation ${ANNOTATION_MAGLEV_SIZE} needs ${ANNOTATION_ALGORITHM}: maglev`);
      continue;
    }
    const ports = spec.ports ?? [];
    if (ports.length > 1 && ports.some((p) => !p.name)) {
      problem("every port must be named when a service has more than one");
      continue;
    }
    const svcSlices = slicesBySvc.get(name) ?? [];
    const anyEndpoint = svcSlices.some((s) => (s.endpoints ?? []).length > 0);
    const seenPorts = new Set<string>();

    // -- per port: an error leaves that port out, the service's other ports stay --
    for (const p of ports) {
      const portLabel = p.name || String(p.port);
      if (!validPort(p.port)) {
        problem(`port ${JSON.stringify(p.port)} is not in 1..65535`, portLabel);
        continue;
      }
      const protoRaw = p.protocol ?? "TCP";
      const proto = protoRaw === "TCP" || protoRaw === "UDP" ? (protoRaw as Protocol) : undefined;
      if (!proto) {
        problem(`protocol ${protoRaw} is not supported (TCP, UDP)`, portLabel, protoRaw === "SCTP" ? "WEFT_SERVICE_UNSUPPORTED" : "WEFT_SERVICE_INVALID");
        continue;
      }
      if (seenPorts.has(`${p.port}/${proto}`)) {
        problem(`port ${p.port}/${proto} appears twice`, portLabel);
        continue;
      }
      seenPorts.add(`${p.port}/${proto}`);
      const target = p.targetPort ?? p.port;
      let targetNumber: number | undefined;
      if (typeof target === "number" || /^\d+$/.test(target)) {
        targetNumber = Number(target);
        if (!validPort(targetNumber)) {
          problem(`targetPort ${JSON.stringify(target)} is not in 1..65535`, portLabel);
          continue;
        }
      } else if (!PORT_NAME.test(target) || !/[a-z]/.test(target)) {
        problem(`targetPort "${target}" is neither a port number nor a port name`, portLabel);
        continue;
      }
      if (p.nodePort !== undefined && !validPort(p.nodePort)) {
        problem(`nodePort ${JSON.stringify(p.nodePort)} is not in 1..65535`, portLabel);
        continue;
      }

      // Endpoints of this port: a slice names its ports as the service does and gives the
      // resolved target port; a slice without the port gives nothing for a named targetPort.
      const resolved = new Map<string, Resolved>();
      let offered = false;
      for (const s of svcSlices) {
        const sp = (s.ports ?? []).find((x) => (x.name ?? "") === (p.name ?? "") && (x.protocol ?? "TCP") === proto);
        const port = sp && validPort(sp.port) ? sp.port : targetNumber;
        if (port === undefined) continue;
        offered = true;
        for (const e of s.endpoints ?? []) {
          const address = e.addresses[0];
          if (address === undefined || !IPV4.test(address)) continue;
          const terminating = e.conditions?.terminating === true;
          const readyCondition = e.conditions?.ready ?? true; // unset means ready (Kubernetes)
          const ready = readyCondition && !terminating;
          const serving = e.conditions?.serving ?? readyCondition;
          if (!ready && !(terminating && serving)) continue; // neither ready nor draining: no entry
          const k = `${address}:${port}`;
          const was = resolved.get(k);
          resolved.set(k, {
            address,
            port,
            // Duplicates happen while slices are rewritten: ready anywhere wins.
            ready: ready || (was?.ready ?? false),
            terminating: was ? was.terminating && terminating : terminating,
            local: opts.node !== undefined && e.nodeName === opts.node,
          });
        }
      }
      if (!offered && anyEndpoint) {
        problem(`targetPort "${target}" is not a port of any endpoint`, portLabel);
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
      const clash = wanted.find((w) => usedFrontends.has(frontendId(w.address, p.port, proto)));
      if (clash) {
        problem(`${clash.address}:${p.port}/${proto} is already a frontend of ${usedFrontends.get(frontendId(clash.address, p.port, proto))}`, portLabel);
        continue;
      }
      const clashOut = outside.find((o) => usedFrontends.has(frontendId(o.address, o.port, proto, SCOPE_EXTERNAL)));
      if (clashOut) {
        const other = usedFrontends.get(frontendId(clashOut.address, clashOut.port, proto, SCOPE_EXTERNAL));
        problem(`${externalName(clashOut.address, clashOut.port, proto)} is already a frontend of ${other}`, portLabel);
        continue;
      }
      if (wanted.length === 0 && outside.length === 0) continue; // no address allocated yet

      // A stable service id: the one any of these frontends had, unless already taken.
      const ids = [...wanted.map((w) => frontendId(w.address, p.port, proto)), ...outside.map((o) => frontendId(o.address, o.port, proto, SCOPE_EXTERNAL))];
      let serviceId: number | undefined;
      for (const fid of ids) {
        const old = prev.services.get(fid);
        if (old !== undefined && !claimedIds.has(old)) {
          serviceId = old;
          break;
        }
      }
      if (serviceId === undefined) serviceId = nextService++;
      claimedIds.add(serviceId);
      const sid = serviceId;

      const backends: LbBackend[] = [...resolved.values()].map((r) => {
        const key = backendId(sid, r.address, r.port, proto);
        const id = prev.backends.get(key) ?? nextBackend++;
        return { id, address: r.address, port: r.port, proto, serviceId: sid, flags: (r.ready ? 0 : BE_TERMINATING) | (r.local ? BE_LOCAL : 0) };
      });
      backends.sort((a, b) => a.id - b.id);
      state.backends.push(...backends);
      const selectable = backends.filter((b) => !(b.flags & BE_TERMINATING));
      const local = selectable.filter((b) => b.flags & BE_LOCAL);

      const baseFlags = (affinityTimeout ? SVC_AFFINITY : 0) | (maglevSize ? SVC_MAGLEV : 0);
      const service = `${name}:${portLabel}`;
      for (const w of wanted) {
        usedFrontends.set(frontendId(w.address, p.port, proto), service);
        const chosen = w.flags & SVC_LOCAL ? local : selectable;
        state.frontends.push({
          address: w.address,
          port: p.port,
          proto,
          serviceId: sid,
          backendIds: chosen.map((b) => b.id),
          affinityTimeout,
          maglevSize,
          flags: baseFlags | w.flags,
          service,
        });
      }
      for (const o of outside) {
        usedFrontends.set(frontendId(o.address, o.port, proto, SCOPE_EXTERNAL), service);
        const chosen = o.flags & SVC_LOCAL ? local : selectable;
        external.push({
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
          state.maglev.push({ serviceId: sid, scope, backendIds: Uint32Array.from(idx, (i) => (list[i] as LbBackend).id) });
        }
      }
    }
  }
  return { state, problems };
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

export function lbContents(state: LbState): LbContents {
  const out = emptyContents();
  for (const f of [...state.frontends, ...(state.external ?? [])]) {
    out.services.set(
      serviceKey(f, 0).toString("hex"),
      serviceValue({ serviceId: f.serviceId, count: f.backendIds.length, affinityTimeout: f.affinityTimeout, maglevSize: f.maglevSize, flags: f.flags }),
    );
    f.backendIds.forEach((id, i) => {
      out.services.set(serviceKey(f, i + 1).toString("hex"), slotValue(f.serviceId, id));
    });
  }
  for (const b of state.backends) out.backends.set(backendKey(b.id).toString("hex"), backendValue(b));
  for (const t of state.maglev) {
    const chunks = Math.ceil(t.backendIds.length / MAGLEV_CHUNK);
    for (let c = 0; c < chunks; c++) out.maglev.set(maglevKey(t.serviceId, t.scope, c).toString("hex"), maglevChunkValue(t.backendIds, c));
  }
  return out;
}

/** The ids pinned maps use (after an agent restart), decoded from their contents. */
export function idsFromContents(contents: LbContents): LbIds {
  const ids = emptyIds();
  for (const [k, v] of contents.services) {
    const key = lb4Key.decode(Buffer.from(k, "hex"));
    const val = lb4Service.decode(v);
    const proto = protocolName(key.proto);
    if (key.slot !== 0 || !proto) continue;
    ids.services.set(frontendId(key.address, key.dport, proto, key.scope), val.service_id);
    ids.nextService = Math.max(ids.nextService, val.service_id + 1);
  }
  for (const [k, v] of contents.backends) {
    const id = Buffer.from(k, "hex").readUInt32LE(0);
    const b = lb4Backend.decode(v);
    const proto = protocolName(b.proto);
    if (!proto) continue;
    ids.backends.set(backendId(b.service_id, b.address, b.port, proto), id);
    ids.nextBackend = Math.max(ids.nextBackend, id + 1);
  }
  return ids;
}

const SLOT_OFFSET = lb4Key.offsets.slot as number;

function isServiceEntry(keyHex: string): boolean {
  return Buffer.from(keyHex, "hex").readUInt16LE(SLOT_OFFSET) === 0;
}

/**
 * The writes that turn `old` into `next`. Order (never a lookup that finds nothing it needs):
 * updates of backends, Maglev chunks, backend slots, then service entries (which publish the new
 * count); then deletes of service entries, slots, Maglev chunks, backends. So a slot never names a
 * backend not yet written, a service entry never counts slots not yet written, and nothing an
 * existing service entry points to disappears before that entry has changed.
 */
export function lbDiff(old: LbContents, next: LbContents, pinOf: (map: string) => string): MapWrite[] {
  const updates = (o: Map<string, Buffer>, n: Map<string, Buffer>, map: string, filter: (k: string) => boolean = () => true): MapWrite[] => {
    const out: MapWrite[] = [];
    for (const [k, v] of n) {
      if (!filter(k)) continue;
      const was = o.get(k);
      if (!was?.equals(v)) out.push({ op: "update", map: pinOf(map), key: Buffer.from(k, "hex"), value: v });
    }
    return out;
  };
  const deletes = (o: Map<string, Buffer>, n: Map<string, Buffer>, map: string, filter: (k: string) => boolean = () => true): MapWrite[] => {
    const out: MapWrite[] = [];
    for (const k of o.keys()) if (filter(k) && !n.has(k)) out.push({ op: "delete", map: pinOf(map), key: Buffer.from(k, "hex") });
    return out;
  };
  const slot = (k: string) => !isServiceEntry(k);
  return [
    ...updates(old.backends, next.backends, LB_MAPS.backends),
    ...updates(old.maglev, next.maglev, LB_MAPS.maglev),
    ...updates(old.services, next.services, LB_MAPS.services, slot),
    ...updates(old.services, next.services, LB_MAPS.services, isServiceEntry),
    ...deletes(old.services, next.services, LB_MAPS.services, isServiceEntry),
    ...deletes(old.services, next.services, LB_MAPS.services, slot),
    ...deletes(old.maglev, next.maglev, LB_MAPS.maglev),
    ...deletes(old.backends, next.backends, LB_MAPS.backends),
  ];
}
