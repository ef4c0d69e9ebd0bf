// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Connection tracking for policy: once a flow passed a policy point, its later packets and its
// replies pass that point without a policy lookup. Entries are scoped by the point that created
// them (CT_SCOPE_*), so a pod-to-pod flow allowed by the client's egress still meets the server's
// ingress policy. LRU: the kernel evicts the coldest entries when full; lifetimes retire the rest.
#pragma once

#include "common.h"

#define CT_MAX 262144

#define CT_SCOPE_INGRESS 0 // created toward a pod (the pod's ingress policy allowed it)
#define CT_SCOPE_EGRESS 1  // created from a pod (the pod's egress policy allowed it)

// Lifetimes (as Cilium's defaults).
#define CT_LIFETIME_TCP_SYN (60ULL * 1000000000ULL)
#define CT_LIFETIME_TCP (21600ULL * 1000000000ULL)
#define CT_LIFETIME_TCP_CLOSE (10ULL * 1000000000ULL)
#define CT_LIFETIME_NONTCP (60ULL * 1000000000ULL)

#define CT_F_SEEN_REPLY 1 // a reply passed
#define CT_F_CLOSING 2    // FIN or RST seen
#define CT_F_AUDITED 4    // allowed only because of audit mode
#define CT_F_REDIRECT 8   // the policy said redirect (for the proxy, later)

// TCP flags as in the header's 14th byte.
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

enum ct_state {
	CT_NEW = 0,
	CT_ESTABLISHED = 1, // same direction as the packet that created the entry
	CT_REPLY = 2,       // the opposite direction
};

struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport; // ICMP echo: the echo id, in both ports
	__be16 dport;
	__u8 proto;
	__u8 scope; // CT_SCOPE_*
	__u8 pad[2];
};

struct ct_value {
	__u64 expires;   // bpf_ktime_get_ns() deadline
	__u64 packets;   // both directions
	__u32 src_identity; // identity of the flow's originator, as decided at creation
	__u32 cookie;    // policy cookie of the allowing entry
	__u8 tx_flags;   // TCP flags seen from the originator
	__u8 rx_flags;   // TCP flags seen in replies
	__u8 flags;      // CT_F_*
	__u8 pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAX);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} weft_ct SEC(".maps");

static __always_inline __u64 ct_lifetime(__u8 proto, __u8 tx, __u8 rx, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return CT_LIFETIME_NONTCP;
	if (flags & CT_F_CLOSING)
		return CT_LIFETIME_TCP_CLOSE;
	// Established once both sides sent an ACK (the handshake completed).
	if ((tx & TCP_ACK) && (rx & TCP_ACK))
		return CT_LIFETIME_TCP;
	return CT_LIFETIME_TCP_SYN;
}

// Looks the packet's tuple up: in its own direction and scope (ESTABLISHED), or reversed in the
// opposite scope (REPLY: e.g. at a pod's egress point, the reply to a flow its ingress allowed),
// refreshing the entry's lifetime. An expired entry counts as absent. *out is the entry or NULL.
static __always_inline enum ct_state ct_lookup(const struct ct_key *tuple, __u8 tcp_flags, struct ct_value **out,
					       __u8 *changed)
{
	struct ct_key rev = {
		.saddr = tuple->daddr,
		.daddr = tuple->saddr,
		.sport = tuple->dport,
		.dport = tuple->sport,
		.proto = tuple->proto,
		.scope = tuple->scope ^ 1, // replies are tracked by the other policy point's entry
	};
	__u64 now = bpf_ktime_get_ns();
	enum ct_state state = CT_ESTABLISHED;
	struct ct_value *v = bpf_map_lookup_elem(&weft_ct, tuple);
	__u8 before;

	*out = NULL;
	*changed = 0;
	if (!v) {
		v = bpf_map_lookup_elem(&weft_ct, &rev);
		state = CT_REPLY;
	}
	if (!v || v->expires < now)
		return CT_NEW;
	// A SYN on a closing entry is a new connection reusing the tuple: decide it again.
	if (tuple->proto == IPPROTO_TCP && (v->flags & CT_F_CLOSING) && (tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return CT_NEW;
	before = v->flags;
	if (state == CT_ESTABLISHED) {
		v->tx_flags |= tcp_flags;
	} else {
		v->rx_flags |= tcp_flags;
		v->flags |= CT_F_SEEN_REPLY;
	}
	if (tcp_flags & (TCP_FIN | TCP_RST))
		v->flags |= CT_F_CLOSING;
	*changed = before != v->flags;
	__sync_fetch_and_add(&v->packets, 1);
	v->expires = now + ct_lifetime(tuple->proto, v->tx_flags, v->rx_flags, v->flags);
	*out = v;
	return state;
}

static __always_inline void ct_create(const struct ct_key *tuple, __u8 tcp_flags, __u32 src_identity, __u32 cookie,
				      __u8 flags)
{
	struct ct_value v = {
		.packets = 1,
		.src_identity = src_identity,
		.cookie = cookie,
		.tx_flags = tcp_flags,
		.flags = flags,
	};

	if (tcp_flags & (TCP_FIN | TCP_RST))
		v.flags |= CT_F_CLOSING;
	v.expires = bpf_ktime_get_ns() + ct_lifetime(tuple->proto, v.tx_flags, 0, v.flags);
	bpf_map_update_elem(&weft_ct, tuple, &v, BPF_ANY);
}
