// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Proof program for the loader (docs/bpf-loading.md): a cgroup connect4 hook that counts
// connect() calls per destination port and version and emits one ring-buffer event per call,
// tc programs that count UDP packets per destination port and direction, and a syscall program
// that emits a burst of events on demand (ring-buffer throughput test).
// It never changes a verdict: every program lets the traffic through untouched.
// Maps are declared here for now; the datapath's real maps live in bpf/lib/.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Chosen at load time (weft-bpf load --const weft_probe_version=N), so a replacement program
// can be told apart from the one it replaced.
const volatile __u32 weft_probe_version = 1;

struct probe_connect_key {
	__u16 dport; // host byte order
	__u16 pad;
	__u32 version;
};

struct probe_event {
	__u64 sock_cookie;
	__u32 pid; // tgid of the caller
	__u32 version;
	__u32 daddr; // network byte order
	__u16 dport; // host byte order
	__u16 pad;
};

struct probe_udp_key {
	__u16 dport; // host byte order
	__u8 dir;    // 0 ingress, 1 egress
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct probe_connect_key);
	__type(value, __u64);
} probe_connects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct probe_udp_key);
	__type(value, __u64);
} probe_udp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} probe_events SEC(".maps");

// Events that did not fit in probe_events. The helper's `ringbuf --lost-map` reports it.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_events_lost SEC(".maps");

// Sized for bursts of 250k 24-byte events (32 bytes with the ring's header) in flight twice.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 * 1024 * 1024);
} probe_burst_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_burst_lost SEC(".maps");

static __always_inline void count(void *map, const void *key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(map, key);

	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(map, key, &one, BPF_NOEXIST) == 0)
		return;
	v = bpf_map_lookup_elem(map, key); // another CPU created it first
	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("cgroup/connect4")
int probe_connect4(struct bpf_sock_addr *ctx)
{
	struct probe_connect_key key = {
		.dport = bpf_ntohs((__u16)ctx->user_port),
		.version = weft_probe_version,
	};
	struct probe_event *ev;

	count(&probe_connects, &key);

	ev = bpf_ringbuf_reserve(&probe_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&probe_events_lost, &zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 1;
	}
	ev->sock_cookie = bpf_get_socket_cookie(ctx);
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->version = weft_probe_version;
	ev->daddr = ctx->user_ip4;
	ev->dport = key.dport;
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
	return 1; // allow
}

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define TCX_NEXT -1

static __always_inline int count_udp(struct __sk_buff *skb, __u8 dir)
{
	struct iphdr ip;
	struct udphdr udp;
	struct probe_udp_key key = { .dir = dir };

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return TCX_NEXT;
	if (ip.protocol != IPPROTO_UDP)
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, &udp, sizeof(udp)) < 0)
		return TCX_NEXT;
	key.dport = bpf_ntohs(udp.dest);
	count(&probe_udp, &key);
	return TCX_NEXT;
}

SEC("tc")
int probe_tc_ingress(struct __sk_buff *skb)
{
	return count_udp(skb, 0);
}

SEC("tc")
int probe_tc_egress(struct __sk_buff *skb)
{
	return count_udp(skb, 1);
}

struct probe_burst_args {
	__u32 n;     // events to emit (bpf_loop caps at 1 << 23)
	__u32 pad;
	__u64 first; // sock_cookie of the first event; the rest count up from it
};

static long burst_one(__u64 i, void *ctx)
{
	struct probe_burst_args *args = ctx;
	struct probe_event *ev = bpf_ringbuf_reserve(&probe_burst_events, sizeof(*ev), 0);

	if (!ev) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&probe_burst_lost, &zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	ev->sock_cookie = args->first + i;
	ev->pid = 0;
	ev->version = weft_probe_version;
	ev->daddr = 0;
	ev->dport = 0;
	ev->pad = 0;
	// Flags 0: the kernel wakes the consumer only when it had caught up, so a busy consumer
	// drains in batches without one wakeup per record.
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

// Run with weft-bpf run PROG_PIN --ctx <struct probe_burst_args as hex>.
SEC("syscall")
int probe_burst(struct probe_burst_args *ctx)
{
	struct probe_burst_args args = { .n = ctx->n, .first = ctx->first };

	bpf_loop(args.n, burst_one, &args, 0);
	return 0;
}
