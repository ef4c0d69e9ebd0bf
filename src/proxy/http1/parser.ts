// Incremental HTTP/1.1 parsers over Buffers: requests (downstream) and responses (upstream). The
// head is kept as offsets into the bytes received, never rebuilt; framing is strict, so nothing two
// parsers could read differently (request smuggling) gets through. Pure: no I/O.
//
// Use: `for (;;) { off = p.execute(buf, off, end); switch (p.event) { ... } }` until NeedMore,
// Paused, Closed or Error. A Head event makes `p.head` valid until the next message's head; Body
// events name decoded payload bytes `buf[p.bodyStart, p.bodyEnd)`; the bytes consumed by each call
// (`buf[before, after)`) are exactly the wire bytes, framing included, for pass-through.

import { HttpRefusal, type RefusalReason, type RefusalStatus } from "./refusal.ts";

export interface Http1Limits {
  /** Request/status line plus header fields, bytes (Envoy's max_request_headers_kb: 60 KiB). */
  maxHeaderBytes: number;
  /** Header fields per message (Envoy's max_headers_count: 100). */
  maxHeaders: number;
  /** Largest body announced or streamed; beyond it 413. */
  maxBodyBytes: number;
  /** Bytes of chunk extensions on one chunk-size line (bounds work on extension floods). */
  maxChunkExtensionBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Http1Limits> = Object.freeze({
  maxHeaderBytes: 60 * 1024,
  maxHeaders: 100,
  maxBodyBytes: Number.MAX_SAFE_INTEGER,
  maxChunkExtensionBytes: 4096,
});

/** What one `execute` call produced. */
export const Ev = {
  /** Every byte given was consumed (or kept for a partial head); give more. */
  NeedMore: 0,
  Head: 1,
  Body: 2,
  /** The message is complete; on keep-alive the parser waits for the next one. */
  End: 3,
  /** CONNECT, an upgrade request or a 1xx upgrade/2xx CONNECT answer: bytes after this are not HTTP. */
  Paused: 4,
  /** The message said the connection ends after it; later bytes are not parsed. */
  Closed: 5,
  Error: 6,
} as const;
export type Event = (typeof Ev)[keyof typeof Ev];

/** Header names the parsers recognise while parsing (lowercase); `MessageHead.known[i]` holds these ids. */
export const H = {
  other: 0,
  host: 1,
  "content-length": 2,
  "transfer-encoding": 3,
  connection: 4,
  expect: 5,
  upgrade: 6,
  te: 7,
  "keep-alive": 8,
  "proxy-connection": 9,
  "x-forwarded-for": 10,
  "x-forwarded-proto": 11,
  "x-request-id": 12,
  trailer: 13,
} as const;
const KNOWN_NAMES = Object.keys(H).slice(1);
const KNOWN_COUNT = KNOWN_NAMES.length + 1;

// ---- character classes ---------------------------------------------------------------------------

const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 0x20] = 1;
/** field-value bytes: HTAB, SP, VCHAR, obs-text. CR, LF, NUL and other controls are refused. */
const VALUE = new Uint8Array(256);
VALUE[9] = 1;
for (let c = 0x20; c < 0x7f; c++) VALUE[c] = 1;
for (let c = 0x80; c < 0x100; c++) VALUE[c] = 1;
/** request-target bytes: visible ASCII; "#" (fragment) never; "\\" only in the query. */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c < 0x7f; c++) TARGET[c] = 1;
TARGET[0x23] = 0;
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;
/** Host header / authority: reg-name, IPv4, [IPv6], optional port (no userinfo, no path). */
const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function eqLower(buf: Buffer, s: number, e: number, lower: string): boolean {
  if (e - s !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if (((buf[s + i] as number) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

function knownId(buf: Buffer, s: number, e: number): number {
  // Length first: one or two candidates per length, so this costs a few byte compares.
  for (let k = 0; k < KNOWN_NAMES.length; k++) if (eqLower(buf, s, e, KNOWN_NAMES[k] as string)) return k + 1;
  return 0;
}

/** Interned method strings, so the common methods cost no allocation. */
function methodString(buf: Buffer, s: number, e: number): string {
  for (const m of METHODS) {
    if (m.length !== e - s) continue;
    let i = 0;
    while (i < m.length && buf[s + i] === m.charCodeAt(i)) i++;
    if (i === m.length) return m;
  }
  return buf.toString("latin1", s, e);
}

// ---- the parsed head -----------------------------------------------------------------------------

/** Per header i: [lineStart, nameEnd, valueStart, valueEnd, lineEnd (after CRLF)]. */
const SLOT = 5;

/** One message head: offsets into `buf`; reused by its parser for every message (copy what you keep). */
export class MessageHead {
  buf: Buffer = Buffer.alloc(0);
  /** [start, end) of the whole head in `buf`, final CRLF included. */
  start = 0;
  end = 0;
  /** End of the request or status line, CRLF included. */
  lineEnd = 0;
  versionMinor = 1;
  // request
  method = "";
  targetStart = 0;
  targetEnd = 0;
  form: "origin" | "absolute" | "authority" | "asterisk" = "origin";
  /** Where the origin-form path begins in `buf` (absolute-form: after the authority); -1 for "*" and authority-form. */
  pathStart = -1;
  /** The authority: from an absolute-form or authority-form target, else the Host header; -1 when none. */
  authorityStart = -1;
  authorityEnd = -1;
  // response
  status = 0;
  // framing
  /** -1: none announced. */
  contentLength = -1;
  chunked = false;
  keepAlive = true;
  expectContinue = false;
  /** Request: Upgrade with "Connection: upgrade" (HTTP/1.1). */
  upgrade = false;
  isConnect = false;
  /** Connection tokens other than close/keep-alive/upgrade: headers that are hop-by-hop for this message. */
  nominated: string[] | null = null;
  count = 0;
  readonly offsets: Int32Array;
  /** Known-name id (H) per header. */
  readonly known: Uint8Array;
  /** First index of each known id, -1 absent; and how many times it appears. */
  readonly firstKnown = new Int16Array(KNOWN_COUNT);
  readonly knownCount = new Uint8Array(KNOWN_COUNT);

  constructor(maxHeaders: number) {
    this.offsets = new Int32Array(maxHeaders * SLOT);
    this.known = new Uint8Array(maxHeaders);
  }

  reset(): void {
    this.count = 0;
    this.firstKnown.fill(-1);
    this.knownCount.fill(0);
    this.contentLength = -1;
    this.chunked = false;
    this.keepAlive = true;
    this.expectContinue = false;
    this.upgrade = false;
    this.isConnect = false;
    this.nominated = null;
    this.pathStart = -1;
    this.authorityStart = this.authorityEnd = -1;
    this.status = 0;
    this.form = "origin";
  }

  target(): string {
    return this.buf.toString("latin1", this.targetStart, this.targetEnd);
  }
  /** The path and query as an origin-form target ("/" for an absolute-form target without one). */
  pathAndQuery(): string {
    if (this.pathStart < 0) return this.target();
    if (this.pathStart === this.targetEnd) return "/";
    const rest = this.buf.toString("latin1", this.pathStart, this.targetEnd);
    return this.buf[this.pathStart] === 0x3f ? `/${rest}` : rest;
  }
  authority(): string {
    return this.authorityStart < 0 ? "" : this.buf.toString("latin1", this.authorityStart, this.authorityEnd);
  }
  lineStart(i: number): number {
    return this.offsets[i * SLOT] as number;
  }
  lineEndOf(i: number): number {
    return this.offsets[i * SLOT + 4] as number;
  }
  name(i: number): string {
    return this.buf.toString("latin1", this.offsets[i * SLOT] as number, this.offsets[i * SLOT + 1] as number);
  }
  value(i: number): string {
    return this.buf.toString("latin1", this.offsets[i * SLOT + 2] as number, this.offsets[i * SLOT + 3] as number);
  }
  /** Is header i named `lower` (lowercase), compared on the bytes? */
  nameIs(i: number, lower: string): boolean {
    return eqLower(this.buf, this.offsets[i * SLOT] as number, this.offsets[i * SLOT + 1] as number, lower);
  }
  indexOf(lower: string, from = 0): number {
    for (let i = from; i < this.count; i++) if (this.nameIs(i, lower)) return i;
    return -1;
  }
  /** The value of a header (lowercase name); several fields of one name join with "," (as Envoy matches them). */
  get(lower: string): string | undefined {
    const i = this.indexOf(lower);
    if (i < 0) return undefined;
    let v = this.value(i);
    for (let j = this.indexOf(lower, i + 1); j >= 0; j = this.indexOf(lower, j + 1)) v += `,${this.value(j)}`;
    return v;
  }
}

// ---- the parser ----------------------------------------------------------------------------------

const S_HEAD = 0;
const S_BODY_LENGTH = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_SIZE_WS = 3;
const S_CHUNK_EXT = 4;
const S_CHUNK_SIZE_LF = 5;
const S_CHUNK_DATA = 6;
const S_CHUNK_DATA_CR = 7;
const S_CHUNK_DATA_LF = 8;
const S_TRAILER = 9;
const S_BODY_EOF = 10;
const S_DONE = 11;
const S_PAUSED = 12;
const S_CLOSED = 13;
const S_ERROR = 14;
const S_AFTER_HEAD = 15;

const TRAILER_FORBIDDEN = new Set(["content-length", "transfer-encoding", "host", "connection", "upgrade", "te", "trailer", "keep-alive", "proxy-connection"]);

abstract class Http1Parser {
  readonly limits: Http1Limits;
  readonly head: MessageHead;
  event: Event = Ev.NeedMore;
  bodyStart = 0;
  bodyEnd = 0;
  error: HttpRefusal | null = null;
  /** Body bytes of the current message so far. */
  bodyBytes = 0;
  protected state = S_HEAD;
  private pending: Buffer | null = null;
  /** Where the LF scan resumes in the pending head, and where the current line began. */
  private scanFrom = 0;
  private remaining = 0;
  private chunkDigits = 0;
  private extBytes = 0;
  private trailer: number[] = [];
  private trailerBytes = 0;
  private trailerCount = 0;
  protected abstract readonly errorStatus: RefusalStatus | null;

  constructor(limits: Partial<Http1Limits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.head = new MessageHead(this.limits.maxHeaders);
  }

  /** Parses from buf[start] up to end; returns the offset after the bytes consumed. See the file header. */
  execute(buf: Buffer, start = 0, end = buf.length): number {
    switch (this.state) {
      case S_HEAD:
        return this.executeHead(buf, start, end);
      case S_AFTER_HEAD:
        this.afterHead();
        return this.execute(buf, start, end);
      case S_BODY_LENGTH: {
        const n = Math.min(this.remaining, end - start);
        if (n === 0) return this.emit(Ev.NeedMore, start);
        this.remaining -= n;
        this.bodyBytes += n;
        this.bodyStart = start;
        this.bodyEnd = start + n;
        if (this.remaining === 0) this.state = S_DONE;
        return this.emit(Ev.Body, start + n);
      }
      case S_BODY_EOF:
        if (start === end) return this.emit(Ev.NeedMore, start);
        this.bodyStart = start;
        this.bodyEnd = end;
        this.bodyBytes += end - start;
        return this.emit(Ev.Body, end);
      case S_DONE:
        return this.finishMessage(start);
      case S_PAUSED:
        return this.emit(Ev.Paused, start);
      case S_CLOSED:
        return this.emit(Ev.Closed, start);
      case S_ERROR:
        return this.emit(Ev.Error, start);
      default:
        return this.executeChunked(buf, start, end);
    }
  }

  /** Upstream closed the connection: ends a read-until-close body, or reports a truncated message. */
  finish(): Event {
    if (this.state === S_BODY_EOF) {
      this.state = S_CLOSED;
      return (this.event = Ev.End);
    }
    if (this.state === S_HEAD && this.pending === null) return (this.event = Ev.Closed);
    if (this.state === S_CLOSED || this.state === S_PAUSED || this.state === S_ERROR) return this.event;
    return this.fail(this.errorStatus ?? 400, "truncated", "connection ended inside a message");
  }

  /** After Paused for an upgrade the upstream refused: parse the next message on this connection. */
  resume(): void {
    if (this.state === S_PAUSED) this.state = this.head.keepAlive ? S_HEAD : S_CLOSED;
  }

  protected emit(ev: Event, off: number): number {
    this.event = ev;
    return off;
  }

  protected fail(status: RefusalStatus, reason: RefusalReason, detail?: string): Event {
    this.error = new HttpRefusal(this.errorStatus ?? status, reason, detail);
    this.state = S_ERROR;
    this.pending = null;
    return (this.event = Ev.Error);
  }

  private executeHead(buf: Buffer, start: number, end: number): number {
    let data: Buffer;
    let base: number;
    let from: number;
    let h0: number;
    if (this.pending === null) {
      data = buf;
      base = 0;
      h0 = start;
      from = start;
    } else {
      data = Buffer.concat([this.pending, buf.subarray(start, end)]);
      base = this.pending.length;
      h0 = 0;
      from = this.scanFrom;
    }
    const dataEnd = this.pending === null ? end : data.length;
    const max = this.limits.maxHeaderBytes;
    let lineStart = from;
    let skipped = 0;
    // Resume: `from` is always the start of a line (the scan stops only at line boundaries).
    for (;;) {
      const lf = data.indexOf(LF, lineStart);
      if (lf < 0 || lf >= dataEnd) {
        if (dataEnd - h0 > max) return this.failAt(431, "headers-too-large", `head exceeds ${max} bytes`, end);
        this.pending = Buffer.from(data.subarray(h0, dataEnd));
        this.scanFrom = lineStart - h0;
        return this.emit(Ev.NeedMore, end);
      }
      if (lf + 1 - h0 > max) return this.failAt(431, "headers-too-large", `head exceeds ${max} bytes`, end);
      if (lf === h0 || data[lf - 1] !== CR) return this.failAt(400, "bare-lf", "line ends in LF without CR", end);
      if (lf - 1 === lineStart && lineStart === h0 && skipped < 4) {
        // Empty lines before a request line are ignored (RFC 9112 §2.2), a few at most.
        skipped++;
        h0 = lineStart = lf + 1;
        continue;
      }
      if (lf - 1 === lineStart) {
        // Empty line: the head is complete.
        const h1 = lf + 1;
        const after = this.pending === null ? h1 : start + (h1 - base);
        this.pending = null;
        if (!this.parseHead(data, h0, h1)) return this.emit(Ev.Error, after);
        this.state = S_AFTER_HEAD;
        return this.emit(Ev.Head, after);
      }
      lineStart = lf + 1;
    }
  }

  protected refuse(status: RefusalStatus, reason: RefusalReason, detail?: string): false {
    this.fail(status, reason, detail);
    return false;
  }

  private failAt(status: RefusalStatus, reason: RefusalReason, detail: string, off: number): number {
    this.fail(status, reason, detail);
    return off;
  }

  private parseHead(buf: Buffer, h0: number, h1: number): boolean {
    const head = this.head;
    head.reset();
    head.buf = buf;
    head.start = h0;
    head.end = h1;
    const firstLf = buf.indexOf(LF, h0);
    head.lineEnd = firstLf + 1;
    if (!this.parseStartLine(buf, h0, firstLf - 1)) return false;
    let ls = firstLf + 1;
    const off = head.offsets;
    while (ls < h1 - 2) {
      const le = buf.indexOf(LF, ls) - 1; // the CR
      if (head.count >= this.limits.maxHeaders) return this.refuse(431, "too-many-headers", `more than ${this.limits.maxHeaders} header fields`);
      const b0 = buf[ls] as number;
      if (b0 === SP || b0 === HTAB) return this.refuse(400, "obs-fold", "header line starts with whitespace (obsolete line folding)");
      let p = ls;
      while (p < le && TCHAR[buf[p] as number]) p++;
      if (p === le || buf[p] !== 0x3a) {
        const c = buf[p] as number;
        if (p < le && (c === SP || c === HTAB)) return this.refuse(400, "space-before-colon", "whitespace between header name and colon");
        return this.refuse(400, "bad-header-name", p === le ? "header line without colon" : `byte 0x${c.toString(16)} in header name`);
      }
      if (p === ls) return this.refuse(400, "bad-header-name", "empty header name");
      const nameEnd = p;
      p++;
      while (p < le && (buf[p] === SP || buf[p] === HTAB)) p++;
      const vs = p;
      for (; p < le; p++) {
        const c = buf[p] as number;
        if (!VALUE[c]) return this.refuse(400, c === CR ? "bare-cr" : "bad-header-value", `byte 0x${c.toString(16)} in header value`);
      }
      let ve = le;
      while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
      const i = head.count++;
      off[i * SLOT] = ls;
      off[i * SLOT + 1] = nameEnd;
      off[i * SLOT + 2] = vs;
      off[i * SLOT + 3] = ve;
      off[i * SLOT + 4] = le + 2;
      const k = knownId(buf, ls, nameEnd);
      head.known[i] = k;
      if (k) {
        if (head.firstKnown[k] === -1) head.firstKnown[k] = i;
        if ((head.knownCount[k] as number) < 255) head.knownCount[k] = (head.knownCount[k] as number) + 1;
      }
      ls = le + 2;
    }
    return this.frame(head);
  }

  protected abstract parseStartLine(buf: Buffer, s: number, e: number): boolean;
  /** Decides framing and connection semantics from the headers; false after fail(). */
  protected abstract frame(head: MessageHead): boolean;
  /** Sets the body state once the Head event was delivered. */
  protected abstract afterHead(): void;

  /** Shared header semantics: Connection tokens, Content-Length, Transfer-Encoding. */
  protected commonHeaders(head: MessageHead): boolean {
    const buf = head.buf;
    // Connection: comma-separated tokens across every Connection field.
    let close = false;
    let keepAliveToken = false;
    let upgradeToken = false;
    if (head.knownCount[H.connection]) {
      for (let i = head.firstKnown[H.connection] as number; i < head.count; i++) {
        if (head.known[i] !== H.connection) continue;
        const vs = head.offsets[i * SLOT + 2] as number;
        const ve = head.offsets[i * SLOT + 3] as number;
        let s = vs;
        while (s <= ve) {
          let e = buf.indexOf(0x2c, s);
          if (e < 0 || e > ve) e = ve;
          let a = s;
          let b = e;
          while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
          while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
          if (eqLower(buf, a, b, "close")) close = true;
          else if (eqLower(buf, a, b, "keep-alive")) keepAliveToken = true;
          else if (eqLower(buf, a, b, "upgrade")) upgradeToken = true;
          else if (b > a) (head.nominated ??= []).push(buf.toString("latin1", a, b).toLowerCase());
          s = e + 1;
        }
      }
    }
    head.keepAlive = head.versionMinor === 1 ? !close : keepAliveToken && !close;
    if (upgradeToken && head.versionMinor === 1 && head.knownCount[H.upgrade]) head.upgrade = true;

    const te = head.knownCount[H["transfer-encoding"]] as number;
    const cl = head.knownCount[H["content-length"]] as number;
    if (te && cl) return this.refuse(400, "content-length-with-transfer-encoding", "both Content-Length and Transfer-Encoding");
    if (te) {
      if (head.versionMinor === 0) return this.refuse(400, "transfer-encoding-in-http-1.0", "Transfer-Encoding in an HTTP/1.0 message");
      if (te > 1) return this.refuse(400, "transfer-encoding-duplicate", "more than one Transfer-Encoding field");
      const i = head.firstKnown[H["transfer-encoding"]] as number;
      const vs = head.offsets[i * SLOT + 2] as number;
      const ve = head.offsets[i * SLOT + 3] as number;
      if (eqLower(buf, vs, ve, "chunked")) head.chunked = true;
      else {
        const codings = buf
          .toString("latin1", vs, ve)
          .split(",")
          .map((c) => c.trim().toLowerCase());
        if (codings.includes("chunked") && codings[codings.length - 1] !== "chunked")
          return this.refuse(400, "transfer-encoding-chunked-not-final", `Transfer-Encoding "${buf.toString("latin1", vs, ve)}"`);
        if (codings.filter((c) => c === "chunked").length > 1) return this.refuse(400, "transfer-encoding-duplicate", "chunked applied twice");
        return this.refuse(501, "transfer-encoding-unsupported", `Transfer-Encoding "${buf.toString("latin1", vs, ve)}" (only "chunked" is accepted)`);
      }
    }
    if (cl) {
      if (cl > 1) return this.refuse(400, "content-length-duplicate", "more than one Content-Length field");
      const i = head.firstKnown[H["content-length"]] as number;
      const vs = head.offsets[i * SLOT + 2] as number;
      const ve = head.offsets[i * SLOT + 3] as number;
      if (ve === vs || ve - vs > 15) return this.refuse(400, "content-length-invalid", `Content-Length "${buf.toString("latin1", vs, ve)}"`);
      let n = 0;
      for (let p = vs; p < ve; p++) {
        const c = (buf[p] as number) - 0x30;
        if (c < 0 || c > 9) return this.refuse(400, "content-length-invalid", `Content-Length "${buf.toString("latin1", vs, ve)}"`);
        n = n * 10 + c;
      }
      if (n > this.limits.maxBodyBytes) return this.refuse(413, "body-too-large", `Content-Length ${n} exceeds ${this.limits.maxBodyBytes}`);
      head.contentLength = n;
    }
    return true;
  }

  protected startBody(noBody: boolean, untilClose: boolean): void {
    this.bodyBytes = 0;
    if (noBody) this.state = S_DONE;
    else if (this.head.chunked) {
      this.state = S_CHUNK_SIZE;
      this.remaining = 0;
      this.chunkDigits = 0;
      this.extBytes = 0;
    } else if (this.head.contentLength > 0) {
      this.state = S_BODY_LENGTH;
      this.remaining = this.head.contentLength;
    } else if (untilClose) {
      this.state = S_BODY_EOF;
      this.head.keepAlive = false;
    } else this.state = S_DONE;
  }

  protected abstract finishMessage(off: number): number;

  protected nextState(paused: boolean): void {
    this.state = paused ? S_PAUSED : this.head.keepAlive ? S_HEAD : S_CLOSED;
  }

  private executeChunked(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      const c = buf[i] as number;
      switch (this.state) {
        case S_CHUNK_SIZE: {
          const h = HEX[c] as number;
          if (h >= 0) {
            if (++this.chunkDigits > 16 || this.remaining > 0xfffffffffff) return this.failAt(400, "bad-chunk-size", "chunk size has too many digits", i);
            this.remaining = this.remaining * 16 + h;
          } else if (this.chunkDigits === 0) return this.failAt(400, "bad-chunk-size", `byte 0x${c.toString(16)} where a chunk size starts`, i);
          else if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c === 0x3b) this.state = S_CHUNK_EXT;
          else if (c === SP || c === HTAB) this.state = S_CHUNK_SIZE_WS;
          else return this.failAt(400, "bad-chunk-size", `byte 0x${c.toString(16)} in a chunk size`, i);
          i++;
          break;
        }
        case S_CHUNK_SIZE_WS:
          if (c === 0x3b) this.state = S_CHUNK_EXT;
          else if (c !== SP && c !== HTAB) return this.failAt(400, "bad-chunk-size", "whitespace after a chunk size not followed by an extension", i);
          i++;
          break;
        case S_CHUNK_EXT:
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c === LF) return this.failAt(400, "bare-lf", "chunk-size line ends in LF without CR", i);
          else if (!VALUE[c]) return this.failAt(400, "bad-chunk-extension", `byte 0x${c.toString(16)} in a chunk extension`, i);
          else if (++this.extBytes > this.limits.maxChunkExtensionBytes) return this.failAt(400, "bad-chunk-extension", "chunk extensions too long", i);
          i++;
          break;
        case S_CHUNK_SIZE_LF:
          if (c !== LF) return this.failAt(400, "bad-chunk-size", "CR not followed by LF after a chunk size", i);
          i++;
          this.extBytes = 0;
          this.chunkDigits = 0;
          if (this.remaining === 0) {
            this.state = S_TRAILER;
            this.trailer.length = 0;
            this.trailerBytes = 0;
            this.trailerCount = 0;
          } else {
            if (this.bodyBytes + this.remaining > this.limits.maxBodyBytes)
              return this.failAt(413, "body-too-large", `body exceeds ${this.limits.maxBodyBytes} bytes`, i);
            this.state = S_CHUNK_DATA;
          }
          break;
        case S_CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i);
          this.remaining -= n;
          this.bodyBytes += n;
          this.bodyStart = i;
          this.bodyEnd = i + n;
          if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
          return this.emit(Ev.Body, i + n);
        }
        case S_CHUNK_DATA_CR:
          if (c !== CR) return this.failAt(400, "bad-chunk-data", "chunk data longer than its size", i);
          this.state = S_CHUNK_DATA_LF;
          i++;
          break;
        case S_CHUNK_DATA_LF:
          if (c !== LF) return this.failAt(400, "bad-chunk-data", "CR not followed by LF after chunk data", i);
          this.state = S_CHUNK_SIZE;
          i++;
          break;
        case S_TRAILER: {
          // Trailer lines are collected (bounded) and checked like header lines when each ends.
          if (++this.trailerBytes > this.limits.maxHeaderBytes) return this.failAt(431, "headers-too-large", "trailers too large", i);
          this.trailer.push(c);
          i++;
          if (c !== LF) break;
          const line = this.trailer;
          if (line.length < 2 || line[line.length - 2] !== CR) return this.failAt(400, "bare-lf", "trailer line ends in LF without CR", i);
          if (line.length === 2) {
            this.state = S_DONE;
            return this.finishMessage(i);
          }
          if (++this.trailerCount > this.limits.maxHeaders) return this.failAt(431, "too-many-headers", "too many trailer fields", i);
          const why = checkFieldLine(line);
          if (why) return this.failAt(400, "bad-trailer", why, i);
          line.length = 0;
          break;
        }
        default:
          return this.execute(buf, i, end);
      }
    }
    return this.emit(Ev.NeedMore, i);
  }
}

