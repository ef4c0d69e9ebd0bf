// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// tc programs on the node's devices toward the world (the underlay, `ul0` in the local cluster):
//   host_from_netdev (tcx ingress): NodePort / ExternalIP / LoadBalancer IP → backend (DNAT, and
//                    SNAT to the node for another node's backend); SNATed replies back to clients;
//                    with the node proxy on, a TCP flow to a local pod whose ingress entry asks
//                    for L7 is handed to the proxy's listener (bpf_sk_assign), as vx0 does;
//   host_to_netdev   (tcx egress):  a local backend's replies leave as from the frontend.
// Thin: the logic is in lib/nodeport.h and lib/redirect.h (docs/nodeport.md, docs/redirect.md).

#include "common.h"
#include "nodeport.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int host_from_netdev(struct __sk_buff *skb)
{
	return nodeport_from_netdev(skb);
}

SEC("tc")
int host_to_netdev(struct __sk_buff *skb)
{
	return nodeport_to_netdev(skb);
}
