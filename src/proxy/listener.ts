// The listener stage of every connection, top-down: accept → original destination and client
// identity from the redirect record (none: closed, counted) → protocol detection on the first
// bytes (bounded in bytes and time) → HTTP/1 or HTTP/2 codec. TLS on these ports (they have HTTP
// rules and no termination is configured) is refused, counted and logged, never passed blind.

import type net from "node:net";
import type { ProxyContext } from "./context.ts";
import { detectProtocol, Protocol } from "./detect.ts";
import { serveHttp1 } from "./http1.ts";
import { createHttp2Frontend } from "./http2.ts";
import { plainAddress, type RedirectRecord } from "./origdst.ts";
import type { Attributed } from "./request.ts";

const DETECT_BYTES = 64;
const DETECT_MS = 10_000;

export function createConnectionHandler(ctx: ProxyContext): (sock: net.Socket) => void {
  const http2 = createHttp2Frontend(ctx);
  return (sock) => {
    const s = ctx.stats;
    s.downstream_cx_total++;
    const remoteIp = plainAddress(sock.remoteAddress ?? "");
    const remotePort = sock.remotePort ?? 0;
    const found = ctx.redirects.lookup(remoteIp, remotePort, plainAddress(sock.localAddress ?? ""), sock.localPort ?? 0);
    if (found instanceof Promise) {
      // A source that answers asynchronously (a map read): hold the bytes until it does.
      sock.pause();
      sock.on("error", () => {});
      found.then(
        (r) => attributed(r, true),
        () => attributed(undefined, true),
      );
    } else attributed(found, false);

    function attributed(record: RedirectRecord | undefined, paused: boolean): void {
      if (!record) {
        s.downstream_cx_no_record++;
        ctx.log.debug("connection without a redirect record refused", { remote: `${remoteIp}:${remotePort}` });
        sock.destroy();
        return;
      }
      s.downstream_cx_active++;
      sock.once("close", () => s.downstream_cx_active--);
      sock.setNoDelay(true);
      sock.on("error", () => {});
      const a: Attributed = { record, remoteIp, remotePort };
      let seen: Buffer | null = null;
      const timer = setTimeout(() => sock.destroy(), DETECT_MS);
      const onData = (chunk: Buffer) => {
        seen = seen ? Buffer.concat([seen, chunk]) : chunk;
        const p = detectProtocol(seen);
        if (p === Protocol.NeedMore && seen.length < DETECT_BYTES) return;
        sock.off("data", onData);
        clearTimeout(timer);
        switch (p) {
          case Protocol.Http1:
            s.downstream_cx_http1++;
            serveHttp1(ctx, sock, a, seen);
            return;
          case Protocol.Http2:
            s.downstream_cx_http2++;
            http2(sock, a, seen);
            return;
          case Protocol.Tls:
            s.downstream_cx_tls_denied++;
            ctx.log.warn("TLS on a port with HTTP rules and no TLS termination: connection refused", {
              remote: `${remoteIp}:${remotePort}`,
              destination: `${record.vip}:${record.vport}`,
              identity: record.identity,
            });
            sock.destroy();
            return;
          default:
            s.downstream_cx_protocol_unknown++;
            sock.destroy();
        }
      };
      sock.on("data", onData);
      if (paused) sock.resume();
    }
  };
}
