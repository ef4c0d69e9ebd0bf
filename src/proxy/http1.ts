// HTTP/1.1 downstream on a raw socket, the whole pipeline top-down per request:
//   parse (http1/parser.ts) → normalise the path (http1/path.ts) → L7 policy, egress then ingress
//   (filters/l7-policy.ts) → route (config.ts) → circuit breaker → balancer pick → upstream
//   connection bound to a declared local port (upstream/h1-pool.ts) → head written from the
//   received bytes (http1/head-writer.ts) with X-Forwarded-For and x-request-id → body bytes as
//   received → response head and body back → outlier report, retry or done → flow.
// One request at a time per connection: pipelined requests wait, unparsed, until the answer before
// them is complete. Upgrades and CONNECT become byte tunnels once the upstream switches; an h2c
// upgrade (h2c-upgrade.ts) is the proxy's own: 101, then the connection is HTTP/2 (http2.ts).

import type net from "node:net";
import type { Verdict } from "../observe/flow.ts";
import { l7HttpFlow } from "../observe/flow.ts";
import type { ProxySnapshot } from "./config.ts";
import type { ProxyContext } from "./context.ts";
import { denyResponse, editPlan, type HeaderEdit, headerActionLog } from "./filters/l7-policy.ts";
import { logHeaderActions } from "./flow-sink.ts";
import { h2cOffer, SWITCHING_TO_H2C, upgradeRequestFields } from "./h2c-upgrade.ts";
import { markHopByHop, markKnown, markName, responseHeadUnchanged, writeRequestHead, writeResponseHead } from "./http1/head-writer.ts";
import { Ev, H, type MessageHead, RequestParser } from "./http1/parser.ts";
import { redirectResponse } from "./http1/path.ts";
import { refusalResponse } from "./http1/refusal.ts";
import { adoptH2cUpgrade, upstreamSpeaksH2c } from "./http2.ts";
import { backoffMs, Failure, type FailureKind, shouldRetry, tryTimeoutMs } from "./lb/retry.ts";
import { CONTINUE_100, localReply } from "./local-reply.ts";
import { type Attributed, type Decided, decide, isRouteFailure, normalise, PathAction, type Routed, routeRequest } from "./request.ts";
import { requestIdFor } from "./request-id.ts";
import type { UpstreamHost } from "./upstream/cluster.ts";
import { type H1Connection, type H1Holder, UpstreamError } from "./upstream/h1-pool.ts";

const EMPTY = Buffer.alloc(0);
/** Request bodies up to this size are kept so a failed try can be replayed. */
const REPLAY_LIMIT = 64 * 1024;
/** Unparsed bytes held while a request is in flight (pipelining) before reading pauses. */
const HOLD_LIMIT = 256 * 1024;
/** A rewritten response head and the body bytes after it are joined into one write up to this size. */
const JOIN_LIMIT = 16 * 1024;

function uncork(s: net.Socket): void {
  s.uncork();
}

// Timer callbacks take the exchange as an argument: no closure per request.
function requestTimedOut(ex: Exchange): void {
  ex.timedOut(true);
}
function tryTimedOut(ex: Exchange): void {
  ex.timedOut(false);
}

/** The identity a connection's flows name as destination: the ingress subject, else the egress peer. */
function destinationIdentity(a: Attributed): number {
  let egressPeer: number | undefined;
  for (const x of a.record.directions) {
    if (x.direction === "ingress") return x.subject;
    if (x.direction === "egress" && egressPeer === undefined) egressPeer = x.peer;
  }
  return egressPeer ?? 0;
}

/** Serves one downstream HTTP/1 connection; `first` holds the bytes protocol detection read. */
export function serveHttp1(ctx: ProxyContext, sock: net.Socket, a: Attributed, first: Buffer): void {
  const d = new Http1Downstream(ctx, sock, a);
  const onData = (c: Buffer) => d.onData(c);
  d.detach = () => sock.off("data", onData);
  sock.on("data", onData);
  sock.on("error", () => {});
  sock.on("close", () => d.onClose());
  // One listener for the connection's life: the exchange in flight resumes its upstream.
  sock.on("drain", () => d.ex?.resumeUpstream());
  d.onData(first);
}

