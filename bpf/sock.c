// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Socket hooks, attached to a node's pods cgroup (never a root cgroup): service VIP → backend
// translation at connect()/sendmsg() time and the reverse at getpeername()/recvmsg(), so apps see
// the VIP as their peer; L7-policed TCP connections steered to the node proxy, their record filed
// by 4-tuple in sock_ops. Thin entry points; the logic is in lib/lb.h (docs/services.md) and
// lib/redirect.h (docs/redirect.md).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lb.h"
#include "redirect.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	struct lb4_caller caller = {};
	struct lb4_choice choice;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	if (!lb4_translate_ex(ctx, &caller, 1, &choice))
		return 0;
	return redirect4_connect(ctx, &caller, &choice);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct lb4_caller caller = {};
	struct lb4_choice choice;

	// Only unconnected UDP sends reach this hook with an address of their own.
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	return lb4_translate_ex(ctx, &caller, 0, &choice);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	lb4_reverse(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock_getpeer4(struct bpf_sock_addr *ctx)
{
	lb4_reverse(ctx);
	return 1;
}

SEC("sockops")
int sock_ops(struct bpf_sock_ops *skops)
{
	redirect4_sockops(skops);
	return 1;
}
