// HTTP/2 downstream (h2c with prior knowledge) with node:http2, the pipeline per stream, top-down:
//   headers → normalise :path (http1/path.ts) → L7 policy, egress then ingress (filters/l7-policy.ts;
//   a denied gRPC call gets grpc-status 7 PERMISSION_DENIED, any other 403 "Access denied") →
//   route (config.ts) → circuit breaker → balancer pick → upstream HTTP/2 session bound to a
//   declared local port (upstream/h2-pool.ts) → request with X-Forwarded-For and x-request-id →
//   response headers, data and trailers back → outlier report → flow.
// Policy is per stream: one connection can carry allowed and denied streams side by side.
// Connections also arrive from the HTTP/1 codec after an h2c upgrade (RFC 7540 §3.2): the upgrading
// request is stream 1, injected as a HEADERS frame after the client's preface (h2c-upgrade.ts), and
// served by the same pipeline; its body came over HTTP/1.1 and is sent upstream from memory.

import http2 from "node:http2";
import type net from "node:net";
import { l7HttpFlow, type TrafficDirection, type Verdict } from "../observe/flow.ts";
import type { ProxyContext } from "./context.ts";
import { applyEdits, type HeaderEdit, type HeaderSource, headerActionLog } from "./filters/l7-policy.ts";
import { logHeaderActions } from "./flow-sink.ts";
import { headersFrames, hpackLiteralBlock, splitClientPreface } from "./h2c-upgrade.ts";
import { type Attributed, decide, isRouteFailure, normalise, PathAction, routeRequest } from "./request.ts";
import { requestIdFor } from "./request-id.ts";
import type { ClusterRuntime, UpstreamHost } from "./upstream/cluster.ts";

const ATTR = Symbol.for("weft.proxy.attributed");
const UPGRADED = Symbol.for("weft.proxy.h2c-upgraded");
const DENY_BODY = "Access denied\r\n";
const PERMISSION_DENIED = "7";

/** Fields that are connection-specific in HTTP/2 (RFC 9113 §8.2.2) or the proxy's own. */
const SKIP_REQUEST = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-request-id",
  "http2-settings",
]);
const SKIP_RESPONSE = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

class H2Headers implements HeaderSource {
  constructor(private readonly h: http2.IncomingHttpHeaders) {}
  get(lower: string): string | undefined {
    const v = this.h[lower];
    return v === undefined ? undefined : Array.isArray(v) ? v.join(",") : v;
  }
}

type Frontend = (sock: net.Socket, a: Attributed, first: Buffer) => void;
const frontends = new WeakMap<ProxyContext, Frontend>();

/** One HTTP/2 server per worker (per context); connections are handed to it after detection or an upgrade. */
export function createHttp2Frontend(ctx: ProxyContext): Frontend {
  const have = frontends.get(ctx);
  if (have) return have;
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on("stream", (stream, headers) => onStream(ctx, stream, headers));
  server.on("sessionError", () => {});
  const accept: Frontend = (sock, a, first) => {
    (sock as net.Socket & { [ATTR]?: Attributed })[ATTR] = a;
    // The session reads what detection already took from the socket's buffer (node does this on
    // the next tick); resuming here would drain it into the void first.
    sock.pause();
    sock.unshift(first);
    server.emit("connection", sock);
  };
  frontends.set(ctx, accept);
  return accept;
}

/** The upgrading request of an h2c upgrade, as stream 1 will carry it. */
export interface UpgradedRequest {
  /** HTTP/2 fields (pseudo-headers first) from `upgradeRequestFields`. */
  fields: [string, string][];
  /** The body read over HTTP/1.1 (at most UPGRADE_BODY_LIMIT), null when none. */
  body: Buffer | null;
}

/** Longest wait, after the 101, for the client's preface and first SETTINGS frame. */
const PREFACE_WAIT_MS = 10_000;

/**
 * Takes over a connection the HTTP/1 codec has answered 101 on: reads the client's connection
 * preface and first SETTINGS frame (bounded in bytes and time), puts stream 1's HEADERS right after
 * them (END_STREAM: the client's side of stream 1 is closed), and hands the bytes to the HTTP/2
 * server as if they had come in that order. Anything else than a preface closes the connection.
 */
export function adoptH2cUpgrade(ctx: ProxyContext, sock: net.Socket, a: Attributed, already: Buffer, req: UpgradedRequest): void {
  let seen = already;
  let stopped = false;
  const timer = setTimeout(() => sock.destroy(), PREFACE_WAIT_MS);
  const stop = () => {
    stopped = true;
    sock.off("data", onData);
    sock.off("close", stop);
    clearTimeout(timer);
  };
  const step = () => {
    const split = splitClientPreface(seen);
    if (split.kind === "more") return;
    stop();
    if (split.kind === "bad") {
      ctx.log.debug("h2c upgrade: the client did not send an HTTP/2 preface", { reason: split.reason, remote: `${a.remoteIp}:${a.remotePort}` });
      sock.destroy();
      return;
    }
    (sock as net.Socket & { [UPGRADED]?: UpgradedRequest })[UPGRADED] = req;
    ctx.stats.downstream_cx_http2++;
    const stream1 = headersFrames(1, hpackLiteralBlock(req.fields), true);
    createHttp2Frontend(ctx)(sock, a, Buffer.concat([seen.subarray(0, split.end), stream1, seen.subarray(split.end)]));
  };
  const onData = (chunk: Buffer) => {
    seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
    step();
  };
  sock.on("data", onData);
  sock.on("close", stop);
  if (seen.length) step();
  // Once handed over, the socket is the HTTP/2 session's: never resumed here.
  if (!stopped && sock.isPaused()) sock.resume();
}

