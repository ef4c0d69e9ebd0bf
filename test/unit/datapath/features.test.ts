// Kernel feature checks: each missing piece is named; this machine's kernel has them all.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { release } from "node:os";
import { describe, it } from "node:test";
import { type FeatureProbe, missingFeatures, probeKernel } from "../../../src/datapath/features.ts";

function full(): FeatureProbe {
  return {
    program_types: { have_sched_cls_prog_type: true, have_cgroup_sock_addr_prog_type: true },
    map_types: {
      have_hash_map_type: true,
      have_lru_hash_map_type: true,
      have_lpm_trie_map_type: true,
      have_hash_of_maps_map_type: true,
      have_ringbuf_map_type: true,
    },
    helpers: {
      sched_cls_available_helpers: ["bpf_skb_set_tunnel_key", "bpf_skb_get_tunnel_key", "bpf_ringbuf_reserve"],
      cgroup_sock_addr_available_helpers: ["bpf_get_netns_cookie", "bpf_get_socket_cookie", "bpf_set_retval"],
    },
  };
}

describe("kernel features", () => {
  it("a complete probe on 6.18 misses nothing", () => {
    assert.deepEqual(missingFeatures(full(), "6.18.4", true), []);
  });
  const cases: [string, (p: FeatureProbe) => void, string, boolean, RegExp][] = [
    ["no BTF", () => {}, "6.18.0", false, /kernel BTF/],
    ["old kernel", () => {}, "6.1.0-18-amd64", true, /Linux 6\.6 or later for tcx links \(this kernel: 6\.1\.0-18-amd64\)/],
    ["no ring buffer", (p) => (p.map_types.have_ringbuf_map_type = false), "6.18.0", true, /BPF map type ringbuf: ring buffers/],
    ["no LPM", (p) => delete p.map_types.have_lpm_trie_map_type, "6.18.0", true, /BPF map type lpm_trie/],
    ["no sock_addr programs", (p) => (p.program_types.have_cgroup_sock_addr_prog_type = false), "6.18.0", true, /program type cgroup_sock_addr: socket hooks/],
    [
      "no set_retval",
      (p) => (p.helpers.cgroup_sock_addr_available_helpers = ["bpf_get_netns_cookie", "bpf_get_socket_cookie"]),
      "6.18.0",
      true,
      /bpf_set_retval in cgroup_sock_addr programs: refusing services/,
    ],
    ["no tunnel key helper", (p) => (p.helpers.sched_cls_available_helpers = []), "6.18.0", true, /bpf_skb_set_tunnel_key in sched_cls/],
  ];
  for (const [name, change, rel, btf, expected] of cases) {
    it(`names what is missing: ${name}`, () => {
      const p = full();
      change(p);
      const missing = missingFeatures(p, rel, btf);
      assert.equal(missing.length >= 1, true);
      assert.match(missing.join("\n"), expected);
    });
  }
  it("this machine's kernel has every feature", async () => {
    assert.deepEqual(missingFeatures(await probeKernel(), release(), existsSync("/sys/kernel/btf/vmlinux")), []);
  });
});