class Http1Downstream {
  readonly parser = new RequestParser();
  private buf: Buffer = EMPTY;
  private off = 0;
  /** Between a request's head and its end: consumed bytes are body bytes. */
  private inBody = false;
  /** The request being answered; parsing stops at its end until its answer is complete. */
  ex: Exchange | null = null;
  private waiting = false;
  private tunnel: H1Connection | null = null;
  /** An accepted h2c upgrade: the request's body is gathered until its end, then the connection switches. */
  private h2c: { fields: [string, string][]; body: Buffer[]; bytes: number } | null = null;
  /** Stops this codec reading the socket (another takes it over). */
  detach: () => void = () => {};
  closed = false;
  readonly drop = new Uint8Array(128);
  /** The flows' destination identity: fixed by the connection's redirect record. */
  private dstIdentity: number | undefined;
  /** The forwarding lines of a request without X-Forwarded-* of its own. */
  private plainForwarded: string | null = null;

  constructor(
    readonly ctx: ProxyContext,
    readonly sock: net.Socket,
    readonly a: Attributed,
  ) {}

  onData(chunk: Buffer): void {
    if (this.tunnel) {
      if (!this.tunnel.socket.write(chunk)) this.sock.pause();
      return;
    }
    if (this.off < this.buf.length) this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
    else this.buf = chunk;
    this.off = 0;
    if (this.waiting && this.buf.length > HOLD_LIMIT) this.sock.pause();
    this.drive();
  }

  onClose(): void {
    this.closed = true;
    this.ex?.downstreamGone();
    this.tunnel?.socket.destroy();
  }

  /** Parses as far as one-request-at-a-time allows. Bounded: each pass consumes bytes or changes state. */
  drive(): void {
    const p = this.parser;
    for (let guard = 0; guard < 100_000; guard++) {
      if (this.waiting || this.closed || this.tunnel) return;
      const buf = this.buf;
      const before = this.off;
      this.off = p.execute(buf, before, buf.length);
      if (this.inBody && this.off > before) {
        if (this.h2c) {
          this.h2c.body.push(buf.subarray(before, this.off));
          this.h2c.bytes += this.off - before;
        } else this.ex?.body(buf.subarray(before, this.off));
      }
      switch (p.event) {
        case Ev.NeedMore:
          return;
        case Ev.Head:
          this.onHead(p.head);
          break;
        case Ev.Body:
          break;
        case Ev.End:
          this.inBody = false;
          this.onRequestEnd();
          break;
        case Ev.Paused:
          // An upgrade or CONNECT answered without switching: HTTP goes on (or the connection ends).
          p.resume();
          if (p.event === Ev.Paused && !p.head.keepAlive) {
            this.waiting = true;
            this.sock.end();
            return;
          }
          break;
        case Ev.Closed:
          // The last request said close: whatever follows is not read.
          this.waiting = true;
          if (!this.ex) this.sock.end();
          return;
        case Ev.Error: {
          const err = p.error;
          this.ctx.stats.downstream_rq_refused++;
          this.flow(null, err?.status ?? 400, "DROPPED", "TRAFFIC_DIRECTION_UNKNOWN", performance.now(), "HTTP/1.1");
          this.sock.end(refusalResponse(err?.status ?? 400));
          this.waiting = true;
          return;
        }
      }
    }
  }

