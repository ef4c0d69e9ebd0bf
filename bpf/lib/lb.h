// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Socket-level service load balancing (kube-proxy replacement) for IPv4: the service maps and the
// translation logic that bpf/sock.c's cgroup hooks call. Maps are declared once, here; their
// TypeScript mirrors are src/datapath/maps/lb.ts and docs/services.md describes them.
// The agent writes lb4_services, lb4_backends, lb4_maglev; the hooks write lb4_affinity,
// lb4_revnat_conn and lb4_revnat. Nothing here ever acts outside a namespace in netns_managed.
#ifndef WEFT_LB_H
#define WEFT_LB_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netns.h"

#define LB_ECONNREFUSED 111

// lb4_service.flags
#define LB_SVC_AFFINITY 0x1 // sessionAffinity: ClientIP (affinity_timeout seconds)
#define LB_SVC_MAGLEV 0x2   // pick through the Maglev table instead of at random
#define LB_SVC_LOCAL 0x4    // i/eTP Local: only LB_BE_LOCAL backends (maglev scope 1); scope 1: externalTrafficPolicy
#define LB_SVC_EXTERNAL 0x8 // the frontend is an ExternalIP (informational)
#define LB_SVC_L7 0x10      // L7 load balancing in the node proxy: connect4 redirects TCP (lib/redirect.h)

// lb4_backend.flags
#define LB_BE_TERMINATING 0x1 // kept for existing records and affinity checks, never chosen anew
#define LB_BE_LOCAL 0x2       // on this node

#define LB_MAGLEV_CHUNK 256     // backend ids per lb4_maglev entry
#define LB_MAGLEV_MAX 131071    // largest table size (prime) accepted
#define LB_HASH_INITVAL 0xdeadbeef

// lb4_key.scope: the same address:port can serve pods and the outside with different backends
// (externalTrafficPolicy Local keeps only this node's for the outside).
#define LB_SCOPE_INTERNAL 0 // pods of this node, at their socket hooks (bpf/sock.c)
#define LB_SCOPE_EXTERNAL 1 // traffic from outside the node, at its devices (bpf/host.c, lib/nodeport.h):
			    // NodePort (address 0.0.0.0 = any of this node's addresses), ExternalIPs,
			    // LoadBalancer ingress IPs

// A frontend (VIP, port, protocol) and one of its entries. Entry 0 (`slot` 0) is the service and
// holds its first LB_SLOTS_PER_ENTRY selectable backends; entry c >= 1 holds backends
// c * 8 + 1 .. c * 8 + 8 (a service with up to 8 backends is one entry, written in one update).
struct lb4_key {
	__be32 address; // ClusterIP, ExternalIP, LoadBalancer IP; 0.0.0.0 (scope 1): a NodePort
	__be16 dport;
	__u16 slot; // entry number: 0 the service, c >= 1 its backends from c * LB_SLOTS_PER_ENTRY
	__u8 proto; // IPPROTO_TCP or IPPROTO_UDP
	__u8 scope; // LB_SCOPE_*: who the frontend serves (socket hooks look up 0 only)
	__u8 pad[2];
};

#define LB_SLOTS_PER_ENTRY 8 // backends per lb4_services entry (a power of two)

// Where one of an entry's backends is: a random pick reads it here, with no second lookup.
struct lb4_slot {
	__be32 address;
	__be16 port;
	__u8 flags; // LB_BE_*
	__u8 pad;
};

struct lb4_service {
	__u32 service_id;       // the service port (shared by its ClusterIP and ExternalIP frontends)
	__u32 count;            // entry 0: selectable backends; 0 = refuse (ECONNREFUSED)
	__u32 affinity_timeout; // entry 0: seconds, with LB_SVC_AFFINITY
	__u32 maglev_size;      // entry 0: table size M, with LB_SVC_MAGLEV
	__u32 flags;            // entry 0: LB_SVC_*
	__u32 backend_ids[LB_SLOTS_PER_ENTRY];       // this entry's backends in order (0 past count)
	struct lb4_slot backends[LB_SLOTS_PER_ENTRY]; // and where each of them is
};

