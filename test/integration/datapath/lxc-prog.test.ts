// bpf/lxc.c on crafted packets (BPF_PROG_TEST_RUN): identity-based L3/L4 policy toward a pod
// (lxc_to_endpoint) and from it (lxc_from_endpoint), conntrack, tunnel identity, and the event of
// every verdict, with map entries written through the mirrors. Cases run in order (conntrack
// cases rely on the requests before them); each uses its own ports.
// Run: node --import tsx --test test/integration/datapath/lxc-prog.test.ts

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DropReason } from "../../../src/datapath/drop-reasons.ts";
import { CtState, type DatapathEvent, decodeEvent, EVENT_FLAG, EventType, PolicyMatch, Verdict } from "../../../src/datapath/events.ts";
import { loadObject, objectPath, openRingBuffer, pins, programOf, type RingBufferReader, runProgram, writeMaps } from "../../../src/datapath/loader.ts";
import { ENDPOINTS_MAP, encodeEndpointKey, encodeEndpointValue } from "../../../src/datapath/maps/endpoints.ts";
import { EVENTS_LOST_MAP, EVENTS_MAP } from "../../../src/datapath/maps/events.ts";
import { encodeIpcacheKey, encodeIpcacheValue, IPCACHE_MAP } from "../../../src/datapath/maps/ipcache.ts";
import { ensureSubjectMap, policyWrites } from "../../../src/datapath/maps/policy.ts";
import type { PolicyEntry } from "../../../src/policy/key.ts";
import { icmp, type L3, PROTO, skbCtx, TCP, tcp, truncated, udp } from "../../harness/packets.ts";
import { freshSandbox, type Sandbox } from "../../harness/sandbox.ts";

const OK = 0; // TC_ACT_OK
const SHOT = 2; // TC_ACT_SHOT

// Identities and addresses.
const POD = { ip: "10.200.1.10", id: 1000 }; // enforced both ways
const OPEN = { ip: "10.200.1.11", id: 1001 }; // no default deny
const AUDITED = { ip: "10.200.1.12", id: 1002 }; // ingress enforced in audit mode
const PINNED = { ip: "10.200.1.13", id: 1003 }; // bound to an ifindex the test never sends from
const PEER = { ip: "10.200.1.20", id: 2000 };
const REMOTE = { ip: "10.200.2.30", id: 3000 };
const L3PEER = { ip: "10.200.2.40", id: 4000 };
const WORLD = "8.8.8.8";

function entry(
  identity: number,
  direction: "ingress" | "egress",
  protocol: number,
  dport: number,
  prefixlen: number,
  v: Partial<PolicyEntry["value"]> = {},
): PolicyEntry {
  return {
    key: { identity, direction, protocol, dport, prefixlen },
    value: { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 0, ...v },
    origins: [],
  };
}

const POD_POLICY: PolicyEntry[] = [
  entry(PEER.id, "ingress", PROTO.TCP, 80, 64, { cookie: 1 }),
  entry(PEER.id, "ingress", PROTO.TCP, 443, 64, { deny: true, cookie: 2 }),
  entry(PEER.id, "ingress", PROTO.TCP, 0, 48, { cookie: 3 }), // every TCP port from PEER
  entry(0, "ingress", PROTO.TCP, 22, 64, { deny: true, cookie: 4 }), // nobody on 22
  entry(0, "ingress", PROTO.TCP, 23, 64, { deny: true, audit: true, cookie: 5 }),
  entry(0, "ingress", PROTO.TCP, 9000, 64, { redirect: true, proxyPort: 15001, cookie: 6 }),
  entry(REMOTE.id, "ingress", PROTO.TCP, 8000, 62, { cookie: 7 }), // 8000-8003
  entry(0, "ingress", PROTO.UDP, 53, 64, { cookie: 8 }),
  entry(PEER.id, "ingress", PROTO.ICMP, 8, 64, { cookie: 9 }), // echo request
  entry(L3PEER.id, "ingress", 0, 0, 40, { cookie: 10 }), // everything from L3PEER
  entry(REMOTE.id, "egress", PROTO.UDP, 5353, 64, { cookie: 11 }),
  entry(REMOTE.id, "egress", PROTO.ICMP, 8, 64, { cookie: 12 }),
  entry(PEER.id, "egress", PROTO.TCP, 7000, 64, { cookie: 13 }),
];