/** Checks one trailer field line (bytes including CRLF); returns why it is refused, or "". */
function checkFieldLine(line: number[]): string {
  const le = line.length - 2;
  let p = 0;
  while (p < le && TCHAR[line[p] as number]) p++;
  if (p === 0 || p === le || line[p] !== 0x3a) return "malformed trailer field";
  const name = String.fromCharCode(...line.slice(0, p)).toLowerCase();
  if (TRAILER_FORBIDDEN.has(name)) return `trailer field "${name}" is not allowed`;
  for (p++; p < le; p++) if (!VALUE[line[p] as number]) return "bad byte in trailer value";
  return "";
}

/** Downstream: parses requests. Refusals carry 400/413/417/431/501/505. */
export class RequestParser extends Http1Parser {
  protected readonly errorStatus = null;

  protected parseStartLine(buf: Buffer, s: number, e: number): boolean {
    const head = this.head;
    let p = s;
    while (p < e && TCHAR[buf[p] as number]) p++;
    if (p === s || p === e || buf[p] !== SP) {
      if (p < e && buf[p] !== SP) return this.refuse(400, "bad-method", `byte 0x${(buf[p] as number).toString(16)} in method`);
      return this.refuse(400, p === s ? "bad-method" : "http-0.9", p === s ? "empty method" : "request line without target");
    }
    head.method = methodString(buf, s, p);
    const ts = p + 1;
    const sp2 = buf.indexOf(SP, ts);
    if (sp2 < 0 || sp2 > e) return this.refuse(400, "http-0.9", "request line without HTTP version (HTTP/0.9)");
    if (sp2 === ts) return this.refuse(400, "bad-request-line", "empty request-target or double space");
    const sp3 = buf.indexOf(SP, sp2 + 1);
    if (sp3 >= 0 && sp3 < e) return this.refuse(400, "bad-request-target", "space in request-target");
    head.targetStart = ts;
    head.targetEnd = sp2;
    // Version: exactly HTTP/1.1 or HTTP/1.0.
    const vs = sp2 + 1;
    if (
      e - vs !== 8 ||
      buf.toString("latin1", vs, vs + 5) !== "HTTP/" ||
      buf[vs + 6] !== 0x2e ||
      !isDigit(buf[vs + 5] as number) ||
      !isDigit(buf[vs + 7] as number)
    )
      return this.refuse(400, "bad-version", `"${buf.toString("latin1", vs, e)}" is not an HTTP version`);
    const major = (buf[vs + 5] as number) - 0x30;
    const minor = (buf[vs + 7] as number) - 0x30;
    if (major !== 1 || minor > 1) return this.refuse(505, "version-unsupported", `HTTP/${major}.${minor}`);
    head.versionMinor = minor;
    return this.parseTarget(buf, ts, sp2);
  }