// A backend by id, for the choices that name one (ClientIP affinity, Maglev): lb4_backends holds
// the backends of the service ports that use either, and only those (a random pick reads the
// entry's slots), so a sync of plain services writes one record per frontend, not one per endpoint.
struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags; // LB_BE_*
	__u32 service_id; // the service port this backend belongs to (ids are per service port)
};

// One chunk of a service's Maglev table: entries [chunk * 256, chunk * 256 + 256).
struct lb_maglev_key {
	__u32 service_id;
	__u16 chunk;
	__u8 scope; // 0: every backend, 1: node-local backends (internalTrafficPolicy: Local)
	__u8 pad;
};

struct lb_maglev_chunk {
	__u32 backend_ids[LB_MAGLEV_CHUNK];
};

// ClientIP affinity: the client is its network namespace (a pod has one IP per namespace).
struct lb_affinity_key {
	__u64 netns_cookie;
	__u32 service_id;
	__u32 pad;
};

struct lb_affinity {
	__u64 last_used_ns; // bpf_ktime_get_ns of the last new connection; the timeout slides
	__u32 backend_id;
	__u32 pad;
};

// Reverse translation for getpeername4/recvmsg4: (socket, backend) → the VIP the app asked for.
// A connected socket (connect4: TCP, connected UDP) has one peer: its record is in
// lb4_revnat_conn. lb4_revnat, keyed by backend too, holds unconnected UDP sends (one socket may
// talk to several services).
struct lb4_revnat_key {
	__u64 sock_cookie;
	__be32 address; // backend
	__be16 port;    // backend
	__u16 pad;
};

struct lb4_revnat {
	__be32 address; // VIP
	__be16 port;    // service port
	__u8 proto;
	__u8 pad;
	__u32 service_id;
};

// A connected socket's reverse translation: the peer it was sent to (the backend, or the proxy when
// redirected) and what the app asked for, in lb4_revnat_conn's slot for its cookie.
struct lb4_conn_revnat {
	__u64 sock_cookie;   // whose record this is: a slot is taken over by a later socket
	__be32 peer_address; // backend, or the proxy's listener (lib/redirect.h)
	__be16 peer_port;
	__u16 pad;
	struct lb4_revnat rev;
	__u32 pad2;
};

#define LB_REVNAT_CONN_SLOTS 262144 // a power of two: slot = cookie & (slots - 1)

// The two maps the agent fills in bulk are preallocated (an insert takes an element from the map's
// own pool: ~4x cheaper than the kernel allocator for a 50k-entry sync). 65536 is only the default
// (Cilium's --bpf-lb-map-max): the loader sets the size before creation (weft-bpf load
// --max-entries; cluster setting lbMapMax), and the memory is fixed at creation (docs/services.md).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
} lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); // backend id
	__type(value, struct lb4_backend);
} lb4_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lb_maglev_key);
	__type(value, struct lb_maglev_chunk);
} lb4_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
} lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct lb4_revnat_key);
	__type(value, struct lb4_revnat);
} lb4_revnat SEC(".maps");

// Connected sockets' records, direct-mapped by socket cookie (cookies are unique and handed out in
// increasing order, so a slot is taken over only after LB_REVNAT_CONN_SLOTS newer cookies). An
// array: the write is a few stores into a preallocated slot, with no lock, no allocation and no
// eviction work on the connect path. A reader checks cookie and peer, so a taken-over slot only
// loses the old socket's record (getpeername then shows the backend), never shows a wrong VIP.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_REVNAT_CONN_SLOTS);
	__type(key, __u32);
	__type(value, struct lb4_conn_revnat);
} lb4_revnat_conn SEC(".maps");

