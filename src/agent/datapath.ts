// The agent's hold on its node's kernel datapath: loads (or adopts) the pinned objects, attaches
// the tc and socket programs, and keeps the maps equal to what the cluster view asks for — each
// sync computes a diff against what is pinned, so a restarted agent reconciles without flushing.

import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { type ClusterConfig, cgroupDir, type NodeConfig } from "../cluster/config.ts";
import type { PodStatusRecord } from "../cluster/state.ts";
import type { Logger } from "../core/log.ts";
import { run } from "../core/run.ts";
import { loadSockDatapath, registerNetns, ServiceSync, type SyncReport, unregisterNetns } from "../datapath/lb-sync.ts";
import {
  attachTc,
  detach,
  dumpMap,
  type LoadedObject,
  loadObject,
  type MapWrite,
  objectPath,
  pinRoot,
  pins,
  programOf,
  writeMaps,
} from "../datapath/loader.ts";
import { ENDPOINTS_MAP, type EndpointEntry, encodeEndpointKey, encodeEndpointValue } from "../datapath/maps/endpoints.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP, type IpcacheEntry } from "../datapath/maps/ipcache.ts";
import { cookieKey, LB_MAPS } from "../datapath/maps/lb.ts";
import { encodePolicyKey, encodePolicyValue, ensureSubjectMap, removeSubjectMap, subjectMapPin } from "../datapath/maps/policy.ts";
import { loadNodePortDatapath } from "../datapath/nodeport-sync.ts";
import { attachRedirect } from "../datapath/redirect.ts";
import type { EndpointSliceInput, ServiceInput } from "../datapath/services.ts";
import type { SubjectPolicy } from "../policy/compile.ts";
import { RESERVED_IDENTITIES } from "../policy/identity.ts";
import { type PolicyEntry, PREFIX_ANY_PROTO } from "../policy/key.ts";

/** A local pod as the datapath sees it. */
export interface LocalEndpoint {
  pod: PodStatusRecord;
  identity: number;
}

interface Attached {
  veth: string;
  ip: string;
  netns: string;
  cookie: bigint;
  identity: number;
}

/** A map's content as hex key → hex value, for diffs. */
type Contents = Map<string, string>;

async function readContents(mapPin: string): Promise<Contents> {
  const dump = await dumpMap(mapPin);
  return new Map(dump.entries.map((e) => [e.key.toString("hex"), e.value.toString("hex")]));
}

/** Writes that turn `old` into `next` for one map: updates first, then deletes (never a gap). */
export function contentsDiff(map: string, old: Contents, next: Contents): MapWrite[] {
  const ops: MapWrite[] = [];
  for (const [k, v] of next) if (old.get(k) !== v) ops.push({ op: "update", map, key: Buffer.from(k, "hex"), value: Buffer.from(v, "hex") });
  for (const k of old.keys()) if (!next.has(k)) ops.push({ op: "delete", map, key: Buffer.from(k, "hex") });
  return ops;
}

/** Cilium's allow-localhost: the node itself (kubelet probes) may always reach its pods. */
export function withHostAllowed(entries: readonly PolicyEntry[], enforced: boolean): PolicyEntry[] {
  if (!enforced) return [...entries];
  const host = RESERVED_IDENTITIES.host;
  if (entries.some((e) => e.key.identity === host && e.key.direction === "ingress" && e.key.prefixlen === PREFIX_ANY_PROTO)) return [...entries];
  return [
    ...entries,
    {
      key: { identity: host, direction: "ingress", protocol: 0, dport: 0, prefixlen: PREFIX_ANY_PROTO },
      value: { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 0 },
      origins: ["allow-localhost"],
    },
  ];
}

function endpointId(uid: string): number {
  return (Number.parseInt(createHash("sha256").update(uid).digest("hex").slice(0, 4), 16) % 65535) + 1;
}

export class NodeDatapath {
  readonly root: string;
  private lxc?: LoadedObject;
  private readonly attached = new Map<string, Attached>(); // by pod uid
  private ipcache?: Contents;
  private endpoints?: Contents;
  private readonly policy = new Map<number, Contents>();
  readonly services: ServiceSync;

  constructor(
    readonly cfg: ClusterConfig,
    readonly node: NodeConfig,
    private readonly log: Logger,
  ) {
    this.root = pinRoot(cfg.name, node.name);
    this.services = new ServiceSync(this.root, node.name);
  }

