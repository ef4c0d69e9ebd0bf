// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Client-side redirection into the node proxy, at the socket (docs/redirect.md). connect4, after
// service translation: the client's egress entry toward the chosen backend, and the backend's
// ingress entry when it is a pod of this node; if either asks for the proxy, the socket is sent to
// the proxy's listener (the pods' gateway IP, never loopback) and its record waits, keyed by the
// socket's cookie, until sock_ops sees the source port TCP picked and files it by 4-tuple for the
// proxy. getpeername keeps showing what the app asked for (lb4_revnat_conn). TCP only.
// Decides nothing about dropping: a denied connection is left to tc (lxc.c), which drops and reports it.
// Also the tc-side hand-off for NodePort flows to a local pod (redirect4_from_netdev, bpf/host.c).
#ifndef WEFT_REDIRECT_H
#define WEFT_REDIRECT_H

#include "lb.h"
#include "policy.h"
#include "ipcache.h"
#include "proxy.h"
#include "proxy_ingress.h"

#define REDIRECT_AF_INET 2
// proxy4_origin.flags (with lib/proxy.h's PROXY_ORIGIN_*): the service asks for L7 load balancing
// (LB_SVC_L7). With directions 0 the proxy applies no L7 rules: it only balances.
#define PROXY_ORIGIN_L7LB 0x4

// The proxy port for a redirect: the deciding entry's proxy_port when the agent assigned one.
static __always_inline __u16 redirect_port(const struct policy_verdict *eg, const struct policy_verdict *in,
					   const struct proxy_config *cfg)
{
	if (eg->redirect && eg->proxy_port)
		return eg->proxy_port;
	if (in->redirect && in->proxy_port)
		return in->proxy_port;
	return bpf_ntohs(cfg->port);
}

// connect4, TCP, after lb4_translate_ex (same `caller`). Returns 1 (the call goes on, redirected or not).
static __always_inline int redirect4_connect(struct bpf_sock_addr *ctx, struct lb4_caller *caller,
					     const struct lb4_choice *lb)
{
	struct policy_verdict eg, in;
	struct proxy_config *cfg;
	struct endpoint_value *ep;
	struct netns_info *ns;
	__be32 daddr = ctx->user_ip4;
	__be16 dport = (__u16)ctx->user_port;
	__u64 sock_cookie;
	__u32 dst_id;
	__u8 dirs = 0;
	__u16 port;

	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	cfg = proxy_config_enabled();
	if (!cfg || daddr == cfg->address)
		return 1; // redirection off; or a connect to the proxy itself, policed by tc as any
	ns = lb4_caller_ns(ctx, caller);
	if (!ns)
		return 1;
	__builtin_memset(&in, 0, sizeof(in));
	dst_id = ipcache_identity(daddr);
	// Enforcement and audit are the endpoint's (tc knows them): here only "does an allowing entry
	// ask for the proxy" matters, so a miss counts as no redirect.
	policy_decide(&eg, ns->identity, dst_id, POLICY_DIR_EGRESS, IPPROTO_TCP, bpf_ntohs(dport), false, false);
	if (eg.verdict != VERDICT_FORWARDED)
		return 1; // denied (or audited): lxc_from_endpoint decides and reports
	if (eg.redirect)
		dirs |= PROXY_DIR_EGRESS;
	ep = endpoint_lookup(daddr);
	if (ep) {
		// A pod of this node: its ingress L7 rules run in this node's proxy, in the same pass.
		dst_id = ep->identity;
		policy_decide(&in, ep->identity, ns->identity, POLICY_DIR_INGRESS, IPPROTO_TCP, bpf_ntohs(dport),
			      ep->flags & EP_F_ENFORCE_INGRESS, ep->flags & EP_F_AUDIT_INGRESS);
		if (in.verdict != VERDICT_FORWARDED)
			return 1; // the server refuses at L3/L4: lxc_to_endpoint drops and reports
		if (in.redirect)
			dirs |= PROXY_DIR_INGRESS;
	}
	// A service with L7 load balancing goes to the proxy even when no L7 rule asks for it (the
	// L3/L4 verdicts above still stand: a denied connection was left to tc).
	if (!dirs && !(lb->svc_flags & LB_SVC_L7))
		return 1;

	port = redirect_port(&eg, &in, cfg);
	sock_cookie = bpf_get_socket_cookie(ctx);
	struct proxy4_origin o = {
		.orig_address = lb->service_id ? lb->vip : daddr,
		.backend_address = daddr,
		.orig_port = lb->service_id ? lb->vport : dport,
		.backend_port = dport,
		.src_identity = ns->identity,
		.dst_identity = dst_id,
		.service_id = lb->service_id,
		.backend_id = lb->backend_id,
		.egress_cookie = eg.redirect ? eg.cookie : 0,
		.ingress_cookie = in.redirect ? in.cookie : 0,
		.directions = dirs,
		.flags = PROXY_ORIGIN_SOCK | ((lb->svc_flags & LB_SVC_L7) ? PROXY_ORIGIN_L7LB : 0),
		.proto = IPPROTO_TCP,
		.netns_cookie = caller->netns_cookie,
	};
	if (bpf_map_update_elem(&weft_proxy_pending, &sock_cookie, &o, BPF_ANY))
		return 1; // cannot record: the connection goes straight on and tc still polices it at L3/L4

	// getpeername shows what the app asked for, not the proxy.
	struct lb4_revnat rval = {
		.address = o.orig_address,
		.port = o.orig_port,
		.proto = IPPROTO_TCP,
		.service_id = lb->service_id,
	};
	lb4_revnat_record(ctx, 1, cfg->address, bpf_htons(port), &rval);

	ctx->user_ip4 = cfg->address;
	ctx->user_port = (__u32)bpf_htons(port);
	return 1;
}

