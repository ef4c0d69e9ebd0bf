// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Identity-based L3/L4 policy: the endpoints map (which local pod, its identity, what is enforced)
// and the policy maps of src/policy/key.ts, exactly: one LPM trie per subject identity, held by an
// outer hash-of-maps keyed by that identity. Decides; never touches the packet.
#pragma once

#include "common.h"
#include "drop.h"

// ---- endpoints: local pods, by pod IP --------------------------------------------------------

#define ENDPOINTS_MAX 4096
#define EP_F_ENFORCE_INGRESS 1 // default deny toward the pod
#define EP_F_ENFORCE_EGRESS 2  // default deny from the pod
#define EP_F_AUDIT_INGRESS 4   // policy-audit-mode: would-be drops pass, with an audit verdict
#define EP_F_AUDIT_EGRESS 8

struct endpoint_key {
	__be32 addr; // the pod's IPv4
};

struct endpoint_value {
	__u32 identity;    // the pod's security identity (the subject of its policy map)
	__u32 ifindex;     // host-side veth (lxc*) in the node netns; 0 = do not check the source
	__u16 endpoint_id;
	__u8 flags;        // EP_F_*
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDPOINTS_MAX);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_value);
} weft_endpoints SEC(".maps");

static __always_inline struct endpoint_value *endpoint_lookup(__be32 addr)
{
	struct endpoint_key key = { .addr = addr };

	return bpf_map_lookup_elem(&weft_endpoints, &key);
}

// ---- policy maps (src/policy/key.ts) ---------------------------------------------------------

#define POLICY_INNER_MAX 16384 // entries per subject; inner maps are created with exactly this
#define POLICY_SUBJECTS_MAX 16384

#define POLICY_F_DENY 1
#define POLICY_F_REDIRECT 2
#define POLICY_F_AUDIT 4

#define POLICY_DIR_INGRESS 0
#define POLICY_DIR_EGRESS 1

// prefixlen counts bits after itself: 40 = identity + direction, 48 = + protocol, 64 = + dport.
#define POLICY_PREFIX_FULL 64

struct policy_key {
	__u32 prefixlen; // host order (LPM trie header)
	__be32 identity; // remote identity; 0 = any peer
	__u8 direction;  // POLICY_DIR_*
	__u8 protocol;   // IANA
	__be16 dport;    // destination port, or ICMP type in the low byte (dport = type)
};

struct policy_value {
	__u8 flags; // POLICY_F_*
	__u8 reserved;
	__be16 proxy_port;
	__u32 cookie; // host order: index into the subject's compiled rule origins
};

struct policy_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POLICY_INNER_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	// Sizes, not __type: clang emits only a forward declaration for types named in a nested
	// (inner) map definition, and libbpf needs sizes. The full types reach BTF through
	// policy_prefix_of's signature (the mirror test reads them there).
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_value));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, POLICY_SUBJECTS_MAX);
	__type(key, __u32); // subject identity, host order
	__array(values, struct policy_inner);
} weft_policy SEC(".maps");

enum policy_match {
	POLICY_MATCH_NONE = 0,
	POLICY_MATCH_L3_ONLY = 1, // every protocol (prefix 40)
	POLICY_MATCH_L3_L4 = 2,   // protocol and port (prefix > 48)
	POLICY_MATCH_L4_ONLY = 3, // identity 0, protocol and port
	POLICY_MATCH_ALL = 4,     // identity 0, every protocol
	POLICY_MATCH_L3_PROTO = 5,
	POLICY_MATCH_PROTO_ONLY = 6,
};

#define VERDICT_FORWARDED 0
#define VERDICT_DROPPED 1
#define VERDICT_AUDIT 2

struct policy_verdict {
	__u8 verdict;     // VERDICT_*
	__u8 match;       // enum policy_match
	__u16 reason;     // enum weft_drop_reason when dropped or audited
	__u16 proxy_port; // host order; non-zero with redirect (for the proxy, later)
	__u8 redirect;
	__u8 pad;
	__u32 cookie;
};

static __always_inline __u8 policy_match_of(__u32 identity, __u32 prefixlen)
{
	if (identity)
		return prefixlen > 48 ? POLICY_MATCH_L3_L4 : prefixlen > 40 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_L3_ONLY;
	return prefixlen > 48 ? POLICY_MATCH_L4_ONLY : prefixlen > 40 ? POLICY_MATCH_PROTO_ONLY : POLICY_MATCH_ALL;
}