  /** Loads lxc.o and sock.o (pinned maps adopted, programs replaced in place) and attaches the node-wide programs. */
  async start(): Promise<void> {
    this.lxc = await loadObject(objectPath("lxc"), this.root);
    const prog = (name: string) => programOf(this.lxc as LoadedObject, name).pin;
    await attachTc(prog("vxlan_from_overlay"), this.node.netns, "vx0", "ingress", pins.link(this.root, "vx0-ingress"));
    await attachTc(prog("vxlan_to_overlay"), this.node.netns, "vx0", "egress", pins.link(this.root, "vx0-egress"));
    // sock.o creates the service maps at the cluster's size; host.o then adopts them as pinned.
    await loadSockDatapath(this.root, cgroupDir(this.cfg.name, this.node.name, "pods"), this.cfg.lbMapMax === undefined ? {} : { lbMapMax: this.cfg.lbMapMax });
    await loadNodePortDatapath(this.root, { netns: this.node.netns, nodeIP: this.node.underlayIP });
    // L7 redirect stays off until the node's proxy listens (enableRedirect).
    await attachRedirect(this.root, cgroupDir(this.cfg.name, this.node.name, "pods"));
    this.ipcache = await readContents(pins.map(this.root, IPCACHE_MAP));
    this.endpoints = await readContents(pins.map(this.root, ENDPOINTS_MAP));
    // Adopt what a previous agent left: subject maps (removed if their identity has no local pod
    // any more) and per-pod links and netns registrations (swept after the first endpoint sync).
    const mapsDir = `${this.root}/maps`;
    for (const name of existsSync(mapsDir) ? readdirSync(mapsDir) : []) {
      const m = /^weft_policy_(\d+)$/.exec(name);
      if (m) this.policy.set(Number(m[1]), await readContents(`${mapsDir}/${name}`));
    }
    const linksDir = `${this.root}/links`;
    this.staleLinks = new Set((existsSync(linksDir) ? readdirSync(linksDir) : []).filter((l) => /^lxc-.*-(from|to)$/.test(l)));
    this.staleCookies = new Set((await dumpMap(pins.map(this.root, LB_MAPS.netns))).entries.map((e) => e.key.toString("hex")));
  }

  private staleLinks = new Set<string>();
  private staleCookies = new Set<string>();

  /** Removes links and netns registrations of pods that went away while no agent was running. */
  private async sweepAdopted(): Promise<void> {
    for (const a of this.attached.values()) {
      this.staleLinks.delete(`lxc-${a.veth}-from`);
      this.staleLinks.delete(`lxc-${a.veth}-to`);
      this.staleCookies.delete(cookieKey(a.cookie).toString("hex"));
    }
    for (const l of this.staleLinks) await detach(pins.link(this.root, l));
    if (this.staleLinks.size > 0) this.log.info("removed links of pods gone while the agent was down", { links: [...this.staleLinks] });
    await writeMaps([...this.staleCookies].map((k) => ({ op: "delete" as const, map: pins.map(this.root, LB_MAPS.netns), key: Buffer.from(k, "hex") })));
    this.staleLinks.clear();
    this.staleCookies.clear();
  }

  async syncIpcache(entries: IpcacheEntry[]): Promise<number> {
    await this.reloadContents();
    const map = pins.map(this.root, IPCACHE_MAP);
    const next: Contents = new Map(entries.map((e) => [encodeIpcacheKey(e.cidr).toString("hex"), encodeIpcacheValue(e).toString("hex")]));
    const ops = contentsDiff(map, this.ipcache ?? new Map(), next);
    await writeMaps(ops);
    this.ipcache = next;
    return ops.length;
  }

  /** Whether a pod's programs are attached and its entry written (its traffic is policed). */
  isAttached(uid: string): boolean {
    return this.attached.has(uid);
  }

