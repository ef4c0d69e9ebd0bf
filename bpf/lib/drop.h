// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Why the datapath dropped a packet. One named enum shared with user space:
// src/datapath/drop-reasons.ts mirrors it (a test parses this file). Numbers are Cilium's where the
// meaning is shared, so Hubble users read the same codes; the comment is the description Hubble shows.
#pragma once

enum weft_drop_reason {
	DROP_NONE = 0,                 // ""
	DROP_INVALID_SIP = 132,        // "Invalid source ip"
	DROP_POLICY = 133,             // "Policy denied"
	DROP_INVALID = 134,            // "Invalid packet"
	DROP_CT_INVALID_HDR = 135,     // "CT: Invalid header"
	DROP_CT_UNKNOWN_PROTO = 137,   // "CT: Unknown L4 protocol"
	DROP_INVALID_IDENTITY = 171,   // "Invalid identity"
	DROP_POLICY_DENY = 181,        // "Policy denied by denylist"
};
