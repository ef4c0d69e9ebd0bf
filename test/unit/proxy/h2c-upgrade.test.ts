// The pure half of the h2c upgrade (src/proxy/h2c-upgrade.ts): HTTP2-Settings decoding and checks,
// which requests the proxy upgrades, the upgrading request as HTTP/2 fields, HPACK integers and
// literal blocks (RFC 7541 Appendix C bytes), HEADERS/CONTINUATION framing, and where the client's
// preface and first SETTINGS frame end.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type H2cOffer,
  h2cOffer,
  headersFrames,
  hpackInteger,
  hpackLiteralBlock,
  parseHttp2Settings,
  splitClientPreface,
  upgradeRequestFields,
} from "../../../src/proxy/h2c-upgrade.ts";
import { Ev, type MessageHead, RequestParser } from "../../../src/proxy/http1/parser.ts";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** What curl 7.88 sends: MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB, ENABLE_PUSH 0. */
const CURL_SETTINGS = "AAMAAABkAAQCAAAAAAIAAAAA";

function settings(...pairs: [number, number][]): string {
  const b = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(v, i * 6 + 2);
  });
  return b.toString("base64url");
}

function headOf(text: string): MessageHead {
  const p = new RequestParser();
  const b = Buffer.from(text, "latin1");
  p.execute(b, 0, b.length);
  assert.equal(p.event, Ev.Head, `parsed: ${p.error?.message ?? p.event}`);
  return p.head;
}

function frame(type: number, flags: number, stream: number, payload: Buffer | number[] = []): Buffer {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, p]);
}

describe("parseHttp2Settings", () => {
  const cases: [string, string, [number, number][] | string][] = [
    [
      "curl's settings",
      CURL_SETTINGS,
      [
        [3, 100],
        [4, 33554432],
        [2, 0],
      ],
    ],
    ["empty: no settings", "", []],
    ["surrounding spaces", ` ${settings([3, 7])} `, [[3, 7]]],
    ["unknown identifier kept (ignored by HTTP/2)", settings([0x99, 1]), [[0x99, 1]]],
    ["MAX_FRAME_SIZE at its floor", settings([5, 16_384]), [[5, 16_384]]],
    ["MAX_FRAME_SIZE at its ceiling", settings([5, 0xffffff]), [[5, 0xffffff]]],
    ["INITIAL_WINDOW_SIZE at 2^31-1", settings([4, 0x7fffffff]), [[4, 0x7fffffff]]],
    ["not base64 at all", "not base64!", "not base64url"],
    ["base64 (not url) alphabet", "AAMAAABk+/", "not base64url"],
    ["padding", "AAMAAABkAA==", "not base64url"],
    ["a truncated group", "AAMAAABkA", "not canonical"],
    ["stray bits in the last group", "AAMAAABkAAR", "not canonical"],
    ["4 bytes: not a whole setting", "AAMAAA", "not a whole number"],
    ["ENABLE_PUSH 2", settings([2, 2]), "SETTINGS_ENABLE_PUSH 2"],
    ["INITIAL_WINDOW_SIZE 2^31", settings([4, 0x80000000]), "SETTINGS_INITIAL_WINDOW_SIZE"],
    ["MAX_FRAME_SIZE below 16384", settings([5, 16_383]), "SETTINGS_MAX_FRAME_SIZE 16383"],
    ["MAX_FRAME_SIZE above 2^24-1", settings([5, 0x1000000]), "SETTINGS_MAX_FRAME_SIZE"],
    ["too long", "A".repeat(8200), "too long"],
  ];
  for (const [name, value, want] of cases)
    it(name, () => {
      const r = parseHttp2Settings(value);
      if (typeof want === "string") {
        assert.equal(r.ok, false);
        assert.match((r as { reason: string }).reason, new RegExp(want));
      } else assert.deepEqual(r, { ok: true, settings: want });
    });
});

