// What an agent knows of its cluster at one instant: objects, every node's pods, identities,
// EndpointSlices and policies, read from the state folder; and the pure derivations the datapath
// needs from them (pod identities, the ipcache). Reading is here; deciding is in pure functions.

import { createHash } from "node:crypto";
import type { ClusterConfig, NodeConfig } from "../cluster/config.ts";
import { type EndpointSlice, endpointSlices } from "../cluster/endpoints.ts";
import { identityOfPod, identityTable } from "../cluster/identities.ts";
import { type PodStatusRecord, parseNodeStatuses, readNodeStatusTexts, statusContent } from "../cluster/state.ts";
import type { K8sObject, Store } from "../cluster/store.ts";
import { objectKey } from "../cluster/store.ts";
import type { IpcacheEntry } from "../datapath/maps/ipcache.ts";
import { type Identity, RESERVED_IDENTITIES } from "../policy/identity.ts";
import type { Policy } from "../policy/model.ts";
import { validateDocument } from "../policy/validate.ts";

export const POLICY_KINDS = ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"];

export interface PodEndpoint {
  pod: PodStatusRecord;
  identity: number | undefined;
}

export interface ClusterView {
  revision: number;
  /**
   * What the view was read from: the store's revision and every node's status (but its time). Equal
   * stamps, equal views: the agent skips a pass whose stamp it has already applied.
   */
  stamp: string;
  services: K8sObject[];
  slices: EndpointSlice[];
  namespaces: K8sObject[];
  identities: Map<number, Identity>;
  pods: PodStatusRecord[];
  policies: Policy[];
  /** Policy objects that no longer validate (kept out; reported). */
  policyProblems: string[];
}

interface StoredObjects {
  revision: number;
  services: K8sObject[];
  namespaces: K8sObject[];
  identities: Map<number, Identity>;
  policies: Policy[];
  policyProblems: string[];
}

function readObjects(store: Store): StoredObjects {
  const revision = store.revision();
  const policies: Policy[] = [];
  const policyProblems: string[] = [];
  for (const kind of POLICY_KINDS) {
    for (const o of store.list(kind)) {
      const r = validateDocument(o, { file: objectKey(o), document: 1 });
      if (r.problems.length > 0) policyProblems.push(...r.problems.map((p) => `${objectKey(o)}: ${p.path}: ${p.reason}`));
      else if (r.policy) policies.push(r.policy);
    }
  }
  return {
    revision,
    services: store.listShared("Service"),
    namespaces: store.listShared("Namespace"),
    identities: identityTable(store.listShared("CiliumIdentity")),
    policies,
    policyProblems,
  };
}

/**
 * Reads views; the objects are parsed again only when the store's revision moved (only
 * `weft apply`/`delete` change them), the pods' status and the EndpointSlices only when a node's
 * status changed (kubelets rewrite it every pass, most often with only a new time): otherwise the
 * last view is returned as it is. At 10k services, deriving the slices and hashing them on every
 * 200 ms pass cost ~90 ms.
 */
export class ViewReader {
  private objects?: StoredObjects;
  private last?: ClusterView;

  constructor(
    private readonly store: Store,
    private readonly cfg: ClusterConfig,
  ) {}

  read(): ClusterView {
    const revision = this.store.revision();
    const texts = readNodeStatusTexts(this.cfg.stateDir);
    const hash = createHash("sha256").update(`${revision}\n`);
    for (const t of texts) hash.update(statusContent(t)).update("\n");
    const stamp = hash.digest("hex");
    if (this.last?.stamp === stamp) return this.last;
    if (!this.objects || this.objects.revision !== revision) this.objects = readObjects(this.store);
    const pods = parseNodeStatuses(texts).flatMap((s) => s.pods);
    this.last = { ...this.objects, stamp, pods, slices: endpointSlices(this.objects.services, pods) };
    return this.last;
  }
}

export function readView(store: Store, cfg: ClusterConfig): ClusterView {
  return new ViewReader(store, cfg).read();
}

/** A pod's identity from its labels (cluster-wide numbers; undefined until `apply` numbered it). */
export function podIdentity(view: ClusterView, cluster: string, pod: PodStatusRecord): number | undefined {
  const ns = view.namespaces.find((n) => n.metadata.name === pod.namespace);
  return identityOfPod(view.identities, cluster, { namespace: pod.namespace, name: pod.name, labels: pod.desired.labels }, ns?.metadata.labels);
}

/** The ipcache this node needs: every pod, every node address, CIDR identities, world. Pure. */
export function desiredIpcache(view: ClusterView, cfg: ClusterConfig, self: NodeConfig, cidrIdentities: Identity[]): IpcacheEntry[] {
  const out = new Map<string, IpcacheEntry>();
  const put = (e: IpcacheEntry) => out.set(e.cidr, e);
  put({ cidr: "0.0.0.0/0", identity: RESERVED_IDENTITIES.world });
  for (const id of cidrIdentities) if (id.cidr && !id.cidr.text.includes(":")) put({ cidr: id.cidr.text, identity: id.id });
  for (const n of cfg.nodes) {
    const isSelf = n.name === self.name;
    const identity = isSelf ? RESERVED_IDENTITIES.host : RESERVED_IDENTITIES["remote-node"];
    put({ cidr: `${n.underlayIP}/32`, identity });
    // The overlay and gateway addresses of another node are reached through the tunnel.
    for (const ip of [n.overlayIP, n.gatewayIP]) put({ cidr: `${ip}/32`, identity, ...(isSelf ? {} : { tunnelEndpoint: n.underlayIP }) });
    // Unknown addresses in another node's pod CIDR still go through the tunnel to that node.
    if (!isSelf) put({ cidr: n.podCIDR, identity: RESERVED_IDENTITIES.world, tunnelEndpoint: n.underlayIP });
  }
  for (const p of view.pods) {
    if (!p.podIP) continue;
    const node = cfg.nodes.find((n) => n.name === p.node);
    const identity = podIdentity(view, cfg.name, p) ?? RESERVED_IDENTITIES.unmanaged;
    put({ cidr: `${p.podIP}/32`, identity, ...(node && node.name !== self.name ? { tunnelEndpoint: node.underlayIP } : { flags: 1 }) });
  }
  return [...out.values()];
}
