// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Shared basics of every datapath object: kernel types (CO-RE), helpers, and the few constants
// that are macros in uapi headers (so not in BTF). Keep minimal: features live in their own header.
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// tc / tcx verdicts (TC_ACT_OK = TCX_PASS, TC_ACT_SHOT = TCX_DROP; TCX_NEXT lets later programs run).
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TCX_NEXT -1

#define ETH_HLEN 14
#define ETH_P_IP 0x0800

// Reserved identities (as Cilium).
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2
#define IDENTITY_REMOTE_NODE 6

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