describe("h2cOffer", () => {
  const up = (lines: string, first = "GET /a HTTP/1.1") => `${first}\r\nHost: svc.test\r\n${lines}\r\n`;
  const offer = `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n`;
  const cases: [string, string, H2cOffer["kind"], string?][] = [
    ["curl's upgrade request", up(offer), "accepted"],
    ["token case and spacing", up(`connection: upgrade,http2-settings\r\nUPGRADE:  H2C \r\nhttp2-settings: ${CURL_SETTINGS}\r\n`), "accepted"],
    ["a body of exactly 64 KiB", up(`${offer}Content-Length: 65536\r\n`, "POST /a HTTP/1.1"), "accepted"],
    ["absolute-form target", up(offer, "GET http://svc.test/a HTTP/1.1"), "accepted"],
    ["no upgrade at all", up(""), "none"],
    ["WebSocket", up("Connection: Upgrade\r\nUpgrade: websocket\r\n"), "none"],
    [
      "h2c among other protocols (a plain upgrade, as before)",
      up(`Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n`),
      "none",
    ],
    ["Upgrade without the Connection token", up(`Connection: HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n`), "none"],
    ["HTTP/1.0", up(offer, "GET /a HTTP/1.0"), "none"],
    [
      "Connection does not name HTTP2-Settings",
      up(`Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n`),
      "declined",
      "Connection does not name",
    ],
    ["HTTP2-Settings missing", up("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), "declined", "exactly one"],
    ["HTTP2-Settings twice", up(`${offer}HTTP2-Settings: ${CURL_SETTINGS}\r\n`), "declined", "exactly one"],
    ["malformed HTTP2-Settings", up("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAA\r\n"), "declined", "whole number"],
    ["a body over 64 KiB", up(`${offer}Content-Length: 65537\r\n`, "POST /a HTTP/1.1"), "declined", "65537 bytes"],
    ["a chunked body", up(`${offer}Transfer-Encoding: chunked\r\n`, "POST /a HTTP/1.1"), "declined", "chunked"],
    ["Expect: 100-continue", up(`${offer}Expect: 100-continue\r\nContent-Length: 5\r\n`, "POST /a HTTP/1.1"), "declined", "100-continue"],
    ["Connection: close", up(`Connection: close, Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n`), "declined", "close"],
    ["asterisk-form", up(offer, "OPTIONS * HTTP/1.1"), "declined", "asterisk"],
  ];
  for (const [name, text, kind, reason] of cases)
    it(name, () => {
      const o = h2cOffer(headOf(text));
      assert.equal(o.kind, kind, JSON.stringify(o));
      if (reason) assert.match((o as { reason: string }).reason, new RegExp(reason));
      if (o.kind === "accepted") assert.ok(o.settings.length > 0);
    });
});

describe("upgradeRequestFields", () => {
  const cases: [string, string, [string, string][]][] = [
    [
      "curl's request: pseudo-headers first, upgrade fields gone",
      `GET /public/one?x=1 HTTP/1.1\r\nHost: svc.test:80\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${CURL_SETTINGS}\r\n\r\n`,
      [
        [":method", "GET"],
        [":scheme", "http"],
        [":authority", "svc.test:80"],
        [":path", "/public/one?x=1"],
        ["user-agent", "curl/7.88.1"],
        ["accept", "*/*"],
      ],
    ],
    [
      "absolute form; names lowercased; order and repeats kept",
      `POST http://svc.test/up?q HTTP/1.1\r\nHost: svc.test\r\nCookie: a=1\r\nX-Trace: t\r\ncookie: b=2\r\nContent-Length: 3\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n`,
      [
        [":method", "POST"],
        [":scheme", "http"],
        [":authority", "svc.test"],
        [":path", "/up?q"],
        ["cookie", "a=1"],
        ["x-trace", "t"],
        ["cookie", "b=2"],
      ],
    ],
    [
      "connection-specific fields and nominated ones dropped; TE kept only as trailers",
      `GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings, X-Hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nX-End: e\r\n\r\n`,
      [
        [":method", "GET"],
        [":scheme", "http"],
        [":authority", "h"],
        [":path", "/"],
        ["te", "trailers"],
        ["x-end", "e"],
      ],
    ],
    [
      "TE other than trailers dropped",
      "GET / HTTP/1.1\r\nHost: h\r\nTE: gzip, trailers\r\n\r\n",
      [
        [":method", "GET"],
        [":scheme", "http"],
        [":authority", "h"],
        [":path", "/"],
      ],
    ],
  ];
  for (const [name, text, want] of cases) it(name, () => assert.deepEqual(upgradeRequestFields(headOf(text)), want));
});

describe("hpackInteger (RFC 7541 §5.1, Appendix C.1)", () => {
  const cases: [string, number, number, number, number[]][] = [
    ["C.1.1: 10, 5-bit prefix", 10, 5, 0, [0x0a]],
    ["C.1.2: 1337, 5-bit prefix", 1337, 5, 0, [0x1f, 0x9a, 0x0a]],
    ["C.1.3: 42, 8-bit prefix", 42, 8, 0, [0x2a]],
    ["126 fits a 7-bit prefix", 126, 7, 0, [0x7e]],
    ["127 fills it: one more byte", 127, 7, 0, [0x7f, 0x00]],
    ["128", 128, 7, 0, [0x7f, 0x01]],
    ["1337, 7-bit prefix", 1337, 7, 0, [0x7f, 0xba, 0x09]],
    ["high bits kept", 3, 4, 0x10, [0x13]],
  ];
  for (const [name, v, bits, first, want] of cases) it(name, () => assert.deepEqual(hpackInteger(v, bits, first), want));
});

describe("hpackLiteralBlock (literal without indexing, new name, no Huffman)", () => {
  const hex = (s: string) => Buffer.from(s.replace(/\s/g, ""), "hex");
  const cases: [string, [string, string][], Buffer][] = [
    // RFC 7541 C.2.1's field, as "without indexing" (0x00) instead of "with indexing" (0x40).
    ["custom-key: custom-header", [["custom-key", "custom-header"]], hex("00 0a 637573746f6d2d6b6579 0d 637573746f6d2d686561646572")],
    [
      "a pseudo-header and an empty value",
      [
        [":path", "/"],
        ["x", ""],
      ],
      hex("00 05 3a70617468 01 2f 00 01 78 00"),
    ],
    ["a 200-byte value: multi-byte length", [["v", "a".repeat(200)]], Buffer.concat([hex("00 01 76 7f 49"), Buffer.alloc(200, 0x61)])],
    ["latin1 bytes as they are", [["x", "caf\u00e9"]], hex("00 01 78 04 636166e9")],
    ["no fields", [], Buffer.alloc(0)],
  ];
  for (const [name, fields, want] of cases) it(name, () => assert.deepEqual(hpackLiteralBlock(fields), want));
});

describe("headersFrames", () => {
  const block = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i & 0xff));
  const cases: [string, number, Buffer, boolean, number, Buffer][] = [
    ["one frame, END_STREAM | END_HEADERS", 1, block(5), true, 16_384, frame(1, 0x05, 1, block(5))],
    ["one frame, END_HEADERS only", 3, block(5), false, 16_384, frame(1, 0x04, 3, block(5))],
    ["empty block", 1, block(0), true, 16_384, frame(1, 0x05, 1)],
    [
      "split: HEADERS (END_STREAM), CONTINUATION, CONTINUATION (END_HEADERS)",
      1,
      block(20),
      true,
      8,
      Buffer.concat([frame(1, 0x01, 1, block(20).subarray(0, 8)), frame(9, 0, 1, block(20).subarray(8, 16)), frame(9, 0x04, 1, block(20).subarray(16))]),
    ],
    [
      "an exact multiple: no empty CONTINUATION",
      1,
      block(16),
      false,
      8,
      Buffer.concat([frame(1, 0, 1, block(16).subarray(0, 8)), frame(9, 0x04, 1, block(16).subarray(8))]),
    ],
  ];
  for (const [name, stream, b, end, max, want] of cases) it(name, () => assert.deepEqual(headersFrames(stream, b, end, max), want));
});

