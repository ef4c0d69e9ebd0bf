// HTTP/2 upstream sessions (h2c, prior knowledge) with node:http2, one per (host, client identity),
// each on a socket bound to a declared local port (ProxyPorts), multiplexing that identity's
// streams to that host.

import http2 from "node:http2";
import net from "node:net";
import type { PortAllocator, ProxyPorts } from "../proxy-ports.ts";
import type { ProxyStats } from "../stats.ts";
import type { ClusterRuntime, UpstreamHost } from "./cluster.ts";
import { UpstreamError } from "./h1-pool.ts";

export class H2Pool {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(
    private readonly ports: ProxyPorts,
    private readonly alloc: PortAllocator,
    private readonly stats: ProxyStats,
  ) {}

  session(cluster: ClusterRuntime, h: UpstreamHost, identity: number): http2.ClientHttp2Session {
    const key = `${h.address}|${identity}`;
    const have = this.sessions.get(key);
    if (have && !have.closed && !have.destroyed) return have;
    const port = this.alloc.take();
    if (port === 0) throw new UpstreamError("no-port", "no local port left in this worker's range");
    // An asynchronous declaration is issued before the session dials (h2 sessions connect lazily,
    // on the first stream); awaiting it here is left for the kernel adapter.
    void this.ports.register(port, identity);
    this.stats.upstream_cx_total++;
    this.stats.upstream_cx_active++;
    const s = http2.connect(`http://${h.address}`, {
      createConnection: () =>
        net.connect({
          host: h.ip,
          port: h.port,
          localPort: port,
          noDelay: true,
          ...(this.ports.localAddress ? { localAddress: this.ports.localAddress } : {}),
        }),
      peerMaxConcurrentStreams: 1000,
    });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.stats.upstream_cx_active--;
      void this.ports.release(port);
      this.alloc.give(port);
      if (this.sessions.get(key) === s) this.sessions.delete(key);
    };
    s.on("error", () => {
      this.stats.upstream_cx_connect_fail++;
      cluster.stats.upstream_cx_connect_fail++;
    });
    s.on("goaway", () => {
      if (this.sessions.get(key) === s) this.sessions.delete(key);
    });
    s.on("close", release);
    s.setTimeout(30_000, () => s.close());
    this.sessions.set(key, s);
    return s;
  }

  close(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }
}
