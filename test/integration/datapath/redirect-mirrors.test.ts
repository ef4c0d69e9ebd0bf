// The proxy maps' mirrors (src/datapath/maps/redirect.ts) against the BTF of sock.o and lxc.o,
// the encoders on tables of cases, and the policy-routing commands of redirect-net.ts.
// Run: node --import tsx --test test/integration/datapath/redirect-mirrors.test.ts

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { objectPath } from "../../../src/datapath/loader.ts";
import { type BtfStruct, btfStructs } from "../../../src/datapath/maps/btf.ts";
import {
  cgroupLevel,
  decodeOrigin,
  decodeProxyConfig,
  encodeOrigin,
  encodeOriginKey,
  encodePortKey,
  encodePortValue,
  encodeProxyConfig,
  PROXY_MIRRORS,
  type ProxyOrigin,
} from "../../../src/datapath/maps/redirect.ts";
import { PROXY_ROUTE_TABLE, proxyRoutingCommands, proxyRoutingRemoval } from "../../../src/datapath/redirect-net.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

describe("proxy map mirrors match the BTF of sock.o and lxc.o", () => {
  const btf = new Map<string, Map<string, BtfStruct>>();
  before(() => {
    execFileSync("sh", [`${REPO}scripts/build-bpf.sh`], { stdio: "ignore" });
    for (const o of ["sock", "lxc"]) btf.set(o, btfStructs(objectPath(o)));
  });

  for (const object of ["sock", "lxc"]) {
    for (const mirror of PROXY_MIRRORS) {
      it(`${object}.o: struct ${mirror.cName}: same size and member offsets`, () => {
        const s = btf.get(object)?.get(mirror.cName);
        assert.ok(s, `struct ${mirror.cName} is in ${object}.o's BTF`);
        assert.equal(mirror.size, s.size, `sizeof(struct ${mirror.cName})`);
        assert.deepEqual(mirror.offsets, s.members, `member offsets of struct ${mirror.cName}`);
      });
    }
  }
});

describe("proxy map encoders", () => {
  it("origin key: the accepted socket's remote is the source, its local the destination, ports big-endian", () => {
    const key = encodeOriginKey({ remoteAddress: "10.200.1.20", remotePort: 0x1234, localAddress: "10.200.1.1", localPort: 15001 });
    assert.equal(key.toString("hex"), "0ac801140ac8010112343a9906000000");
  });

  const origin: ProxyOrigin = {
    origAddress: "10.96.0.10",
    origPort: 80,
    backendAddress: "10.200.1.10",
    backendPort: 8080,
    srcIdentity: 2000,
    dstIdentity: 1000,
    serviceId: 7,
    backendId: 70,
    egressCookie: 3,
    ingressCookie: 0,
    egress: true,
    ingress: false,
    via: "sock",
    protocol: "TCP",
    netnsCookie: 4097n,
  };
  const cases: [string, Partial<ProxyOrigin>, { directions: number; flags: number }][] = [
    ["egress only, from the socket hook", {}, { directions: 1, flags: 1 }],
    ["ingress only, from tc", { egress: false, ingress: true, via: "tc" }, { directions: 2, flags: 2 }],
    ["both directions (one node, one pass)", { ingress: true }, { directions: 3, flags: 1 }],
  ];
  for (const [name, change, want] of cases) {
    it(`origin value round-trips: ${name}`, () => {
      const o = { ...origin, ...change };
      const b = encodeOrigin(o);
      assert.equal(b.length, 48);
      assert.equal(b[36], want.directions);
      assert.equal(b[37], want.flags);
      assert.deepEqual(decodeOrigin(b), o);
    });
  }

  it("upstream port key and value", () => {
    assert.equal(encodePortKey({ address: "10.200.1.1", port: 40001 }).toString("hex"), "0ac801019c410600");
    assert.equal(encodePortKey({ address: "10.200.1.1", port: 53, protocol: "UDP" }).toString("hex"), "0ac8010100351100");
    assert.equal(encodePortValue(2000).toString("hex"), "d007000000000000");
  });

  it("config round-trips; disabled is flag 0", () => {
    const c = { address: "10.200.1.1", port: 15001, enabled: true, cgroupId: 12345n, cgroupLevel: 4 };
    assert.deepEqual(decodeProxyConfig(encodeProxyConfig(c)), c);
    assert.equal(encodeProxyConfig({ ...c, enabled: false }).readUInt16LE(6), 0);
  });

  const levels: [string, string, number | "throws"][] = [
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/weft/c1/n1/proxy", 4],
    ["/sys/fs/cgroup/unified/", "/sys/fs/cgroup/unified/x", 1],
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified", 0],
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/unifiedx/a", "throws"],
  ];
  for (const [mount, dir, want] of levels) {
    it(`cgroupLevel(${mount}, ${dir}) = ${want}`, () => {
      if (want === "throws") assert.throws(() => cgroupLevel(mount, dir), /WEFT_BPF/);
      else assert.equal(cgroupLevel(mount, dir), want);
    });
  }

  it("policy routing: marked packets to a table whose only route is local default via lo", () => {
    assert.deepEqual(proxyRoutingCommands(), [
      ["rule", "add", "fwmark", "0x200/0xf00", "lookup", String(PROXY_ROUTE_TABLE), "priority", "9"],
      ["route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", String(PROXY_ROUTE_TABLE)],
    ]);
    assert.equal(proxyRoutingRemoval().length, 2);
  });
});
