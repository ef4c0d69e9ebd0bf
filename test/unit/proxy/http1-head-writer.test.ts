// Forwarded heads (src/proxy/http1/head-writer.ts): header lines pass through byte for byte, minus
// hop-by-hop and replaced fields, plus the proxy's own; the request line carries the normalised path.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { markHopByHop, markKnown, markName, responseHeadUnchanged, writeRequestHead, writeResponseHead } from "../../../src/proxy/http1/head-writer.ts";
import { Ev, H, RequestParser, ResponseParser } from "../../../src/proxy/http1/parser.ts";

function parse(text: string) {
  const p = new RequestParser();
  p.execute(Buffer.from(text, "latin1"));
  assert.equal(p.event, Ev.Head, p.error?.message);
  return p.head;
}

describe("head writer", () => {
  it("unchanged head: same bytes except the version is HTTP/1.1", () => {
    const text = "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-Custom:  Mixed Case \r\nAccept: */*\r\n\r\n";
    assert.equal(writeRequestHead(parse(text), null, null).toString("latin1"), text);
    const h10 = parse("GET /a HTTP/1.0\r\nX: 1\r\n\r\n");
    assert.equal(writeRequestHead(h10, null, null).toString("latin1"), "GET /a HTTP/1.1\r\nX: 1\r\n\r\n");
  });
  it("normalised target replaces the request-target; absolute-form becomes origin-form", () => {
    const h = parse("GET /public/../private HTTP/1.1\r\nHost: svc\r\n\r\n");
    assert.equal(writeRequestHead(h, "/private", null).toString("latin1"), "GET /private HTTP/1.1\r\nHost: svc\r\n\r\n");
    const a = parse("GET http://svc/x?y HTTP/1.1\r\nHost: svc\r\n\r\n");
    assert.equal(writeRequestHead(a, null, null).toString("latin1"), "GET /x?y HTTP/1.1\r\nHost: svc\r\n\r\n");
  });
  it("hop-by-hop fields and the ones Connection nominates are dropped; framing is never dropped", () => {
    const h = parse(
      "POST / HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Secret, Content-Length, X-Forwarded-For\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Secret: s\r\nContent-Length: 0\r\nX-Forwarded-For: 1.1.1.1\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nX-Keep: k\r\n\r\n",
    );
    const drop = markHopByHop(h, new Uint8Array(100));
    assert.equal(
      writeRequestHead(h, null, drop).toString("latin1"),
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nX-Forwarded-For: 1.1.1.1\r\nX-Keep: k\r\n\r\n",
    );
  });
  it("an upgrade keeps Upgrade and says connection: upgrade", () => {
    const h = parse("GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n");
    const drop = markHopByHop(h, new Uint8Array(100));
    assert.equal(
      writeRequestHead(h, null, drop).toString("latin1"),
      "GET /ws HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nconnection: upgrade\r\n\r\n",
    );
  });
  it("replaced fields (XFF, x-request-id, policy edits) go, additions come last", () => {
    const h = parse("GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 6.6.6.6\r\nx-request-id: evil\r\nX-Role: admin\r\nx-forwarded-for: 7.7.7.7\r\n\r\n");
    const drop = markHopByHop(h, new Uint8Array(100));
    markKnown(h, drop, H["x-forwarded-for"]);
    markKnown(h, drop, H["x-request-id"]);
    markName(h, drop, "x-role");
    const out = writeRequestHead(h, null, drop, "x-forwarded-for: 10.0.0.5\r\nx-request-id: 1234\r\nx-role: reader\r\n").toString("latin1");
    assert.equal(out, "GET / HTTP/1.1\r\nHost: svc\r\nx-forwarded-for: 10.0.0.5\r\nx-request-id: 1234\r\nx-role: reader\r\n\r\n");
  });
  it("response head: status line as received, hop-by-hop dropped", () => {
    const p = new ResponseParser();
    p.expect("GET");
    p.execute(Buffer.from("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"));
    assert.equal(p.event, Ev.Head);
    const drop = markHopByHop(p.head, new Uint8Array(100));
    assert.equal(writeResponseHead(p.head, drop, "x-request-id: 1\r\n").toString("latin1"), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-request-id: 1\r\n\r\n");
  });
  it("a response head is forwarded as received exactly when the rewrite would give the same bytes", () => {
    const cases: [string, string, string, boolean][] = [
      // [what, response head, add, unchanged]
      ["plain", "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n", "", true],
      ["no fields", "HTTP/1.1 204 No Content\r\n\r\n", "", true],
      ["odd spacing kept as is", "HTTP/1.1 200 OK\r\nX-A:   v  \r\ncontent-length: 0\r\n\r\n", "", true],
      ["connection: keep-alive is dropped", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\n", "", false],
      ["keep-alive is dropped", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nKeep-Alive: timeout=5\r\n\r\n", "", false],
      ["a field connection nominates", "HTTP/1.1 200 OK\r\nConnection: x-hop\r\nx-hop: 1\r\ncontent-length: 0\r\n\r\n", "", false],
      ["the proxy adds connection: close", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", "connection: close\r\n", false],
      ["101 switching (connection: upgrade rewritten)", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "", false],
    ];
    for (const [what, text, add, unchanged] of cases) {
      const p = new ResponseParser();
      p.expect("GET", text.includes(" 101 "));
      const buf = Buffer.from(`${text}ok`, "latin1");
      p.execute(buf);
      assert.equal(p.event, Ev.Head, what);
      const drop = markHopByHop(p.head, new Uint8Array(100));
      assert.equal(responseHeadUnchanged(p.head, drop, add), unchanged, what);
      const same = writeResponseHead(p.head, drop, add).equals(buf.subarray(p.head.start, p.head.end));
      if (unchanged) assert.ok(same, `${what}: the rewrite gives the received bytes`);
      else if (!add && !p.head.upgrade) assert.ok(!same, `${what}: the rewrite differs`);
    }
  });
});
