// Which UDP backends left, from one service sync to the next.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { removedKeys, udpBackendKeys } from "../../../src/agent/udp-sockets.ts";
import type { LbBackend } from "../../../src/datapath/services.ts";

const b = (address: string, port: number, proto: "TCP" | "UDP"): LbBackend => ({ id: 1, address, port, proto, serviceId: 1, flags: 0 });

describe("removed UDP backends", () => {
  it("keeps only UDP backends, by address and port", () => {
    assert.deepEqual([...udpBackendKeys([b("10.200.1.5", 53, "UDP"), b("10.200.1.5", 53, "TCP"), b("10.200.2.4", 53, "UDP")])].sort(), [
      "10.200.1.5:53",
      "10.200.2.4:53",
    ]);
  });
  const cases: [string, string[], string[], string[]][] = [
    ["nothing changed", ["a:1", "b:2"], ["a:1", "b:2"], []],
    ["one left", ["a:1", "b:2"], ["b:2"], ["a:1"]],
    ["one added", ["a:1"], ["a:1", "c:3"], []],
    ["all left", ["a:1", "b:2"], [], ["a:1", "b:2"]],
  ];
  for (const [name, before, after, gone] of cases) {
    it(name, () => assert.deepEqual(removedKeys(new Set(before), new Set(after)), gone));
  }
});
