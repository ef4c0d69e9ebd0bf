// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The server-side hand-off to the node proxy, shared by the two ways a TCP flow reaches a pod of
// this node without passing a Weft socket hook: through vx0 (lxc.c, the client on another node)
// and through a NodePort (lib/redirect.h, the client outside). The flow's first SYN decides the
// pod's ingress entry for the client's identity; when the entry asks for the proxy, a record
// {orig = backend = pod:port, directions ingress, tc} is filed under the flow's 4-tuple (what the
// proxy's accepted socket sees) and the proxy's listener is assigned (bpf_sk_assign). Later
// packets follow the record.
#ifndef WEFT_PROXY_INGRESS_H
#define WEFT_PROXY_INGRESS_H

#include "policy.h"
#include "proxy.h"

// A packet after the first SYN: 1 when its flow's record hands it to the proxy (the stack then
// finds the proxy's socket for the 4-tuple), 0 otherwise.
static __always_inline int proxy_ingress_follow(const struct proxy4_key *key)
{
	struct proxy4_origin *o = proxy_origin_lookup(key);

	return o && (o->flags & PROXY_ORIGIN_TC) ? 1 : 0;
}

// The first SYN. Returns 0 when the flow is not for the proxy (any stale record under its 4-tuple
// is removed, so none can steer it), 1 when the proxy's listener was assigned, -1 when the proxy
// should have it but has no listener (record removed; the caller drops: never a bypass). `pv` and
// `port` are what the caller reports.
static __always_inline int proxy_ingress_syn(struct __sk_buff *skb, const struct proxy_config *cfg,
					     const struct endpoint_value *ep, const struct proxy4_key *key,
					     __u32 remote, __u16 policy_port, struct policy_verdict *pv,
					     __u16 *port)
{
	policy_decide(pv, ep->identity, remote, POLICY_DIR_INGRESS, IPPROTO_TCP, policy_port,
		      ep->flags & EP_F_ENFORCE_INGRESS, ep->flags & EP_F_AUDIT_INGRESS);
	if (pv->verdict != VERDICT_FORWARDED || !pv->redirect) {
		bpf_map_delete_elem(&weft_proxy_origin, key);
		return 0;
	}
	struct proxy4_origin rec = {
		.orig_address = key->daddr,
		.backend_address = key->daddr,
		.orig_port = key->dport,
		.backend_port = key->dport,
		.src_identity = remote,
		.dst_identity = ep->identity,
		.ingress_cookie = pv->cookie,
		.directions = PROXY_DIR_INGRESS,
		.flags = PROXY_ORIGIN_TC,
		.proto = IPPROTO_TCP,
	};
	bpf_map_update_elem(&weft_proxy_origin, key, &rec, BPF_ANY);
	*port = pv->proxy_port ? pv->proxy_port : bpf_ntohs(cfg->port);
	if (proxy_assign(skb, cfg, key->saddr, key->daddr, key->sport, key->dport, *port) < 0) {
		bpf_map_delete_elem(&weft_proxy_origin, key);
		return -1;
	}
	return 1;
}

#endif