  private parseTarget(buf: Buffer, s: number, e: number): boolean {
    const head = this.head;
    const m = head.method;
    if (m === "CONNECT") {
      head.form = "authority";
      const a = buf.toString("latin1", s, e);
      if (!HOST_RE.test(a) || !/:[0-9]{1,5}$/.test(a)) return this.refuse(400, "bad-request-target", "CONNECT needs host:port");
      head.authorityStart = s;
      head.authorityEnd = e;
      return true;
    }
    const c0 = buf[s] as number;
    if (c0 === 0x2a && e - s === 1) {
      if (m !== "OPTIONS") return this.refuse(400, "bad-request-target", `"*" is only for OPTIONS`);
      head.form = "asterisk";
      return true;
    }
    let path = s;
    if (c0 !== 0x2f) {
      // absolute-form: http(s)://authority[/path][?query]
      const text = buf.toString("latin1", s, Math.min(e, s + 8)).toLowerCase();
      const skip = text.startsWith("http://") ? 7 : text.startsWith("https://") ? 8 : 0;
      if (!skip) return this.refuse(400, "bad-request-target", "request-target is not origin-form, absolute-form or *");
      const as = s + skip;
      let ae = as;
      while (ae < e && buf[ae] !== 0x2f && buf[ae] !== 0x3f) ae++;
      const a = buf.toString("latin1", as, ae);
      if (ae === as || !HOST_RE.test(a)) return this.refuse(400, "bad-request-target", `authority "${a}" in absolute-form target`);
      head.form = "absolute";
      head.authorityStart = as;
      head.authorityEnd = ae;
      path = ae;
    }
    head.pathStart = path;
    let inQuery = false;
    for (let p = path; p < e; p++) {
      const c = buf[p] as number;
      if (!TARGET[c]) return this.refuse(400, "bad-request-target", c === 0x23 ? "fragment in request-target" : `byte 0x${c.toString(16)} in request-target`);
      if (c === 0x3f) inQuery = true;
      else if (!inQuery) {
        if (c === 0x5c) return this.refuse(400, "bad-request-target", "backslash in path");
        if (c === 0x25 && (p + 2 >= e || (HEX[buf[p + 1] as number] as number) < 0 || (HEX[buf[p + 2] as number] as number) < 0))
          return this.refuse(400, "bad-request-target", "bad percent-encoding in path");
      }
    }
    return true;
  }

