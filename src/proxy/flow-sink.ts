// Where the proxy's flows go: the node's agent, as JSON lines POSTed to its Unix socket
// (`/v1/flows`), batched and bounded (a slow agent costs dropped flows, counted, never memory or
// request latency; a flow is serialised when its batch is sent, not on the request's path); an
// in-memory sink for tests; and the proxy-log line of a request whose flow records headerMatches
// mismatch actions.

import http from "node:http";
import type { Logger } from "../core/log.ts";
import type { Flow } from "../observe/flow.ts";

export interface FlowSink {
  push(flow: Flow): void;
  /** Sends what is queued; resolves when done (or failed). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export class MemoryFlowSink implements FlowSink {
  readonly flows: Flow[] = [];
  push(flow: Flow): void {
    this.flows.push(flow);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export class NullFlowSink implements FlowSink {
  push(): void {}
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface UnixFlowSinkOptions {
  socketPath: string;
  path?: string;
  /** Flush after this long, or at `batch` flows, whichever first. */
  intervalMs?: number;
  batch?: number;
  /** Flows queued beyond this are dropped (counted). */
  maxQueued?: number;
}

export class UnixHttpFlowSink implements FlowSink {
  private queue: Flow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | undefined;
  private readonly opts: Required<UnixFlowSinkOptions>;
  sent = 0;
  dropped = 0;
  failedPosts = 0;

  constructor(opts: UnixFlowSinkOptions) {
    this.opts = { path: "/v1/flows", intervalMs: 100, batch: 512, maxQueued: 16384, ...opts };
  }

  push(flow: Flow): void {
    if (this.queue.length >= this.opts.maxQueued) {
      this.dropped++;
      return;
    }
    this.queue.push(flow);
    if (this.queue.length >= this.opts.batch) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.intervalMs).unref();
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inflight) await this.inflight;
    if (this.queue.length === 0) return;
    const lines = this.queue;
    this.queue = [];
    let body = "";
    for (const f of lines) body += `${JSON.stringify(f)}\n`;
    this.inflight = this.post(body).then(
      (ok) => {
        if (ok) this.sent += lines.length;
        else {
          this.failedPosts++;
          this.dropped += lines.length;
        }
        this.inflight = undefined;
      },
      () => {
        this.inflight = undefined;
      },
    );
    await this.inflight;
  }

  private post(body: string): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.request(
        {
          socketPath: this.opts.socketPath,
          path: this.opts.path,
          method: "POST",
          headers: { "content-type": "application/x-ndjson", "content-length": Buffer.byteLength(body) },
          timeout: 2000,
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve((res.statusCode ?? 500) < 300));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => resolve(false));
      req.end(body);
    });
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/**
 * A proxy-log line for a request that met headerMatches mismatch actions: Cilium records them in its
 * access log; Weft in the L7 flow (missing_headers, rejected_headers) and here, so they are seen even
 * when the flow ring has moved on.
 */
export function logHeaderActions(log: Logger, flow: Flow): void {
  const h = flow.l7?.http;
  if (!h || (!h.missing_headers && !h.rejected_headers)) return;
  log.info("headerMatches mismatch", {
    method: h.method,
    url: h.url,
    code: h.code,
    direction: flow.traffic_direction,
    source: `${flow.IP.source} (identity ${flow.source.identity})`,
    destination: `${flow.IP.destination} (identity ${flow.destination.identity})`,
    ...(h.missing_headers ? { missing_headers: h.missing_headers } : {}),
    ...(h.rejected_headers ? { rejected_headers: h.rejected_headers } : {}),
  });
}
