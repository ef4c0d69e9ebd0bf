// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Datapath events to user space through one ring buffer: policy verdicts, drops (with a reason
// from drop.h) and trace points. One fixed little-endian layout (struct weft_event, 64 bytes),
// decoded lazily by src/datapath/events.ts. A full ring never blocks or changes a verdict: the
// event is counted in weft_events_lost (key 0), which `weft-bpf ringbuf --lost-map` reports.
#pragma once

#include "common.h"

#define EVENTS_RING_BYTES (1024 * 1024)

enum weft_event_type {
	EVENT_POLICY_VERDICT = 1, // a policy decision on a new flow (forwarded, dropped or audit)
	EVENT_DROP = 2,           // a packet dropped for a reason other than a policy decision record
	EVENT_TRACE = 3,          // a packet of a tracked flow passed an observation point
};

enum weft_obs_point {
	OBS_TO_ENDPOINT = 0,   // tc egress on the pod's host-side veth: toward the pod
	OBS_FROM_ENDPOINT = 5, // tc ingress on the pod's host-side veth: from the pod
	OBS_FROM_OVERLAY = 10, // vx0 ingress: arrived from another node
	OBS_TO_OVERLAY = 4,    // vx0 egress: leaving for another node
};

#define EV_F_IDENTITY_FROM_TUNNEL 1 // src_identity came from the VXLAN tunnel key (VNI)
#define EV_F_REDIRECT 2             // the allowing entry asks for the proxy (not acted on yet)

struct weft_event {
	__u64 time_ns;     // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u8 type;         // enum weft_event_type
	__u8 verdict;      // VERDICT_FORWARDED 0 / VERDICT_DROPPED 1 / VERDICT_AUDIT 2
	__u8 direction;    // 0 ingress (toward the pod), 1 egress (from the pod)
	__u8 proto;        // IANA
	__u16 drop_reason; // enum weft_drop_reason; 0 when forwarded
	__u8 match;        // enum policy_match
	__u8 ct_state;     // enum ct_state
	__u32 src_identity;
	__u32 dst_identity;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;      // TCP/UDP ports; 0 for ICMP
	__be16 dport;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 flags;        // EV_F_*
	__u32 ifindex;
	__u32 cookie;      // policy cookie of the deciding entry
	__u16 endpoint_id; // the local pod's endpoint id
	__u16 proxy_port;  // host order
	__u32 pkt_len;
	__u8 obs_point;    // enum weft_obs_point
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RING_BYTES);
} weft_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} weft_events_lost SEC(".maps");

static __always_inline void events_count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&weft_events_lost, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

// Copies a filled-in event into the ring (or counts it lost). Not inlined: one copy of the code,
// and its signature puts struct weft_event into BTF (the mirror test reads it there).
static __noinline void events_emit(const struct weft_event *ev)
{
	struct weft_event *slot = bpf_ringbuf_reserve(&weft_events, sizeof(*slot), 0);

	if (!slot) {
		events_count_lost();
		return;
	}
	__builtin_memcpy(slot, ev, sizeof(*slot));
	bpf_ringbuf_submit(slot, 0);
}
