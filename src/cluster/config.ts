// Names, paths and addresses of an embedded local cluster, derived from its name and node count.
// Pure: no I/O. Every other module asks this one where things live, so two clusters never clash.

import { createHash } from "node:crypto";

export const CGROUP_ROOT = "/sys/fs/cgroup/unified";
export const BPF_ROOT = "/sys/fs/bpf";

export interface NodeConfig {
  name: string;
  index: number;
  /** Network namespace of the node. */
  netns: string;
  /** Address on the underlay bridge (node to node, VXLAN endpoints). */
  underlayIP: string;
  /** Address on the VXLAN overlay device. */
  overlayIP: string;
  /** Pod CIDR of this node, e.g. 10.200.1.0/24. */
  podCIDR: string;
  /** The node's own address inside its pod CIDR: every pod's gateway. */
  gatewayIP: string;
}

export interface ClusterConfig {
  name: string;
  stateDir: string;
  underlayNetns: string;
  outsideNetns: string;
  outsideIP: string;
  serviceCIDR: string;
  clusterDNS: string;
  nodes: NodeConfig[];
  /**
   * max_entries of each node's lb4_services and lb4_backends maps (preallocated: fixed kernel
   * memory per node); Cilium's --bpf-lb-map-max, Helm value bpf.lbMapMax. Absent: 65536.
   */
  lbMapMax?: number;
}

/** Bounds of lbMapMax: below, a map too small to be useful; above, gigabytes of kernel memory per node. */
export const LB_MAP_MAX_RANGE = { min: 1024, max: 16_777_216 } as const;

/** Checks an lbMapMax value (`weft up --lb-map-max`); returns it as a number. */
export function parseLbMapMax(raw: string | number): number {
  const n = typeof raw === "number" ? raw : /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < LB_MAP_MAX_RANGE.min || n > LB_MAP_MAX_RANGE.max) {
    throw new Error(`lbMapMax "${raw}" must be a whole number from ${LB_MAP_MAX_RANGE.min} to ${LB_MAP_MAX_RANGE.max}`);
  }
  return n;
}

export const UNDERLAY_PREFIX = "10.254.0";
export const OVERLAY_PREFIX = "10.253.0";
export const SERVICE_CIDR = "10.96.0.0/16";
export const VXLAN_PORT = 8472;

export function defaultStateRoot(): string {
  return process.env.WEFT_STATE_DIR ?? "/var/lib/weft";
}

export function validateClusterName(name: string): void {
  if (!/^[a-z][a-z0-9]{0,11}$/.test(name)) {
    throw new Error(`cluster name "${name}" must be 1-12 lowercase letters and digits, starting with a letter`);
  }
}

export function nodeName(index: number): string {
  return `node-${index}`;
}

export function clusterConfig(name: string, nodeCount: number, stateRoot = defaultStateRoot(), opts: { lbMapMax?: number } = {}): ClusterConfig {
  validateClusterName(name);
  const nodes: NodeConfig[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    nodes.push({
      name: nodeName(i),
      index: i,
      netns: `weft-${name}-${nodeName(i)}`,
      underlayIP: `${UNDERLAY_PREFIX}.${10 + i}`,
      overlayIP: `${OVERLAY_PREFIX}.${10 + i}`,
      podCIDR: `10.200.${i}.0/24`,
      gatewayIP: `10.200.${i}.1`,
    });
  }
  return {
    name,
    stateDir: `${stateRoot}/${name}`,
    underlayNetns: `weft-${name}-underlay`,
    outsideNetns: `weft-${name}-outside`,
    outsideIP: `${UNDERLAY_PREFIX}.2`,
    serviceCIDR: SERVICE_CIDR,
    clusterDNS: "10.96.0.10",
    nodes,
    ...(opts.lbMapMax !== undefined ? { lbMapMax: parseLbMapMax(opts.lbMapMax) } : {}),
  };
}

/** Prefix shared by every network namespace of a cluster: `weft down` removes all that carry it. */
export function netnsPrefix(cluster: string): string {
  return `weft-${cluster}-`;
}

export function podNetns(cluster: string, node: string, namespace: string, pod: string): string {
  return `weft-${cluster}-${node}-${shortHash(`${namespace}/${pod}`, 10)}`;
}

/** Host-side veth name of a pod (<= 15 characters, the kernel's limit). */
export function podVethName(namespace: string, pod: string): string {
  return `lxc${shortHash(`${namespace}/${pod}`, 11)}`;
}

export function cgroupDir(cluster: string, ...parts: string[]): string {
  return [CGROUP_ROOT, "weft", cluster, ...parts].join("/");
}

export function bpfPinDir(cluster: string, node?: string): string {
  return node ? `${BPF_ROOT}/weft/${cluster}/${node}` : `${BPF_ROOT}/weft/${cluster}`;
}

export function shortHash(text: string, length: number): string {
  return createHash("sha256").update(text).digest("hex").slice(0, length);
}
