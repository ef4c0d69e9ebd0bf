// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The ipcache: IPv4 address or CIDR → security identity and where it lives (the underlay IP of its
// node, 0 = this node). Longest prefix wins, so a pod's /32 beats its node's pod CIDR and a CIDR
// selector's identity beats world. Written only by the agent (src/datapath/maps/ipcache.ts).
#pragma once

#include "common.h"

#define IPCACHE_MAX 65536
#define IPCACHE_F_LOCAL_POD 1 // an endpoint on this node

struct ipcache_key {
	__u32 prefixlen; // bits of addr that matter, 0..32 (LPM trie header)
	__be32 addr;
};

struct ipcache_value {
	__u32 identity;
	__be32 tunnel_endpoint; // node underlay IP; 0 = local
	__u8 flags;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} weft_ipcache SEC(".maps");

static __always_inline struct ipcache_value *ipcache_lookup(__be32 addr)
{
	struct ipcache_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&weft_ipcache, &key);
}

// The identity of an address; world when nothing in the ipcache covers it.
static __always_inline __u32 ipcache_identity(__be32 addr)
{
	struct ipcache_value *v = ipcache_lookup(addr);

	return v ? v->identity : IDENTITY_WORLD;
}
