// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// NodePort, ExternalIPs and LoadBalancer IPs for traffic from outside the node (no socket hook
// sees it): DNAT to a backend chosen as lib/lb.h chooses (affinity, Maglev, random), SNAT to the
// node's address when the backend is on another node (externalTrafficPolicy Cluster), and the
// reverse of both for replies, through one NAT table. Frontends are lb4_services entries of scope
// LB_SCOPE_EXTERNAL; docs/nodeport.md describes the whole path. Never touches a packet that is not
// TCP/UDP to an external frontend or a reply of a flow it translated. With the node proxy on, a
// TCP flow DNATed to a pod of this node whose ingress asks for L7 goes to the proxy instead
// (lib/redirect.h redirect4_from_netdev; docs/redirect.md).
#pragma once

#include "common.h"
#include "lb.h"
#include "ipcache.h"
#include "redirect.h"

// The node's address for SNAT (network byte order; set at load: --const weft_node_ipv4=...).
// 0: NodePort flows are SNATed to the address they were sent to; other frontends need it.
const volatile __u32 weft_node_ipv4 = 0;

#define AF_INET 2
#define IDENTITY_REMOTE_NODE 6

#define NAT_MAX 262144
// SNAT ports: outside Linux's default ip_local_port_range (32768-60999), so a NAT port never
// shadows a connection the node itself opened. Keep the node's range below NAT_PORT_MIN.
#define NAT_PORT_MIN 61000
#define NAT_PORT_COUNT 4536 // 61000..65535
#define NAT_PORT_TRIES 8

#define NAT_DIR_ORIGINAL 0 // client → frontend, as it arrives at the node
#define NAT_DIR_REPLY 1    // backend → client (or → the node's NAT port), as it reaches the node's device

#define NAT_F_SNAT 0x1    // the source became the node's address (backend on another node)
#define NAT_F_CLOSING 0x2 // FIN or RST seen

// Lifetimes, per entry (each direction has its own): as lib/conntrack.h's.
#define NAT_LIFETIME_SYN (60ULL * 1000000000ULL)
#define NAT_LIFETIME_TCP (21600ULL * 1000000000ULL)
#define NAT_LIFETIME_CLOSE (10ULL * 1000000000ULL)
#define NAT_LIFETIME_UDP (60ULL * 1000000000ULL)

#define NAT_TCP_FIN 0x01
#define NAT_TCP_SYN 0x02
#define NAT_TCP_RST 0x04
#define NAT_TCP_ACK 0x10

// ClientIP affinity for outside clients: lb_affinity_key.netns_cookie carries the client's IPv4
// (host order) under this tag; netns cookies count up from 1 and never reach bit 63.
#define LB_AFFINITY_CLIENT_IP (1ULL << 63)

// A packet's tuple as it arrives, and which way it goes.
struct nat4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; // NAT_DIR_*
	__u8 pad[2];
};

// What a packet of that tuple becomes. The reversed result, with the other dir, is the key of the
// paired entry: ORIGINAL {c→f} → {s→b} pairs with REPLY {b→s} → {f→c}.
struct nat4_entry {
	__u64 expires; // bpf_ktime_get_ns() deadline
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 service_id;
	__u32 backend_id;
	__u8 flags;     // NAT_F_*
	__u8 tcp_flags; // seen in this direction
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NAT_MAX);
	__type(key, struct nat4_key);
	__type(value, struct nat4_entry);
} lb4_nodeport_nat SEC(".maps");

struct np_pkt {
	struct nat4_key t;
	__u32 l4off;
	__u8 tcp_flags;
	__u8 ttl;
};

#define NP_IP_OFF_TTL 8
#define NP_IP_OFF_CSUM 10
#define NP_IP_OFF_SADDR 12
#define NP_IP_OFF_DADDR 16
#define NP_IP_MF_OFFSET 0x3FFF // more-fragments flag and offset: any fragment

