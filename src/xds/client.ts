// The proxy's xDS client: one ADS stream (state of the world) to the agent's Unix socket. Subscribes
// to listeners, clusters and L7 policies (all of the node's), then to the routes and endpoints they
// name; decodes and validates every response, ACKs it or NACKs it naming the resource and field,
// and keeps the last good config of a type when it refuses one. Reconnects with backoff when the
// agent goes away; the last good config stays in force meanwhile.

import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../core/log.ts";
import { ADS_METHOD, type DiscoveryRequest, type DiscoveryResponse, decodeAny, decodeResponse, encodeRequest } from "./codec.ts";
import {
  type Cluster,
  type ClusterLoadAssignment,
  HCM_TYPE,
  type HttpConnectionManager,
  type L7Policy,
  type Listener,
  type RouteConfiguration,
  refs,
  resourceName,
  SHORT_NAME,
  TYPE,
  WILDCARD_TYPES,
} from "./resources.ts";
import { validateResource } from "./validate.ts";

export interface XdsClientOptions {
  /** "unix:///path/to/xds.sock" */
  target: string;
  node: { id: string; cluster?: string };
  /** Types to take from the server; default all five Weft serves. */
  types?: string[];
  log?: Logger;
  backoff?: { initialMs?: number; maxMs?: number };
}

/** The config in force: the last accepted version of every type. */
export interface XdsConfig {
  listeners: ReadonlyMap<string, Listener>;
  routes: ReadonlyMap<string, RouteConfiguration>;
  clusters: ReadonlyMap<string, Cluster>;
  endpoints: ReadonlyMap<string, ClusterLoadAssignment>;
  l7policies: ReadonlyMap<string, L7Policy>;
  /** typeUrl → accepted version ("" before the first). */
  versions: Readonly<Record<string, string>>;
}

export interface NackInfo {
  typeUrl: string;
  /** The version refused. */
  version: string;
  /** The version kept. */
  kept: string;
  detail: string;
}

interface TypeState {
  accepted: Map<string, object>;
  version: string;
  /** Last nonce received on the current stream. */
  nonce: string;
  /** Subscribed names of a non-wildcard type (routes, endpoints). */
  names: string[];
}

const ALL_TYPES = [TYPE.cluster, TYPE.endpoint, TYPE.l7policy, TYPE.listener, TYPE.route];
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const INVALID_ARGUMENT = 3;

/** Events: "config" (XdsConfig, {typeUrl, version}), "nack" (NackInfo), "connected", "disconnected" ({error}). */
export class XdsClient extends EventEmitter {
  private readonly opts: XdsClientOptions;
  private readonly log: Logger;
  private readonly grpcClient: grpc.Client;
  private readonly types: string[];
  private readonly state = new Map<string, TypeState>();
  private call: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> | undefined;
  private nodeSent = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private connectedOnce = false;
  /** Streams opened so far (1 + reconnects). */
  streams = 0;

