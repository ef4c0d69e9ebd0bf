// The kernel features Weft's datapath needs, checked once at agent start so a missing one is
// named in a clear error instead of surfacing as a verifier or libbpf failure later.
// `missingFeatures` is pure; `probeKernel` runs `bpftool feature probe`.

import { existsSync } from "node:fs";
import { release } from "node:os";
import { WeftError } from "../core/errors.ts";
import { run } from "../core/run.ts";

export interface FeatureProbe {
  program_types: Record<string, boolean>;
  map_types: Record<string, boolean>;
  helpers: Record<string, string[]>;
}

const PROGRAM_TYPES: [string, string][] = [
  ["sched_cls", "tc programs (pod veths, VXLAN, NodePort)"],
  ["cgroup_sock_addr", "socket hooks (service load balancing)"],
];
const MAP_TYPES: [string, string][] = [
  ["hash", "hash maps"],
  ["lru_hash", "LRU hash maps (conntrack, affinity)"],
  ["lpm_trie", "LPM tries (ipcache, policy)"],
  ["hash_of_maps", "hash-of-maps (per-identity policy)"],
  ["ringbuf", "ring buffers (datapath events)"],
];
const HELPERS: [string, string, string][] = [
  ["sched_cls", "bpf_skb_set_tunnel_key", "identity in the VXLAN key"],
  ["sched_cls", "bpf_skb_get_tunnel_key", "identity from the VXLAN key"],
  ["sched_cls", "bpf_ringbuf_reserve", "datapath events"],
  ["cgroup_sock_addr", "bpf_get_netns_cookie", "acting only in managed namespaces"],
  ["cgroup_sock_addr", "bpf_get_socket_cookie", "per-socket service records"],
  ["cgroup_sock_addr", "bpf_set_retval", "refusing services without backends"],
];
/** tcx links (how tc programs are attached) arrived in Linux 6.6. */
export const MIN_KERNEL: [number, number] = [6, 6];

/** Every missing feature, with what Weft needs it for; [] when the kernel has all. Pure. */
export function missingFeatures(probe: FeatureProbe, kernelRelease: string, hasBtf: boolean): string[] {
  const out: string[] = [];
  if (!hasBtf) out.push("kernel BTF (/sys/kernel/btf/vmlinux): CO-RE programs are compiled against it");
  const [major = 0, minor = 0] = kernelRelease.split(/[.-]/).map(Number);
  if (major < MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor < MIN_KERNEL[1])) {
    out.push(`Linux ${MIN_KERNEL.join(".")} or later for tcx links (this kernel: ${kernelRelease})`);
  }
  for (const [t, why] of PROGRAM_TYPES) if (!probe.program_types[`have_${t}_prog_type`]) out.push(`BPF program type ${t}: ${why}`);
  for (const [t, why] of MAP_TYPES) if (!probe.map_types[`have_${t}_map_type`]) out.push(`BPF map type ${t}: ${why}`);
  for (const [prog, helper, why] of HELPERS) {
    if (!(probe.helpers[`${prog}_available_helpers`] ?? []).includes(helper)) out.push(`BPF helper ${helper} in ${prog} programs: ${why}`);
  }
  return out;
}

export async function probeKernel(): Promise<FeatureProbe> {
  return JSON.parse(await run("bpftool", ["-j", "feature", "probe", "kernel"])) as FeatureProbe;
}

/** Throws WEFT_PREREQ_MISSING naming every missing feature. */
export async function requireKernelFeatures(): Promise<void> {
  const missing = missingFeatures(await probeKernel(), release(), existsSync("/sys/kernel/btf/vmlinux"));
  if (missing.length > 0) throw new WeftError("WEFT_PREREQ_MISSING", `this kernel lacks what the datapath needs:\n  - ${missing.join("\n  - ")}`);
}