  private onHead(head: MessageHead, t0 = performance.now()): void {
    if (head.upgrade && this.h2cUpgrade(head, t0)) return;
    this.ctx.stats.downstream_rq_total++;
    this.inBody = true;
    const snap = this.ctx.snapshot();
    const protocol = head.versionMinor === 1 ? "HTTP/1.1" : "HTTP/1.0";
    const n = normalise(snap, this.a, head.form === "authority" ? "/" : head.pathAndQuery());
    if (n.action === PathAction.Reject) {
      this.ctx.stats.downstream_rq_refused++;
      this.flow(head, 400, "DROPPED", "TRAFFIC_DIRECTION_UNKNOWN", t0, protocol);
      this.finishLocal(refusalResponse(400), true);
      return;
    }
    if (n.action === PathAction.Redirect) {
      this.finishLocal(redirectResponse(n.path, head.keepAlive && !this.hasBody(head)), !head.keepAlive || this.hasBody(head));
      return;
    }
    const path = head.form === "authority" ? head.authority() : n.path;
    const authority = head.authority();
    const dec = decide(snap, this.a, { method: head.method, path, authority, headers: head });
    if (!dec.allowed) {
      this.ctx.stats.downstream_rq_denied++;
      // A body still coming after a denial is read and dropped; with Expect: 100-continue the
      // client may never send it, so that connection closes.
      const close = !head.keepAlive || head.expectContinue || head.upgrade || head.isConnect;
      this.flow(head, 403, "DROPPED", dec.direction, t0, protocol, path);
      this.finishLocal(denyResponse(!close), close);
      return;
    }
    this.ctx.stats.downstream_rq_allowed++;
    const routed = routeRequest(snap, this.a, n, authority, head);
    if (isRouteFailure(routed)) {
      this.ctx.stats.downstream_rq_5xx_local++;
      const close = !head.keepAlive || this.hasBody(head);
      this.flow(head, routed.status, "FORWARDED", dec.direction, t0, protocol, path, undefined, undefined, dec.edits);
      this.finishLocal(localReply(routed.status, `${routed.reason}\r\n`, close), close);
      return;
    }
    if (head.expectContinue) this.sock.write(CONTINUE_100);
    const upHead = this.upstreamHead(head, n.path !== head.pathAndQuery() && head.form !== "authority" ? n.path : null, dec, head.expectContinue);
    const tunnel = head.upgrade || head.isConnect;
    if (tunnel) this.ctx.stats.downstream_rq_tunnel++;
    this.ex = new Exchange(this, snap, routed, dec, upHead, {
      method: head.method,
      url: `http://${authority}${path}`,
      protocol,
      keepAlive: head.keepAlive,
      tunnel,
      hasBody: this.hasBody(head),
      t0,
    });
    this.ex.start();
  }

  /**
   * An `Upgrade: h2c` request (RFC 7540 §3.2): true when it goes to stream 1 of an HTTP/2
   * connection (now, or once the upstream check answers); false when the upgrade is ignored and the
   * request is served here over HTTP/1.1 (an offer the proxy declines, a path it answers itself, no
   * route or host, an upstream that does not speak h2c). Policy is not decided here: stream 1 is
   * decided like every HTTP/2 stream, so a denied upgrading request gets its 403 on stream 1.
   */
  private h2cUpgrade(head: MessageHead, t0: number): boolean {
    const offer = h2cOffer(head);
    if (offer.kind === "none") return false;
    const decline = (reason: string): false => {
      head.upgrade = false; // answered over HTTP/1.1; Upgrade and HTTP2-Settings are hop-by-hop
      this.ctx.log.debug("h2c upgrade ignored, served over HTTP/1.1", { reason, remote: `${this.a.remoteIp}:${this.a.remotePort}` });
      return false;
    };
    if (offer.kind === "declined") return decline(offer.reason);
    const snap = this.ctx.snapshot();
    const n = normalise(snap, this.a, head.pathAndQuery());
    if (n.action !== PathAction.Forward) return decline("the path is answered by the proxy (400 or 307)");
    const routed = routeRequest(snap, this.a, n, head.authority(), head);
    if (isRouteFailure(routed)) return decline(`no route (${routed.status})`);
    const host = routed.cluster.pick(routed.hash);
    if (!host) return decline("no healthy upstream");
    const h2 = upstreamSpeaksH2c(this.ctx, routed.cluster, host, this.a.record.identity);
    if (h2 === true) {
      this.beginH2c(head);
      return true;
    }
    if (h2 === false) return decline(`upstream ${host.address} does not speak h2c`);
    // Parsing stops at this head (it stays valid) until the upstream has answered.
    this.waiting = true;
    void h2.then((ok) => {
      if (this.closed) return;
      this.waiting = false;
      if (ok) this.beginH2c(head);
      else {
        decline(`upstream ${host.address} does not speak h2c`);
        this.onHead(head, t0);
      }
      this.drive();
    });
    return true;
  }