  constructor(opts: XdsClientOptions) {
    super();
    this.opts = opts;
    this.log = opts.log ?? silent;
    this.types = opts.types ?? ALL_TYPES;
    for (const t of this.types) this.state.set(t, { accepted: new Map(), version: "", nonce: "", names: [] });
    // The channel's own reconnect backoff (1 s at first by default) follows ours, so a restarted agent is found fast.
    this.grpcClient = new grpc.Client(opts.target, grpc.credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": opts.backoff?.initialMs ?? 100,
      "grpc.max_reconnect_backoff_ms": opts.backoff?.maxMs ?? 5000,
    });
  }

  start(): this {
    this.connect();
    return this;
  }

  config(): XdsConfig {
    const m = <T>(t: string) => new Map(this.state.get(t)?.accepted ?? []) as Map<string, T>;
    return {
      listeners: m<Listener>(TYPE.listener),
      routes: m<RouteConfiguration>(TYPE.route),
      clusters: m<Cluster>(TYPE.cluster),
      endpoints: m<ClusterLoadAssignment>(TYPE.endpoint),
      l7policies: m<L7Policy>(TYPE.l7policy),
      versions: Object.fromEntries([...this.state].map(([t, s]) => [t, s.version])),
    };
  }

  get connected(): boolean {
    return this.call !== undefined && this.connectedOnce;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const c = this.call;
    this.call = undefined;
    c?.cancel();
    this.grpcClient.close();
  }

  private connect(): void {
    if (this.closed) return;
    this.streams++;
    this.connectedOnce = false;
    this.nodeSent = false;
    const call = this.grpcClient.makeBidiStreamRequest(ADS_METHOD, encodeRequest, decodeResponse, new grpc.Metadata(), {});
    this.call = call;
    call.on("data", (res: DiscoveryResponse) => {
      if (call !== this.call) return;
      if (!this.connectedOnce) {
        this.connectedOnce = true;
        this.attempt = 0;
        this.log.info("xds connected", { target: this.opts.target, stream: this.streams });
        this.emit("connected");
      }
      this.onResponse(res);
    });
    call.on("error", (err: Error) => this.broken(call, err));
    call.on("end", () => this.broken(call));
    for (const s of this.state.values()) s.nonce = "";
    // Initial requests carry the versions we hold, so a restarted server can tell (it answers anyway).
    for (const t of this.types) {
      const s = this.state.get(t);
      if (!s) continue;
      if (WILDCARD_TYPES.has(t) || s.names.length)
        this.send({ type_url: t, version_info: s.version, resource_names: WILDCARD_TYPES.has(t) ? [] : s.names, response_nonce: "" });
    }
  }

  private broken(call: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>, err?: Error): void {
    if (call !== this.call || this.closed) return;
    this.call = undefined;
    const delay = this.backoffMs();
    this.log.warn("xds stream broken; keeping the last good config and reconnecting", { error: err?.message ?? "ended", retryInMs: delay });
    this.emit("disconnected", { error: err?.message ?? "ended" });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Exponential backoff with ±20% jitter: initialMs, 2×, 4×, ... up to maxMs. */
  private backoffMs(): number {
    const initial = this.opts.backoff?.initialMs ?? 100;
    const max = this.opts.backoff?.maxMs ?? 5000;
    const base = Math.min(max, initial * 2 ** Math.min(this.attempt++, 20));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  private send(req: DiscoveryRequest): void {
    if (!this.call) return;
    if (!this.nodeSent) {
      req.node = { id: this.opts.node.id, ...(this.opts.node.cluster ? { cluster: this.opts.node.cluster } : {}), user_agent_name: "weft-proxy" };
      this.nodeSent = true;
    }
    this.call.write(req);
  }

  private onResponse(res: DiscoveryResponse): void {
    const t = res.type_url;
    const s = this.state.get(t);
    if (!s) {
      this.log.warn("xds response for a type not subscribed; ignored", { type: t });
      return;
    }
    s.nonce = res.nonce;
    const problems: string[] = [];
    const decoded = new Map<string, object>();
    for (const [i, any] of res.resources.entries()) {
      if (any.type_url !== t) {
        problems.push(`resources[${i}]: type ${any.type_url} in a ${SHORT_NAME[t] ?? t} response`);
        continue;
      }
      let msg: object;
      try {
        msg = decodeAny(any).message;
      } catch (err) {
        problems.push(`resources[${i}]: ${(err as Error).message}`);
        continue;
      }
      const name = resourceName(t, msg);
      if (decoded.has(name)) problems.push(`${SHORT_NAME[t] ?? t} "${name}": sent twice`);
      problems.push(...validateResource(t, name, msg));
      decoded.set(name, msg);
    }
    const names = WILDCARD_TYPES.has(t) ? [] : s.names;
    if (problems.length) {
      const detail = problems.join("; ");
      this.log.warn("xds config refused (NACK); keeping the last good one", { type: SHORT_NAME[t] ?? t, version: res.version_info, kept: s.version, detail });
      this.send({
        type_url: t,
        version_info: s.version,
        resource_names: names,
        response_nonce: res.nonce,
        error_detail: { code: INVALID_ARGUMENT, message: detail },
      });
      this.emit("nack", { typeUrl: t, version: res.version_info, kept: s.version, detail } satisfies NackInfo);
      return;
    }
    if (WILDCARD_TYPES.has(t)) s.accepted = decoded;
    else {
      const want = new Set(s.names);
      s.accepted = new Map([...decoded].filter(([n]) => want.has(n)));
    }
    s.version = res.version_info;
    this.send({ type_url: t, version_info: s.version, resource_names: names, response_nonce: res.nonce });
    this.log.debug("xds config accepted", { type: SHORT_NAME[t] ?? t, version: s.version, resources: s.accepted.size });
    if (t === TYPE.listener) this.resubscribe(TYPE.route, routeNames(s.accepted as Map<string, Listener>));
    if (t === TYPE.cluster) this.resubscribe(TYPE.endpoint, endpointNames(s.accepted as Map<string, Cluster>));
    this.emit("config", this.config(), { typeUrl: t, version: s.version });
  }

  /** Follows what listeners and clusters name: asks for new routes/endpoints, forgets dropped ones. */
  private resubscribe(t: string, names: string[]): void {
    const s = this.state.get(t);
    if (!s || s.names.join("\0") === names.join("\0")) return;
    s.names = names;
    const keep = new Set(names);
    for (const n of [...s.accepted.keys()]) if (!keep.has(n)) s.accepted.delete(n);
    this.send({ type_url: t, version_info: s.version, resource_names: names, response_nonce: s.nonce });
  }
}

function routeNames(listeners: Map<string, Listener>): string[] {
  const out = new Set<string>();
  for (const l of listeners.values())
    for (const fc of l.filter_chains ?? [])
      for (const f of fc.filters ?? []) {
        const h = f.typed_config as Partial<HttpConnectionManager>;
        if (h?.["@type"] === HCM_TYPE && h.rds?.route_config_name) out.add(h.rds.route_config_name);
      }
  return [...out].sort();
}

function endpointNames(clusters: Map<string, Cluster>): string[] {
  const out = new Set<string>();
  for (const [typeUrl, c] of [...clusters.values()].map((c) => [TYPE.cluster, c] as const)) for (const r of refs(typeUrl, c)) out.add(r.name);
  return [...out].sort();
}
