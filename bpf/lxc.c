// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// tc programs on each pod's host-side veth (lxc*) and on the node's VXLAN device (vx0):
//   lxc_from_endpoint (tcx ingress on lxc*): the pod's egress policy, for what the socket hooks do
//                      not see (ICMP, raw; TCP/UDP too until bpf/sock decides them);
//   lxc_to_endpoint   (tcx egress on lxc*):  the pod's ingress policy, by the source's identity;
//   vxlan_from_overlay (tcx ingress on vx0): the source identity from the tunnel key → skb->mark;
//   vxlan_to_overlay  (tcx egress on vx0, external mode): the source identity into the tunnel key.
// Thin: parsing here, decisions in lib/{policy,conntrack,ipcache}.h, records in lib/events.h.

#include "common.h"
#include "drop.h"
#include "ipcache.h"
#include "policy.h"
#include "conntrack.h"
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// 0: no trace events; 1: trace events when a tracked flow changes state (first reply, FIN/RST);
// 2: a trace event for every packet of a tracked flow.
const volatile __u32 weft_trace_level = 1;
// 1 once bpf/sock decides TCP/UDP egress policy at connect/sendmsg: tc then only tracks them.
const volatile __u32 weft_egress_l4_in_sock = 0;

// skb->mark carrying a source identity from vx0 ingress to the pod's tc egress (as Cilium's
// MARK_MAGIC_IDENTITY): bits 16-31 = identity & 0xffff, bits 0-7 = identity >> 16, 0x0F00 magic.
#define MARK_MAGIC_IDENTITY 0x0F00
#define MARK_MAGIC_MASK 0x0F00

struct pkt {
	struct ct_key tuple; // scope filled in by the caller
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 l4_ok;     // the L4 header was read (first fragment, long enough)
	__u16 policy_port; // dport (host order), or ICMP type
	__u32 len;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

// Reads IPv4 + L4 fields. Returns 0, or a drop reason for a malformed IPv4 packet; non-IPv4 → -1.
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	__u32 l4;

	__builtin_memset(p, 0, sizeof(*p));
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl < 5 || ip.version != 4)
		return DROP_INVALID;
	p->len = skb->len;
	p->tuple.saddr = ip.saddr;
	p->tuple.daddr = ip.daddr;
	p->tuple.proto = ip.protocol;
	if (bpf_ntohs(ip.frag_off) & IP_OFFSET)
		return 0; // non-first fragment: no L4 header, decided on L3 (ports 0)
	l4 = ETH_HLEN + ip.ihl * 4;
	if (ip.protocol == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)) < 0)
			return DROP_CT_INVALID_HDR;
		p->tuple.sport = th.source;
		p->tuple.dport = th.dest;
		p->tcp_flags = ((__u8 *)&th)[13];
		p->policy_port = bpf_ntohs(th.dest);
		p->l4_ok = 1;
	} else if (ip.protocol == IPPROTO_UDP) {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, l4, &uh, sizeof(uh)) < 0)
			return DROP_CT_INVALID_HDR;
		p->tuple.sport = uh.source;
		p->tuple.dport = uh.dest;
		p->policy_port = bpf_ntohs(uh.dest);
		p->l4_ok = 1;
	} else if (ip.protocol == IPPROTO_ICMP) {
		struct icmphdr ih;

		if (bpf_skb_load_bytes(skb, l4, &ih, sizeof(ih)) < 0)
			return DROP_CT_INVALID_HDR;
		p->icmp_type = ih.type;
		p->icmp_code = ih.code;
		p->policy_port = ih.type;
		// Echo request/reply are tracked by their id (both ports), so the reply finds the request.
		if (ih.type == 8 || ih.type == 0) {
			p->tuple.sport = ih.un.echo.id;
			p->tuple.dport = ih.un.echo.id;
		}
		p->l4_ok = 1;
	}
	return 0;
}