// sock_ops on the pods cgroup. TCP_CONNECT_CB runs in tcp_connect() once the source port is
// chosen and before the SYN is sent, so the record is in place before the proxy can accept.
// A socket that was not redirected clears any record left under its 4-tuple, so a stale record can
// never vouch for a direct connection to the proxy. A redirected socket asks for state changes and
// removes its record when it closes.
static __always_inline void redirect4_sockops(struct bpf_sock_ops *skops)
{
	struct proxy4_origin *pending;
	struct proxy4_key key = {};
	__u64 cookie;

	if (skops->family != REDIRECT_AF_INET)
		return;
	key.saddr = skops->local_ip4;
	key.daddr = skops->remote_ip4;
	key.sport = bpf_htons((__u16)skops->local_port);
	key.dport = bpf_htons((__u16)bpf_ntohl(skops->remote_port));
	key.proto = IPPROTO_TCP;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		cookie = bpf_get_socket_cookie(skops);
		pending = bpf_map_lookup_elem(&weft_proxy_pending, &cookie);
		if (!pending) {
			bpf_map_delete_elem(&weft_proxy_origin, &key);
			return;
		}
		bpf_map_update_elem(&weft_proxy_origin, &key, pending, BPF_ANY);
		bpf_map_delete_elem(&weft_proxy_pending, &cookie);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			bpf_map_delete_elem(&weft_proxy_origin, &key);
		return;
	default:
		return;
	}
}

// ---- tc side, at the node's device toward the world (bpf/host.c) ------------------------------

#define REDIRECT_TCP_SYN 0x02
#define REDIRECT_TCP_ACK 0x10

// A TCP packet from outside the node that NodePort (lib/nodeport.h) has just DNATed to a pod of
// this node: the same hand-off as lxc.c's overlay_to_proxy does for vx0. Its first SYN decides the
// pod's ingress entry from the client's identity (the ipcache's: world 2, or a CIDR identity);
// when that entry asks for the proxy, a record {orig = backend = pod:port, directions ingress, tc}
// is filed under the flow's 4-tuple as it is after the DNAT (what the proxy's accepted socket
// sees: remote = the client, local = the pod) and the proxy's listener is assigned. Later packets
// follow the record. The addresses and ports are the packet's after the rewrite. Returns 0 when
// the packet is not for the proxy (it goes on to the pod, whose lxc_to_endpoint decides and
// reports), 1 when it is (the caller sets MARK_MAGIC_TO_PROXY), -1 when the proxy should have it
// but has no listener (the caller drops it: a missing proxy never means a bypass).
static __always_inline int redirect4_from_netdev(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __be16 sport,
						 __be16 dport, __u8 tcp_flags)
{
	struct proxy_config *cfg = proxy_config_enabled();
	struct endpoint_value *ep;
	struct policy_verdict pv;
	__u16 port;

	if (!cfg)
		return 0;
	ep = endpoint_lookup(daddr);
	if (!ep)
		return 0;
	struct proxy4_key key = { .saddr = saddr, .daddr = daddr, .sport = sport, .dport = dport, .proto = IPPROTO_TCP };
	if ((tcp_flags & (REDIRECT_TCP_SYN | REDIRECT_TCP_ACK)) != REDIRECT_TCP_SYN)
		return proxy_ingress_follow(&key);
	return proxy_ingress_syn(skb, cfg, ep, &key, ipcache_identity(saddr), bpf_ntohs(dport), &pv, &port);
}

#endif
