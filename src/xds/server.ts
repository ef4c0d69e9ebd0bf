// The agent's xDS server: Envoy v3 ADS (StreamAggregatedResources, state of the world) over gRPC on
// a Unix socket. The agent hands it one snapshot of resources per node id (setSnapshot); each
// stream gets what it subscribed to, in warming order, and its ACKs and NACKs are logged. Never
// decides what config should be: sotw.ts keeps the bookkeeping, the agent the content.

import { EventEmitter } from "node:events";
import { lstatSync, unlinkSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { WeftError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { adsService, type DiscoveryRequest, type DiscoveryResponse, encodeAny } from "./codec.ts";
import { refs, resourceName, SHORT_NAME, type XdsResource } from "./resources.ts";
import { buildSnapshot, type Snapshot, SotwStream, snapshotVersion, type TypeStatus } from "./sotw.ts";

export interface XdsServerOptions {
  /** Path of the Unix socket to listen on (a stale socket file there is replaced). */
  socketPath: string;
  log?: Logger;
  /** How long listeners and routes wait for the clusters they reference before they are sent anyway. */
  warmWaitMs?: number;
}

export interface AckEvent {
  nodeId: string;
  typeUrl: string;
  version: string;
}
export interface NackEvent extends AckEvent {
  detail: string;
}

interface StreamEntry {
  id: number;
  nodeId: string;
  sotw: SotwStream;
  call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  timer?: NodeJS.Timeout;
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/**
 * Events: "ack" (AckEvent), "nack" (NackEvent), "response" ({nodeId, typeUrl, version, names}),
 * "stream" ({nodeId, open}).
 */
export class XdsServer extends EventEmitter {
  readonly socketPath: string;
  readonly target: string;
  private readonly server = new grpc.Server();
  private readonly log: Logger;
  private readonly warmWaitMs: number;
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly streams = new Set<StreamEntry>();
  /** Distinguishes nonces of this server instance from a previous one's. */
  private readonly instance = Date.now().toString(36);
  private streamIds = 0;
  private closed = false;

  private constructor(opts: XdsServerOptions) {
    super();
    this.socketPath = opts.socketPath;
    this.target = `unix://${opts.socketPath}`;
    this.log = opts.log ?? silent;
    this.warmWaitMs = opts.warmWaitMs ?? 5000;
    this.server.addService(adsService(), {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.onStream(call),
    });
  }

  static async start(opts: XdsServerOptions): Promise<XdsServer> {
    const s = new XdsServer(opts);
    try {
      if (lstatSync(opts.socketPath, { throwIfNoEntry: false })?.isSocket()) unlinkSync(opts.socketPath);
    } catch {
      // bind reports the real problem
    }
    await new Promise<void>((resolve, reject) =>
      s.server.bindAsync(s.target, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(new WeftError("WEFT_XDS", `cannot listen: ${err.message}`, opts.socketPath)) : resolve(),
      ),
    );
    s.log.info("xds server listening", { socket: opts.socketPath });
    return s;
  }

  /**
   * Replaces the node's resources. Each type's version changes exactly when its content does, and
   * only changed types are pushed. Throws WEFT_XDS when a resource does not encode.
   */
  setSnapshot(nodeId: string, resources: readonly XdsResource[]): Record<string, string> {
    const snap = buildSnapshot(
      resources.map((r) => ({ typeUrl: r.typeUrl, name: resourceName(r.typeUrl, r.message), any: encodeAny(r), refs: refs(r.typeUrl, r.message) })),
    );
    this.snapshots.set(nodeId, snap);
    const versions = Object.fromEntries(snap.versions);
    this.log.debug("xds snapshot", { node: nodeId, versions });
    for (const e of this.streams) if (e.nodeId === nodeId) this.pump(e);
    return versions;
  }

  version(nodeId: string, typeUrl: string): string {
    return snapshotVersion(this.snapshots.get(nodeId), typeUrl);
  }

  /** Per open stream: its node and, per type, subscription, sent/acked versions and the last NACK. */
  status(): { nodeId: string; stream: number; types: Record<string, TypeStatus> }[] {
    return [...this.streams].map((e) => ({ nodeId: e.nodeId, stream: e.id, types: e.sotw.status() }));
  }

  private onStream(call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    if (this.closed) {
      call.destroy(new Error("closing"));
      return;
    }
    let entry: StreamEntry | undefined;
    const id = ++this.streamIds;
    const done = () => {
      if (!entry) return;
      clearTimeout(entry.timer);
      this.streams.delete(entry);
      this.emit("stream", { nodeId: entry.nodeId, open: false });
      this.log.info("xds stream closed", { node: entry.nodeId, stream: id });
      entry = undefined;
    };
    call.on("data", (req: DiscoveryRequest) => {
      if (!entry) {
        const nodeId = req.node?.id;
        if (!nodeId) {
          call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: "the first DiscoveryRequest must carry node.id" });
          call.end();
          return;
        }
        entry = { id, nodeId, sotw: new SotwStream(`${this.instance}-${id}`, this.warmWaitMs), call };
        this.streams.add(entry);
        this.emit("stream", { nodeId, open: true });
        this.log.info("xds stream opened", { node: nodeId, stream: id, client: req.node?.user_agent_name });
      }
      const typeUrl = req.type_url;
      const detail = req.error_detail ? req.error_detail.message || `code ${req.error_detail.code ?? 0}` : undefined;
      const v = entry.sotw.onRequest({
        typeUrl,
        versionInfo: req.version_info ?? "",
        resourceNames: req.resource_names ?? [],
        nonce: req.response_nonce ?? "",
        ...(detail !== undefined ? { errorDetail: detail } : {}),
      });
      const type = SHORT_NAME[typeUrl] ?? typeUrl;
      if (v.kind === "nack") {
        this.log.warn("xds NACK: the client refused a config and keeps its previous one", { node: entry.nodeId, type, version: v.version, detail: v.detail });
        this.emit("nack", { nodeId: entry.nodeId, typeUrl, version: v.version, detail: v.detail } satisfies NackEvent);
      } else if (v.kind === "ack") {
        this.log.debug("xds ACK", { node: entry.nodeId, type, version: v.version });
        this.emit("ack", { nodeId: entry.nodeId, typeUrl, version: v.version } satisfies AckEvent);
      }
      this.pump(entry);
    });
    call.on("end", () => {
      done();
      call.end();
    });
    call.on("error", done);
    call.on("cancelled", done);
    call.on("close", done);
  }

  /** Sends every response the stream needs now; wakes up later for types waiting on warming. */
  private pump(e: StreamEntry): void {
    if (!this.streams.has(e)) return;
    clearTimeout(e.timer);
    e.timer = undefined;
    const snap = this.snapshots.get(e.nodeId);
    for (let i = 0; i < 64; i++) {
      const { response, wakeAt } = e.sotw.next(snap, Date.now());
      if (!response) {
        if (wakeAt !== undefined) e.timer = setTimeout(() => this.pump(e), Math.max(1, wakeAt - Date.now()));
        return;
      }
      const type = SHORT_NAME[response.typeUrl] ?? response.typeUrl;
      if (response.forced) this.log.warn("xds: sending before the referenced clusters were acknowledged", { node: e.nodeId, type, waitedMs: this.warmWaitMs });
      e.call.write({ version_info: response.version, resources: response.resources, type_url: response.typeUrl, nonce: response.nonce });
      this.log.debug("xds response", { node: e.nodeId, type, version: response.version, names: response.names });
      this.emit("response", { nodeId: e.nodeId, typeUrl: response.typeUrl, version: response.version, names: response.names });
    }
  }

  /** Ends every stream and stops listening; the socket file is removed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const e of [...this.streams]) {
      clearTimeout(e.timer);
      this.streams.delete(e);
      e.call.end();
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }

  /** Stops at once, like a crash of the agent: open streams break. For tests and shutdown paths that must not wait. */
  kill(): void {
    this.closed = true;
    for (const e of this.streams) clearTimeout(e.timer);
    this.streams.clear();
    this.server.forceShutdown();
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}
