// The I/O edge of L7 redirection (docs/redirect.md): attaches sock.o's sock_ops program to the
// node's pods cgroup, writes the proxy's configuration (where it listens, which cgroup it runs
// in), registers the proxy's upstream connections with their client's identity, and reads the
// record of a redirected connection. The agent and the proxy call these; nothing here decides.

import { realpathSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { WeftError } from "../core/errors.ts";
import { attachCgroup, detach, dumpMap, type LinkState, type MapWrite, pins, writeMaps } from "./loader.ts";
import {
  cgroupLevel,
  configKey,
  decodeOrigin,
  decodeProxyConfig,
  encodeOriginKey,
  encodePortKey,
  encodePortValue,
  encodeProxyConfig,
  PROXY_MAPS,
  type ProxyConfig,
  type ProxyOrigin,
  type SocketTuple,
  type UpstreamPort,
} from "./maps/redirect.ts";

/** sock.o's sock_ops program and its link (links/<link> under the node's pin root). */
export const REDIRECT_SOCK_OPS = { program: "sock_ops", hook: "sock_ops", link: "sock-ops" } as const;
export const CGROUP2_MOUNT = "/sys/fs/cgroup/unified";

/**
 * Attaches sock_ops (already loaded and pinned by loadSockDatapath) to the node's pods cgroup,
 * the same cgroup as the connect4 hook. Idempotent: a pinned link is adopted in place.
 */
export function attachRedirect(root: string, podsCgroup: string): Promise<LinkState> {
  const dir = realpathSync(podsCgroup);
  if (!statSync(`${dirname(dir)}/cgroup.procs`, { throwIfNoEntry: false })) {
    throw new WeftError("WEFT_BPF", "refusing to attach sock_ops to a root cgroup: give the node's pods cgroup", podsCgroup);
  }
  return attachCgroup(pins.program(root, "sock", REDIRECT_SOCK_OPS.program), dir, REDIRECT_SOCK_OPS.hook, pins.link(root, REDIRECT_SOCK_OPS.link));
}

export async function detachRedirect(root: string): Promise<void> {
  await detach(pins.link(root, REDIRECT_SOCK_OPS.link));
}

export interface ProxyTarget {
  /** The proxy's listening address in the node namespace: the pods' gateway IP. */
  address: string;
  /** Its listening port (default 15001). */
  port: number;
  /** The proxy's cgroup v2 directory (outside the pods tree); its sockets are "the proxy's". */
  cgroup: string;
  /** cgroup2 mount (default /sys/fs/cgroup/unified). */
  mount?: string;
}

/** The configuration value for a target: the cgroup's id is its directory's inode number. */
export function proxyConfigFor(t: ProxyTarget, enabled = true): ProxyConfig {
  const dir = realpathSync(t.cgroup);
  const st = statSync(dir, { bigint: true });
  if (!st.isDirectory()) throw new WeftError("WEFT_BPF", "not a cgroup directory", t.cgroup);
  return { address: t.address, port: t.port, enabled, cgroupId: st.ino, cgroupLevel: cgroupLevel(t.mount ?? CGROUP2_MOUNT, dir) };
}

/**
 * Turns redirection on (the agent calls this once the proxy's listener is up): from then on the
 * socket hooks steer L7-policed connections to `address:port`, tc hands L7-policed connections
 * from other nodes to it, and a new flow to a pod whose ingress entry asks for the proxy is let in
 * only from the proxy.
 */
export async function enableRedirect(root: string, target: ProxyTarget): Promise<ProxyConfig> {
  const cfg = proxyConfigFor(target, true);
  await writeMaps([{ op: "update", map: pins.map(root, PROXY_MAPS.config), key: configKey(), value: encodeProxyConfig(cfg) }]);
  return cfg;
}

/** Turns redirection off (nothing is steered; existing redirected connections keep their sockets). */
export async function disableRedirect(root: string): Promise<void> {
  await writeMaps([{ op: "update", map: pins.map(root, PROXY_MAPS.config), key: configKey(), value: Buffer.alloc(24) }]);
}

export async function readProxyConfig(root: string): Promise<ProxyConfig | undefined> {
  const dump = await dumpMap(pins.map(root, PROXY_MAPS.config));
  const v = dump.entries[0]?.value;
  return v ? decodeProxyConfig(v) : undefined;
}

/** The writes that declare upstream connections' identities (the proxy batches them). */
export function upstreamWrites(root: string, ports: readonly (UpstreamPort & { identity: number })[]): MapWrite[] {
  const map = pins.map(root, PROXY_MAPS.ports);
  return ports.map((p) => ({ op: "update" as const, map, key: encodePortKey(p), value: encodePortValue(p.identity) }));
}

/**
 * Declares that the proxy's connection bound to `address:port` carries `identity`'s traffic.
 * Call before connect(): the SYN is checked against this entry.
 */
export async function registerUpstream(root: string, port: UpstreamPort, identity: number): Promise<void> {
  if (!Number.isInteger(identity) || identity <= 0) throw new WeftError("WEFT_BPF", `identity must be a positive integer, not ${identity}`, "weft_proxy_ports");
  await writeMaps(upstreamWrites(root, [{ ...port, identity }]));
}

/** Removes an upstream connection's entry (after its socket closed). */
export async function unregisterUpstream(root: string, port: UpstreamPort): Promise<void> {
  await writeMaps([{ op: "delete", map: pins.map(root, PROXY_MAPS.ports), key: encodePortKey(port) }]);
}

/**
 * The record of a redirected connection, by its accepted socket's addresses; undefined when there
 * is none — then the proxy must refuse the connection. Reads the whole map through the helper
 * (dumpMap): fine for tests and tools; the proxy's hot path needs a single-key lookup (see
 * docs/redirect.md, "What the proxy must do").
 */
export async function lookupOrigin(root: string, t: SocketTuple): Promise<ProxyOrigin | undefined> {
  const key = encodeOriginKey(t);
  const dump = await dumpMap(pins.map(root, PROXY_MAPS.origin));
  const hit = dump.entries.find((e) => e.key.equals(key));
  return hit ? decodeOrigin(hit.value) : undefined;
}
