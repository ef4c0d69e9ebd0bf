// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// tc programs on each pod's host-side veth (lxc*) and on the node's VXLAN device (vx0):
//   lxc_from_endpoint (tcx ingress on lxc*): the pod's egress policy, for what the socket hooks do
//                      not see (ICMP, raw; TCP/UDP too until bpf/sock decides them);
//   lxc_to_endpoint   (tcx egress on lxc*):  the pod's ingress policy, by the source's identity;
//   vxlan_from_overlay (tcx ingress on vx0): the source identity from the tunnel key → skb->mark;
//   vxlan_to_overlay  (tcx egress on vx0, external mode): the source identity into the tunnel key.
// With the node proxy configured (lib/proxy.h, docs/redirect.md): a connection the socket hook sent
// to the proxy is decided toward its real backend; the proxy's upstream connections carry their
// client's identity (weft_proxy_ports), never the host's, and unregistered ones are dropped; L7-
// policed connections arriving through vx0 are handed to the proxy's listener (bpf_sk_assign).
// Thin: parsing here, decisions in lib/{policy,conntrack,ipcache}.h, records in lib/events.h.

#include "common.h"
#include "drop.h"
#include "ipcache.h"
#include "policy.h"
#include "conntrack.h"
#include "events.h"
#include "proxy.h"
#include "proxy_ingress.h"

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
// How a new flow reached its policy point (enforce's `how`).
#define VIA_PLAIN 0       // an ordinary packet
#define VIA_SOCK_REDIRECT 1 // egress: the socket hook sent it to the proxy; decided toward its backend
#define VIA_PROXY 2       // ingress: an upstream connection of the proxy, remote = its client's identity
#define VIA_PROXY_UNKNOWN 3 // ingress: from the proxy's cgroup, port not registered: never attributed

static __always_inline int enforce(struct __sk_buff *skb, struct pkt *p, const struct endpoint_value *ep,
				   __u32 remote, __u8 direction, __u8 ev_flags, __u8 how,
				   const struct proxy4_origin *via)
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

	if (how == VIA_PROXY_UNKNOWN)
		// The proxy opened a connection it did not register: whose traffic it is cannot be
		// known, and it is never the host's. Fail closed.
		return drop_event(skb, p, DROP_INVALID_IDENTITY, direction, obs, 0, dst_id);
	if (how == VIA_SOCK_REDIRECT && via) {
		// The pod's connect() went to the proxy: its egress policy is decided toward the backend the
		// socket hook chose (the packet's destination is the proxy), and reported so.
		policy_decide(&pv, ep->identity, via->dst_identity, direction, IPPROTO_TCP, bpf_ntohs(via->backend_port),
			      ep->flags & EP_F_ENFORCE_EGRESS, ep->flags & EP_F_AUDIT_EGRESS);
		dst_id = via->dst_identity;
		fill_event(&ev, skb, p, EVENT_POLICY_VERDICT, direction, obs);
		ev.daddr = via->backend_address;
		ev.dport = via->backend_port;
		ev.proxy_port = bpf_ntohs(p->tuple.dport);
		ev.flags = ev_flags | EV_F_REDIRECT;
	} else if (!ingress && weft_egress_l4_in_sock && (p->tuple.proto == IPPROTO_TCP || p->tuple.proto == IPPROTO_UDP)) {
		__builtin_memset(&pv, 0, sizeof(pv)); // decided by the socket hook at connect/sendmsg
		goto track;
	} else {
		__u8 enforce_f = ingress ? EP_F_ENFORCE_INGRESS : EP_F_ENFORCE_EGRESS;
		__u8 audit_f = ingress ? EP_F_AUDIT_INGRESS : EP_F_AUDIT_EGRESS;

		policy_decide(&pv, ep->identity, remote, direction, p->tuple.proto, p->policy_port,
			      ep->flags & enforce_f, ep->flags & audit_f);
		// Fail closed on L7: with the proxy on, a new flow whose allowing entry asks for the proxy
		// reaches the pod only from the proxy (the host's own traffic excepted: allow-localhost).
		if (ingress && pv.verdict == VERDICT_FORWARDED && pv.redirect && how != VIA_PROXY &&
		    remote != IDENTITY_HOST && proxy_config_enabled()) {
			pv.verdict = VERDICT_DROPPED;
			pv.reason = DROP_POLICY;
		}
		fill_event(&ev, skb, p, EVENT_POLICY_VERDICT, direction, obs);
		ev.proxy_port = pv.proxy_port;
		ev.flags = ev_flags | (pv.redirect ? EV_F_REDIRECT : 0);
	}
	ev.verdict = pv.verdict;
	ev.drop_reason = pv.reason;
	ev.match = pv.match;
	ev.src_identity = src_id;
	ev.dst_identity = dst_id;
	ev.cookie = pv.cookie;
	ev.endpoint_id = ep->endpoint_id;
	events_emit(&ev);
	if (pv.verdict == VERDICT_DROPPED)
		return TC_ACT_SHOT;
