// Identities and prefixes: reserved numbers, the deterministic allocator, CIDR identities in the
// local scope, longest-prefix lookup of an address, and CIDR parsing.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cidrContains, parseCidr } from "../../../src/policy/cidr.ts";
import {
  allocateIdentities,
  type EndpointInput,
  FIRST_CLUSTER_IDENTITY,
  identityForAddress,
  LOCAL_IDENTITY_SCOPE,
  RESERVED_IDENTITIES,
} from "../../../src/policy/identity.ts";

describe("reserved identities", () => {
  const want: [string, number][] = [
    ["host", 1],
    ["world", 2],
    ["unmanaged", 3],
    ["health", 4],
    ["init", 5],
    ["remote-node", 6],
    ["kube-apiserver", 7],
  ];
  for (const [name, n] of want) it(`${name} is ${n}`, () => assert.equal(RESERVED_IDENTITIES[name as keyof typeof RESERVED_IDENTITIES], n));
});

describe("the allocator", () => {
  const eps: EndpointInput[] = [
    { namespace: "default", name: "a-1", labels: { app: "a", "pod-template-hash": "x1" } },
    { namespace: "default", name: "a-2", labels: { app: "a", "pod-template-hash": "x2" } },
    { namespace: "default", name: "b-1", labels: { app: "b" } },
    { namespace: "other", name: "a-1", labels: { app: "a" } },
  ];
  it("pods with the same security labels share an identity", () => {
    const a = allocateIdentities({ clusterName: "c", endpoints: eps });
    assert.equal(a.byEndpoint.get("default/a-1"), a.byEndpoint.get("default/a-2"));
  });
  it("the namespace is part of the identity", () => {
    const a = allocateIdentities({ clusterName: "c", endpoints: eps });
    assert.notEqual(a.byEndpoint.get("default/a-1"), a.byEndpoint.get("other/a-1"));
  });
  it("numbers start at 256 and are deterministic", () => {
    const a = allocateIdentities({ clusterName: "c", endpoints: eps });
    const b = allocateIdentities({ clusterName: "c", endpoints: [...eps].reverse() });
    assert.deepEqual([...a.byEndpoint].sort(), [...b.byEndpoint].sort());
    assert.ok(Math.min(...a.byEndpoint.values()) >= FIRST_CLUSTER_IDENTITY);
  });
  it("previous numbers are kept when new label sets appear", () => {
    const a = allocateIdentities({ clusterName: "c", endpoints: eps });
    const b = allocateIdentities({ clusterName: "c", endpoints: [{ namespace: "default", name: "0", labels: { app: "0first" } }, ...eps], previous: a.table });
    for (const [k, v] of a.byEndpoint) assert.equal(b.byEndpoint.get(k), v, k);
  });
  it("CIDR identities live in the local scope", () => {
    const c = parseCidr("10.0.0.0/8");
    assert.ok(typeof c !== "string");
    const a = allocateIdentities({ clusterName: "c", cidrs: [c] });
    const id = [...a.table.values()].find((i) => i.cidr);
    assert.ok(id && id.id > LOCAL_IDENTITY_SCOPE);
    assert.ok(
      id.labels.some((l) => l.source === "reserved" && l.key === "world"),
      "a CIDR identity is part of the world",
    );
  });
  it("an address takes the longest containing prefix's identity, else world", () => {
    const cs = ["10.0.0.0/8", "10.96.0.0/12"].map((t) => parseCidr(t)).filter((c) => typeof c !== "string");
    const a = allocateIdentities({ clusterName: "c", cidrs: cs });
    const of = (t: string) => a.table.get(identityForAddress(a.table, t) as number)?.cidr?.text ?? "world";
    assert.equal(of("10.96.1.1"), "10.96.0.0/12");
    assert.equal(of("10.1.1.1"), "10.0.0.0/8");
    assert.equal(of("11.1.1.1"), "world");
  });
});

describe("CIDR parsing", () => {
  const ok: [string, string][] = [
    ["10.0.0.0/8", "10.0.0.0/8"],
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["192.0.2.1", "192.0.2.1/32"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["2001:db8::/32", "2001:db8::/32"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1/128"],
    ["::/0", "::/0"],
    ["::ffff:10.0.0.1/128", "::ffff:a00:1/128"],
  ];
  for (const [t, want] of ok) it(`${t} → ${want}`, () => assert.equal((parseCidr(t) as { text: string }).text, want));
  for (const bad of [
    "10.0.0/8",
    "256.0.0.0/8",
    "10.0.0.0/33",
    "10.0.0.0/-1",
    "01.0.0.0/8",
    "2001:db8:::1/64",
    "1:2:3:4:5:6:7:8:9/64",
    "",
    "10.0.0.0/8/8",
    "fe80::1/129",
  ]) {
    it(`"${bad}" is refused`, () => assert.equal(typeof parseCidr(bad), "string"));
  }
  it("containment respects family and prefix length", () => {
    const p = (t: string) => parseCidr(t) as Exclude<ReturnType<typeof parseCidr>, string>;
    assert.ok(cidrContains(p("10.0.0.0/8"), p("10.9.0.0/16")));
    assert.ok(!cidrContains(p("10.9.0.0/16"), p("10.0.0.0/8")));
    assert.ok(!cidrContains(p("::/0"), p("10.0.0.0/8")));
  });
});
