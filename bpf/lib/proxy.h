// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The node proxy's contract with the datapath (docs/redirect.md): where the proxy listens and which
// cgroup it runs in (weft_proxy_config, written by the agent), the original destination of every
// connection steered into it (weft_proxy_origin, written by the hooks, read by the proxy), and the
// identity each upstream connection carries (weft_proxy_ports, written by the proxy). Declared
// once, here; mirrors in src/datapath/maps/redirect.ts.
#ifndef WEFT_PROXY_H
#define WEFT_PROXY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// proxy_config.flags
#define PROXY_CFG_ENABLED 0x1 // redirect L7-policed connections; without it nothing is redirected

// proxy4_origin.directions: whose L7 rules the proxy applies (both in one pass on one node).
#define PROXY_DIR_EGRESS 0x1  // the client's egress L7 rules (src_identity's policy)
#define PROXY_DIR_INGRESS 0x2 // the destination's ingress L7 rules (dst_identity's policy)

// proxy4_origin.flags: which hook steered the connection.
#define PROXY_ORIGIN_SOCK 0x1 // the client's connect() hook (bpf/sock.c): backend chosen, VIP kept
#define PROXY_ORIGIN_TC 0x2   // tc at the node's ingress (vx0): bpf_sk_assign, destination kept

// skb->mark that routes a packet to the local proxy socket (policy routing: `ip rule fwmark
// 0x200/0xf00 lookup 2004`, table 2004: `local 0.0.0.0/0 dev lo`; src/datapath/redirect-net.ts).
// Cilium's MARK_MAGIC_TO_PROXY; distinct from the identity magic 0x0F00 in the same bits.
#define MARK_MAGIC_TO_PROXY 0x0200
#define MARK_MAGIC_PROXY_MASK 0x0F00

// weft_event.flags bit: the source identity came from weft_proxy_ports (an upstream connection of
// the proxy, carrying its client's identity).
#define EV_F_FROM_PROXY 4

struct proxy_config {
	__be32 address;      // where the proxy listens in the node namespace: the pods' gateway IP
	__be16 port;         // the listener's port (network order); a policy entry's proxy_port wins
	__u16 flags;         // PROXY_CFG_*
	__u64 cgroup_id;     // the proxy's cgroup (v2 id = its directory's inode); 0 = unknown
	__u32 cgroup_level;  // its depth below the cgroup2 root (bpf_skb_ancestor_cgroup_id)
	__u32 pad;
};

// A TCP/UDP 4-tuple as the proxy sees its accepted socket: saddr:sport = socket.remoteAddress /
// remotePort (the client), daddr:dport = socket.localAddress / localPort.
struct proxy4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

// What the proxy needs to serve one redirected connection.
struct proxy4_origin {
	__be32 orig_address;    // what the client asked for: the service VIP (or the pod when no service)
	__be32 backend_address; // where the proxy connects: the backend the socket LB chose, or the pod
	__be16 orig_port;
	__be16 backend_port;
	__u32 src_identity;     // the client's security identity
	__u32 dst_identity;     // the backend's security identity
	__u32 service_id;       // 0 when the client did not ask for a service
	__u32 backend_id;
	__u32 egress_cookie;    // policy cookie of the client's egress entry (0: none)
	__u32 ingress_cookie;   // policy cookie of the destination's ingress entry (0: none)
	__u8 directions;        // PROXY_DIR_*
	__u8 flags;             // PROXY_ORIGIN_*
	__u8 proto;
	__u8 pad;
	__u64 netns_cookie;     // the client's namespace (PROXY_ORIGIN_SOCK), else 0
};

// An upstream connection of the proxy: its local address and port (bound explicitly by the proxy).
struct proxy4_port_key {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct proxy4_port {
	__u32 identity; // the client whose traffic this connection carries
	__u32 flags;    // reserved, 0
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proxy_config);
} weft_proxy_config SEC(".maps");

// Written by sock_ops (client side, once the source port is known) and by tc (server side).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct proxy4_key);
	__type(value, struct proxy4_origin);
} weft_proxy_origin SEC(".maps");

// connect4 → sock_ops hand-over: the redirected socket's record until its source port exists.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); // client socket cookie
	__type(value, struct proxy4_origin);
} weft_proxy_pending SEC(".maps");

// Written by the proxy: one entry per live upstream connection.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct proxy4_port_key);
	__type(value, struct proxy4_port);
} weft_proxy_ports SEC(".maps");

// The proxy configuration when redirection is on, else NULL.
static __always_inline struct proxy_config *proxy_config_enabled(void)
{
	__u32 zero = 0;
	struct proxy_config *cfg = bpf_map_lookup_elem(&weft_proxy_config, &zero);

	return cfg && (cfg->flags & PROXY_CFG_ENABLED) && cfg->address ? cfg : NULL;
}

static __always_inline struct proxy4_origin *proxy_origin_lookup(const struct proxy4_key *key)
{
	return bpf_map_lookup_elem(&weft_proxy_origin, key);
}

// The identity an upstream connection of the proxy carries, or NULL (unregistered: fail closed).
static __always_inline struct proxy4_port *proxy_port_lookup(__be32 address, __be16 port, __u8 proto)
{
	struct proxy4_port_key key = { .address = address, .port = port, .proto = proto };

	return bpf_map_lookup_elem(&weft_proxy_ports, &key);
}

// ---- tc side ------------------------------------------------------------------------------------

// Whether a packet was sent by a socket of the proxy's cgroup (or a cgroup below it). Forwarded
// packets have no socket and are never the proxy's.
static __always_inline bool proxy_sent(struct __sk_buff *skb, const struct proxy_config *cfg)
{
	return cfg->cgroup_id && bpf_skb_ancestor_cgroup_id(skb, cfg->cgroup_level) == cfg->cgroup_id;
}

// Hands a TCP packet arriving at tc ingress to the proxy, keeping its destination (the proxy's
// socket will have localAddress = the packet's daddr): a socket the proxy already holds for this
// exact 4-tuple (a SYN retransmit finds its request socket) is found by the stack's own lookup;
// otherwise the listener at cfg->address:port is assigned with bpf_sk_assign. Either way the caller
// sets MARK_MAGIC_TO_PROXY, which routes the packet to local delivery (table 2004). 0, or < 0 when
// no proxy socket is there.
static __always_inline int proxy_assign(struct __sk_buff *skb, const struct proxy_config *cfg, __be32 saddr,
					__be32 daddr, __be16 sport, __be16 dport, __u16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	int err;

	t.ipv4.saddr = saddr;
	t.ipv4.daddr = daddr;
	t.ipv4.sport = sport;
	t.ipv4.dport = dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		bool own = sk->state != BPF_TCP_LISTEN;

		bpf_sk_release(sk);
		if (own)
			return 0;
	}
	t.ipv4.daddr = cfg->address;
	t.ipv4.dport = bpf_htons(port);
	sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -1;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return -1;
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return err;
}

#endif
