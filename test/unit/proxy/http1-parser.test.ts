// HTTP/1.1 parsers (src/proxy/http1/parser.ts): what a request parses to, what is refused and with
// which status and reason (smuggling vectors first), identical results however the bytes are split,
// and the upstream response parser's framing.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Ev, type Http1Limits, RequestParser, ResponseParser } from "../../../src/proxy/http1/parser.ts";
import { refusalResponse } from "../../../src/proxy/http1/refusal.ts";

interface Parsed {
  method: string;
  target: string;
  pathAndQuery: string;
  authority: string;
  headers: [string, string][];
  body: string;
  keepAlive: boolean;
  chunked: boolean;
  contentLength: number;
  expectContinue: boolean;
  upgrade: boolean;
  isConnect: boolean;
  nominated: string[] | null;
}
interface Outcome {
  requests: Parsed[];
  /** The last event other than need-more. */
  last: string;
  error?: { status: number; reason: string };
  /** Concatenation of the bytes each call consumed: must equal the input up to where parsing stopped. */
  consumed: string;
}

const EV_NAME = ["need-more", "head", "body", "end", "paused", "closed", "error"];

function runRequests(input: string, split: number, limits?: Partial<Http1Limits>): Outcome {
  const p = new RequestParser(limits);
  const all = Buffer.from(input, "latin1");
  const out: Outcome = { requests: [], last: "", consumed: "" };
  let cur: Parsed | undefined;
  let stop = false;
  for (let at = 0; at < all.length && !stop; at += split) {
    const buf = Buffer.from(all.subarray(at, Math.min(all.length, at + split)));
    let off = 0;
    for (let guard = 0; guard < 10_000; guard++) {
      const before = off;
      off = p.execute(buf, off, buf.length);
      out.consumed += buf.toString("latin1", before, off);
      if (p.event !== Ev.NeedMore) out.last = EV_NAME[p.event] as string;
      if (p.event === Ev.Head) {
        const h = p.head;
        cur = {
          method: h.method,
          target: h.target(),
          pathAndQuery: h.pathAndQuery(),
          authority: h.authority(),
          headers: Array.from({ length: h.count }, (_, i) => [h.name(i), h.value(i)]),
          body: "",
          keepAlive: h.keepAlive,
          chunked: h.chunked,
          contentLength: h.contentLength,
          expectContinue: h.expectContinue,
          upgrade: h.upgrade,
          isConnect: h.isConnect,
          nominated: h.nominated,
        };
        out.requests.push(cur);
      } else if (p.event === Ev.Body) {
        assert.ok(cur);
        cur.body += buf.toString("latin1", p.bodyStart, p.bodyEnd);
      } else if (p.event === Ev.NeedMore) break;
      else if (p.event === Ev.Error) {
        out.error = { status: p.error?.status as number, reason: p.error?.reason as string };
        stop = true;
        break;
      } else if (p.event === Ev.Paused || p.event === Ev.Closed) {
        stop = true;
        break;
      }
    }
  }
  return out;
}

type Want = { status: number; reason: string } | ((o: Outcome) => void);

const req = (lines: string[], body = "") => `${lines.join("\r\n")}\r\n\r\n${body}`;
const get = (...hdrs: string[]) => req(["GET / HTTP/1.1", "Host: a", ...hdrs]);
const post = (hdrs: string[], body: string) => req(["POST /p HTTP/1.1", "Host: a", ...hdrs], body);
const one = (f: (r: Parsed, o: Outcome) => void) => (o: Outcome) => {
  assert.equal(o.error, undefined, JSON.stringify(o.error));
  assert.ok(o.requests[0], "a request parsed");
  f(o.requests[0], o);
};