// Records what a socket's peer stands for: in lb4_revnat_conn when `connected` (connect4), else in
// lb4_revnat under (cookie, peer).
static __always_inline void lb4_revnat_record(struct bpf_sock_addr *ctx, int connected, __be32 peer_address,
					      __be16 peer_port, const struct lb4_revnat *rev)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (connected) {
		__u32 slot = (__u32)cookie & (LB_REVNAT_CONN_SLOTS - 1);
		struct lb4_conn_revnat *c = bpf_map_lookup_elem(&lb4_revnat_conn, &slot);

		if (c) {
			c->sock_cookie = cookie;
			c->peer_address = peer_address;
			c->peer_port = peer_port;
			c->rev = *rev;
			return;
		}
	}
	struct lb4_revnat_key rkey = { .sock_cookie = cookie, .address = peer_address, .port = peer_port };
	bpf_map_update_elem(&lb4_revnat, &rkey, rev, BPF_ANY);
}

// ---- hashing: Linux's jhash_3words; src/datapath/maglev.ts flowHash computes the same ----------

static __always_inline __u32 lb_rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

static __always_inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += LB_HASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b;
	c -= lb_rol32(b, 14);
	a ^= c;
	a -= lb_rol32(c, 11);
	b ^= a;
	b -= lb_rol32(a, 25);
	c ^= b;
	c -= lb_rol32(b, 16);
	a ^= c;
	a -= lb_rol32(c, 4);
	b ^= a;
	b -= lb_rol32(a, 14);
	c ^= b;
	c -= lb_rol32(b, 24);
	return c;
}

// The flow as known at the socket: the source is the socket's bound address and port. A socket
// not bound to a port yet (the usual client) has no source port before connect(); its cookie
// stands in, so each such socket hashes on its own.
static __always_inline __u32 lb4_flow_hash(struct bpf_sock_addr *ctx, __u64 sock_cookie, __u8 proto)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 saddr = 0, sport = 0;

	if (sk) {
		saddr = bpf_ntohl(sk->src_ip4);
		sport = sk->src_port & 0xffff;
	}
	if (!sport)
		saddr ^= (__u32)sock_cookie ^ (__u32)(sock_cookie >> 32);
	return lb_jhash_3words(saddr, bpf_ntohl(ctx->user_ip4),
			       (sport << 16) | bpf_ntohs((__u16)ctx->user_port), proto);
}

// ---- selection --------------------------------------------------------------------------------

static __always_inline int lb4_selectable(const struct lb4_backend *be, const struct lb4_service *svc)
{
	if (be->service_id != svc->service_id || (be->flags & LB_BE_TERMINATING))
		return 0;
	return !(svc->flags & LB_SVC_LOCAL) || (be->flags & LB_BE_LOCAL);
}

// The backend chosen for a new flow: its id and where it is.
struct lb4_pick {
	__u32 id;
	__be32 address;
	__be16 port;
	__u8 flags; // LB_BE_*
	__u8 pad;
};

// Slot i of the service, from entry 0 or the entry holding it.
static __always_inline int lb4_pick_random(struct lb4_key *key, const struct lb4_service *svc, struct lb4_pick *out)
{
	const struct lb4_service *entry = svc;
	__u32 i = bpf_get_prandom_u32() % svc->count, j;

	if (i >= LB_SLOTS_PER_ENTRY) {
		key->slot = i / LB_SLOTS_PER_ENTRY;
		entry = bpf_map_lookup_elem(&lb4_services, key);
		key->slot = 0;
		if (!entry)
			return 0;
	}
	j = i & (LB_SLOTS_PER_ENTRY - 1);
	out->id = entry->backend_ids[j];
	out->address = entry->backends[j].address;
	out->port = entry->backends[j].port;
	out->flags = entry->backends[j].flags;
	return out->id != 0 && out->address != 0; // (an empty slot: refused, never sent to 0.0.0.0)
}