  private beginH2c(head: MessageHead): void {
    this.h2c = { fields: upgradeRequestFields(head), body: [], bytes: 0 };
    this.inBody = true;
  }

  /** The upgrading request is complete: 101, and the connection is the HTTP/2 frontend's from here. */
  private switchToH2c(): void {
    const up = this.h2c as NonNullable<typeof this.h2c>;
    this.h2c = null;
    this.waiting = true;
    this.detach();
    const rest = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    this.sock.write(SWITCHING_TO_H2C);
    adoptH2cUpgrade(this.ctx, this.sock, this.a, rest, { fields: up.fields, body: up.bytes ? Buffer.concat(up.body, up.bytes) : null });
  }

  private hasBody(head: MessageHead): boolean {
    return head.chunked || head.contentLength > 0;
  }

  /** The request head for the upstream: hop-by-hop gone, forwarding headers and policy edits in. */
  private upstreamHead(head: MessageHead, target: string | null, dec: Decided, answeredContinue: boolean): Buffer {
    const drop = markHopByHop(head, this.drop, true);
    markKnown(head, drop, H["x-forwarded-for"]);
    markKnown(head, drop, H["x-forwarded-proto"]);
    markKnown(head, drop, H["x-request-id"]);
    if (answeredContinue) markKnown(head, drop, H.expect);
    let add = "";
    if (dec.edits.length) {
      const plan = editPlan(dec.edits);
      for (const name of plan.drop) markName(head, drop, name);
      add = plan.add;
    }
    add += this.forwardedLines(head);
    const rid = requestIdFor(head.knownCount[H["x-request-id"]] ? head.get("x-request-id") : undefined, this.a.record.identity !== 2);
    add += `x-request-id: ${rid.id}\r\n`;
    return writeRequestHead(head, target, drop, add);
  }

  /** X-Forwarded-For/-Proto lines; without incoming ones they depend only on the peer: made once per connection. */
  private forwardedLines(head: MessageHead): string {
    const xff = head.knownCount[H["x-forwarded-for"]] ? head.get("x-forwarded-for") : undefined;
    const xfp = head.knownCount[H["x-forwarded-proto"]] ? head.get("x-forwarded-proto") : undefined;
    if (xff === undefined && xfp === undefined && this.plainForwarded !== null) return this.plainForwarded;
    const fwd = this.ctx.forwarded.headers(this.a.remoteIp, xff, xfp, "http");
    const lines = `x-forwarded-for: ${fwd.forwardedFor}\r\nx-forwarded-proto: ${fwd.forwardedProto}\r\n`;
    if (xff === undefined && xfp === undefined) this.plainForwarded = lines;
    return lines;
  }

  /** An answer of the proxy's own; the request's body (if any) is still parsed and dropped. */
  private finishLocal(bytes: Buffer, close: boolean): void {
    if (close) {
      this.waiting = true;
      this.sock.end(bytes);
      return;
    }
    this.sock.write(bytes);
  }

  private onRequestEnd(): void {
    if (this.h2c) {
      this.switchToH2c();
      return;
    }
    if (!this.ex) return;
    this.ex.requestEnded();
    if (!this.ex.done) this.waiting = true;
    else this.ex = null;
  }

  /** The exchange answered completely; `close`: the connection ends here. */
  exchangeDone(ex: Exchange, close: boolean): void {
    if (this.ex !== ex) return;
    if (close || this.closed) {
      this.waiting = true;
      this.sock.end();
      return;
    }
    if (this.inBody) return; // the answer came before the request finished: keep reading its body
    this.ex = null;
    this.waiting = false;
    if (this.sock.isPaused()) this.sock.resume();
    this.drive();
  }