interface Want {
  ret: number;
  /** The event the verdict must produce; null = none expected (a tracked flow's later packet). */
  event: { type: number; verdict: number; ct?: number; reason?: number; match?: number; cookie?: number; flags?: number; src?: number; dst?: number } | null;
}

interface Case {
  name: string;
  prog: "to" | "from";
  pkt: Buffer;
  mark?: number;
  want: Want;
}

const l3 = (src: string, dst: string): L3 => ({ src, dst });
const to = (src: string) => l3(src, POD.ip);
const from = (dst: string) => l3(POD.ip, dst);
const allowed = (match: number, cookie?: number, extra: Partial<NonNullable<Want["event"]>> = {}): Want => ({
  ret: OK,
  event: { type: EventType.policyVerdict, verdict: Verdict.forwarded, match, ...(cookie === undefined ? {} : { cookie }), ...extra },
});
const denied = (reason: number, extra: Partial<NonNullable<Want["event"]>> = {}): Want => ({
  ret: SHOT,
  event: { type: EventType.policyVerdict, verdict: Verdict.dropped, reason, ...extra },
});
const dropped = (reason: number): Want => ({ ret: SHOT, event: { type: EventType.drop, verdict: Verdict.dropped, reason } });
const tunnelMark = (id: number) => (((id & 0xffff) << 16) | ((id >>> 16) & 0xff) | 0x0f00) >>> 0;

