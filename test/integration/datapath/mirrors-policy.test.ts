// The policy datapath's TypeScript mirrors against the C: every struct's size and field offsets
// against the BTF of build/bpf/lxc.o, the policy mirror's bytes against src/policy/key.ts, and the
// drop-reason enum against bpf/lib/drop.h.
// Run: node --import tsx --test test/integration/datapath/mirrors-policy.test.ts

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { DROP_REASON_DESC, DropReason } from "../../../src/datapath/drop-reasons.ts";
import { objectPath } from "../../../src/datapath/loader.ts";
import { type BtfStruct, btfStructs } from "../../../src/datapath/maps/btf.ts";
import { ctKey, ctValue } from "../../../src/datapath/maps/conntrack.ts";
import { endpointKey, endpointValue } from "../../../src/datapath/maps/endpoints.ts";
import { weftEvent } from "../../../src/datapath/maps/events.ts";
import { ipcacheKey, ipcacheValue } from "../../../src/datapath/maps/ipcache.ts";
import { encodePolicyKey, encodePolicyValue, POLICY_INNER_MAX, policyKey, policyValue } from "../../../src/datapath/maps/policy.ts";
import type { StructMirror } from "../../../src/datapath/maps/struct.ts";
import { encodeKey, encodeValue, type PolicyKey, type PolicyValue } from "../../../src/policy/key.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

describe("policy datapath mirrors", () => {
  let btf: Map<string, BtfStruct>;
  before(() => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    btf = btfStructs(objectPath("lxc"));
  });

  const mirrors: StructMirror<unknown>[] = [
    ipcacheKey,
    ipcacheValue,
    endpointKey,
    endpointValue,
    policyKey,
    policyValue,
    ctKey,
    ctValue,
    weftEvent,
  ] as StructMirror<unknown>[];
  for (const m of mirrors) {
    it(`${m.cName}: size and every field offset equal the BTF of lxc.o`, () => {
      const s = btf.get(m.cName);
      assert.ok(s, `struct ${m.cName} is in lxc.o's BTF`);
      assert.equal(m.size, s.size, `sizeof(struct ${m.cName})`);
      assert.deepEqual(m.offsets, s.members, `offsets of struct ${m.cName}`);
    });
  }

  const keys: PolicyKey[] = [
    { identity: 0, direction: "ingress", protocol: 0, dport: 0, prefixlen: 40 },
    { identity: 12345, direction: "egress", protocol: 6, dport: 0, prefixlen: 48 },
    { identity: 0xfffffe, direction: "ingress", protocol: 17, dport: 53, prefixlen: 64 },
    { identity: 2, direction: "egress", protocol: 6, dport: 8080, prefixlen: 60 },
    { identity: 0x01000001, direction: "ingress", protocol: 1, dport: 8, prefixlen: 64 },
  ];
  const values: PolicyValue[] = [
    { deny: false, redirect: false, audit: false, proxyPort: 0, cookie: 0 },
    { deny: true, redirect: false, audit: true, proxyPort: 0, cookie: 7 },
    { deny: false, redirect: true, audit: false, proxyPort: 15001, cookie: 0xdeadbeef },
  ];
  for (const k of keys) {
    it(`policy key ${JSON.stringify(k)}: the mirror's bytes are key.ts encodeKey's`, () => {
      assert.deepEqual(encodePolicyKey(k), Buffer.from(encodeKey(k)));
    });
  }
  for (const v of values) {
    it(`policy value ${JSON.stringify(v)}: the mirror's bytes are key.ts encodeValue's`, () => {
      assert.deepEqual(encodePolicyValue(v), Buffer.from(encodeValue(v)));
    });
  }

  it("POLICY_INNER_MAX equals bpf/lib/policy.h (inner maps must match the template)", () => {
    const m = /#define POLICY_INNER_MAX (\d+)/.exec(readFileSync(`${REPO}bpf/lib/policy.h`, "utf8"));
    assert.equal(Number(m?.[1]), POLICY_INNER_MAX);
  });

  it("drop reasons: names, numbers and descriptions equal enum weft_drop_reason in drop.h", () => {
    const src = readFileSync(`${REPO}bpf/lib/drop.h`, "utf8");
    const body = /enum weft_drop_reason \{([\s\S]*?)\};/.exec(src)?.[1] ?? "";
    const parsed = [...body.matchAll(/DROP_([A-Z0-9_]+)\s*=\s*(\d+),\s*\/\/\s*"([^"]*)"/g)].map((m) => ({ name: m[1], code: Number(m[2]), desc: m[3] }));
    assert.ok(parsed.length >= 8, "drop.h parsed");
    assert.deepEqual(Object.fromEntries(parsed.map((p) => [p.name, p.code])), DropReason);
    assert.deepEqual(Object.fromEntries(parsed.map((p) => [p.code, p.desc])), DROP_REASON_DESC);
    assert.equal(DropReason.POLICY, 133);
    assert.equal(DropReason.POLICY_DENY, 181);
  });
});