  /** The upstream switched protocols: bytes flow both ways unparsed from now on. */
  startTunnel(up: H1Connection): void {
    this.tunnel = up;
    this.ex = null;
    up.holder = null; // the exchange is done: tunnel bytes go to onData below
    const rest = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    if (rest.length) up.socket.write(rest);
    up.onData = (c) => {
      if (!this.sock.write(c)) up.socket.pause();
    };
    up.onEnd = () => this.sock.destroy();
    this.sock.on("drain", () => up.socket.resume());
    up.socket.on("drain", () => this.sock.resume());
    up.socket.on("end", () => this.sock.end());
    this.sock.on("end", () => up.socket.end());
    if (this.sock.isPaused()) this.sock.resume();
  }

  flow(
    head: MessageHead | null,
    code: number,
    verdict: Verdict,
    direction: "INGRESS" | "EGRESS" | "TRAFFIC_DIRECTION_UNKNOWN",
    t0: number,
    protocol: string,
    path?: string,
    method?: string,
    url?: string,
    edits?: readonly HeaderEdit[],
  ): void {
    const r = this.a.record;
    const dst = (this.dstIdentity ??= destinationIdentity(this.a));
    this.ctx.stats.flows_pushed++;
    // headerMatches mismatch actions: on the flow (missing/rejected headers) and in the proxy log.
    const flow = l7HttpFlow({
      time: new Date(),
      verdict,
      direction,
      nodeName: this.ctx.nodeName,
      source: { ip: this.a.remoteIp, port: this.a.remotePort, identity: r.identity },
      destination: { ip: r.backend, port: r.bport, identity: dst },
      type: "RESPONSE",
      latencyNs: Math.round((performance.now() - t0) * 1e6),
      http: {
        code,
        method: method ?? head?.method ?? "",
        url: url ?? (head ? `http://${head.authority()}${path ?? head.pathAndQuery()}` : ""),
        protocol,
        ...headerActionLog(edits),
      },
    });
    this.ctx.flows.push(flow);
    if (edits?.length) logHeaderActions(this.ctx.log, flow);
  }
}

interface RequestInfo {
  method: string;
  url: string;
  protocol: string;
  keepAlive: boolean;
  tunnel: boolean;
  hasBody: boolean;
  t0: number;
}

/** One request's upstream side: tries (with retries), the response streamed back, the flow. */
class Exchange implements H1Holder {
  done = false;
  private conn: H1Connection | null = null;
  private host: UpstreamHost | null = null;
  private headSent = false;
  /** A rewritten response head not yet written: it leaves with the body bytes of the same chunk. */
  private headOut: Buffer | null = null;
  private queued: Buffer[] = [];
  /** Body bytes kept for a replay; null once the body outgrew REPLAY_LIMIT. */
  private kept: Buffer[] | null = [];
  private keptBytes = 0;
  private requestComplete = false;
  /** Response bytes went downstream: no retry, no local error reply from now on. */
  private responded = false;
  private status = 0;
  private closeDownstream = false;
  private retries = 0;
  private tries = 0;
  private tryTimer: NodeJS.Timeout | undefined;
  private reqTimer: NodeJS.Timeout | undefined;
  private readonly deadline: number;

  constructor(
    private readonly d: Http1Downstream,
    private readonly snap: ProxySnapshot,
    private readonly routed: Routed,
    private readonly dec: Decided,
    private readonly upHead: Buffer,
    private readonly info: RequestInfo,
  ) {
    this.deadline = routed.timeoutMs > 0 && !info.tunnel ? info.t0 + routed.timeoutMs : Number.POSITIVE_INFINITY;
    void this.snap;
  }

  start(): void {
    const c = this.routed.cluster;
    if (!c.breaker.tryRequest()) {
      c.stats.upstream_rq_pending_overflow++;
      this.fail(503, "upstream overflow");
      return;
    }
    c.stats.upstream_rq_total++;
    if (Number.isFinite(this.deadline)) this.reqTimer = setTimeout(requestTimedOut, this.routed.timeoutMs, this);
    this.tryOnce();
  }