static __always_inline void fill_event(struct weft_event *ev, struct __sk_buff *skb, const struct pkt *p, __u8 type,
				       __u8 direction, __u8 obs)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->time_ns = bpf_ktime_get_ns();
	ev->type = type;
	ev->direction = direction;
	ev->proto = p->tuple.proto;
	ev->saddr = p->tuple.saddr;
	ev->daddr = p->tuple.daddr;
	if (p->tuple.proto != IPPROTO_ICMP) {
		ev->sport = p->tuple.sport;
		ev->dport = p->tuple.dport;
	}
	ev->icmp_type = p->icmp_type;
	ev->icmp_code = p->icmp_code;
	ev->tcp_flags = p->tcp_flags;
	ev->ifindex = skb->ifindex;
	ev->pkt_len = p->len;
	ev->obs_point = obs;
}

static __always_inline int drop_event(struct __sk_buff *skb, const struct pkt *p, __u16 reason, __u8 direction,
				      __u8 obs, __u32 src_id, __u32 dst_id)
{
	struct weft_event ev;

	fill_event(&ev, skb, p, EVENT_DROP, direction, obs);
	ev.verdict = VERDICT_DROPPED;
	ev.drop_reason = reason;
	ev.src_identity = src_id;
	ev.dst_identity = dst_id;
	events_emit(&ev);
	return TC_ACT_SHOT;
}

// The policy point shared by both directions. `local` is the pod's endpoint, `remote` the peer's
// identity; direction is the pod's policy direction.
static __always_inline int enforce(struct __sk_buff *skb, struct pkt *p, const struct endpoint_value *ep,
				   __u32 remote, __u8 direction, __u8 ev_flags)
{
	bool ingress = direction == POLICY_DIR_INGRESS;
	__u32 src_id = ingress ? remote : ep->identity;
	__u32 dst_id = ingress ? ep->identity : remote;
	__u8 obs = ingress ? OBS_TO_ENDPOINT : OBS_FROM_ENDPOINT;
	struct policy_verdict pv;
	struct weft_event ev;
	struct ct_value *ct;
	enum ct_state state;
	__u8 changed, ct_flags = 0;

	p->tuple.scope = ingress ? CT_SCOPE_INGRESS : CT_SCOPE_EGRESS;
	state = ct_lookup(&p->tuple, p->tcp_flags, &ct, &changed);
	if (state != CT_NEW) {
		if (weft_trace_level >= 2 || (weft_trace_level == 1 && changed)) {
			fill_event(&ev, skb, p, EVENT_TRACE, direction, obs);
			ev.ct_state = state;
			ev.src_identity = src_id;
			ev.dst_identity = dst_id;
			ev.endpoint_id = ep->endpoint_id;
			ev.flags = ev_flags;
			if (ct)
				ev.cookie = ct->cookie;
			events_emit(&ev);
		}
		return TC_ACT_OK;
	}

	if (!ingress && weft_egress_l4_in_sock && (p->tuple.proto == IPPROTO_TCP || p->tuple.proto == IPPROTO_UDP)) {
		__builtin_memset(&pv, 0, sizeof(pv)); // decided by the socket hook at connect/sendmsg
	} else {
		__u8 enforce_f = ingress ? EP_F_ENFORCE_INGRESS : EP_F_ENFORCE_EGRESS;
		__u8 audit_f = ingress ? EP_F_AUDIT_INGRESS : EP_F_AUDIT_EGRESS;

		policy_decide(&pv, ep->identity, remote, direction, p->tuple.proto, p->policy_port,
			      ep->flags & enforce_f, ep->flags & audit_f);
		fill_event(&ev, skb, p, EVENT_POLICY_VERDICT, direction, obs);
		ev.verdict = pv.verdict;
		ev.drop_reason = pv.reason;
		ev.match = pv.match;
		ev.src_identity = src_id;
		ev.dst_identity = dst_id;
		ev.cookie = pv.cookie;
		ev.endpoint_id = ep->endpoint_id;
		ev.proxy_port = pv.proxy_port;
		ev.flags = ev_flags | (pv.redirect ? EV_F_REDIRECT : 0);
		events_emit(&ev);
		if (pv.verdict == VERDICT_DROPPED)
			return TC_ACT_SHOT;
	}
	if (pv.verdict == VERDICT_AUDIT)
		ct_flags |= CT_F_AUDITED;
	if (pv.redirect)
		ct_flags |= CT_F_REDIRECT;
	ct_create(&p->tuple, p->tcp_flags, src_id, pv.cookie, ct_flags);
	return TC_ACT_OK;
}