const cases: [string, string, Want, Partial<Http1Limits>?][] = [
  // ---- accepted ----
  [
    "simple GET: method, target, Host as authority, keep-alive",
    get(),
    one((r, o) => {
      assert.equal(r.method, "GET");
      assert.equal(r.target, "/");
      assert.equal(r.authority, "a");
      assert.equal(r.keepAlive, true);
      assert.equal(o.last, "end");
    }),
  ],
  ["query kept in the target", req(["GET /x/y?q=1&r=%2F HTTP/1.1", "Host: a"]), one((r) => assert.equal(r.pathAndQuery, "/x/y?q=1&r=%2F"))],
  ["POST with Content-Length body", post(["Content-Length: 5"], "hello"), one((r) => assert.deepEqual([r.body, r.contentLength], ["hello", 5]))],
  ["Content-Length: 0 has no body", post(["Content-Length: 0"], ""), one((r, o) => assert.deepEqual([r.body, o.last], ["", "end"]))],
  [
    "chunked body with an extension is decoded",
    post(["Transfer-Encoding: chunked"], "5;name=val\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    one((r, o) => assert.deepEqual([r.body, r.chunked, o.last], ["hello world", true, "end"])),
  ],
  [
    "chunked with trailers",
    post(["Transfer-Encoding: chunked"], "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"),
    one((r, o) => assert.deepEqual([r.body, o.last], ["abc", "end"])),
  ],
  ["Transfer-Encoding value is case-insensitive", post(["Transfer-Encoding: Chunked"], "1\r\nx\r\n0\r\n\r\n"), one((r) => assert.equal(r.body, "x"))],
  [
    "uppercase hex and leading zeros in chunk sizes",
    post(["Transfer-Encoding: chunked"], "000A\r\n0123456789\r\n00\r\n\r\n"),
    one((r) => assert.equal(r.body, "0123456789")),
  ],
  ["chunk extension after whitespace (BWS)", post(["Transfer-Encoding: chunked"], "2 ;x\r\nab\r\n0\r\n\r\n"), one((r) => assert.equal(r.body, "ab"))],
  [
    "two pipelined requests parse in order",
    post(["Content-Length: 3"], "abc") + req(["GET /two HTTP/1.1", "Host: b"]),
    (o) => {
      assert.equal(o.error, undefined);
      assert.deepEqual(
        o.requests.map((r) => [r.method, r.target, r.body, r.authority]),
        [
          ["POST", "/p", "abc", "a"],
          ["GET", "/two", "", "b"],
        ],
      );
    },
  ],
  [
    "HTTP/1.0 without Host is accepted and closes",
    req(["GET / HTTP/1.0"]),
    one((r, o) => assert.deepEqual([r.keepAlive, r.authority, o.last], [false, "", "closed"])),
  ],
  ["HTTP/1.0 with Connection: keep-alive stays open", req(["GET / HTTP/1.0", "Connection: keep-alive"]), one((r) => assert.equal(r.keepAlive, true))],
  [
    "HTTP/1.1 Connection: close ends the connection after the message",
    get("Connection: close") + get(),
    one((r, o) => assert.deepEqual([r.keepAlive, o.requests.length, o.last], [false, 1, "closed"])),
  ],
  [
    "Connection tokens across fields, nominated hop-by-hop names",
    get("Connection: keep-alive, X-Foo", "Connection: close"),
    one((r) => assert.deepEqual([r.keepAlive, r.nominated], [false, ["x-foo"]])),
  ],
  ["Expect: 100-continue", post(["Content-Length: 1", "Expect: 100-Continue"], "x"), one((r) => assert.equal(r.expectContinue, true))],
  [
    "Expect: 100-continue is ignored in HTTP/1.0",
    req(["POST / HTTP/1.0", "Content-Length: 1", "Expect: 100-continue"], "x"),
    one((r) => assert.equal(r.expectContinue, false)),
  ],
  [
    "WebSocket upgrade pauses after the head",
    get("Connection: Upgrade", "Upgrade: websocket") + "\x00\x01frames",
    one((r, o) => assert.deepEqual([r.upgrade, o.last], [true, "paused"])),
  ],
  ["Upgrade without Connection: upgrade is not an upgrade", get("Upgrade: websocket"), one((r, o) => assert.deepEqual([r.upgrade, o.last], [false, "end"]))],
  [
    "CONNECT host:port pauses (tunnel)",
    req(["CONNECT db.internal:5432 HTTP/1.1", "Host: db.internal:5432"]),
    one((r, o) => assert.deepEqual([r.isConnect, r.authority, o.last], [true, "db.internal:5432", "paused"])),
  ],
  ["OPTIONS * (asterisk-form)", req(["OPTIONS * HTTP/1.1", "Host: a"]), one((r) => assert.deepEqual([r.target, r.pathAndQuery], ["*", "*"]))],
  [
    "absolute-form: authority from the target, path and query kept",
    req(["GET http://Example.com:8080/x?y=1 HTTP/1.1", "Host: example.com:8080"]),
    one((r) => assert.deepEqual([r.authority, r.pathAndQuery], ["Example.com:8080", "/x?y=1"])),
  ],
  [
    "absolute-form without a path is /",
    req(["GET https://example.com HTTP/1.1", "Host: example.com"]),
    one((r) => assert.deepEqual([r.authority, r.pathAndQuery], ["example.com", "/"])),
  ],
  ["absolute-form with a query and no path", req(["GET http://a?q=1 HTTP/1.1", "Host: a"]), one((r) => assert.equal(r.pathAndQuery, "/?q=1"))],
  ["header OWS trimmed, obs-text allowed in values", get("X-A: \t caf\xe9 \t"), one((r) => assert.deepEqual(r.headers[1], ["X-A", "caf\xe9"]))],
  ["empty header value", get("X-Empty:"), one((r) => assert.deepEqual(r.headers[1], ["X-Empty", ""]))],
  ["leading CRLF before the request line is ignored", `\r\n${get()}`, one((r) => assert.equal(r.method, "GET"))],
  ["extension method token", req(["PURGE /cache HTTP/1.1", "Host: a"]), one((r) => assert.equal(r.method, "PURGE"))],
  ["valid percent-encoding in the path", req(["GET /a%2Fb%7e HTTP/1.1", "Host: a"]), one((r) => assert.equal(r.target, "/a%2Fb%7e"))],
  ["backslash allowed in the query only", req(["GET /a?x=\\y HTTP/1.1", "Host: a"]), one((r) => assert.equal(r.target, "/a?x=\\y"))],
  ["IPv6 literal Host", get().replace("Host: a", "Host: [::1]:8080"), one((r) => assert.equal(r.authority, "[::1]:8080"))],
  [
    "exactly the header limit is accepted",
    get(`X-Pad: ${"p".repeat(200 - get().length - 9)}`),
    one((r) => assert.equal(r.headers.length, 2)),
    { maxHeaderBytes: 200 },
  ],
  // ---- smuggling: framing ambiguity ----
  [
    "CL.TE: Content-Length then Transfer-Encoding",
    post(["Content-Length: 6", "Transfer-Encoding: chunked"], "0\r\n\r\nG"),
    { status: 400, reason: "content-length-with-transfer-encoding" },
  ],
  [
    "TE.CL: Transfer-Encoding then Content-Length",
    post(["Transfer-Encoding: chunked", "Content-Length: 3"], "8\r\nSMUGGLED\r\n0\r\n\r\n"),
    { status: 400, reason: "content-length-with-transfer-encoding" },
  ],
  ["TE.TE: Transfer-Encoding: xchunked", post(["Transfer-Encoding: xchunked"], ""), { status: 501, reason: "transfer-encoding-unsupported" }],
  [
    "TE.TE: chunked, identity (chunked not final)",
    post(["Transfer-Encoding: chunked, identity"], ""),
    { status: 400, reason: "transfer-encoding-chunked-not-final" },
  ],
  ["TE.TE: identity", post(["Transfer-Encoding: identity"], ""), { status: 501, reason: "transfer-encoding-unsupported" }],
  ["TE.TE: gzip, chunked", post(["Transfer-Encoding: gzip, chunked"], ""), { status: 501, reason: "transfer-encoding-unsupported" }],
  ["TE.TE: chunked, chunked", post(["Transfer-Encoding: chunked, chunked"], ""), { status: 400, reason: "transfer-encoding-duplicate" }],
  [
    "TE.TE: two Transfer-Encoding fields",
    post(["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], ""),
    { status: 400, reason: "transfer-encoding-duplicate" },
  ],
  ["TE.TE: chunked with a parameter", post(["Transfer-Encoding: chunked;q=1"], ""), { status: 501, reason: "transfer-encoding-unsupported" }],
  ["TE.TE: space before the colon", post(["Transfer-Encoding : chunked"], ""), { status: 400, reason: "space-before-colon" }],
  ["TE.TE: tab before the colon", post(["Transfer-Encoding\t: chunked"], ""), { status: 400, reason: "space-before-colon" }],
  ["TE.TE: folded onto the next line (obs-fold)", post(["X-A: 1", " Transfer-Encoding: chunked"], ""), { status: 400, reason: "obs-fold" }],
  ["TE.TE: vertical tab before the value", post(["Transfer-Encoding:\x0bchunked"], ""), { status: 400, reason: "bad-header-value" }],
  ["TE.TE: name with a non-token byte", post(["Transfer_Encoding\x01: chunked"], ""), { status: 400, reason: "bad-header-name" }],
  [
    "Transfer-Encoding in HTTP/1.0",
    req(["POST / HTTP/1.0", "Transfer-Encoding: chunked"], "0\r\n\r\n"),
    { status: 400, reason: "transfer-encoding-in-http-1.0" },
  ],
  ["empty Transfer-Encoding", post(["Transfer-Encoding: "], ""), { status: 501, reason: "transfer-encoding-unsupported" }],
  [
    "CL.CL: duplicate Content-Length, different values",
    post(["Content-Length: 3", "Content-Length: 5"], "abcde"),
    { status: 400, reason: "content-length-duplicate" },
  ],
  ["CL.CL: duplicate Content-Length, same value", post(["Content-Length: 3", "Content-Length: 3"], "abc"), { status: 400, reason: "content-length-duplicate" }],
  ["Content-Length list 5, 5", post(["Content-Length: 5, 5"], "hello"), { status: 400, reason: "content-length-invalid" }],
  ["Content-Length with a sign", post(["Content-Length: +5"], "hello"), { status: 400, reason: "content-length-invalid" }],
  ["negative Content-Length", post(["Content-Length: -1"], ""), { status: 400, reason: "content-length-invalid" }],
  ["Content-Length with trailing junk", post(["Content-Length: 5x"], "hello"), { status: 400, reason: "content-length-invalid" }],
  ["Content-Length in hex", post(["Content-Length: 0x5"], "hello"), { status: 400, reason: "content-length-invalid" }],
  ["empty Content-Length", post(["Content-Length:"], ""), { status: 400, reason: "content-length-invalid" }],
  ["Content-Length with 16 digits", post(["Content-Length: 1000000000000000"], ""), { status: 400, reason: "content-length-invalid" }],
  ["Content-Length over the body limit", post(["Content-Length: 1001"], ""), { status: 413, reason: "body-too-large" }, { maxBodyBytes: 1000 }],
  ["chunked body over the body limit", post(["Transfer-Encoding: chunked"], "3e9\r\n"), { status: 413, reason: "body-too-large" }, { maxBodyBytes: 1000 }],
  // ---- chunk framing ----
  ["chunk size not hex", post(["Transfer-Encoding: chunked"], "zz\r\n"), { status: 400, reason: "bad-chunk-size" }],
  ["chunk size 0x5", post(["Transfer-Encoding: chunked"], "0x5\r\nhello\r\n0\r\n\r\n"), { status: 400, reason: "bad-chunk-size" }],
  ["negative chunk size", post(["Transfer-Encoding: chunked"], "-5\r\n"), { status: 400, reason: "bad-chunk-size" }],
  ["chunk size with 17 digits (overflow)", post(["Transfer-Encoding: chunked"], `${"f".repeat(17)}\r\n`), { status: 400, reason: "bad-chunk-size" }],
  ["empty chunk size line", post(["Transfer-Encoding: chunked"], "\r\n"), { status: 400, reason: "bad-chunk-size" }],
  ["chunk size then whitespace without extension", post(["Transfer-Encoding: chunked"], "5 \r\nhello\r\n"), { status: 400, reason: "bad-chunk-size" }],
  ["chunk size line ends in bare LF", post(["Transfer-Encoding: chunked"], "5;a\nhello\r\n"), { status: 400, reason: "bare-lf" }],
  ["chunk size CR without LF", post(["Transfer-Encoding: chunked"], "5\rhello"), { status: 400, reason: "bad-chunk-size" }],
  ["chunk data longer than its size", post(["Transfer-Encoding: chunked"], "3\r\nabcdef\r\n0\r\n\r\n"), { status: 400, reason: "bad-chunk-data" }],
  ["chunk data followed by LF only", post(["Transfer-Encoding: chunked"], "3\r\nabc\n0\r\n\r\n"), { status: 400, reason: "bad-chunk-data" }],
  ["NUL in a chunk extension", post(["Transfer-Encoding: chunked"], "3;a=\x00\r\nabc\r\n0\r\n\r\n"), { status: 400, reason: "bad-chunk-extension" }],
  ["chunk extensions over the limit", post(["Transfer-Encoding: chunked"], `3;${"x".repeat(5000)}\r\n`), { status: 400, reason: "bad-chunk-extension" }],
  ["Content-Length smuggled in a trailer", post(["Transfer-Encoding: chunked"], "0\r\nContent-Length: 5\r\n\r\n"), { status: 400, reason: "bad-trailer" }],
  ["malformed trailer line", post(["Transfer-Encoding: chunked"], "0\r\nno colon\r\n\r\n"), { status: 400, reason: "bad-trailer" }],
  // ---- header bytes ----
  ["bare CR inside a header value", get("X-A: a\rb"), { status: 400, reason: "bare-cr" }],
  ["NUL in a header value", get("X-A: a\x00b"), { status: 400, reason: "bad-header-value" }],
  ["DEL in a header value", get("X-A: a\x7fb"), { status: 400, reason: "bad-header-value" }],
  ["bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", { status: 400, reason: "bare-lf" }],
  ["bare LF ending one header line", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", { status: 400, reason: "bare-lf" }],
  ["header name with @", get("X@Y: 1"), { status: 400, reason: "bad-header-name" }],
  ["empty header name", get(": 1"), { status: 400, reason: "bad-header-name" }],
  ["header line without colon", get("JustAName"), { status: 400, reason: "bad-header-name" }],
  ["non-ASCII header name", get("X-\xe9: 1"), { status: 400, reason: "bad-header-name" }],
  ["header section over a configured 200-byte limit", get(`X-Pad: ${"p".repeat(200)}`), { status: 431, reason: "headers-too-large" }, { maxHeaderBytes: 200 }],
  ["header section over the default 60 KiB", get(`X-Pad: ${"p".repeat(61 * 1024)}`), { status: 431, reason: "headers-too-large" }],
  [
    "a head that never ends is refused at the limit",
    `GET / HTTP/1.1\r\nX: ${"a".repeat(300)}`,
    { status: 431, reason: "headers-too-large" },
    { maxHeaderBytes: 256 },
  ],
  ["more header fields than allowed", get("A: 1", "B: 2", "C: 3", "D: 4", "E: 5"), { status: 431, reason: "too-many-headers" }, { maxHeaders: 5 }],
  // ---- request line ----
  ["invalid method token", req(["G(T / HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-method" }],
  ["empty method", req([" / HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-method" }],
  ["HTTP/0.9 request line", "GET /\r\n\r\n", { status: 400, reason: "http-0.9" }],
  ["HTTP/2.0 on an HTTP/1 connection", req(["GET / HTTP/2.0", "Host: a"]), { status: 505, reason: "version-unsupported" }],
  ["HTTP/1.2", req(["GET / HTTP/1.2", "Host: a"]), { status: 505, reason: "version-unsupported" }],
  ["lowercase version", req(["GET / http/1.1", "Host: a"]), { status: 400, reason: "bad-version" }],
  ["version with junk", req(["GET / HTTP/1.1x", "Host: a"]), { status: 400, reason: "bad-version" }],
  ["double space after the method", req(["GET  / HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-line" }],
  ["space inside the target", req(["GET /a b HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["fragment in the target", req(["GET /a#frag HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["non-ASCII byte in the target", req(["GET /caf\xe9 HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["control byte in the target", req(["GET /a\x01 HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["relative target", req(["GET a/b HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["* with GET", req(["GET * HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["backslash in the path", req(["GET /a\\..\\admin HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["bad percent-encoding %zz", req(["GET /%zz HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["truncated percent-encoding at the end", req(["GET /a%4 HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["absolute-form with userinfo", req(["GET http://user@a/ HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["absolute-form with another scheme", req(["GET ftp://a/ HTTP/1.1", "Host: a"]), { status: 400, reason: "bad-request-target" }],
  ["CONNECT without a port", req(["CONNECT db.internal HTTP/1.1", "Host: db.internal"]), { status: 400, reason: "bad-request-target" }],
  ["CONNECT with a body", req(["CONNECT db:5432 HTTP/1.1", "Host: db:5432", "Content-Length: 5"], "hello"), { status: 400, reason: "connect-with-body" }],
  // ---- Host and Expect ----
  ["HTTP/1.1 without Host", req(["GET / HTTP/1.1"]), { status: 400, reason: "host-missing" }],
  ["HTTP/1.1 absolute-form still needs Host", req(["GET http://a/ HTTP/1.1"]), { status: 400, reason: "host-missing" }],
  ["two Host fields", get("Host: b"), { status: 400, reason: "host-duplicate" }],
  ["Host with userinfo", req(["GET / HTTP/1.1", "Host: evil@a"]), { status: 400, reason: "host-invalid" }],
  ["Host with a path", req(["GET / HTTP/1.1", "Host: a/b"]), { status: 400, reason: "host-invalid" }],
  [
    "absolute-form authority differs from Host",
    req(["GET http://allowed.example/ HTTP/1.1", "Host: denied.example"]),
    { status: 400, reason: "host-mismatch" },
  ],
  ["unknown expectation", post(["Content-Length: 1", "Expect: 200-ok"], "x"), { status: 417, reason: "expectation-unsupported" }],
];

describe("HTTP/1.1 request parser", () => {
  for (const [name, input, want, limits] of cases) {
    it(name, () => {
      const results = [input.length, 1, 7].map((split) => runRequests(input, split, limits));
      const first = results[0] as Outcome;
      if (typeof want === "function") want(first);
      else assert.deepEqual(first.error, want, `requests: ${JSON.stringify(first.requests.map((r) => r.target))}`);
      // However the bytes arrive, the parse is the same, and consumed bytes are the input's prefix.
      for (const r of results.slice(1)) {
        assert.deepEqual(r.requests, first.requests);
        assert.deepEqual(r.error, first.error);
        assert.equal(r.last, first.last);
      }
      for (const r of results) assert.ok(input.startsWith(r.consumed), "consumed bytes are the wire bytes, in order");
    });
  }

  it("has at least 60 cases, a third of them refusals", () => {
    assert.ok(cases.length >= 60, `${cases.length} cases`);
    assert.ok(cases.filter((c) => typeof c[2] !== "function").length >= 40);
  });

  it("a refused request is answered with its status and the connection closes", () => {
    const b = refusalResponse(431).toString("latin1");
    assert.match(b, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(b, /\r\nconnection: close\r\n/);
    const body = b.slice(b.indexOf("\r\n\r\n") + 4);
    assert.match(b, new RegExp(`content-length: ${body.length}\r\n`));
  });

  it("resume() after a refused upgrade parses the next request on the connection", () => {
    const p = new RequestParser();
    const b = Buffer.from(get("Connection: upgrade", "Upgrade: websocket") + req(["GET /next HTTP/1.1", "Host: a"]));
    let off = p.execute(b);
    assert.equal(p.event, Ev.Head);
    off = p.execute(b, off);
    assert.equal(p.event, Ev.End);
    off = p.execute(b, off);
    assert.equal(p.event, Ev.Paused);
    p.resume();
    off = p.execute(b, off);
    assert.equal(p.event, Ev.Head);
    assert.equal(p.head.target(), "/next");
  });

  it("the head's known-name index finds fields without building objects", () => {
    const p = new RequestParser();
    p.execute(Buffer.from(get("X-Forwarded-For: 1.2.3.4", "x-forwarded-for: 5.6.7.8", "Cookie: a=1")));
    assert.equal(p.head.get("x-forwarded-for"), "1.2.3.4,5.6.7.8");
    assert.equal(p.head.get("cookie"), "a=1");
    assert.equal(p.head.get("absent"), undefined);
    assert.equal(p.head.knownCount[10], 2);
  });

  it("parses 100k small requests quickly (hot path, one head object reused)", () => {
    const p = new RequestParser();
    const b = Buffer.from(req(["GET /api/v1/items?id=42 HTTP/1.1", "Host: svc.default", "User-Agent: bench", "Accept: */*", "X-Request-Id: 1"]));
    const t0 = process.hrtime.bigint();
    let heads = 0;
    for (let i = 0; i < 100_000; i++) {
      let off = 0;
      for (;;) {
        off = p.execute(b, off);
        if (p.event === Ev.Head) heads++;
        if (p.event === Ev.NeedMore) break;
      }
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`  parsed 100k request heads in ${ms.toFixed(0)} ms (${((ms * 1000) / 100_000).toFixed(2)} µs each)`);
    assert.equal(heads, 100_000);
    assert.ok(ms < 10_000, `${ms} ms`);
  });
});

// ---- responses ----------------------------------------------------------------------------------

function runResponses(input: string, method: string, upgrade = false, eof = false) {
  const p = new ResponseParser();
  p.expect(method, upgrade);
  const b = Buffer.from(input, "latin1");
  const out: { statuses: number[]; body: string; events: string[]; error?: { status: number; reason: string } } = { statuses: [], body: "", events: [] };
  let off = 0;
  for (let guard = 0; guard < 1000; guard++) {
    off = p.execute(b, off);
    out.events.push(EV_NAME[p.event] as string);
    if (p.event === Ev.Head) out.statuses.push(p.head.status);
    if (p.event === Ev.Body) out.body += b.toString("latin1", p.bodyStart, p.bodyEnd);
    if (p.event === Ev.Error) out.error = { status: p.error?.status as number, reason: p.error?.reason as string };
    if (p.event !== Ev.Head && p.event !== Ev.Body && p.event !== Ev.End) break;
  }
  if (eof && !out.error) {
    const ev = p.finish();
    out.events.push(EV_NAME[ev] as string);
    if (ev === Ev.Error) out.error = { status: p.error?.status as number, reason: p.error?.reason as string };
  }
  return out;
}

const res = (lines: string[], body = "") => `${lines.join("\r\n")}\r\n\r\n${body}`;

describe("HTTP/1.1 response parser (upstream)", () => {
  const rcases: [string, string, string, boolean, boolean, (o: ReturnType<typeof runResponses>) => void][] = [
    [
      "200 with Content-Length",
      res(["HTTP/1.1 200 OK", "Content-Length: 2"], "ok"),
      "GET",
      false,
      false,
      (o) => assert.deepEqual([o.statuses, o.body, o.events.at(-1)], [[200], "ok", "need-more"]),
    ],
    [
      "chunked response",
      res(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"], "2\r\nok\r\n0\r\n\r\n"),
      "GET",
      false,
      false,
      (o) => assert.equal(o.body, "ok"),
    ],
    [
      "no length: body until the upstream closes",
      res(["HTTP/1.1 200 OK"], "all of it"),
      "GET",
      false,
      true,
      (o) => assert.deepEqual([o.body, o.events.at(-1)], ["all of it", "end"]),
    ],
    [
      "HEAD response has no body despite Content-Length",
      res(["HTTP/1.1 200 OK", "Content-Length: 100"]),
      "HEAD",
      false,
      false,
      (o) => assert.deepEqual([o.body, o.events.includes("end")], ["", true]),
    ],
    ["204 has no body", res(["HTTP/1.1 204 No Content"]), "DELETE", false, false, (o) => assert.ok(o.events.includes("end"))],
    [
      "304 has no body",
      res(["HTTP/1.1 304 Not Modified", "Content-Length: 10"]),
      "GET",
      false,
      false,
      (o) => assert.deepEqual([o.body, o.events.includes("end")], ["", true]),
    ],
    [
      "100 Continue, then the final response",
      res(["HTTP/1.1 100 Continue"]) + res(["HTTP/1.1 201 Created", "Content-Length: 0"]),
      "POST",
      false,
      false,
      (o) => assert.deepEqual(o.statuses, [100, 201]),
    ],
    [
      "101 to an upgrade request pauses (tunnel)",
      res(["HTTP/1.1 101 Switching Protocols", "Connection: upgrade", "Upgrade: websocket"]),
      "GET",
      true,
      false,
      (o) => assert.equal(o.events.at(-1), "paused"),
    ],
    ["2xx to CONNECT pauses (tunnel)", res(["HTTP/1.1 200 Connection Established"]), "CONNECT", false, false, (o) => assert.equal(o.events.at(-1), "paused")],
    ["status line without a reason phrase", res(["HTTP/1.1 200", "Content-Length: 0"]), "GET", false, false, (o) => assert.deepEqual(o.statuses, [200])],
    [
      "Content-Length with Transfer-Encoding is a bad gateway",
      res(["HTTP/1.1 200 OK", "Content-Length: 2", "Transfer-Encoding: chunked"]),
      "GET",
      false,
      false,
      (o) => assert.deepEqual(o.error, { status: 502, reason: "content-length-with-transfer-encoding" }),
    ],
    [
      "unsupported Transfer-Encoding from upstream",
      res(["HTTP/1.1 200 OK", "Transfer-Encoding: gzip"]),
      "GET",
      false,
      false,
      (o) => assert.deepEqual(o.error, { status: 502, reason: "transfer-encoding-unsupported" }),
    ],
    ["garbage status line", "HTTP/1.1 2OO OK\r\n\r\n", "GET", false, false, (o) => assert.deepEqual(o.error, { status: 502, reason: "bad-status-line" })],
    ["HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n", "GET", false, false, (o) => assert.deepEqual(o.error, { status: 502, reason: "bad-status-line" })],
    [
      "header injection in a response header",
      res(["HTTP/1.1 200 OK", "X-A: a\rSet-Cookie: x"]),
      "GET",
      false,
      false,
      (o) => assert.deepEqual(o.error, { status: 502, reason: "bare-cr" }),
    ],
    [
      "truncated Content-Length body",
      res(["HTTP/1.1 200 OK", "Content-Length: 10"], "short"),
      "GET",
      false,
      true,
      (o) => assert.deepEqual(o.error, { status: 502, reason: "truncated" }),
    ],
  ];
  for (const [name, input, method, upgrade, eof, check] of rcases) it(name, () => check(runResponses(input, method, upgrade, eof)));
});
