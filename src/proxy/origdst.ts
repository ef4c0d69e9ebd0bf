// The original destination and the client's identity of a redirected connection: the socket hook
// (client side) or the tc redirect (server side) records them, the proxy looks them up by the
// connection's addresses. A connection with no record is refused: the proxy never guesses whose
// traffic it carries. In-memory and JSON-file sources serve tests; the kernel source is an adapter.

import { readFileSync, statSync } from "node:fs";
import { KernelRedirects } from "./kernel.ts";

export type L7DirectionName = "ingress" | "egress";

/** One L7 rule set to apply: `subject`'s rules for `direction`, with `peer` as the remote identity. */
export interface L7Direction {
  direction: L7DirectionName;
  /** Egress: the client's identity; ingress: the destination's. */
  subject: number;
  /** Egress: the destination's identity; ingress: the client's. */
  peer: number;
}

export interface RedirectRecord {
  /** What the client connected to (its getpeername): the service VIP or the pod address. */
  vip: string;
  vport: number;
  /** The backend the socket hook's load balancing chose (used when no L7 listener balances). */
  backend: string;
  bport: number;
  /** The client's security identity. */
  identity: number;
  /** The L7 sets to apply, egress before ingress; both when client and server share a node. */
  directions: L7Direction[];
}

export interface Redirects {
  /** A source may answer asynchronously (a map read); the connection's bytes wait meanwhile. */
  lookup(remoteAddr: string, remotePort: number, localAddr: string, localPort: number): RedirectRecord | undefined | Promise<RedirectRecord | undefined>;
}

/** "::ffff:10.0.0.1" → "10.0.0.1" (dual-stack sockets report IPv4 peers mapped). */
export function plainAddress(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

/**
 * Records keyed by the client's address and port; port 0 stands for any port of that address (a
 * test's client bound to its own loopback address).
 */
export class MemoryRedirects implements Redirects {
  private readonly byKey = new Map<string, RedirectRecord>();

  set(remoteAddr: string, remotePort: number, rec: RedirectRecord): this {
    this.byKey.set(`${plainAddress(remoteAddr)}:${remotePort}`, rec);
    return this;
  }

  delete(remoteAddr: string, remotePort: number): void {
    this.byKey.delete(`${plainAddress(remoteAddr)}:${remotePort}`);
  }

  clear(): void {
    this.byKey.clear();
  }

  get size(): number {
    return this.byKey.size;
  }

  lookup(remoteAddr: string, remotePort: number, _localAddr = "", _localPort = 0): RedirectRecord | undefined {
    const a = plainAddress(remoteAddr);
    return this.byKey.get(`${a}:${remotePort}`) ?? this.byKey.get(`${a}:0`);
  }
}

/** The JSON file's shape: `{"records": [{"remote": "127.0.0.2", "remotePort": 0, ...RedirectRecord}]}`. */
export interface RedirectFile {
  records: (RedirectRecord & { remote: string; remotePort?: number })[];
}

/** A JSON file of records, re-read when it changes (checked at most every `checkMs`). */
export class FileRedirects implements Redirects {
  private readonly mem = new MemoryRedirects();
  private mtimeMs = -1;
  private checkedAt = 0;

  constructor(
    readonly path: string,
    private readonly checkMs = 20,
  ) {
    this.reload();
  }

  lookup(remoteAddr: string, remotePort: number): RedirectRecord | undefined {
    const now = performance.now();
    if (now - this.checkedAt >= this.checkMs) {
      this.checkedAt = now;
      this.reload();
    }
    return this.mem.lookup(remoteAddr, remotePort);
  }

  private reload(): void {
    const st = statSync(this.path, { throwIfNoEntry: false });
    if (!st) {
      this.mem.clear();
      this.mtimeMs = -1;
      return;
    }
    if (st.mtimeMs === this.mtimeMs) return;
    let doc: RedirectFile;
    try {
      doc = JSON.parse(readFileSync(this.path, "utf8")) as RedirectFile;
    } catch {
      return; // a half-written file: keep the previous records, look again next time
    }
    this.mtimeMs = st.mtimeMs;
    this.mem.clear();
    for (const r of doc.records ?? []) {
      const { remote, remotePort, ...rec } = r;
      this.mem.set(remote, remotePort ?? 0, rec);
    }
  }
}

/**
 * Where records come from: a JSON file (tests), or the kernel's origin map, filed by the socket
 * hooks and tc (src/proxy/kernel.ts reads one key per accepted connection over a long-lived helper
 * channel). A connection without a record is refused: fail closed.
 */
export type RedirectSource = { kind: "file"; path: string } | { kind: "kernel"; root: string };

export function openRedirects(src: RedirectSource, onProblem?: (message: string) => void): Redirects {
  return src.kind === "file" ? new FileRedirects(src.path) : new KernelRedirects(src.root, onProblem);
}
