// Protocol detection on a connection's first bytes (src/proxy/detect.ts): HTTP/1 request lines,
// the HTTP/2 preface (also when it arrives in pieces), TLS ClientHello, and what is neither.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { detectProtocol, Protocol } from "../../../src/proxy/detect.ts";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

describe("detectProtocol", () => {
  const cases: [string, Buffer, number][] = [
    ["empty", Buffer.alloc(0), Protocol.NeedMore],
    ["GET line", Buffer.from("GET / HTTP/1.1\r\n"), Protocol.Http1],
    ["custom method", Buffer.from("PURGE /x HTTP/1.1\r\n"), Protocol.Http1],
    ["leading CRLF", Buffer.from("\r\nGET / HTTP/1.1\r\n"), Protocol.Http1],
    ["method still arriving", Buffer.from("GE"), Protocol.NeedMore],
    ["h2 preface", Buffer.from(`${PREFACE}\x00\x00`), Protocol.Http2],
    ["h2 preface, first bytes only", Buffer.from("PRI * HT"), Protocol.NeedMore],
    ["PRI that is not the preface", Buffer.from("PRI * HTTP/1.1\r\n"), Protocol.Http1],
    ["TLS ClientHello", HELLO, Protocol.Tls],
    ["TLS record, header incomplete", HELLO.subarray(0, 3), Protocol.NeedMore],
    ["TLS handshake, not a ClientHello", Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10, 0x02]), Protocol.Unknown],
    ["binary", Buffer.from([0x00, 0x01, 0x02]), Protocol.Unknown],
    ["no space after the method", Buffer.from("GET\t/"), Protocol.Unknown],
    ["a token too long for a method", Buffer.from("A".repeat(40)), Protocol.Unknown],
  ];
  for (const [name, bytes, want] of cases) it(name, () => assert.equal(detectProtocol(bytes), want));
});
