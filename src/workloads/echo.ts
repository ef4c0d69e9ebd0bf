// The built-in HTTP echo workload of the local cluster: answers every request with the pod's name,
// the method and the exact request-target it received (no normalisation), as JSON.
// `/status/<code>` (200-599) answers with that code, and `/status/<code>?only=<pod>`
// does so only on that pod (200 elsewhere): a way to make one backend fail (outlier tests).
// `/delay/<ms>[?only=<pod>]` (at most 10 s) answers after that long, on that pod only when named:
// a way to make one backend slow (least-request tests).
// The same port speaks HTTP/2 with prior knowledge (h2c) and accepts WebSocket upgrades, whose
// bytes it echoes back.

import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex, PassThrough } from "node:stream";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const DRAIN_MS = 1000;

/** The answer's status for a request-target: 200, or the code `/status/<code>` asks for. */
export function statusFor(target: string, pod: string): number {
  const m = /^\/status\/([2-5]\d\d)(?:\?(.*))?$/.exec(target);
  if (!m) return 200;
  const only = new URLSearchParams(m[2] ?? "").get("only");
  return only === null || only === pod ? Number(m[1]) : 200;
}

/** How long to hold the answer for a request-target: `/delay/<ms>` (≤ 10 s), on `only` if named. */
export function delayFor(target: string, pod: string): number {
  const m = /^\/delay\/(\d{1,5})(?:\?(.*))?$/.exec(target);
  if (!m) return 0;
  const only = new URLSearchParams(m[2] ?? "").get("only");
  return only === null || only === pod ? Math.min(Number(m[1]), 10_000) : 0;
}

export function startEcho(port: number): net.Server {
  const pod = process.env.POD_NAME ?? process.env.HOSTNAME ?? "unknown";
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.stringify({
        pod,
        namespace: process.env.POD_NAMESPACE,
        node: process.env.NODE_NAME,
        method: req.method,
        path: req.url,
        headers: req.headers,
        bodyBytes: Buffer.concat(chunks).length,
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      });
      const answer = () => {
        res.writeHead(statusFor(req.url ?? "/", pod), { "content-type": "application/json", "x-pod": pod });
        res.end(`${body}\n`);
      };
      const delay = delayFor(req.url ?? "/", pod);
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  };
  const h1 = http.createServer(handler);
  h1.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const key = req.headers["sec-websocket-key"];
    if (req.headers.upgrade?.toLowerCase() !== "websocket" || typeof key !== "string") return socket.destroy();
    const accept = createHash("sha1")
      .update(key + WS_GUID)
      .digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nx-pod: ${pod}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  const h2 = http2.createServer(handler);
  // One port for both: the first bytes tell HTTP/2's preface from an HTTP/1 request.
  const server = net.createServer((socket) => {
    socket.once("data", (first: Buffer) => {
      const isH2 =
        first.length >= H2_PREFACE.length ? first.subarray(0, H2_PREFACE.length).equals(H2_PREFACE) : H2_PREFACE.subarray(0, first.length).equals(first);
      if (!isH2) {
        socket.pause();
        socket.unshift(first);
        h1.emit("connection", socket);
        socket.resume();
        return;
      }
      // HTTP/2 reads the socket's handle directly, so the bytes already read go in front of it
      // through a JS stream instead.
      const incoming = new PassThrough();
      incoming.write(first);
      socket.pipe(incoming);
      const duplex = Duplex.from({ readable: incoming, writable: socket });
      socket.on("close", () => duplex.destroy());
      h2.emit("connection", duplex);
    });
  });
  server.listen(port, "0.0.0.0");
  // Graceful shutdown as well-behaved servers do it: keep accepting while the endpoint removal
  // propagates to every node's datapath, then finish what is in flight and exit.
  const stop = () => setTimeout(() => server.close(() => process.exit(0)), DRAIN_MS).unref();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return server;
}
