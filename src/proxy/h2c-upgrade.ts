// The pure half of the HTTP/1.1 → HTTP/2 upgrade ("h2c", RFC 7540 §3.2): whether a request head
// offers an upgrade the proxy takes, its HTTP2-Settings checked, the upgrading request rebuilt as a
// HEADERS frame for stream 1 (HPACK literals that never touch a dynamic table), and where the
// client's connection preface and first SETTINGS frame end. Pure: no I/O.

import { H2_PREFACE } from "./detect.ts";
import type { MessageHead } from "./http1/parser.ts";

/** Largest request body carried into stream 1; a larger (or chunked) request stays HTTP/1.1. */
export const UPGRADE_BODY_LIMIT = 64 * 1024;
/** Longest HTTP2-Settings value accepted: 1024 settings, where HTTP/2 defines six. */
const SETTINGS_CHARS_MAX = 8192;
/** Largest first SETTINGS frame payload accepted from an upgraded client (the default max frame size). */
export const FIRST_SETTINGS_MAX = 16_384;
/** The receiver's SETTINGS_MAX_FRAME_SIZE before it says otherwise (RFC 9113 §6.5.2). */
export const DEFAULT_MAX_FRAME = 16_384;

export const SWITCHING_TO_H2C = Buffer.from("HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n", "latin1");

export type Http2Setting = [id: number, value: number];

export type H2cOffer =
  /** Not an h2c upgrade request: nothing changes. */
  | { kind: "none" }
  /** An h2c upgrade the proxy ignores (RFC 7540 §3.2 lets a server): the request stays HTTP/1.1. */
  | { kind: "declined"; reason: string }
  | { kind: "accepted"; settings: Http2Setting[] };

const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** HTTP2-Settings (base64url of a SETTINGS payload, RFC 7540 §3.2.1), checked as a SETTINGS frame would be. */
export function parseHttp2Settings(value: string): { ok: true; settings: Http2Setting[] } | { ok: false; reason: string } {
  const v = value.trim();
  if (v.length > SETTINGS_CHARS_MAX) return { ok: false, reason: "HTTP2-Settings too long" };
  // A whole number of 6-byte settings never needs padding, so none is accepted; the decoding must
  // give back the same text (no stray bits, no truncated group).
  if (!BASE64URL.test(v)) return { ok: false, reason: "HTTP2-Settings is not base64url" };
  const bytes = Buffer.from(v, "base64url");
  if (bytes.toString("base64url") !== v) return { ok: false, reason: "HTTP2-Settings is not canonical base64url" };
  if (bytes.length % 6 !== 0) return { ok: false, reason: `HTTP2-Settings payload of ${bytes.length} bytes is not a whole number of settings` };
  const settings: Http2Setting[] = [];
  for (let i = 0; i < bytes.length; i += 6) {
    const id = bytes.readUInt16BE(i);
    const val = bytes.readUInt32BE(i + 2);
    if (id === SETTINGS_ENABLE_PUSH && val > 1) return { ok: false, reason: `SETTINGS_ENABLE_PUSH ${val}` };
    if (id === SETTINGS_INITIAL_WINDOW_SIZE && val > 0x7fffffff) return { ok: false, reason: `SETTINGS_INITIAL_WINDOW_SIZE ${val}` };
    if (id === SETTINGS_MAX_FRAME_SIZE && (val < 16_384 || val > 0xffffff)) return { ok: false, reason: `SETTINGS_MAX_FRAME_SIZE ${val}` };
    settings.push([id, val]);
  }
  return { ok: true, settings };
}

/** Does this request ask for h2c, and will the proxy switch (the upstream check aside)? */
export function h2cOffer(head: MessageHead): H2cOffer {
  if (!head.upgrade || head.get("upgrade")?.trim().toLowerCase() !== "h2c") return { kind: "none" };
  if (!head.nominated?.includes("http2-settings")) return { kind: "declined", reason: "Connection does not name HTTP2-Settings" };
  if (countOf(head, "http2-settings") !== 1) return { kind: "declined", reason: "not exactly one HTTP2-Settings field" };
  const parsed = parseHttp2Settings(head.get("http2-settings") as string);
  if (!parsed.ok) return { kind: "declined", reason: parsed.reason };
  if (head.isConnect || head.method === "CONNECT") return { kind: "declined", reason: "CONNECT" };
  if (head.form !== "origin" && head.form !== "absolute") return { kind: "declined", reason: `${head.form}-form target` };
  if (!head.keepAlive) return { kind: "declined", reason: "Connection: close" };
  if (head.expectContinue) return { kind: "declined", reason: "Expect: 100-continue" };
  if (head.chunked) return { kind: "declined", reason: "chunked body" };
  if (head.contentLength > UPGRADE_BODY_LIMIT) return { kind: "declined", reason: `body of ${head.contentLength} bytes over ${UPGRADE_BODY_LIMIT}` };
  if (head.authority() === "") return { kind: "declined", reason: "no authority" };
  return { kind: "accepted", settings: parsed.settings };
}