const CASES: Case[] = [
  // Ingress (toward the pod), by the source's identity from the ipcache.
  {
    name: "TCP 80 from PEER: allowed by its L3/L4 entry",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40001, 80),
    want: allowed(PolicyMatch.l3L4, 1, { src: PEER.id, dst: POD.id }),
  },
  {
    name: "TCP 443 from PEER: its deny entry drops (181) although TCP/* allows",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40002, 443),
    want: denied(DropReason.POLICY_DENY, { cookie: 2 }),
  },
  {
    name: "TCP 81 from PEER: allowed by the every-port entry (prefix 48)",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40003, 81),
    want: allowed(PolicyMatch.l3Proto, 3),
  },
  {
    name: "TCP 22 from PEER: identity 0's deny beats PEER's allow",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40004, 22),
    want: denied(DropReason.POLICY_DENY, { cookie: 4 }),
  },
  { name: "TCP 22 from REMOTE: identity 0's deny applies to any peer", prog: "to", pkt: tcp(to(REMOTE.ip), 40005, 22), want: denied(DropReason.POLICY_DENY) },
  {
    name: "TCP 23 from PEER: an audited deny passes with an AUDIT verdict (181)",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40006, 23),
    want: { ret: OK, event: { type: EventType.policyVerdict, verdict: Verdict.audit, reason: DropReason.POLICY_DENY, cookie: 5 } },
  },
  {
    name: "TCP 9000 from PEER: identity 0's /64 beats PEER's /48, redirect carried",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40007, 9000),
    want: allowed(PolicyMatch.l4Only, 6, { flags: EVENT_FLAG.redirect }),
  },
  { name: "TCP 8000 from REMOTE: first port of the 8000-8003 prefix", prog: "to", pkt: tcp(to(REMOTE.ip), 40008, 8000), want: allowed(PolicyMatch.l3L4, 7) },
  { name: "TCP 8003 from REMOTE: last port of the prefix", prog: "to", pkt: tcp(to(REMOTE.ip), 40009, 8003), want: allowed(PolicyMatch.l3L4, 7) },
  { name: "TCP 8004 from REMOTE: just past the prefix, default deny (133)", prog: "to", pkt: tcp(to(REMOTE.ip), 40010, 8004), want: denied(DropReason.POLICY) },
  { name: "TCP 7999 from REMOTE: just before the prefix, default deny", prog: "to", pkt: tcp(to(REMOTE.ip), 40011, 7999), want: denied(DropReason.POLICY) },
  { name: "UDP 53 from REMOTE: identity 0 wildcard allows", prog: "to", pkt: udp(to(REMOTE.ip), 40012, 53), want: allowed(PolicyMatch.l4Only, 8) },
  {
    name: "UDP 53 from the world (no ipcache entry → identity 2): wildcard allows",
    prog: "to",
    pkt: udp(to(WORLD), 40013, 53),
    want: allowed(PolicyMatch.l4Only, 8, { src: 2 }),
  },
  { name: "UDP 54 from REMOTE: default deny", prog: "to", pkt: udp(to(REMOTE.ip), 40014, 54), want: denied(DropReason.POLICY) },
  { name: "ICMP echo request from PEER: type 8 allowed", prog: "to", pkt: icmp(to(PEER.ip), 8, 0, 0x101), want: allowed(PolicyMatch.l3L4, 9) },
  { name: "ICMP timestamp (type 13) from PEER: another type, denied", prog: "to", pkt: icmp(to(PEER.ip), 13, 0, 0x102), want: denied(DropReason.POLICY) },
  { name: "ICMP echo request from REMOTE: no entry for REMOTE, denied", prog: "to", pkt: icmp(to(REMOTE.ip), 8, 0, 0x103), want: denied(DropReason.POLICY) },
  {
    name: "UDP 9 from L3PEER: the every-protocol entry (prefix 40) allows",
    prog: "to",
    pkt: udp(to(L3PEER.ip), 40015, 9),
    want: allowed(PolicyMatch.l3Only, 10),
  },
  {
    name: "ICMP type 13 from L3PEER: the every-protocol entry allows",
    prog: "to",
    pkt: icmp(to(L3PEER.ip), 13, 0, 0x104),
    want: allowed(PolicyMatch.l3Only, 10),
  },
  { name: "TCP 80 to OPEN (no default deny, no entries): passes", prog: "to", pkt: tcp(l3(REMOTE.ip, OPEN.ip), 40016, 80), want: allowed(PolicyMatch.none) },
  {
    name: "TCP 80 to AUDITED (audit mode, miss): passes with AUDIT (133)",
    prog: "to",
    pkt: tcp(l3(REMOTE.ip, AUDITED.ip), 40017, 80),
    want: { ret: OK, event: { type: EventType.policyVerdict, verdict: Verdict.audit, reason: DropReason.POLICY } },
  },
  {
    name: "TCP 80 to an unregistered address: passes untouched, no event",
    prog: "to",
    pkt: tcp(l3(REMOTE.ip, "10.200.1.99"), 40018, 80),
    want: { ret: OK, event: null },
  },
  // Identity from the tunnel (skb->mark set by vxlan_from_overlay).
  {
    name: "TCP 80 from an unknown remote IP carrying PEER's identity in the mark: allowed",
    prog: "to",
    pkt: tcp(to("10.200.3.5"), 40019, 80),
    mark: tunnelMark(PEER.id),
    want: allowed(PolicyMatch.l3L4, 1, { src: PEER.id, flags: EVENT_FLAG.identityFromTunnel }),
  },
  {
    name: "TCP 80 from the same IP without the mark: world, denied",
    prog: "to",
    pkt: tcp(to("10.200.3.5"), 40020, 80),
    want: denied(DropReason.POLICY, { src: 2 }),
  },
  {
    name: "TCP 80 with a 24-bit identity in the mark: decoded whole (denied, no entry)",
    prog: "to",
    pkt: tcp(to("10.200.3.5"), 40021, 80),
    mark: tunnelMark(0x123456),
    want: denied(DropReason.POLICY, { src: 0x123456 }),
  },
  // Egress (from the pod).
  {
    name: "UDP 5353 to REMOTE: egress entry allows",
    prog: "from",
    pkt: udp(from(REMOTE.ip), 40030, 5353),
    want: allowed(PolicyMatch.l3L4, 11, { src: POD.id, dst: REMOTE.id }),
  },
  { name: "UDP 5354 to REMOTE: egress default deny (133)", prog: "from", pkt: udp(from(REMOTE.ip), 40031, 5354), want: denied(DropReason.POLICY) },
  { name: "ICMP echo to REMOTE: egress type 8 allowed", prog: "from", pkt: icmp(from(REMOTE.ip), 8, 0, 0x201), want: allowed(PolicyMatch.l3L4, 12) },
  { name: "ICMP echo to the world: denied", prog: "from", pkt: icmp(from(WORLD), 8, 0, 0x202), want: denied(DropReason.POLICY, { dst: 2 }) },
  {
    name: "from an address that is no local pod: spoofed source dropped (132)",
    prog: "from",
    pkt: udp(l3("10.200.1.77", REMOTE.ip), 40032, 5353),
    want: dropped(DropReason.INVALID_SIP),
  },
  {
    name: "from PINNED but not from its veth: dropped (132)",
    prog: "from",
    pkt: udp(l3(PINNED.ip, REMOTE.ip), 40033, 5353),
    want: dropped(DropReason.INVALID_SIP),
  },
  {
    name: "a truncated TCP header toward the pod: dropped (135)",
    prog: "to",
    pkt: truncated(to(PEER.ip), PROTO.TCP, 8),
    want: dropped(DropReason.CT_INVALID_HDR),
  },
  // Conntrack: replies and later packets pass without a rule for their direction.
  {
    name: "reply to the allowed UDP 5353 flow: passes ingress with no ingress rule",
    prog: "to",
    pkt: udp(l3(REMOTE.ip, POD.ip), 5353, 40030),
    want: { ret: OK, event: { type: EventType.trace, verdict: Verdict.forwarded } },
  },
  {
    name: "UDP from REMOTE port 5353 to another pod port: not a reply, denied",
    prog: "to",
    pkt: udp(l3(REMOTE.ip, POD.ip), 5353, 40035),
    want: denied(DropReason.POLICY),
  },
  {
    name: "echo reply to the allowed egress echo: passes",
    prog: "to",
    pkt: icmp(l3(REMOTE.ip, POD.ip), 0, 0, 0x201),
    want: { ret: OK, event: { type: EventType.trace, verdict: Verdict.forwarded } },
  },
  { name: "echo reply with another id: not a reply, denied", prog: "to", pkt: icmp(l3(REMOTE.ip, POD.ip), 0, 0, 0x299), want: denied(DropReason.POLICY) },
  {
    name: "SYN-ACK for the allowed TCP 80 flow: passes egress with no egress rule",
    prog: "from",
    pkt: tcp(from(PEER.ip), 80, 40001, TCP.SYN | TCP.ACK),
    want: { ret: OK, event: { type: EventType.trace, verdict: Verdict.forwarded } },
  },
  { name: "ACK of the same flow toward the pod: established, no event", prog: "to", pkt: tcp(to(PEER.ip), 40001, 80, TCP.ACK), want: { ret: OK, event: null } },
  {
    name: "reply to the denied TCP 443 attempt: no flow, egress denied",
    prog: "from",
    pkt: tcp(from(PEER.ip), 443, 40002, TCP.SYN | TCP.ACK),
    want: denied(DropReason.POLICY),
  },
  {
    name: "echo reply to the allowed ingress echo: passes egress",
    prog: "from",
    pkt: icmp(from(PEER.ip), 0, 0, 0x101),
    want: { ret: OK, event: { type: EventType.trace, verdict: Verdict.forwarded } },
  },
  {
    name: "RST of the TCP 80 flow: passes, the flow is closing (trace)",
    prog: "to",
    pkt: tcp(to(PEER.ip), 40001, 80, TCP.RST | TCP.ACK),
    want: { ret: OK, event: { type: EventType.trace, verdict: Verdict.forwarded, ct: CtState.established } },
  },
];