static __always_inline __u32 lb4_pick_maglev(const struct lb4_service *svc, __u32 hash)
{
	struct lb_maglev_key mkey = {
		.service_id = svc->service_id,
		.scope = (svc->flags & LB_SVC_LOCAL) ? 1 : 0,
	};
	struct lb_maglev_chunk *chunk;
	__u32 m = svc->maglev_size, idx;

	if (m == 0 || m > LB_MAGLEV_MAX)
		return 0;
	idx = hash % m;
	mkey.chunk = idx / LB_MAGLEV_CHUNK;
	chunk = bpf_map_lookup_elem(&lb4_maglev, &mkey);
	if (!chunk)
		return 0;
	return chunk->backend_ids[idx & (LB_MAGLEV_CHUNK - 1)];
}

// Backend `id` of this service from lb4_backends, if it may take a new flow.
static __always_inline int lb4_pick_id(__u32 id, const struct lb4_service *svc, struct lb4_pick *out)
{
	struct lb4_backend *be = id ? bpf_map_lookup_elem(&lb4_backends, &id) : NULL;

	if (!be || !lb4_selectable(be, svc))
		return 0;
	out->id = id;
	out->address = be->address;
	out->port = be->port;
	out->flags = be->flags;
	return 1;
}

// The client's earlier choice while it is within the timeout and still selectable.
static __always_inline int lb4_pick_affinity(const struct lb_affinity_key *akey, const struct lb4_service *svc, __u64 now,
					     struct lb4_pick *out)
{
	struct lb_affinity *a = bpf_map_lookup_elem(&lb4_affinity, akey);

	if (!a || now - a->last_used_ns > (__u64)svc->affinity_timeout * 1000000000ULL)
		return 0;
	return lb4_pick_id(a->backend_id, svc, out);
}

// A backend for a new flow to `svc` (entry 0 under `key`): the client's affinity, else Maglev's
// entry for `hash` (taken only with LB_SVC_MAGLEV), else one of the slots at random; the affinity
// record is refreshed. 0: none (the caller refuses or drops).
static __always_inline int lb4_pick(struct lb4_key *key, const struct lb4_service *svc, const struct lb_affinity_key *akey,
				    __u32 hash, struct lb4_pick *out)
{
	__u64 now = 0;
	int found = 0;

	if (svc->flags & LB_SVC_AFFINITY) {
		now = bpf_ktime_get_ns();
		found = lb4_pick_affinity(akey, svc, now, out);
	}
	if (!found && (svc->flags & LB_SVC_MAGLEV))
		found = lb4_pick_id(lb4_pick_maglev(svc, hash), svc, out);
	if (!found)
		found = lb4_pick_random(key, svc, out);
	if (found && (svc->flags & LB_SVC_AFFINITY)) {
		struct lb_affinity a = { .last_used_ns = now, .backend_id = out->id };

		bpf_map_update_elem(&lb4_affinity, akey, &a, BPF_ANY);
	}
	return found;
}

// ---- the forward path: connect4 (TCP, connected UDP) and sendmsg4 (unconnected UDP) ------------

// What lb4_translate_ex chose, for the hooks that act after it (lib/redirect.h). `service_id` 0:
// the destination was no service address, nothing was translated.
struct lb4_choice {
	__be32 vip;
	__be16 vport;
	__u16 svc_flags; // the frontend's LB_SVC_* (low 16 bits)
	__u32 service_id;
	__u32 backend_id;
};

// The calling socket's namespace, looked up once per hook run and only when needed: a connect to
// an address that is no service costs the frontend lookup alone (plus lib/redirect.h's check).
struct lb4_caller {
	struct netns_info *ns; // NULL: not a namespace Weft manages
	__u64 netns_cookie;
	__u8 known; // ns and netns_cookie are set
};

static __always_inline struct netns_info *lb4_caller_ns(struct bpf_sock_addr *ctx, struct lb4_caller *c)
{
	if (!c->known) {
		c->netns_cookie = bpf_get_netns_cookie(ctx);
		c->ns = netns_lookup(c->netns_cookie);
		c->known = 1;
	}
	return c->ns;
}

