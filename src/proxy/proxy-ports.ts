// Whose traffic an upstream connection carries: the proxy binds every upstream connection to a
// local port it chose and declares port → client identity, so the datapath's checks see the client,
// never the proxy (Node cannot set SO_MARK). Ports come from a per-worker slice of a range so two
// workers never declare the same port. In-memory source for tests; the kernel map is an adapter.

import { WeftError } from "../core/errors.ts";
import { KernelProxyPorts } from "./kernel.ts";

export interface ProxyPorts {
  /** The address upstream connections bind to (the kernel's port map is keyed by address and port). */
  readonly localAddress?: string;
  /** A promise (a map write) is awaited before the connection's SYN is sent. */
  register(localPort: number, identity: number): void | Promise<void>;
  release(localPort: number): void | Promise<void>;
}

/** Keeps the declarations in a Map (tests read it; the worker reports it on its admin channel). */
export class MemoryProxyPorts implements ProxyPorts {
  readonly map = new Map<number, number>();
  registered = 0;
  register(localPort: number, identity: number): void {
    this.map.set(localPort, identity);
    this.registered++;
  }
  release(localPort: number): void {
    this.map.delete(localPort);
  }
}

export type ProxyPortsSource = { kind: "memory" } | { kind: "kernel"; root: string; address: string };

export function openProxyPorts(src: ProxyPortsSource): ProxyPorts {
  return src.kind === "memory" ? new MemoryProxyPorts() : new KernelProxyPorts(src.root, src.address);
}

/**
 * Local ports for upstream connections: worker `index` of `count` owns an equal slice of [lo, hi];
 * ports are handed out in rotation (so a port just closed, in TIME_WAIT, is reused last) and
 * skipped while in use. Pure: no I/O.
 */
export class PortAllocator {
  readonly lo: number;
  readonly hi: number;
  private next: number;
  private readonly inUse = new Set<number>();

  constructor(range: readonly [number, number], index: number, count: number) {
    const [a, b] = range;
    const size = Math.floor((b - a + 1) / Math.max(1, count));
    if (size < 16) throw new WeftError("WEFT_MANIFEST_INVALID", `port range ${a}-${b} too small for ${count} workers`, "proxy.portRange");
    this.lo = a + index * size;
    this.hi = this.lo + size - 1;
    this.next = this.lo;
  }

  /** A free port of the slice, or 0 when every one is in use. */
  take(): number {
    const span = this.hi - this.lo + 1;
    for (let i = 0; i < span; i++) {
      const p = this.next;
      this.next = p === this.hi ? this.lo : p + 1;
      if (!this.inUse.has(p)) {
        this.inUse.add(p);
        return p;
      }
    }
    return 0;
  }

  give(port: number): void {
    this.inUse.delete(port);
  }

  get used(): number {
    return this.inUse.size;
  }
}