  private tryOnce(): void {
    this.tries++;
    const cluster = this.routed.cluster;
    const h = cluster.pick(this.routed.hash);
    if (!h) {
      this.fail(503, "no healthy upstream");
      return;
    }
    this.host = h;
    h.active++;
    const p = this.routed.retry;
    const perTry = p ? tryTimeoutMs(p, this.deadline - performance.now()) : Number.POSITIVE_INFINITY;
    if (Number.isFinite(perTry) && perTry < this.deadline - performance.now()) this.tryTimer = setTimeout(tryTimedOut, perTry, this);
    // An idle keep-alive connection is written to in this tick; a Promise only when one must connect or wait.
    const pool = this.d.ctx.h1;
    const idle = pool.idleFor(h, this.d.a.record.identity);
    if (idle) {
      this.attach(idle);
      return;
    }
    const tryNo = this.tries;
    pool.acquire(cluster, h, this.d.a.record.identity).then(
      (conn) => {
        if (this.done || tryNo !== this.tries) {
          this.d.ctx.h1.release(conn, true);
          return;
        }
        this.attach(conn);
      },
      (err: Error) => {
        if (this.done || tryNo !== this.tries) return;
        const overflow = err instanceof UpstreamError && err.kind === "overflow";
        this.tryFailed(Failure.ConnectFailure, 0, overflow ? 503 : 503, overflow ? "upstream overflow" : "upstream connect error");
      },
    );
  }

  private attach(conn: H1Connection): void {
    this.conn = conn;
    conn.requests++;
    conn.parser.expect(this.info.method, this.info.tunnel && this.info.method !== "CONNECT");
    conn.holder = this;
    const s = conn.socket;
    this.headSent = true;
    if (!this.info.hasBody && this.queued.length === 0) {
      s.write(this.upHead); // one write, no cork: the common bodiless request
      return;
    }
    // Head and body leave together: body bytes parsed later in this tick join the corked write.
    s.cork();
    s.write(this.upHead);
    for (const b of this.queued) s.write(b);
    this.queued = [];
    process.nextTick(uncork, s);
  }

  /** The request's deadline (`wholeRequest`) or the try's passed. */
  timedOut(wholeRequest: boolean): void {
    this.d.ctx.stats.upstream_rq_timeout++;
    this.abortTry(Failure.PerTryTimeout, wholeRequest);
  }

  resumeUpstream(): void {
    this.conn?.socket.resume();
  }

  upstreamData(chunk: Buffer): void {
    this.onUpstreamChunk(chunk);
  }

  upstreamEnd(): void {
    this.onUpstreamClosed();
  }

  /** Downstream body bytes (wire framing included). */
  body(chunk: Buffer): void {
    if (this.done) return;
    if (this.kept) {
      this.keptBytes += chunk.length;
      if (this.keptBytes > REPLAY_LIMIT) this.kept = null;
      else this.kept.push(chunk);
    }
    if (this.conn && this.headSent) {
      if (!this.conn.socket.write(chunk)) {
        this.d.sock.pause();
        this.conn.socket.once("drain", () => this.d.sock.resume());
      }
    } else this.queued.push(chunk);
  }

  requestEnded(): void {
    this.requestComplete = true;
  }

  downstreamGone(): void {
    if (this.done) return;
    this.releaseTry(false);
    this.finish(499, "FORWARDED", false);
  }