describe("splitClientPreface", () => {
  const settingsFrame = (n: number, flags = 0, stream = 0) => frame(4, flags, stream, Buffer.alloc(n));
  const cases: [string, Buffer, string | number][] = [
    ["nothing yet", Buffer.alloc(0), "more"],
    ["half the preface", PREFACE.subarray(0, 10), "more"],
    ["the preface alone", PREFACE, "more"],
    ["SETTINGS header, payload still coming", Buffer.concat([PREFACE, settingsFrame(12).subarray(0, 15)]), "more"],
    ["empty SETTINGS", Buffer.concat([PREFACE, settingsFrame(0)]), 33],
    ["SETTINGS with two settings, then a HEADERS frame", Buffer.concat([PREFACE, settingsFrame(12), frame(1, 5, 3, [0x82])]), 45],
    ["SETTINGS of 16 KiB (the bound)", Buffer.concat([PREFACE, settingsFrame(16_380)]), 24 + 9 + 16_380],
    ["HTTP/1 instead of the preface", Buffer.from("GET / HTTP/1.1\r\n"), "bad"],
    ["preface, then a PING", Buffer.concat([PREFACE, frame(6, 0, 0, Buffer.alloc(8))]), "bad"],
    ["preface, then a SETTINGS ACK", Buffer.concat([PREFACE, settingsFrame(0, 0x1)]), "bad"],
    ["SETTINGS on stream 1", Buffer.concat([PREFACE, settingsFrame(0, 0, 1)]), "bad"],
    ["SETTINGS of 7 bytes", Buffer.concat([PREFACE, settingsFrame(7)]), "bad"],
    ["SETTINGS over 16 KiB", Buffer.concat([PREFACE, settingsFrame(16_386).subarray(0, 9)]), "bad"],
  ];
  for (const [name, bytes, want] of cases)
    it(name, () => {
      const r = splitClientPreface(bytes);
      if (typeof want === "number") assert.deepEqual(r, { kind: "split", end: want });
      else assert.equal(r.kind, want, JSON.stringify(r));
    });
});