/** Longest wait for an upstream's answer to the h2c check, and how long a "no" is remembered. */
const PROBE_MS = 1000;
const NOT_H2C_MS = 10_000;
const confirmedH2c = new WeakSet<http2.ClientHttp2Session>();
const notH2c = new Map<string, number>();

/**
 * Can this upstream carry the upgraded connection's streams, i.e. does it speak h2c? A pooled
 * session that answered a PING says yes; an error, a close or silence for PROBE_MS says no (an
 * HTTP/1-only or TLS upstream), remembered per host for NOT_H2C_MS.
 */
export function upstreamSpeaksH2c(ctx: ProxyContext, cluster: ClusterRuntime, host: UpstreamHost, identity: number): boolean | Promise<boolean> {
  const until = notH2c.get(host.address);
  if (until !== undefined) {
    if (until > performance.now()) return false;
    notH2c.delete(host.address);
  }
  let s: http2.ClientHttp2Session;
  try {
    s = ctx.h2.session(cluster, host, identity);
  } catch {
    return false;
  }
  if (confirmedH2c.has(s)) return true;
  return new Promise<boolean>((resolve) => {
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.off("error", no);
      s.off("close", no);
      if (ok) confirmedH2c.add(s);
      else {
        if (notH2c.size >= 1024) notH2c.clear();
        notH2c.set(host.address, performance.now() + NOT_H2C_MS);
      }
      resolve(ok);
    };
    const no = () => done(false);
    const timer = setTimeout(no, PROBE_MS);
    s.once("error", no);
    s.once("close", no);
    const ping = () => {
      try {
        s.ping((err) => done(!err));
      } catch {
        done(false);
      }
    };
    // A PING sent while the session still connects is cancelled, not queued.
    if (s.connecting) s.once("connect", ping);
    else ping();
  });
}

function upgradedOf(stream: http2.ServerHttp2Stream): UpgradedRequest | undefined {
  if (stream.id !== 1) return undefined;
  return (stream.session?.socket as unknown as { [UPGRADED]?: UpgradedRequest } | undefined)?.[UPGRADED];
}

function attributedOf(stream: http2.ServerHttp2Stream): Attributed | undefined {
  return (stream.session?.socket as unknown as { [ATTR]?: Attributed } | undefined)?.[ATTR];
}