// Returns 1 to let the call go on (translated or untouched), 0 after bpf_set_retval(-ECONNREFUSED).
// `out` tells what was chosen (zeroed first). `connected`: connect4 (the reverse record goes to
// lb4_revnat_conn), else sendmsg4 (lb4_revnat). TCP and UDP only (the caller checks).
static __always_inline int lb4_translate_ex(struct bpf_sock_addr *ctx, struct lb4_caller *caller, int connected,
					    struct lb4_choice *out)
{
	struct lb4_key key = {};
	struct lb4_service *svc;
	struct lb4_pick be = {};
	__u32 hash = 0;
	__u8 proto = ctx->protocol;

	__builtin_memset(out, 0, sizeof(*out));
	key.address = ctx->user_ip4;
	key.dport = (__u16)ctx->user_port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc)
		return 1; // not a service address
	if (!lb4_caller_ns(ctx, caller))
		return 1; // not a namespace Weft manages
	if (svc->count == 0) {
		bpf_set_retval(-LB_ECONNREFUSED);
		return 0;
	}

	struct lb_affinity_key akey = { .netns_cookie = caller->netns_cookie, .service_id = svc->service_id };
	if (svc->flags & LB_SVC_MAGLEV)
		hash = lb4_flow_hash(ctx, bpf_get_socket_cookie(ctx), proto);
	if (!lb4_pick(&key, svc, &akey, hash, &be)) {
		// The agent writes a service's further entries, and the backends affinity and Maglev
		// name, before the entry 0 that counts or flags them: a miss is a bug, not a race.
		bpf_set_retval(-LB_ECONNREFUSED);
		return 0;
	}

	struct lb4_revnat rval = {
		.address = key.address,
		.port = key.dport,
		.proto = proto,
		.service_id = svc->service_id,
	};
	lb4_revnat_record(ctx, connected, be.address, be.port, &rval);

	out->vip = key.address;
	out->vport = key.dport;
	out->svc_flags = (__u16)svc->flags;
	out->service_id = svc->service_id;
	out->backend_id = be.id;
	ctx->user_ip4 = be.address;
	ctx->user_port = (__u32)be.port;
	return 1;
}

// ---- the reverse path: getpeername4 and recvmsg4 show the VIP, not the backend ------------------
// No netns check here: only sockets translated in a managed namespace have records, and they keep
// showing the VIP even if their namespace is unregistered meanwhile. First the connected socket's
// record (for UDP only while the socket is connected: an unconnected socket's datagrams follow its
// sendmsg records), then lb4_revnat (sendmsg4's records, and connections an older version of these
// programs recorded there before an agent upgrade replaced them in place).

#define LB_TCP_ESTABLISHED 1 // BPF_TCP_ESTABLISHED; a connected UDP socket is in this state too

static __always_inline void lb4_reverse(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 slot = (__u32)cookie & (LB_REVNAT_CONN_SLOTS - 1);
	struct lb4_conn_revnat *c;

	if (ctx->protocol == IPPROTO_TCP || ctx->sk->state == LB_TCP_ESTABLISHED) {
		c = bpf_map_lookup_elem(&lb4_revnat_conn, &slot);
		if (c && c->sock_cookie == cookie && c->peer_address == ctx->user_ip4 &&
		    c->peer_port == (__u16)ctx->user_port) {
			ctx->user_ip4 = c->rev.address;
			ctx->user_port = (__u32)c->rev.port;
			return;
		}
	}

	struct lb4_revnat_key rkey = { .sock_cookie = cookie, .address = ctx->user_ip4, .port = (__u16)ctx->user_port };
	struct lb4_revnat *r = bpf_map_lookup_elem(&lb4_revnat, &rkey);

	if (!r)
		return;
	ctx->user_ip4 = r->address;
	ctx->user_port = (__u32)r->port;
}

#endif