  protected frame(head: MessageHead): boolean {
    if (!this.commonHeaders(head)) return false;
    const hosts = head.knownCount[H.host] as number;
    if (hosts > 1) return this.refuse(400, "host-duplicate", "more than one Host field");
    if (hosts === 1) {
      const i = head.firstKnown[H.host] as number;
      const hv = head.value(i);
      if (!HOST_RE.test(hv)) return this.refuse(400, "host-invalid", `Host "${hv}"`);
      if (head.authorityStart >= 0) {
        if (hv.toLowerCase() !== head.authority().toLowerCase()) return this.refuse(400, "host-mismatch", `Host "${hv}" differs from the target's authority`);
      } else {
        head.authorityStart = head.offsets[i * SLOT + 2] as number;
        head.authorityEnd = head.offsets[i * SLOT + 3] as number;
      }
    } else if (head.versionMinor === 1) return this.refuse(400, "host-missing", "HTTP/1.1 request without Host");
    if (head.knownCount[H.expect]) {
      const v = head.get("expect") as string;
      if (v.toLowerCase() !== "100-continue") return this.refuse(417, "expectation-unsupported", `Expect "${v}"`);
      head.expectContinue = head.versionMinor === 1;
    }
    if (head.method === "CONNECT") {
      if (head.chunked || head.contentLength > 0) return this.refuse(400, "connect-with-body", "CONNECT request with content");
      head.isConnect = true;
    }
    return true;
  }