// TCP/UDP, not a fragment: 0; anything else (ARP, ICMP, fragments, malformed): -1, passed as is.
// Fragments carry no ports after the first: they are not translated (docs/nodeport.md).
static __always_inline int np_parse(struct __sk_buff *skb, struct np_pkt *p)
{
	struct iphdr ip;

	__builtin_memset(p, 0, sizeof(*p));
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl < 5 || ip.version != 4)
		return -1;
	if (bpf_ntohs(ip.frag_off) & NP_IP_MF_OFFSET)
		return -1;
	p->t.saddr = ip.saddr;
	p->t.daddr = ip.daddr;
	p->t.proto = ip.protocol;
	p->ttl = ip.ttl;
	p->l4off = ETH_HLEN + ip.ihl * 4;
	if (ip.protocol == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, p->l4off, &th, sizeof(th)) < 0)
			return -1;
		p->t.sport = th.source;
		p->t.dport = th.dest;
		p->tcp_flags = ((__u8 *)&th)[13];
		return 0;
	}
	if (ip.protocol == IPPROTO_UDP) {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, p->l4off, &uh, sizeof(uh)) < 0)
			return -1;
		p->t.sport = uh.source;
		p->t.dport = uh.dest;
		return 0;
	}
	return -1;
}

static __always_inline __u64 nat_lifetime(__u8 proto, __u8 tcp_flags, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return NAT_LIFETIME_UDP;
	if (flags & NAT_F_CLOSING)
		return NAT_LIFETIME_CLOSE;
	return (tcp_flags & NAT_TCP_ACK) ? NAT_LIFETIME_TCP : NAT_LIFETIME_SYN;
}

// The key of an entry's partner (see struct nat4_entry).
static __always_inline void nat_pair_key(struct nat4_key *out, const struct nat4_entry *e, __u8 proto, __u8 dir)
{
	__builtin_memset(out, 0, sizeof(*out));
	out->saddr = e->daddr;
	out->daddr = e->saddr;
	out->sport = e->dport;
	out->dport = e->sport;
	out->proto = proto;
	out->dir = dir ^ 1;
}

// A live entry for the packet's tuple in direction `dir`, refreshed; NULL when absent or expired,
// or when a SYN reuses the tuple of a closing TCP flow (decided anew).
static __always_inline struct nat4_entry *nat_lookup(struct np_pkt *p, __u8 dir)
{
	struct nat4_entry *e;
	__u64 now = bpf_ktime_get_ns();

	p->t.dir = dir;
	e = bpf_map_lookup_elem(&lb4_nodeport_nat, &p->t);
	if (!e || e->expires < now)
		return NULL;
	if (p->t.proto == IPPROTO_TCP && (e->flags & NAT_F_CLOSING) &&
	    (p->tcp_flags & (NAT_TCP_SYN | NAT_TCP_ACK)) == NAT_TCP_SYN)
		return NULL;
	e->tcp_flags |= p->tcp_flags;
	if (p->tcp_flags & (NAT_TCP_FIN | NAT_TCP_RST)) {
		struct nat4_key pk;
		struct nat4_entry *pair;

		e->flags |= NAT_F_CLOSING;
		nat_pair_key(&pk, e, p->t.proto, dir);
		pair = bpf_map_lookup_elem(&lb4_nodeport_nat, &pk);
		if (pair) {
			pair->flags |= NAT_F_CLOSING;
			pair->expires = now + NAT_LIFETIME_CLOSE;
		}
	}
	e->expires = now + nat_lifetime(p->t.proto, e->tcp_flags, e->flags);
	return e;
}

// ---- rewriting: addresses, ports, TTL, with incremental checksums ---------------------------

static __always_inline int np_csum_off(const struct np_pkt *p)
{
	return p->l4off + (p->t.proto == IPPROTO_TCP ? 16 : 6);
}

