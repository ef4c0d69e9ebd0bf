// The HTTP/1 upstream pool on loopback: an idle keep-alive connection is handed over synchronously
// (same tick, no Promise), only to the same (host, identity); a released connection that stays idle
// is closed by the pool's sweep; reads reach the holder as copies that later reads do not overwrite.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { MemoryProxyPorts, PortAllocator } from "../../../src/proxy/proxy-ports.ts";
import { ProxyStats } from "../../../src/proxy/stats.ts";
import { ClusterRuntime } from "../../../src/proxy/upstream/cluster.ts";
import { H1Pool } from "../../../src/proxy/upstream/h1-pool.ts";
import { waitFor } from "./harness.ts";

describe("upstream pool (HTTP/1)", () => {
  let server: net.Server;
  let port = 0;
  const open = new Set<net.Socket>();
  let closedByPeer = 0;

  before(async () => {
    server = net.createServer((s) => {
      open.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        open.delete(s);
        closedByPeer++;
      });
      // Answers each write with two distinct bytes strings, in two writes.
      s.on("data", (c: Buffer) => {
        s.write(`A:${c.toString()}`);
        setTimeout(() => s.write(`B:${c.toString()}`), 10);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const s of open) s.destroy();
    await new Promise((r) => server.close(r));
  });

  // Each pool gets its own local ports: a port just closed toward the same server is in TIME_WAIT.
  let nextRange = 36000;
  function pool(idleMs = 30_000, sweepMs = 5_000): { pool: H1Pool; ports: MemoryProxyPorts } {
    const ports = new MemoryProxyPorts();
    const lo = nextRange;
    nextRange += 100;
    return { pool: new H1Pool(ports, new PortAllocator([lo, lo + 99], 0, 1), new ProxyStats(), { idleMs, sweepMs }), ports };
  }

  it("an idle connection is taken synchronously, only for the same host and identity", async () => {
    const { pool: p, ports } = pool();
    const c = ClusterRuntime.single("127.0.0.1", port);
    const host = c.hosts[0];
    assert.ok(host);
    assert.equal(p.idleFor(host, 1001), null, "nothing idle before the first connect");
    const conn = await p.acquire(c, host, 1001);
    assert.equal(ports.map.get(conn.localPort), 1001, "the local port is declared for the identity");
    p.release(conn, true);
    assert.equal(p.idleFor(host, 1002), null, "another identity never gets it");
    assert.equal(p.idleFor(host, 1001), conn, "the same connection, in the same tick");
    assert.equal(p.idleFor(host, 1001), null, "taken once");
    p.release(conn, false);
    await waitFor("the refused connection closes", () => conn.closed, 2000);
    p.close();
  });

  it("reads reach the holder as copies: an earlier chunk is not overwritten by a later read", async () => {
    const { pool: p } = pool();
    const c = ClusterRuntime.single("127.0.0.1", port);
    const host = c.hosts[0];
    assert.ok(host);
    const conn = await p.acquire(c, host, 1001);
    const got: Buffer[] = [];
    conn.holder = { upstreamData: (d) => got.push(d), upstreamEnd: () => {} };
    conn.socket.write("ping");
    await waitFor("two answers", () => got.length >= 2, 2000);
    assert.equal(got[0]?.toString(), "A:ping");
    assert.equal(got[1]?.toString(), "B:ping");
    p.release(conn, false);
    p.close();
  });

  it("a connection left idle is closed by the sweep; one taken again in time is not", async () => {
    const t0 = performance.now();
    const { pool: p } = pool(150, 50);
    const c = ClusterRuntime.single("127.0.0.1", port);
    const host = c.hosts[0];
    assert.ok(host);
    const a = await p.acquire(c, host, 1001);
    const b = await p.acquire(c, host, 1001);
    p.release(a, true);
    p.release(b, true);
    assert.equal(p.idleFor(host, 1001), b, "LIFO");
    const peerClosed = closedByPeer;
    await waitFor("the idle one is swept", () => a.closed, 3000);
    assert.equal(b.closed, false, "the one in use stays open");
    await waitFor("the server sees the close", () => closedByPeer > peerClosed, 2000);
    assert.equal(p.idleFor(host, 1001), null);
    p.release(b, false);
    p.close();
    const ms = performance.now() - t0;
    console.log(`# idle sweep closed the connection in ${ms.toFixed(0)} ms (idle 150 ms, sweep 50 ms)`);
    assert.ok(ms < 3000);
  });
});