// The prefix length of the entry `hit` that an LPM lookup of `key` (prefixlen 64) returned: a
// lookup with prefixlen k returns the very same value pointer iff that entry's length is <= k.
// At most 6 lookups (40, 48, then a binary search over 49..64); used on new flows only.
// Not inlined on purpose: its signature puts struct policy_key/policy_value into BTF.
static __noinline __u32 policy_prefix_of(void *inner, struct policy_key *key, const struct policy_value *hit)
{
	__u32 lo = 49, hi = 64, found = 64;

	key->prefixlen = 40;
	if (bpf_map_lookup_elem(inner, key) == hit)
		found = 40;
	else {
		key->prefixlen = 48;
		if (bpf_map_lookup_elem(inner, key) == hit)
			found = 48;
		else {
#pragma unroll
			for (int i = 0; i < 4; i++) {
				__u32 mid = (lo + hi) / 2;

				if (lo >= hi)
					break;
				key->prefixlen = mid;
				if (bpf_map_lookup_elem(inner, key) == hit)
					hi = mid;
				else
					lo = mid + 1;
			}
			found = lo;
		}
	}
	key->prefixlen = POLICY_PREFIX_FULL;
	return found;
}

// key.ts datapathLookup: the peer's entry and identity 0's; a deny in either wins; otherwise the
// longer prefix (the peer's on a tie); nothing is a miss, dropped where the direction is enforced.
// Audit (a deny entry's flag, or the endpoint's audit mode on a miss) turns a drop into a pass.
static __always_inline void policy_decide(struct policy_verdict *out, __u32 subject, __u32 remote, __u8 dir,
					  __u8 proto, __u16 dport, bool enforced, bool audit_mode)
{
	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.identity = bpf_htonl(remote),
		.direction = dir,
		.protocol = proto,
		.dport = bpf_htons(dport),
	};
	struct policy_key any_key = key;
	struct policy_value *exact = NULL, *any = NULL, *win = NULL;
	__u32 win_id = remote, len;
	void *inner = bpf_map_lookup_elem(&weft_policy, &subject);

	__builtin_memset(out, 0, sizeof(*out));
	if (inner) {
		if (remote)
			exact = bpf_map_lookup_elem(inner, &key);
		any_key.identity = 0;
		any = bpf_map_lookup_elem(inner, &any_key);
	}
	if (exact && (exact->flags & POLICY_F_DENY)) {
		win = exact;
	} else if (any && (any->flags & POLICY_F_DENY)) {
		win = any;
		win_id = 0;
	}
	if (win) {
		len = policy_prefix_of(inner, win_id ? &key : &any_key, win);
		out->cookie = win->cookie;
		out->reason = DROP_POLICY_DENY;
		out->match = policy_match_of(win_id, len);
		out->verdict = ((win->flags & POLICY_F_AUDIT) || audit_mode) ? VERDICT_AUDIT : VERDICT_DROPPED;
		return;
	}
	if (exact && any) {
		__u32 elen = policy_prefix_of(inner, &key, exact);
		__u32 alen = policy_prefix_of(inner, &any_key, any);

		if (elen >= alen) {
			win = exact;
			len = elen;
		} else {
			win = any;
			win_id = 0;
			len = alen;
		}
	} else if (exact) {
		win = exact;
		len = policy_prefix_of(inner, &key, exact);
	} else if (any) {
		win = any;
		win_id = 0;
		len = policy_prefix_of(inner, &any_key, any);
	}
	if (win) {
		out->verdict = VERDICT_FORWARDED;
		out->match = policy_match_of(win_id, len);
		out->cookie = win->cookie;
		out->redirect = (win->flags & POLICY_F_REDIRECT) ? 1 : 0;
		out->proxy_port = bpf_ntohs(win->proxy_port);
		return;
	}
	// Miss.
	if (!enforced) {
		out->verdict = VERDICT_FORWARDED;
		return;
	}
	out->reason = DROP_POLICY;
	out->verdict = audit_mode ? VERDICT_AUDIT : VERDICT_DROPPED;
}