function onStream(ctx: ProxyContext, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  const t0 = performance.now();
  stream.on("error", () => {});
  const a = attributedOf(stream);
  const upgraded = upgradedOf(stream);
  if (!a) {
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    return;
  }
  ctx.stats.downstream_rq_total++;
  const snap = ctx.snapshot();
  const method = String(headers[":method"] ?? "");
  const rawPath = String(headers[":path"] ?? "/");
  const authority = String(headers[":authority"] ?? headers.host ?? "");
  const src = new H2Headers(headers);
  const grpc = (src.get("content-type") ?? "").startsWith("application/grpc");
  let direction: TrafficDirection = "TRAFFIC_DIRECTION_UNKNOWN";
  let edits: readonly HeaderEdit[] = [];
  const flow = (code: number, verdict: Verdict, path: string) => {
    const r = a.record;
    ctx.stats.flows_pushed++;
    // headerMatches mismatch actions: on the flow (missing/rejected headers) and in the proxy log.
    const f = l7HttpFlow({
      time: new Date(),
      verdict,
      direction,
      nodeName: ctx.nodeName,
      source: { ip: a.remoteIp, port: a.remotePort, identity: r.identity },
      destination: { ip: r.backend, port: r.bport, identity: r.directions.find((x) => x.direction === "ingress")?.subject ?? r.directions[0]?.peer ?? 0 },
      type: "RESPONSE",
      latencyNs: Math.round((performance.now() - t0) * 1e6),
      http: { code, method, url: `http://${authority}${path}`, protocol: "HTTP/2", ...headerActionLog(edits) },
    });
    ctx.flows.push(f);
    if (edits.length) logHeaderActions(ctx.log, f);
  };
  const local = (status: number, body: string, path: string, verdict: Verdict = "FORWARDED") => {
    flow(status, verdict, path);
    if (stream.destroyed || stream.headersSent) return;
    stream.respond({ ":status": status, "content-type": "text/plain" });
    stream.end(body);
  };

  const n = normalise(snap, a, rawPath);
  if (n.action === PathAction.Reject) {
    ctx.stats.downstream_rq_refused++;
    local(400, "Bad Request\r\n", rawPath, "DROPPED");
    return;
  }
  if (n.action === PathAction.Redirect) {
    flow(307, "FORWARDED", rawPath);
    stream.respond({ ":status": 307, location: n.path }, { endStream: true });
    return;
  }
  const dec = decide(snap, a, { method, path: n.path, authority, headers: src });
  direction = dec.direction;
  if (!dec.allowed) {
    ctx.stats.downstream_rq_denied++;
    flow(403, "DROPPED", n.path);
    stream.resume(); // drain whatever body the client sends
    if (grpc)
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": PERMISSION_DENIED, "grpc-message": "Access denied" },
        { endStream: true },
      );
    else {
      stream.respond({ ":status": 403, "content-type": "text/plain" });
      stream.end(DENY_BODY);
    }
    return;
  }
  ctx.stats.downstream_rq_allowed++;
  edits = dec.edits;
  const routed = routeRequest(snap, a, n, authority, src);
  if (isRouteFailure(routed)) {
    ctx.stats.downstream_rq_5xx_local++;
    local(routed.status, `${routed.reason}\r\n`, n.path);
    return;
  }
  const cluster = routed.cluster;
  const host = cluster.pick(routed.hash);
  if (!host) {
    local(503, "no healthy upstream\r\n", n.path);
    return;
  }
  if (!cluster.breaker.tryRequest()) {
    local(503, "upstream overflow\r\n", n.path);
    return;
  }
  cluster.stats.upstream_rq_total++;
  host.active++;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  /** `status` 0: a local failure (reset, timeout), reported to outlier detection unless the client left. */
  const done = (status: number, report = true) => {
    if (finished) return;
    finished = true;
    host.active--;
    cluster.breaker.releaseRequest();
    if (report) cluster.report(host as UpstreamHost, status);
    clearTimeout(timer);
  };

  const out: http2.OutgoingHttpHeaders = { ":method": method, ":path": n.path, ":authority": authority, ":scheme": String(headers[":scheme"] ?? "http") };
  for (const [k, v] of Object.entries(headers)) if (k[0] !== ":" && !SKIP_REQUEST.has(k) && v !== undefined) out[k] = v;
  if (headers.te === "trailers") out.te = "trailers";
  applyEdits(out, dec.edits); // headerMatches mismatch actions (ADD, DELETE, REPLACE), in order
  const fwd = ctx.forwarded.headers(a.remoteIp, src.get("x-forwarded-for"), src.get("x-forwarded-proto"), "http");
  out["x-forwarded-for"] = fwd.forwardedFor;
  out["x-forwarded-proto"] = fwd.forwardedProto;
  out["x-request-id"] = requestIdFor(src.get("x-request-id"), a.record.identity !== 2).id;
  if (upgraded?.body) out["content-length"] = String(upgraded.body.length);

  let upReq: http2.ClientHttp2Stream;
  try {
    upReq = ctx.h2.session(cluster, host, a.record.identity).request(out, { endStream: false });
  } catch {
    done(0);
    local(503, "upstream connect error\r\n", n.path);
    return;
  }
  if (routed.timeoutMs > 0) timer = setTimeout(() => fail(504, "upstream request timeout"), routed.timeoutMs);
  let status = 0;
  let trailers: http2.IncomingHttpHeaders | undefined;
  const fail = (code: number, reason: string) => {
    if (finished) return;
    done(0);
    ctx.stats.downstream_rq_5xx_local++;
    upReq.close(http2.constants.NGHTTP2_CANCEL);
    if (!stream.headersSent) local(code, `${reason}\r\n`, n.path);
    else {
      flow(status, "FORWARDED", n.path);
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  };
  upReq.on("error", () => fail(503, "upstream reset"));
  upReq.on("response", (h) => {
    status = Number(h[":status"] ?? 502);
    const resp: http2.OutgoingHttpHeaders = { ":status": status };
    for (const [k, v] of Object.entries(h)) if (k[0] !== ":" && !SKIP_RESPONSE.has(k) && v !== undefined) resp[k] = v;
    if (stream.destroyed) return;
    stream.respond(resp, { waitForTrailers: true });
    upReq.pipe(stream);
  });
  upReq.on("trailers", (t) => {
    trailers = t;
  });
  stream.on("wantTrailers", () => {
    const t: http2.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(trailers ?? {})) if (k[0] !== ":" && v !== undefined) t[k] = v;
    stream.sendTrailers(t);
  });
  upReq.on("end", () => {
    if (finished) return;
    done(status);
    flow(status, "FORWARDED", n.path);
  });
  stream.on("close", () => {
    if (!finished) {
      done(0, false);
      upReq.close(http2.constants.NGHTTP2_CANCEL);
    }
  });
  // Stream 1 of an h2c upgrade is half-closed from the start: its body came over HTTP/1.1.
  if (upgraded) upReq.end(upgraded.body ?? undefined);
  else stream.pipe(upReq);
}