function countOf(head: MessageHead, lower: string): number {
  let n = 0;
  for (let i = head.indexOf(lower); i >= 0; i = head.indexOf(lower, i + 1)) n++;
  return n;
}

/** Fields HTTP/2 forbids (RFC 9113 §8.2.2), the ones the upgrade consumed, and Host (→ :authority). */
const NOT_IN_H2 = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings", "host", "content-length"]);

/**
 * The upgrading request as HTTP/2 fields: pseudo-headers, then its fields in order minus the
 * connection-specific ones. Content-Length is left out: stream 1 arrives half-closed (END_STREAM on
 * its HEADERS) and its body is handed over beside the session, never as DATA frames.
 */
export function upgradeRequestFields(head: MessageHead): [string, string][] {
  const fields: [string, string][] = [
    [":method", head.method],
    [":scheme", "http"],
    [":authority", head.authority()],
    [":path", head.form === "origin" ? head.target() : head.pathAndQuery()],
  ];
  for (let i = 0; i < head.count; i++) {
    const name = head.name(i).toLowerCase();
    if (NOT_IN_H2.has(name) || head.nominated?.includes(name)) continue;
    const value = head.value(i);
    if (name === "te" && value.trim().toLowerCase() !== "trailers") continue;
    fields.push([name, value]);
  }
  return fields;
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
export function hpackInteger(value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/**
 * A header block of "literal header field without indexing — new name" representations (RFC 7541
 * §6.2.2), no Huffman coding: the receiver's dynamic table is left as it was, so the client's
 * encoder and the server's decoder stay in step although the client never sent this block.
 */
export function hpackLiteralBlock(fields: readonly [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, "latin1");
    const v = Buffer.from(value, "latin1");
    parts.push(Buffer.from([0x00, ...hpackInteger(n.length, 7)]), n, Buffer.from(hpackInteger(v.length, 7)), v);
  }
  return Buffer.concat(parts);
}

const FRAME_HEADERS = 0x1;
const FRAME_SETTINGS = 0x4;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const b = Buffer.alloc(9);
  b.writeUIntBE(length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & 0x7fffffff, 5);
  return b;
}

/** A header block as one HEADERS frame and as many CONTINUATION frames as `maxFrame` needs. */
export function headersFrames(streamId: number, block: Buffer, endStream: boolean, maxFrame = DEFAULT_MAX_FRAME): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  let first = true;
  // Bounded: each pass takes at least one byte, or ends on an empty block.
  for (let guard = 0; guard <= block.length; guard++) {
    const n = Math.min(maxFrame, block.length - off);
    const last = off + n >= block.length;
    const flags = (first && endStream ? FLAG_END_STREAM : 0) | (last ? FLAG_END_HEADERS : 0);
    parts.push(frameHeader(n, first ? FRAME_HEADERS : FRAME_CONTINUATION, flags, streamId), block.subarray(off, off + n));
    off += n;
    first = false;
    if (last) break;
  }
  return Buffer.concat(parts);
}

export type PrefaceSplit = { kind: "more" } | { kind: "bad"; reason: string } | { kind: "split"; end: number };

/**
 * Where the client's connection preface and the SETTINGS frame that must follow it end (RFC 9113
 * §3.4): stream 1's HEADERS go there, before anything else the client sent.
 */
export function splitClientPreface(buf: Buffer): PrefaceSplit {
  const p = H2_PREFACE.length;
  const k = Math.min(buf.length, p);
  if (buf.compare(H2_PREFACE, 0, k, 0, k) !== 0) return { kind: "bad", reason: "not the HTTP/2 connection preface" };
  if (buf.length < p + 9) return { kind: "more" };
  const length = buf.readUIntBE(p, 3);
  const type = buf[p + 3] as number;
  const flags = buf[p + 4] as number;
  const stream = buf.readUInt32BE(p + 5) & 0x7fffffff;
  if (type !== FRAME_SETTINGS) return { kind: "bad", reason: `frame type ${type} where SETTINGS must follow the preface` };
  if (flags & FLAG_ACK || stream !== 0 || length % 6 !== 0 || length > FIRST_SETTINGS_MAX)
    return { kind: "bad", reason: `malformed first SETTINGS (length ${length}, flags ${flags}, stream ${stream})` };
  const end = p + 9 + length;
  return buf.length < end ? { kind: "more" } : { kind: "split", end };
}