SEC("tc")
int lxc_from_endpoint(struct __sk_buff *skb)
{
	struct endpoint_value *ep;
	struct pkt p;
	int err = parse(skb, &p);

	if (err < 0)
		return TC_ACT_OK; // not IPv4 (ARP): not policed
	if (err)
		return drop_event(skb, &p, err, POLICY_DIR_EGRESS, OBS_FROM_ENDPOINT, 0, 0);
	ep = endpoint_lookup(p.tuple.saddr);
	// Anti-spoofing: the source must be a known pod, sending from its own veth.
	if (!ep || (ep->ifindex && ep->ifindex != skb->ingress_ifindex))
		return drop_event(skb, &p, DROP_INVALID_SIP, POLICY_DIR_EGRESS, OBS_FROM_ENDPOINT, 0, 0);
	return enforce(skb, &p, ep, ipcache_identity(p.tuple.daddr), POLICY_DIR_EGRESS, 0);
}

SEC("tc")
int lxc_to_endpoint(struct __sk_buff *skb)
{
	struct endpoint_value *ep;
	__u32 remote, mark = skb->mark;
	__u8 ev_flags = 0;
	struct pkt p;
	int err = parse(skb, &p);

	if (err < 0)
		return TC_ACT_OK;
	ep = endpoint_lookup(p.tuple.daddr);
	if (err)
		return drop_event(skb, &p, err, POLICY_DIR_INGRESS, OBS_TO_ENDPOINT, 0, ep ? ep->identity : 0);
	if (!ep)
		return TC_ACT_OK; // not a pod the agent registered: nothing to enforce for it
	if ((mark & MARK_MAGIC_MASK) == MARK_MAGIC_IDENTITY) {
		// From another node: the sender's identity, carried in the VNI, set by vxlan_from_overlay.
		remote = (mark >> 16) | ((mark & 0xFF) << 16);
		ev_flags = EV_F_IDENTITY_FROM_TUNNEL;
		skb->mark = 0;
		if (!remote)
			return drop_event(skb, &p, DROP_INVALID_IDENTITY, POLICY_DIR_INGRESS, OBS_TO_ENDPOINT, 0, ep->identity);
	} else {
		remote = ipcache_identity(p.tuple.saddr);
	}
	return enforce(skb, &p, ep, remote, POLICY_DIR_INGRESS, ev_flags);
}

// vx0 ingress. With vx0 in external (collect_metadata) mode every packet carries its tunnel key;
// the VNI is the sender's security identity. Handed to lxc_to_endpoint in skb->mark (kept by
// decapsulation and forwarding within the node netns; cleared by the veth when it crosses into
// the pod). A device without tunnel metadata (fixed-VNI mode) leaves the mark alone: the
// destination then falls back to the ipcache.
SEC("tc")
int vxlan_from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	__u32 id;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return TC_ACT_OK;
	id = key.tunnel_id & 0xFFFFFF;
	if (!id)
		return TC_ACT_OK;
	// The sending node's own traffic is "host" there and "remote-node" here, as in Cilium.
	if (id == IDENTITY_HOST)
		id = IDENTITY_REMOTE_NODE;
	skb->mark = ((id & 0xFFFF) << 16) | ((id >> 16) & 0xFF) | MARK_MAGIC_IDENTITY;
	return TC_ACT_OK;
}

// vx0 egress, external mode: the destination's node from the ipcache, the source's identity
// (its local endpoint, else the ipcache) as the VNI.
SEC("tc")
int vxlan_to_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct ipcache_value *dst;
	struct endpoint_value *ep;
	struct pkt p;

	if (parse(skb, &p))
		return TC_ACT_OK;
	dst = ipcache_lookup(p.tuple.daddr);
	if (!dst || !dst->tunnel_endpoint)
		return TC_ACT_OK;
	ep = endpoint_lookup(p.tuple.saddr);
	key.tunnel_id = ep ? ep->identity : ipcache_identity(p.tuple.saddr);
	key.remote_ipv4 = bpf_ntohl(dst->tunnel_endpoint);
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return drop_event(skb, &p, DROP_INVALID, POLICY_DIR_EGRESS, OBS_TO_OVERLAY, key.tunnel_id, 0);
	return TC_ACT_OK;
}