track:
	if (pv.verdict == VERDICT_AUDIT)
		ct_flags |= CT_F_AUDITED;
	if (pv.redirect)
		ct_flags |= CT_F_REDIRECT;
	ct_create(&p->tuple, p->tcp_flags, src_id, pv.cookie, ct_flags);
	return TC_ACT_OK;
}

// The socket hook's record for a TCP packet from a pod to the proxy's listener, or NULL. Only a
// record made for this very pod's socket counts (sock_ops wrote it under this 4-tuple).
static __always_inline struct proxy4_origin *sock_redirect_of(const struct pkt *p, const struct endpoint_value *ep)
{
	struct proxy_config *cfg;
	struct proxy4_origin *o;

	if (p->tuple.proto != IPPROTO_TCP || !p->l4_ok)
		return NULL;
	cfg = proxy_config_enabled();
	if (!cfg || p->tuple.daddr != cfg->address)
		return NULL;
	struct proxy4_key key = {
		.saddr = p->tuple.saddr,
		.daddr = p->tuple.daddr,
		.sport = p->tuple.sport,
		.dport = p->tuple.dport,
		.proto = IPPROTO_TCP,
	};
	o = proxy_origin_lookup(&key);
	if (!o || !(o->flags & PROXY_ORIGIN_SOCK) || o->src_identity != ep->identity)
		return NULL;
	return o;
}

SEC("tc")
int lxc_from_endpoint(struct __sk_buff *skb)
{
	struct proxy4_origin *via;
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
	via = sock_redirect_of(&p, ep);
	return enforce(skb, &p, ep, ipcache_identity(p.tuple.daddr), POLICY_DIR_EGRESS, 0,
		       via ? VIA_SOCK_REDIRECT : VIA_PLAIN, via);
}

SEC("tc")
int lxc_to_endpoint(struct __sk_buff *skb)
{
	struct endpoint_value *ep;
	struct proxy_config *cfg;
	__u32 remote, mark = skb->mark;
	__u8 ev_flags = 0, how = VIA_PLAIN;
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
	cfg = proxy_config_enabled();
	if (cfg && proxy_sent(skb, cfg)) {
		// The proxy's upstream connection: its client's identity, as the proxy registered it.
		struct proxy4_port *pp = proxy_port_lookup(p.tuple.saddr, p.tuple.sport, p.tuple.proto);

		if (pp && pp->identity) {
			remote = pp->identity;
			ev_flags |= EV_F_FROM_PROXY;
			how = VIA_PROXY;
		} else {
			how = VIA_PROXY_UNKNOWN;
		}
	}
	return enforce(skb, &p, ep, remote, POLICY_DIR_INGRESS, ev_flags, how, NULL);
}