  protected afterHead(): void {
    this.startBody(this.head.isConnect, false);
  }

  protected finishMessage(off: number): number {
    this.nextState(this.head.isConnect || this.head.upgrade);
    return this.emit(Ev.End, off);
  }
}

/** Upstream: parses responses to the requests announced by `expect()`. Refusals are answered 502. */
export class ResponseParser extends Http1Parser {
  protected readonly errorStatus = 502 as const;
  private requestMethod = "GET";
  private requestUpgrade = false;

  /** The request this response answers: HEAD has no body, CONNECT 2xx and 101 switch to a tunnel. */
  expect(method: string, upgrade = false): void {
    this.requestMethod = method;
    this.requestUpgrade = upgrade;
  }

  protected parseStartLine(buf: Buffer, s: number, e: number): boolean {
    const head = this.head;
    if (e - s < 12 || buf.toString("latin1", s, s + 7) !== "HTTP/1." || (buf[s + 7] !== 0x30 && buf[s + 7] !== 0x31) || buf[s + 8] !== SP)
      return this.refuse(502, "bad-status-line", `"${buf.toString("latin1", s, Math.min(e, s + 40))}"`);
    head.versionMinor = (buf[s + 7] as number) - 0x30;
    let status = 0;
    for (let p = s + 9; p < s + 12; p++) {
      const d = (buf[p] as number) - 0x30;
      if (d < 0 || d > 9) return this.refuse(502, "bad-status-line", "status code is not three digits");
      status = status * 10 + d;
    }
    if (status < 100) return this.refuse(502, "bad-status-line", `status ${status}`);
    if (e > s + 12 && buf[s + 12] !== SP) return this.refuse(502, "bad-status-line", "status code is not three digits");
    for (let p = s + 13; p < e; p++) if (!VALUE[buf[p] as number]) return this.refuse(502, "bad-status-line", "bad byte in reason phrase");
    head.status = status;
    return true;
  }

  protected frame(head: MessageHead): boolean {
    if (!this.commonHeaders(head)) return false;
    head.isConnect = this.requestMethod === "CONNECT" && head.status >= 200 && head.status < 300;
    head.upgrade = head.status === 101 && this.requestUpgrade;
    return true;
  }

  protected afterHead(): void {
    const st = this.head.status;
    const noBody = (st >= 100 && st < 200) || st === 204 || st === 304 || this.requestMethod === "HEAD" || this.head.isConnect;
    this.startBody(noBody, true);
  }

  protected finishMessage(off: number): number {
    const st = this.head.status;
    if (st >= 100 && st < 200 && !this.head.upgrade)
      this.state = S_HEAD; // interim: the final response follows
    else this.nextState(this.head.isConnect || this.head.upgrade);
    return this.emit(Ev.End, off);
  }
}