static __always_inline int np_set_addr(struct __sk_buff *skb, const struct np_pkt *p, __u32 ip_off, __be32 old,
				       __be32 new)
{
	__u64 mm = p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, np_csum_off(p), old, new, BPF_F_PSEUDO_HDR | mm | sizeof(new)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + NP_IP_OFF_CSUM, old, new, sizeof(new)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, ETH_HLEN + ip_off, &new, sizeof(new), 0);
}

static __always_inline int np_set_port(struct __sk_buff *skb, const struct np_pkt *p, __u32 port_off, __be16 old,
				       __be16 new)
{
	__u64 mm = p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, np_csum_off(p), old, new, mm | sizeof(new)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, p->l4off + port_off, &new, sizeof(new), 0);
}

// Rewrites the packet's tuple to the entry's. Returns 0, or -1 if the packet could not be written.
static __always_inline int nat_apply(struct __sk_buff *skb, const struct np_pkt *p, const struct nat4_entry *e)
{
	if (np_set_addr(skb, p, NP_IP_OFF_SADDR, p->t.saddr, e->saddr) < 0 ||
	    np_set_addr(skb, p, NP_IP_OFF_DADDR, p->t.daddr, e->daddr) < 0 ||
	    np_set_port(skb, p, 0, p->t.sport, e->sport) < 0 || np_set_port(skb, p, 2, p->t.dport, e->dport) < 0)
		return -1;
	return 0;
}