// A TCP packet arriving through vx0 for a pod of this node whose ingress entry asks for the proxy
// (it met no Weft socket hook: the client is on another node, or is that node's proxy) goes to this
// node's proxy instead of the pod, destination kept (bpf_sk_assign). The flow's first SYN decides
// and files the record the proxy looks up; its later packets follow the record. Returns 0 when
// the packet is not for the proxy, 1 when it is (the caller sets MARK_MAGIC_TO_PROXY), -1 when the
// proxy should have it but has no socket there (dropped: fail closed).
static __always_inline int overlay_to_proxy(struct __sk_buff *skb, __u32 tunnel_id, __u8 ev_flags)
{
	struct proxy_config *cfg = proxy_config_enabled();
	struct endpoint_value *ep;
	struct policy_verdict pv;
	struct weft_event ev;
	struct pkt p;
	__u32 remote;
	__u16 port = 0;
	int r;

	if (!cfg || parse(skb, &p) || p.tuple.proto != IPPROTO_TCP || !p.l4_ok)
		return 0;
	ep = endpoint_lookup(p.tuple.daddr);
	if (!ep)
		return 0;
	struct proxy4_key key = {
		.saddr = p.tuple.saddr,
		.daddr = p.tuple.daddr,
		.sport = p.tuple.sport,
		.dport = p.tuple.dport,
		.proto = IPPROTO_TCP,
	};
	if ((p.tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
		return proxy_ingress_follow(&key);
	remote = tunnel_id ? tunnel_id : ipcache_identity(p.tuple.saddr);
	r = proxy_ingress_syn(skb, cfg, ep, &key, remote, p.policy_port, &pv, &port);
	if (r == 0)
		return 0; // lxc_to_endpoint decides and reports, as for any flow
	fill_event(&ev, skb, &p, EVENT_POLICY_VERDICT, POLICY_DIR_INGRESS, OBS_FROM_OVERLAY);
	ev.match = pv.match;
	ev.src_identity = remote;
	ev.dst_identity = ep->identity;
	ev.cookie = pv.cookie;
	ev.endpoint_id = ep->endpoint_id;
	ev.proxy_port = port;
	ev.flags = ev_flags | EV_F_REDIRECT;
	if (r < 0) {
		ev.verdict = VERDICT_DROPPED;
		ev.drop_reason = DROP_POLICY; // L7 rules apply and the proxy has no listener: never bypass it
	} else {
		ev.verdict = VERDICT_FORWARDED;
	}
	events_emit(&ev);
	return r;
}

// vx0 ingress. With vx0 in external (collect_metadata) mode every packet carries its tunnel key;
// the VNI is the sender's security identity. Handed to lxc_to_endpoint in skb->mark (kept by
// decapsulation and forwarding within the node netns; cleared by the veth when it crosses into
// the pod). A device without tunnel metadata (fixed-VNI mode) leaves the mark alone: the
// destination then falls back to the ipcache. L7-policed connections go to the proxy instead.
SEC("tc")
int vxlan_from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	__u32 id = 0;
	int r;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) == 0) {
		id = key.tunnel_id & 0xFFFFFF;
		// The sending node's own traffic is "host" there and "remote-node" here, as in Cilium.
		if (id == IDENTITY_HOST)
			id = IDENTITY_REMOTE_NODE;
	}
	r = overlay_to_proxy(skb, id, id ? EV_F_IDENTITY_FROM_TUNNEL : 0);
	if (r < 0)
		return TC_ACT_SHOT;
	if (r > 0)
		skb->mark = MARK_MAGIC_TO_PROXY;
	else if (id)
		skb->mark = ((id & 0xFFFF) << 16) | ((id >> 16) & 0xFF) | MARK_MAGIC_IDENTITY;
	return TC_ACT_OK;
}

// vx0 egress, external mode: the destination's node from the ipcache, the source's identity
// (its local endpoint, else the ipcache) as the VNI. The proxy's upstream connections carry the
// identity it registered for their port; an unregistered one is dropped, never sent as the host.
SEC("tc")
int vxlan_to_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct ipcache_value *dst;
	struct endpoint_value *ep;
	struct proxy_config *cfg;
	struct pkt p;

	if (parse(skb, &p))
		return TC_ACT_OK;
	dst = ipcache_lookup(p.tuple.daddr);
	if (!dst || !dst->tunnel_endpoint)
		return TC_ACT_OK;
	ep = endpoint_lookup(p.tuple.saddr);
	cfg = ep ? NULL : proxy_config_enabled();
	if (ep) {
		key.tunnel_id = ep->identity;
	} else if (cfg && proxy_sent(skb, cfg)) {
		struct proxy4_port *pp = proxy_port_lookup(p.tuple.saddr, p.tuple.sport, p.tuple.proto);

		if (!pp || !pp->identity)
			return drop_event(skb, &p, DROP_INVALID_IDENTITY, POLICY_DIR_EGRESS, OBS_TO_OVERLAY, 0, 0);
		key.tunnel_id = pp->identity;
	} else {
		key.tunnel_id = ipcache_identity(p.tuple.saddr);
	}
	key.remote_ipv4 = bpf_ntohl(dst->tunnel_endpoint);
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return drop_event(skb, &p, DROP_INVALID, POLICY_DIR_EGRESS, OBS_TO_OVERLAY, key.tunnel_id, 0);
	return TC_ACT_OK;
}
