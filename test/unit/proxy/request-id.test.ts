// x-request-id (src/proxy/request-id.ts) and X-Forwarded-For/-Proto (src/proxy/forwarded.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ForwardedPolicy } from "../../../src/proxy/forwarded.ts";
import { newRequestId, requestIdFor, uuidV4 } from "../../../src/proxy/request-id.ts";

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("x-request-id", () => {
  it("uuidV4 sets version and variant bits over the given bytes", () => {
    assert.equal(uuidV4(new Uint8Array(16).fill(0xff)), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    assert.equal(uuidV4(new Uint8Array(16)), "00000000-0000-4000-8000-000000000000");
    assert.throws(() => uuidV4(new Uint8Array(8)), RangeError);
  });
  it("generated ids are UUID v4 and distinct", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newRequestId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, UUID4);
  });
  const gen = () => "generated";
  const cases: [string | undefined, boolean, string, boolean][] = [
    ["abc-123", true, "abc-123", false],
    ["abc-123", false, "generated", true],
    [undefined, true, "generated", true],
    ["", true, "generated", true],
    ["has space", true, "generated", true],
    ["x".repeat(201), true, "generated", true],
    ["caf\xe9", true, "generated", true],
  ];
  for (const [existing, trusted, id, generated] of cases)
    it(`${JSON.stringify(existing)?.slice(0, 20)} from a ${trusted ? "trusted" : "untrusted"} peer → ${generated ? "new id" : "kept"}`, () =>
      assert.deepEqual(requestIdFor(existing, trusted, gen), { id, generated }));
});

describe("X-Forwarded-For / -Proto", () => {
  const none = new ForwardedPolicy();
  const ingress = new ForwardedPolicy({ trustedCidrs: ["10.0.9.0/24", "fd00::/8"] });
  const cases: [string, ForwardedPolicy, string, string | undefined, string | undefined, string, string][] = [
    ["untrusted peer without headers", none, "10.0.1.5", undefined, undefined, "10.0.1.5", "http"],
    ["untrusted peer: spoofed XFF and proto dropped", none, "10.0.1.5", "1.2.3.4", "https", "10.0.1.5", "http"],
    ["trusted peer: XFF appended, proto kept", ingress, "10.0.9.7", "203.0.113.9", "https", "203.0.113.9, 10.0.9.7", "https"],
    ["trusted peer without headers", ingress, "10.0.9.7", undefined, undefined, "10.0.9.7", "http"],
    ["peer outside the trusted CIDRs", ingress, "10.0.8.7", "203.0.113.9", "https", "10.0.8.7", "http"],
    ["IPv4-mapped IPv6 peer", ingress, "::ffff:10.0.9.7", "203.0.113.9", undefined, "203.0.113.9, 10.0.9.7", "http"],
    ["IPv6 trusted peer", ingress, "fd00::1", "2001:db8::5", "https", "2001:db8::5, fd00::1", "https"],
  ];
  for (const [name, pol, peer, xff, xfp, wantFor, wantProto] of cases)
    it(name, () => {
      const h = pol.headers(peer, xff, xfp, "http");
      assert.deepEqual([h.forwardedFor, h.forwardedProto], [wantFor, wantProto]);
    });
  it("client address: rightmost untrusted hop when the peer is trusted, else the peer", () => {
    assert.equal(ingress.clientAddress("10.0.9.7", "198.51.100.1, 203.0.113.9, 10.0.9.3"), "203.0.113.9");
    assert.equal(none.clientAddress("10.0.1.5", "198.51.100.1"), "10.0.1.5");
    assert.equal(ingress.clientAddress("10.0.9.7", "10.0.9.1"), "10.0.9.1");
  });
  it("bad trusted CIDR is refused naming it", () =>
    assert.throws(() => new ForwardedPolicy({ trustedCidrs: ["10.0.0.0/33"] }), /forwarded\.trustedCidrs\[0\]/));
});