  /**
   * One chunk from the upstream. What goes downstream from one chunk is at most a response head
   * (rewritten, or as received) and one contiguous run of the chunk's bytes after it: it leaves in
   * one write (`flushDown`).
   */
  private onUpstreamChunk(chunk: Buffer): void {
    const conn = this.conn as H1Connection;
    const p = conn.parser;
    let off = 0;
    /** [from, off) of `chunk` goes downstream; -1: nothing yet. */
    let from = -1;
    for (let guard = 0; guard < 100_000; guard++) {
      const before = off;
      off = p.execute(chunk, off, chunk.length);
      const ev = p.event;
      if (ev === Ev.Head) {
        const head = p.head;
        if (head.status >= 100 && head.status < 200 && head.status !== 101) continue; // interim: we answered 100 ourselves
        if (!this.onResponseHead(head, chunk)) return;
        if (this.headOut === null) from = head.start; // forwarded as received, with what follows it
        continue;
      }
      if (this.responded && off > before && from < 0) from = before;
      if (ev === Ev.NeedMore) {
        this.flushDown(chunk, from, off, conn);
        return;
      }
      if (ev === Ev.End && !(p.head.upgrade || p.head.isConnect)) {
        this.flushDown(chunk, from, off, conn);
        // Bytes after the end of a response we did not ask for: that connection is not reused.
        this.responseEnded(p.head.keepAlive && off === chunk.length);
        return;
      }
      if (ev === Ev.End || ev === Ev.Paused) {
        // 101 or CONNECT 2xx: the rest is tunnel bytes.
        this.flushDown(chunk, from, off, conn);
        this.clearTimers();
        const rest = chunk.subarray(off);
        this.finish(this.status, "FORWARDED", false, true);
        this.d.startTunnel(conn);
        if (rest.length) this.d.sock.write(rest);
        return;
      }
      if (ev === Ev.Error || ev === Ev.Closed) {
        this.flushDown(chunk, from, off, conn);
        this.upstreamBroken(ev === Ev.Error ? 502 : 0);
        return;
      }
    }
    this.flushDown(chunk, from, off, conn);
  }

  /** Writes the pending rewritten head (if any) and `chunk[from, to)` downstream in one write. */
  private flushDown(chunk: Buffer, from: number, to: number, conn: H1Connection): void {
    const head = this.headOut;
    this.headOut = null;
    const ds = this.d.sock;
    if (this.d.closed) return;
    const n = from < 0 ? 0 : to - from;
    let ok = true;
    if (head === null) {
      if (n > 0) ok = ds.write(chunk.subarray(from, to));
    } else if (n === 0) ds.write(head);
    else if (head.length + n <= JOIN_LIMIT) {
      const out = Buffer.allocUnsafe(head.length + n);
      head.copy(out, 0);
      chunk.copy(out, head.length, from, to);
      ok = ds.write(out);
    } else {
      ds.cork();
      ds.write(head);
      ok = ds.write(chunk.subarray(from, to));
      ds.uncork();
    }
    if (!ok) conn.socket.pause();
  }

  /** false when the response was discarded (a retry follows). */
  private onResponseHead(head: MessageHead, chunk: Buffer): boolean {
    const status = head.status;
    const host = this.host as UpstreamHost;
    this.routed.cluster.report(host, status);
    const p = this.routed.retry;
    if (
      p &&
      !this.info.tunnel &&
      this.requestComplete &&
      this.kept &&
      shouldRetry(p, this.retries, Failure.Response, status, this.routed.cluster.breaker.requests, this.routed.cluster.breaker.retries)
    ) {
      this.releaseTry(false);
      this.retry();
      return false;
    }
    this.status = status;
    const tunnelOk = head.upgrade || head.isConnect;
    const untilClose =
      !head.chunked && head.contentLength < 0 && !(status === 204 || status === 304 || this.info.method === "HEAD" || tunnelOk || status < 200);
    this.closeDownstream = !this.info.keepAlive || untilClose;
    // The connection's scratch array: the request head it served was written synchronously.
    const drop = markHopByHop(head, this.d.drop, true);
    const add =
      this.closeDownstream && !tunnelOk
        ? "connection: close\r\n"
        : this.info.protocol === "HTTP/1.0" && this.info.keepAlive
          ? "connection: keep-alive\r\n"
          : "";
    this.responded = true;
    // A head wholly in this chunk that the rewrite would not change goes out as received.
    this.headOut = head.buf === chunk && responseHeadUnchanged(head, drop, add) ? null : writeResponseHead(head, drop, add);
    return true;
  }

  private responseEnded(upstreamKeepAlive: boolean): void {
    this.clearTimers();
    // A response that ends before the request body did: the connection cannot carry another request.
    const reusable = upstreamKeepAlive && this.requestComplete;
    this.releaseTry(reusable);
    this.finish(this.status, "FORWARDED", this.closeDownstream);
  }

