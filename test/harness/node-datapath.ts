// A node's datapath as the agent sets it up, for integration tests: lxc.o attached to the node's
// pod veths (and vx0), ipcache and endpoint entries in the agent's shape, and a whole node of the
// two-node cluster (buildTwoNodes) ready for NodePort. Writes only under the pin roots it is given.

import { attachTc, type LoadedObject, loadObject, type MapWrite, objectPath, pins, programOf, writeMaps } from "../../src/datapath/loader.ts";
import { ENDPOINTS_MAP, encodeEndpointKey, encodeEndpointValue } from "../../src/datapath/maps/endpoints.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_FLAG, IPCACHE_MAP } from "../../src/datapath/maps/ipcache.ts";
import { ensureSubjectMap, policyWrites } from "../../src/datapath/maps/policy.ts";
import { loadNodePortDatapath, type NodePortDatapath } from "../../src/datapath/nodeport-sync.ts";
import type { PolicyEntry } from "../../src/policy/key.ts";
import type { ClusterNode, SandboxPod, UnderlayNode } from "./sandbox.ts";

/** Cilium's reserved identities the tests use. */
export const ID = { host: 1, world: 2, remoteNode: 6 } as const;

/**
 * Loads lxc.o under `root` and attaches it in `netns` as the agent does: each pod's veth both ways
 * (lxc_from_endpoint on ingress, lxc_to_endpoint on egress) and, with `vxlan`, vx0 both ways.
 */
export async function attachLxc(root: string, netns: string, opts: { pods: readonly SandboxPod[]; vxlan?: boolean }): Promise<LoadedObject> {
  const lxc = await loadObject(objectPath("lxc"), root);
  const prog = (name: string) => programOf(lxc, name).pin;
  if (opts.vxlan) {
    await attachTc(prog("vxlan_from_overlay"), netns, "vx0", "ingress", pins.link(root, "tc-vx0-ingress"));
    await attachTc(prog("vxlan_to_overlay"), netns, "vx0", "egress", pins.link(root, "tc-vx0-egress"));
  }
  for (const pod of opts.pods) {
    await attachTc(prog("lxc_from_endpoint"), netns, pod.hostIf, "ingress", pins.link(root, `tc-${pod.hostIf}-from`));
    await attachTc(prog("lxc_to_endpoint"), netns, pod.hostIf, "egress", pins.link(root, `tc-${pod.hostIf}-to`));
  }
  return lxc;
}

/** An ipcache entry: `cidr` ("10.0.0.1" is a /32) has `identity`; a tunnel endpoint = on that node. */
export function ipcacheWrite(root: string, cidr: string, identity: number, extra: { tunnelEndpoint?: string; flags?: number } = {}): MapWrite {
  return { op: "update", map: pins.map(root, IPCACHE_MAP), key: encodeIpcacheKey(cidr), value: encodeIpcacheValue({ cidr, identity, ...extra }) };
}

/** A local endpoint: the pod's address, identity and host-side ifindex, and what it enforces. */
export function endpointWrite(
  root: string,
  ep: { ip: string; id: number },
  pod: SandboxPod,
  opts: { endpointId?: number; enforceIngress: boolean; enforceEgress: boolean },
): MapWrite {
  return {
    op: "update",
    map: pins.map(root, ENDPOINTS_MAP),
    key: encodeEndpointKey(ep.ip),
    value: encodeEndpointValue({
      ip: ep.ip,
      identity: ep.id,
      ifindex: pod.hostIfindex,
      endpointId: opts.endpointId ?? 1,
      enforceIngress: opts.enforceIngress,
      enforceEgress: opts.enforceEgress,
    }),
  };
}

/**
 * The ipcache of node `self` in a two-node cluster, as the agent writes it: everything unknown is
 * world; the node's own addresses are host, the peer's are remote-node; the peer's pod CIDR is
 * world behind the peer's tunnel endpoint; `pod` is a local pod, `peerPod` a pod behind the peer.
 */
export function twoNodeIpcache(
  root: string,
  self: UnderlayNode,
  peer: UnderlayNode,
  pod: { ip: string; id: number },
  peerPod: { ip: string; id: number },
): MapWrite[] {
  return [
    ipcacheWrite(root, "0.0.0.0/0", ID.world),
    ...[self.underlay, self.overlay, self.gw].map((a) => ipcacheWrite(root, `${a}/32`, ID.host)),
    ...[peer.underlay, peer.overlay, peer.gw].map((a) => ipcacheWrite(root, `${a}/32`, ID.remoteNode)),
    ipcacheWrite(root, peer.cidr, ID.world, { tunnelEndpoint: peer.underlay }),
    ipcacheWrite(root, `${pod.ip}/32`, pod.id, { flags: IPCACHE_FLAG.localPod }),
    ipcacheWrite(root, `${peerPod.ip}/32`, peerPod.id, { tunnelEndpoint: peer.underlay }),
  ];
}

/**
 * One node of buildTwoNodes as the agent sets it up for traffic from outside: lxc.o on vx0 and the
 * pod's veth, host.o (loadNodePortDatapath, timed), the two-node ipcache, the pod's endpoint
 * (ingress enforced) and the pod's `policy`. `pod`/`peerPod`: the identities of this node's pod and
 * of the other node's.
 */
export async function setUpNodePortNode(
  node: ClusterNode,
  self: UnderlayNode,
  peer: UnderlayNode,
  pods: { pod: { ip: string; id: number }; peerPod: { ip: string; id: number } },
  policy: readonly PolicyEntry[],
): Promise<{ nodePort: NodePortDatapath; loadMs: number }> {
  const { ns, root } = node;
  await attachLxc(root, ns, { pods: [node.pod], vxlan: true });
  const t0 = performance.now();
  const nodePort = await loadNodePortDatapath(root, { netns: ns, nodeIP: self.underlay });
  const loadMs = performance.now() - t0;
  await ensureSubjectMap(root, pods.pod.id);
  await writeMaps([
    ...twoNodeIpcache(root, self, peer, pods.pod, pods.peerPod),
    endpointWrite(root, pods.pod, node.pod, { enforceIngress: true, enforceEgress: false }),
    ...policyWrites(root, pods.pod.id, policy),
  ]);
  return { nodePort, loadMs };
}
