// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The network namespaces Weft manages (pods), by netns cookie. Socket hooks act only where
// netns_managed has the caller's namespace; every other namespace (the root one included) is
// passed untouched. Written only by the agent (src/datapath/lb-sync.ts, registerNetns).
// Shared by every program that hooks sockets; declared once, here.
#ifndef WEFT_NETNS_H
#define WEFT_NETNS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct netns_info {
	__u32 identity; // the pod's security identity; 0 until the agent knows it (placeholder)
	__u32 flags;    // reserved, 0
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); // netns cookie (SO_NETNS_COOKIE / bpf_get_netns_cookie)
	__type(value, struct netns_info);
} netns_managed SEC(".maps");

// The caller's namespace entry, or NULL when Weft does not manage it.
static __always_inline struct netns_info *netns_lookup(__u64 cookie)
{
	return bpf_map_lookup_elem(&netns_managed, &cookie);
}

#endif