// Forwarding without the stack: TTL down by one (the stack would have done it).
static __always_inline int np_dec_ttl(struct __sk_buff *skb, const struct np_pkt *p)
{
	__u8 ttl = p->ttl - 1;
	// The checksum covers TTL and protocol as one 16-bit word.
	__be16 old = bpf_htons(((__u16)p->ttl << 8) | p->t.proto), new = bpf_htons(((__u16)ttl << 8) | p->t.proto);

	if (bpf_l3_csum_replace(skb, ETH_HLEN + NP_IP_OFF_CSUM, old, new, sizeof(new)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, ETH_HLEN + NP_IP_OFF_TTL, &ttl, 1, 0);
}

// Sends a translated packet that the stack must not route (its source is this node's address, or
// its destination a client that reached us through the same device): the FIB names the device and
// next hop; the neighbour layer fills in MACs it does not know yet. Into a tunnel, the key is set
// here too (the tunnel device's own egress program may refine it).
static __always_inline int np_forward(struct __sk_buff *skb, const struct np_pkt *p, const struct nat4_entry *e)
{
	struct bpf_fib_lookup fib = {};
	struct ipcache_value *dst;
	long rc;

	if (p->ttl <= 1)
		return TC_ACT_SHOT;
	fib.family = AF_INET;
	fib.l4_protocol = p->t.proto;
	fib.sport = e->sport;
	fib.dport = e->dport;
	fib.ipv4_src = e->saddr;
	fib.ipv4_dst = e->daddr;
	fib.ifindex = skb->ifindex; // the device it arrived on (tc ingress): the lookup's input
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_SHOT; // no route, or too big for the next device (no ICMP yet)
	if (np_dec_ttl(skb, p) < 0)
		return TC_ACT_SHOT;
	dst = ipcache_lookup(e->daddr);
	if (dst && dst->tunnel_endpoint) {
		struct bpf_tunnel_key key = {};

		// The source is this node: the receiver must see a remote node, never its own host.
		key.tunnel_id = IDENTITY_REMOTE_NODE;
		key.remote_ipv4 = bpf_ntohl(dst->tunnel_endpoint);
		key.tunnel_ttl = 64;
		bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, fib.smac, 6, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
}

// ---- frontends and backends -------------------------------------------------------------------

static __always_inline int np_is_node_address(__be32 addr)
{
	struct ipcache_value *v;

	if (weft_node_ipv4 && addr == weft_node_ipv4)
		return 1;
	v = ipcache_lookup(addr);
	return v && v->identity == IDENTITY_HOST;
}

// The frontend a packet from outside is for, in order: its destination's external entry (an
// ExternalIP or LoadBalancer IP under externalTrafficPolicy Local); its destination's internal
// entry if that is an ExternalIP or LoadBalancer IP (LB_SVC_EXTERNAL: Cluster, the same backends
// as for pods); when the destination is one of this node's addresses, the NodePort (0.0.0.0).
// `key` is left naming the entry found (its slots are looked up with it).
static __always_inline struct lb4_service *np_frontend(struct lb4_key *key, const struct np_pkt *p)
{
	struct lb4_service *svc;

	__builtin_memset(key, 0, sizeof(*key));
	key->address = p->t.daddr;
	key->dport = p->t.dport;
	key->proto = p->t.proto;
	key->scope = LB_SCOPE_EXTERNAL;
	svc = bpf_map_lookup_elem(&lb4_services, key);
	if (svc)
		return svc;
	key->scope = LB_SCOPE_INTERNAL;
	svc = bpf_map_lookup_elem(&lb4_services, key);
	if (svc && (svc->flags & LB_SVC_EXTERNAL))
		return svc;
	if (!np_is_node_address(p->t.daddr))
		return NULL;
	key->address = 0;
	key->scope = LB_SCOPE_EXTERNAL;
	return bpf_map_lookup_elem(&lb4_services, key);
}

// As lb4_translate's choice, with the client's address as the affinity client and the packet's
// tuple as the Maglev flow (maglev.ts flowHash(saddr, daddr, sport, dport, proto)).
static __always_inline int np_pick(struct lb4_key *key, const struct lb4_service *svc, const struct np_pkt *p,
				   struct lb4_pick *out)
{
	struct lb_affinity_key akey = {
		.netns_cookie = LB_AFFINITY_CLIENT_IP | bpf_ntohl(p->t.saddr),
		.service_id = svc->service_id,
	};
	__u32 hash = 0;

	if (svc->flags & LB_SVC_MAGLEV)
		hash = lb_jhash_3words(bpf_ntohl(p->t.saddr), bpf_ntohl(p->t.daddr),
				       ((__u32)bpf_ntohs(p->t.sport) << 16) | bpf_ntohs(p->t.dport), p->t.proto);
	return lb4_pick(key, svc, &akey, hash, out);
}

// A free SNAT port toward this backend (no live REPLY entry holds it), or 0.
static __always_inline __be16 np_snat_port(const struct nat4_key *rk_in)
{
	struct nat4_key rk = *rk_in;
	__u64 now = bpf_ktime_get_ns();
	__u32 start = bpf_get_prandom_u32();

	for (int i = 0; i < NAT_PORT_TRIES; i++) {
		struct nat4_entry *e;

		rk.dport = bpf_htons(NAT_PORT_MIN + (start + i * 7919) % NAT_PORT_COUNT);
		e = bpf_map_lookup_elem(&lb4_nodeport_nat, &rk);
		if (!e || e->expires < now)
			return rk.dport;
	}
	return 0;
}

// ---- the two entry points ----------------------------------------------------------------------

// A packet DNATed to a backend on this node (its tuple is now the entry's): the stack routes it to
// the pod's veth, unless the pod's ingress entry asks for the proxy, which then gets it with its
// destination kept (bpf_sk_assign, routed locally by the mark). Fail closed when the proxy is
// missing.
static __always_inline int np_to_local(struct __sk_buff *skb, const struct np_pkt *p, const struct nat4_entry *e)
{
	int r;

	if (p->t.proto != IPPROTO_TCP)
		return TC_ACT_OK;
	r = redirect4_from_netdev(skb, e->saddr, e->daddr, e->sport, e->dport, p->tcp_flags);
	if (r < 0)
		return TC_ACT_SHOT;
	if (r > 0)
		skb->mark = MARK_MAGIC_TO_PROXY;
	return TC_ACT_OK;
}

// At the node's device, ingress: a packet of a known flow is translated as before (ORIGINAL: to
// the backend; REPLY: an SNATed reply from another node back to the client); a new packet to an
// external frontend gets a backend and its pair of entries. Everything else passes untouched.
static __always_inline int nodeport_from_netdev(struct __sk_buff *skb)
{
	struct nat4_entry *e, orig = {}, reply = {};
	struct nat4_key rk = {};
	struct lb4_service *svc;
	struct lb4_pick be = {};
	struct lb4_key key;
	struct np_pkt p;
	__u64 now;

	if (np_parse(skb, &p) < 0)
		return TC_ACT_OK;
	e = nat_lookup(&p, NAT_DIR_ORIGINAL);
	if (e) {
		if (nat_apply(skb, &p, e) < 0)
			return TC_ACT_SHOT;
		return (e->flags & NAT_F_SNAT) ? np_forward(skb, &p, e) : np_to_local(skb, &p, e);
	}
	e = nat_lookup(&p, NAT_DIR_REPLY);
	if (e) {
		if (nat_apply(skb, &p, e) < 0)
			return TC_ACT_SHOT;
		return np_forward(skb, &p, e);
	}

	svc = np_frontend(&key, &p);
	if (!svc)
		return TC_ACT_OK;
	if (svc->count == 0)
		return TC_ACT_SHOT; // no selectable backend (for this node, with externalTrafficPolicy Local)
	if (!np_pick(&key, svc, &p, &be))
		return TC_ACT_SHOT;

	now = bpf_ktime_get_ns();
	orig.saddr = p.t.saddr;
	orig.sport = p.t.sport;
	orig.daddr = be.address;
	orig.dport = be.port;
	orig.service_id = svc->service_id;
	orig.backend_id = be.id;
	if (!(be.flags & LB_BE_LOCAL)) {
		// Another node's backend: SNAT to this node, so the reply comes back through it.
		orig.flags = NAT_F_SNAT;
		orig.saddr = weft_node_ipv4 ? weft_node_ipv4 : p.t.daddr;
		rk.saddr = be.address;
		rk.daddr = orig.saddr;
		rk.sport = be.port;
		rk.proto = p.t.proto;
		rk.dir = NAT_DIR_REPLY;
		orig.sport = np_snat_port(&rk);
		if (!orig.sport)
			return TC_ACT_SHOT; // every port tried is in use toward this backend
	}
	orig.tcp_flags = p.tcp_flags;
	orig.expires = now + nat_lifetime(p.t.proto, orig.tcp_flags, 0);

	reply.saddr = p.t.daddr;
	reply.sport = p.t.dport;
	reply.daddr = p.t.saddr;
	reply.dport = p.t.sport;
	reply.service_id = svc->service_id;
	reply.backend_id = be.id;
	reply.flags = orig.flags;
	reply.expires = orig.expires;
	nat_pair_key(&rk, &orig, p.t.proto, NAT_DIR_ORIGINAL);
	p.t.dir = NAT_DIR_ORIGINAL;
	if (bpf_map_update_elem(&lb4_nodeport_nat, &rk, &reply, BPF_ANY) < 0 ||
	    bpf_map_update_elem(&lb4_nodeport_nat, &p.t, &orig, BPF_ANY) < 0)
		return TC_ACT_SHOT;
	if (nat_apply(skb, &p, &orig) < 0)
		return TC_ACT_SHOT;
	// A backend on this node: the stack routes it to the pod's veth (its ingress policy sees the
	// client), or to the proxy for L7. Another node's: forwarded here, the stack would refuse a
	// source of its own (the receiving node's vx0 hands it to its proxy if L7 applies).
	return (orig.flags & NAT_F_SNAT) ? np_forward(skb, &p, &orig) : np_to_local(skb, &p, &orig);
}

// At the node's device, egress: a local backend's reply to an outside client leaves as coming
// from the frontend the client used.
static __always_inline int nodeport_to_netdev(struct __sk_buff *skb)
{
	struct nat4_entry *e;
	struct np_pkt p;

	if (np_parse(skb, &p) < 0)
		return TC_ACT_OK;
	e = nat_lookup(&p, NAT_DIR_REPLY);
	if (e && nat_apply(skb, &p, e) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}
