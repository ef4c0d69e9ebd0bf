// The struct mirror: C alignment rules and round trips of every field type.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defineStruct } from "../../../src/datapath/maps/struct.ts";

describe("struct mirrors", () => {
  const layouts: [string, ReturnType<typeof defineStruct>, number, Record<string, number>][] = [
    [
      "packed bytes",
      defineStruct("a", [
        ["x", "u8"],
        ["y", "u8"],
      ] as const),
      2,
      { x: 0, y: 1 },
    ],
    [
      "u8 then u32 pads to 4",
      defineStruct("b", [
        ["x", "u8"],
        ["y", "u32"],
      ] as const),
      8,
      { x: 0, y: 4 },
    ],
    [
      "u16 then u64 pads to 8",
      defineStruct("c", [
        ["x", "u16"],
        ["y", "u64"],
      ] as const),
      16,
      { x: 0, y: 8 },
    ],
    [
      "u64 then u8: tail padding",
      defineStruct("d", [
        ["x", "u64"],
        ["y", "u8"],
      ] as const),
      16,
      { x: 0, y: 8 },
    ],
    [
      "ipv4, be16, u8, u8",
      defineStruct("e", [
        ["ip", "ipv4"],
        ["port", "be16"],
        ["p", "u8"],
        ["q", "u8"],
      ] as const),
      8,
      { ip: 0, port: 4, p: 6, q: 7 },
    ],
    [
      "bytes align to 1",
      defineStruct("f", [
        ["b", { bytes: 3 }],
        ["x", "u16"],
      ] as const),
      6,
      { b: 0, x: 4 },
    ],
  ];
  for (const [name, s, size, offsets] of layouts) {
    it(`lays out ${name}`, () => {
      assert.equal(s.size, size);
      assert.deepEqual(s.offsets, offsets);
    });
  }

  it("round-trips every field type, with network byte order where asked", () => {
    const s = defineStruct("g", [
      ["a", "u8"],
      ["b", "u16"],
      ["c", "be16"],
      ["d", "u32"],
      ["e", "be32"],
      ["f", "ipv4"],
      ["g", "u64"],
      ["h", { bytes: 2 }],
    ] as const);
    const v = { a: 1, b: 0x0203, c: 0x0405, d: 0x06070809, e: 0x0a0b0c0d, f: "10.96.0.10", g: 0x1122334455667788n, h: Buffer.from([0xee, 0xff]) };
    const buf = s.encode(v);
    assert.equal(buf.length, s.size);
    assert.deepEqual(s.decode(buf), v);
    assert.equal(buf.readUInt16BE(s.offsets.c as number), 0x0405);
    assert.deepEqual([...buf.subarray(s.offsets.f as number, (s.offsets.f as number) + 4)], [10, 96, 0, 10]);
  });

  it("refuses a malformed address", () => {
    const s = defineStruct("h", [["ip", "ipv4"]] as const);
    assert.throws(() => s.encode({ ip: "10.0.0.256" }), /not an IPv4 address/);
  });
});
