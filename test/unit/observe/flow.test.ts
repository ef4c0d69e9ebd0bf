// Datapath events → Hubble-shaped flows, and the lazy event decoder, on encoded records.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeEvent, EventType, Verdict } from "../../../src/datapath/events.ts";
import { weftEvent } from "../../../src/datapath/maps/events.ts";
import { type FlowContext, flowFromEvent, tcpFlags } from "../../../src/observe/flow.ts";

function record(over: Partial<Parameters<typeof weftEvent.encode>[0]> = {}): Buffer {
  return weftEvent.encode({
    time_ns: 5_000_000_000n,
    type: EventType.policyVerdict,
    verdict: Verdict.dropped,
    direction: 0,
    proto: 6,
    drop_reason: 133,
    match: 0,
    ct_state: 0,
    src_identity: 2000,
    dst_identity: 1000,
    saddr: "10.200.1.20",
    daddr: "10.200.1.10",
    sport: 40000,
    dport: 8081,
    icmp_type: 0,
    icmp_code: 0,
    tcp_flags: 0x02,
    flags: 0,
    ifindex: 7,
    cookie: 3,
    endpoint_id: 1,
    proxy_port: 0,
    pkt_len: 74,
    obs_point: 0,
    pad: Buffer.alloc(7),
    ...over,
  });
}

const ctx: FlowContext = {
  nodeName: "node-1",
  timeOf: (ns) => new Date(Number(ns / 1_000_000n)),
  endpointOf: (identity, ip) => ({ identity, pod_name: ip === "10.200.1.10" ? "server" : "client", namespace: "default", labels: [`k8s:id=${identity}`] }),
};

describe("datapath events", () => {
  it("decodes every field of a record lazily from the raw buffer", () => {
    const ev = decodeEvent(record());
    assert.equal(ev.saddr, "10.200.1.20");
    assert.equal(ev.dport, 8081);
    assert.equal(ev.dropReasonDesc, "Policy denied");
    assert.equal(ev.direction, "ingress");
    assert.equal(ev.pktLen, 74);
    ev.raw.writeUInt16BE(9999, weftEvent.offsets.dport as number);
    assert.equal(ev.dport, 9999, "reads the buffer on access, not a copy taken at decode time");
  });

  it("refuses a short record", () => {
    assert.throws(() => decodeEvent(Buffer.alloc(10)), RangeError);
  });
});

describe("flows from datapath events", () => {
  const cases: { name: string; over: Partial<Parameters<typeof weftEvent.encode>[0]>; check: (f: ReturnType<typeof flowFromEvent>) => void }[] = [
    {
      name: "a policy drop: DROPPED, reason 133 POLICY_DENIED, TCP with flags, INGRESS",
      over: {},
      check: (f) => {
        assert.equal(f.verdict, "DROPPED");
        assert.equal(f.drop_reason, 133);
        assert.equal(f.drop_reason_desc, "POLICY_DENIED");
        assert.deepEqual(f.l4, { TCP: { source_port: 40000, destination_port: 8081, flags: { SYN: true } } });
        assert.equal(f.traffic_direction, "INGRESS");
        assert.equal(f.Type, "L3_L4");
        assert.equal(f.node_name, "node-1");
        assert.deepEqual(f.IP, { source: "10.200.1.20", destination: "10.200.1.10", ipVersion: "IPv4" });
        assert.equal(f.destination.pod_name, "server");
        assert.equal(f.source.identity, 2000);
        assert.equal(f.time, "1970-01-01T00:00:05.000Z");
      },
    },
    {
      name: "a denylist drop: reason 181 POLICY_DENY",
      over: { drop_reason: 181 },
      check: (f) => assert.equal(f.drop_reason_desc, "POLICY_DENY"),
    },
    {
      name: "an allowed UDP flow: FORWARDED, no drop reason, EGRESS",
      over: { verdict: Verdict.forwarded, drop_reason: 0, proto: 17, direction: 1, tcp_flags: 0 },
      check: (f) => {
        assert.equal(f.verdict, "FORWARDED");
        assert.equal(f.drop_reason, undefined);
        assert.deepEqual(f.l4, { UDP: { source_port: 40000, destination_port: 8081 } });
        assert.equal(f.traffic_direction, "EGRESS");
      },
    },
    {
      name: "an audited miss: AUDIT keeps the would-be reason",
      over: { verdict: Verdict.audit },
      check: (f) => {
        assert.equal(f.verdict, "AUDIT");
        assert.equal(f.drop_reason, 133);
      },
    },
    {
      name: "ICMP: type and code, no ports",
      over: { proto: 1, sport: 0, dport: 0, icmp_type: 8, icmp_code: 0 },
      check: (f) => assert.deepEqual(f.l4, { ICMPv4: { type: 8, code: 0 } }),
    },
    {
      name: "a conntrack reply trace: FORWARDED, is_reply",
      over: { type: EventType.trace, verdict: Verdict.forwarded, drop_reason: 0, ct_state: 2 },
      check: (f) => {
        assert.equal(f.is_reply, true);
        assert.equal(f.verdict, "FORWARDED");
      },
    },
  ];
  for (const c of cases) it(c.name, () => c.check(flowFromEvent(decodeEvent(record(c.over)), ctx)));

  it("TCP flag bits map to Hubble's names", () => {
    assert.deepEqual(tcpFlags(0x12), { SYN: true, ACK: true });
    assert.deepEqual(tcpFlags(0x05), { FIN: true, RST: true });
  });
});