  /**
   * Attaches the lxc programs to new local pods' veths, registers their namespaces with the socket
   * hooks, writes the endpoints map, and forgets pods that are gone.
   */
  async syncEndpoints(local: LocalEndpoint[], subjects: ReadonlyMap<number, SubjectPolicy>): Promise<number> {
    const prog = (name: string) => programOf(this.lxc as LoadedObject, name).pin;
    const next: Contents = new Map();
    const seen = new Set<string>();
    const toAttach: LocalEndpoint[] = [];
    for (const { pod, identity } of local) {
      if (!pod.podIP || !pod.veth || !pod.netns) continue;
      seen.add(pod.uid);
      const a = this.attached.get(pod.uid);
      if (!a || a.identity !== identity) {
        if (!existsSync(`/run/netns/${pod.netns}`)) continue; // sandbox not there yet (or gone)
        toAttach.push({ pod, identity });
      }
      const subject = subjects.get(identity);
      const entry: EndpointEntry = {
        ip: pod.podIP,
        identity,
        ifindex: await this.ifindex(pod.veth),
        endpointId: endpointId(pod.uid),
        enforceIngress: subject?.ingress.enforced ?? false,
        enforceEgress: subject?.egress.enforced ?? false,
        auditIngress: subject?.ingress.audit ?? false,
        auditEgress: subject?.egress.audit ?? false,
      };
      next.set(encodeEndpointKey(entry.ip).toString("hex"), encodeEndpointValue(entry).toString("hex"));
    }
    // The entries go in before the programs: lxc_from_endpoint drops whatever a veth sends while its
    // pod has no entry (INVALID_SOURCE_IP, fail closed), so attaching first cost a new pod's first
    // packets for as long as this pass took (every other attach, bpftool, the ifindex lookups).
    const ops = contentsDiff(pins.map(this.root, ENDPOINTS_MAP), this.endpoints ?? new Map(), next);
    await writeMaps(ops);
    this.endpoints = next;
    for (const { pod, identity } of toAttach) {
      const veth = pod.veth as string;
      const netns = pod.netns as string;
      await attachTc(prog("lxc_from_endpoint"), this.node.netns, veth, "ingress", pins.link(this.root, `lxc-${veth}-from`));
      await attachTc(prog("lxc_to_endpoint"), this.node.netns, veth, "egress", pins.link(this.root, `lxc-${veth}-to`));
      const cookie = await registerNetns(this.root, netns, identity);
      this.attached.set(pod.uid, { veth, ip: pod.podIP as string, netns, cookie, identity });
      this.log.info("endpoint attached", { pod: `${pod.namespace}/${pod.name}`, ip: pod.podIP, identity, veth });
    }
    if (this.staleLinks.size > 0 || this.staleCookies.size > 0) await this.sweepAdopted();
    for (const [uid, a] of this.attached) {
      if (seen.has(uid)) continue;
      await detach(pins.link(this.root, `lxc-${a.veth}-from`));
      await detach(pins.link(this.root, `lxc-${a.veth}-to`));
      await unregisterNetns(this.root, a.cookie);
      this.attached.delete(uid);
      this.log.info("endpoint removed", { ip: a.ip, veth: a.veth });
    }
    return ops.length;
  }

  private readonly ifindexes = new Map<string, number>();
  private async ifindex(dev: string): Promise<number> {
    const known = this.ifindexes.get(dev);
    if (known) return known;
    const out = JSON.parse(await run("ip", ["-n", this.node.netns, "-j", "link", "show", "dev", dev])) as { ifindex: number }[];
    const idx = out[0]?.ifindex ?? 0;
    this.ifindexes.set(dev, idx);
    return idx;
  }

  /** Policy maps of the identities that have local endpoints; maps of others are removed. */
  async syncPolicy(subjects: ReadonlyMap<number, SubjectPolicy>, localIdentities: ReadonlySet<number>): Promise<number> {
    const ops: MapWrite[] = [];
    for (const id of localIdentities) {
      const s = subjects.get(id);
      const entries = [...withHostAllowed(s?.ingress.entries ?? [], s?.ingress.enforced ?? false), ...(s?.egress.entries ?? [])];
      const pin = subjectMapPin(this.root, id);
      let old = this.policy.get(id);
      if (!old) {
        await ensureSubjectMap(this.root, id);
        old = await readContents(pin);
      }
      const next: Contents = new Map(entries.map((e) => [encodePolicyKey(e.key).toString("hex"), encodePolicyValue(e.value).toString("hex")]));
      ops.push(...contentsDiff(pin, old, next));
      this.policy.set(id, next);
    }
    await writeMaps(ops);
    for (const id of [...this.policy.keys()]) {
      if (localIdentities.has(id)) continue;
      await removeSubjectMap(this.root, id);
      this.policy.delete(id);
    }
    return ops.length;
  }

  syncServices(services: ServiceInput[], slices: EndpointSliceInput[]): Promise<SyncReport> {
    return this.services.sync(services, slices);
  }

  /** Forget cached map contents: the next sync re-reads what is pinned (after a failed write). */
  invalidate(): void {
    this.ipcache = undefined;
    this.endpoints = undefined;
    this.policy.clear();
  }

  async reloadContents(): Promise<void> {
    this.ipcache ??= await readContents(pins.map(this.root, IPCACHE_MAP));
    this.endpoints ??= await readContents(pins.map(this.root, ENDPOINTS_MAP));
  }
}