  private onUpstreamClosed(): void {
    if (this.done) return;
    const conn = this.conn;
    if (conn && this.responded) {
      // A read-until-close body ends with the connection.
      if (conn.parser.finish() === Ev.End) {
        this.clearTimers();
        this.releaseTry(false);
        this.finish(this.status, "FORWARDED", true);
        return;
      }
    }
    this.upstreamBroken(0);
  }

  private upstreamBroken(status: number): void {
    if (this.done) return;
    if (this.responded) {
      // Part of the answer went out: the client must see the failure as a broken connection.
      this.releaseTry(false);
      this.clearTimers();
      this.d.sock.destroy();
      this.finish(this.status, "FORWARDED", true);
      return;
    }
    this.tryFailed(status === 502 ? Failure.Response : Failure.Reset, status, 503, status === 502 ? "upstream sent a malformed response" : "upstream reset");
  }

  private abortTry(kind: FailureKind, wholeRequest: boolean): void {
    if (this.done) return;
    if (this.responded) {
      this.releaseTry(false);
      this.d.sock.destroy();
      this.finish(this.status || 504, "FORWARDED", true);
      return;
    }
    if (wholeRequest) {
      if (this.host) this.routed.cluster.report(this.host, 0);
      this.releaseTry(false);
      this.fail(504, "upstream request timeout");
      return;
    }
    this.tryFailed(kind, 0, 504, "upstream request timeout");
  }

  private tryFailed(kind: FailureKind, status: number, replyStatus: number, reason: string): void {
    if (this.host) this.routed.cluster.report(this.host, status);
    this.releaseTry(false);
    const p = this.routed.retry;
    if (
      p &&
      !this.info.tunnel &&
      this.kept &&
      (this.requestComplete || !this.info.hasBody) &&
      shouldRetry(p, this.retries, kind, status, this.routed.cluster.breaker.requests, this.routed.cluster.breaker.retries)
    ) {
      this.retry();
      return;
    }
    this.fail(replyStatus, reason);
  }

  private retry(): void {
    const c = this.routed.cluster;
    if (!c.breaker.tryRetry()) {
      this.fail(503, "retry overflow");
      return;
    }
    this.retries++;
    this.d.ctx.stats.upstream_rq_retry++;
    c.stats.upstream_rq_retry++;
    this.headSent = false;
    this.queued = this.kept ? [...this.kept] : [];
    const p = this.routed.retry;
    const wait = p ? backoffMs(p, this.retries, Math.random) : 0;
    setTimeout(() => {
      c.breaker.releaseRetry();
      if (!this.done) this.tryOnce();
    }, wait);
  }

  /** Ends the current try's hold on its connection and host. */
  private releaseTry(reusable: boolean): void {
    clearTimeout(this.tryTimer);
    this.tryTimer = undefined;
    if (this.host) {
      this.host.active--;
      this.host = null;
    }
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      conn.holder = null;
      // Paused for a slow client: a connection back in the pool must read for its next holder.
      if (reusable && conn.socket.isPaused()) conn.socket.resume();
      this.d.ctx.h1.release(conn, reusable);
    }
  }

  private clearTimers(): void {
    clearTimeout(this.tryTimer);
    clearTimeout(this.reqTimer);
    this.tryTimer = this.reqTimer = undefined;
  }

  private fail(status: number, reason: string): void {
    if (this.done) return;
    this.clearTimers();
    this.d.ctx.stats.downstream_rq_5xx_local++;
    const close = !this.info.keepAlive || !this.requestComplete || this.info.tunnel;
    if (!this.d.closed) this.d.sock.write(localReply(status, `${reason}\r\n`, close));
    this.finish(status, "FORWARDED", close);
  }

  private finish(status: number, verdict: Verdict, close: boolean, tunnel = false): void {
    if (this.done) return;
    this.done = true;
    this.clearTimers();
    this.routed.cluster.breaker.releaseRequest();
    const i = this.info;
    this.d.flow(null, status, verdict, this.dec.direction, i.t0, i.protocol, undefined, i.method, i.url, this.dec.edits);
    if (!tunnel) this.d.exchangeDone(this, close);
  }
}