function tupleOf(pkt: Buffer): { saddr: string; daddr: string; proto: number; sport: number; dport: number } {
  const ip = 14;
  const proto = pkt[ip + 9] as number;
  const l4 = ip + 20;
  return {
    saddr: [...pkt.subarray(ip + 12, ip + 16)].join("."),
    daddr: [...pkt.subarray(ip + 16, ip + 20)].join("."),
    proto,
    sport: proto === PROTO.ICMP || pkt.length < l4 + 4 ? 0 : pkt.readUInt16BE(l4),
    dport: proto === PROTO.ICMP || pkt.length < l4 + 4 ? 0 : pkt.readUInt16BE(l4 + 2),
  };
}

describe("lxc programs on crafted packets", () => {
  let sb: Sandbox;
  let ring: RingBufferReader;
  const events: DatapathEvent[] = [];
  let reading: Promise<void>;
  let progTo: string;
  let progFrom: string;

  before(async () => {
    sb = await freshSandbox("lxcprog");
    const loaded = await loadObject(objectPath("lxc"), sb.pinRoot);
    progTo = programOf(loaded, "lxc_to_endpoint").pin;
    progFrom = programOf(loaded, "lxc_from_endpoint").pin;
    const root = sb.pinRoot;
    const ep = (p: { ip: string; id: number }, endpointId: number, o: { enforce: boolean; audit?: boolean; ifindex?: number }) => ({
      op: "update" as const,
      map: pins.map(root, ENDPOINTS_MAP),
      key: encodeEndpointKey(p.ip),
      value: encodeEndpointValue({
        ip: p.ip,
        identity: p.id,
        endpointId,
        enforceIngress: o.enforce,
        enforceEgress: o.enforce,
        auditIngress: o.audit ?? false,
        ifindex: o.ifindex ?? 0,
      }),
    });
    const ipc = (cidr: string, identity: number) => ({
      op: "update" as const,
      map: pins.map(root, IPCACHE_MAP),
      key: encodeIpcacheKey(cidr),
      value: encodeIpcacheValue({ cidr, identity }),
    });
    await ensureSubjectMap(root, POD.id);
    await writeMaps([
      ep(POD, 10, { enforce: true }),
      ep(OPEN, 11, { enforce: false }),
      ep(AUDITED, 12, { enforce: true, audit: true }),
      ep(PINNED, 13, { enforce: true, ifindex: 999_999 }),
      ipc(`${POD.ip}/32`, POD.id),
      ipc(`${PEER.ip}/32`, PEER.id),
      ipc(`${REMOTE.ip}/32`, REMOTE.id),
      ipc(`${L3PEER.ip}/32`, L3PEER.id),
      ...policyWrites(root, POD.id, POD_POLICY),
    ]);
    ring = await openRingBuffer(pins.map(root, EVENTS_MAP), { lostMap: pins.map(root, EVENTS_LOST_MAP) });
    reading = (async () => {
      for await (const batch of ring) for (const r of batch) events.push(decodeEvent(Buffer.from(r)));
    })();
  });

  after(async () => {
    await ring?.close();
    await reading?.catch(() => undefined);
    await sb?.dispose();
  });

  async function eventFor(c: Case, since: number): Promise<DatapathEvent | undefined> {
    const t = tupleOf(c.pkt);
    const matches = (e: DatapathEvent) => e.saddr === t.saddr && e.daddr === t.daddr && e.proto === t.proto && e.sport === t.sport && e.dport === t.dport;
    const deadline = Date.now() + (c.want.event ? 3_000 : 300);
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      const e = events.slice(since).find(matches);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  it(`has at least 25 cases (${CASES.length})`, () => assert.ok(CASES.length >= 25));

  for (const c of CASES) {
    it(c.name, async () => {
      const since = events.length;
      const r = await runProgram(c.prog === "to" ? progTo : progFrom, { data: c.pkt, ctx: skbCtx({ mark: c.mark ?? 0 }) });
      assert.equal(r.retval, c.want.ret, `verdict ${r.retval} (0 = TC_ACT_OK, 2 = TC_ACT_SHOT)`);
      const ev = await eventFor(c, since);
      if (c.want.event === null) {
        assert.equal(ev, undefined, `no event expected, got ${JSON.stringify(ev?.toJSON())}`);
        return;
      }
      assert.ok(ev, "an event for the verdict");
      const w = c.want.event;
      const got = ev.toJSON();
      assert.equal(ev.type, w.type, `event type in ${JSON.stringify(got)}`);
      assert.equal(ev.verdict, w.verdict, `verdict in ${JSON.stringify(got)}`);
      assert.equal(ev.dropReason, w.reason ?? 0, `drop reason in ${JSON.stringify(got)}`);
      if (w.match !== undefined) assert.equal(ev.match, w.match, `match in ${JSON.stringify(got)}`);
      if (w.cookie !== undefined) assert.equal(ev.cookie, w.cookie, `cookie in ${JSON.stringify(got)}`);
      if (w.flags !== undefined) assert.equal(ev.flags, w.flags, `flags in ${JSON.stringify(got)}`);
      if (w.src !== undefined) assert.equal(ev.srcIdentity, w.src, `source identity in ${JSON.stringify(got)}`);
      if (w.dst !== undefined) assert.equal(ev.dstIdentity, w.dst, `destination identity in ${JSON.stringify(got)}`);
      if (ev.type === EventType.trace) assert.equal(ev.ctState, w.ct ?? CtState.reply, "conntrack state");
    });
  }

  it("lost no events", () => assert.equal(ring.lost, 0));
});
