// The proxy under load while things change: a config push that flips a verdict the traffic
// exercises (0 failed requests, the new verdict in force once acknowledged), SIGKILL of one worker
// (only its in-flight requests fail, serving continues, it is restarted), and SIGKILL of every
// worker (new connections wait in the supervisor's backlog and are served after the restart). A
// denied request never gets a 200 at any point.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { cluster, clusterLoadAssignment, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { EchoBackend, get, httpPolicy, type ProxyEnv, record, startProxy, waitFor } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;

function resources(echo: EchoBackend, toggleAllowed: boolean): XdsResource[] {
  return [
    { typeUrl: TYPE.cluster, message: cluster({ name: "echo" }) },
    { typeUrl: TYPE.endpoint, message: clusterLoadAssignment("echo", [{ address: "127.0.0.1", port: echo.port }]) },
    { typeUrl: TYPE.listener, message: listener({ name: "vip", address: "10.96.3.1", port: 80, http: { routeConfigName: "r" } }) },
    { typeUrl: TYPE.route, message: routeConfiguration("r", [{ name: "all", routes: [{ prefix: "/", cluster: "echo" }] }]) },
    httpPolicy(SERVER, echo.port, CLIENT, [{ method: "GET", path: "/public(/.*)?" }, ...(toggleAllowed ? [{ method: "GET", path: "/toggle" }] : [])]),
  ];
}

interface LoadResult {
  ok: number;
  failed: { path: string; status: number; error?: string; at: number }[];
  deniedGot200: number;
  /** Per request to /toggle: [start time, status]. */
  toggles: [number, number][];
}

/** `clients` keep-alive clients loop over /public, /private and /toggle until `stop()` (bounded by maxMs). */
function load(port: number, clients: number, maxMs: number): { stop: () => Promise<LoadResult> } {
  const r: LoadResult = { ok: 0, failed: [], deniedGot200: 0, toggles: [] };
  let running = true;
  const end = performance.now() + maxMs;
  const paths = ["/public/a", "/private", "/toggle"];
  const loops = Array.from({ length: clients }, async (_, c) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.2" });
    for (let i = 0; running && performance.now() < end && i < 1_000_000; i++) {
      const path = paths[(i + c) % 3] as string;
      const at = performance.now();
      try {
        const res = await get(port, path, { agent, timeoutMs: 10_000 });
        if (path === "/private" && res.status === 200) r.deniedGot200++;
        if (path === "/toggle") r.toggles.push([at, res.status]);
        const good = path === "/public/a" ? res.status === 200 : path === "/private" ? res.status === 403 : res.status === 200 || res.status === 403;
        if (good) r.ok++;
        else r.failed.push({ path, status: res.status, at });
      } catch (err) {
        r.failed.push({ path, status: 0, error: (err as Error).message, at });
        await new Promise((res) => setTimeout(res, 5));
      }
    }
    agent.destroy();
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return r;
    },
  };
}

describe("proxy: config pushes and worker deaths under load", () => {
  let env: ProxyEnv;
  const echo = new EchoBackend("echo");

  before(async () => {
    await echo.start();
    env = await startProxy({
      workers: 2,
      resources: resources(echo, false),
      records: [{ remote: "127.0.0.2", ...record("10.96.3.1", 80, "127.0.0.1", echo.port, CLIENT, SERVER) }],
    });
  });

  after(async () => {
    await env?.stop();
    await echo.stop();
  });

  it("a config push under load fails nothing and its new verdict is in force once acknowledged", async () => {
    const l = load(env.port, 16, 15_000);
    await new Promise((r) => setTimeout(r, 700));
    const acks: number[] = [];
    env.xds.on("ack", (e: { typeUrl: string }) => {
      if (e.typeUrl === TYPE.l7policy) acks.push(performance.now());
    });
    const pushedAt = performance.now();
    env.setSnapshot(resources(echo, true));
    const ackMs = await waitFor("both workers acknowledge the push", () => acks.length >= 2, 5000);
    const inForce = acks[1] as number;
    await new Promise((r) => setTimeout(r, 700));
    const res = await l.stop();
    const after = res.toggles.filter(([at]) => at > inForce);
    const beforePush = res.toggles.filter(([at]) => at < pushedAt);
    console.log(
      `# push acknowledged by both workers in ${ackMs.toFixed(1)} ms; ${res.ok} ok, ${res.failed.length} failed; /toggle ${beforePush.length} before, ${after.length} after`,
    );
    assert.deepEqual(res.failed, []);
    assert.equal(res.deniedGot200, 0);
    assert.ok(beforePush.length > 10 && beforePush.every(([, s]) => s === 403), "denied before the push");
    assert.ok(after.length > 10 && after.every(([, s]) => s === 200), "allowed after the push");
  });

  it("SIGKILL of one worker under load: only its in-flight requests fail; it is restarted", async () => {
    const clients = 16;
    const l = load(env.port, clients, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    const w = await env.workers();
    const victim = w.pids[0] as number;
    const killedAt = performance.now();
    process.kill(victim, "SIGKILL");
    const back = await waitFor(
      "a replacement worker serving",
      async () => {
        const now = await env.workers();
        return now.ready === 2 && !now.pids.includes(victim);
      },
      15_000,
    );
    await new Promise((r) => setTimeout(r, 500));
    const res = await l.stop();
    const afterKill = res.failed.filter((f) => f.at >= killedAt - 50);
    const late = res.failed.filter((f) => f.at > killedAt + back + 200);
    console.log(
      `# worker ${victim} killed: replacement ready after ${back.toFixed(0)} ms; ${res.ok} ok, ${res.failed.length} failed (${[...new Set(res.failed.map((f) => f.error ?? f.status))].join(", ")})`,
    );
    assert.equal(res.deniedGot200, 0, "no denied request got a 200");
    assert.equal(res.failed.length, afterKill.length, "nothing failed before the kill");
    assert.ok(res.failed.length <= clients, `at most one in-flight request per connection failed (${res.failed.length})`);
    assert.ok(
      res.failed.every((f) => f.status === 0),
      "failures are broken connections, never wrong answers",
    );
    assert.deepEqual(late, [], "serving normally once the replacement is up");
    assert.ok(back < 10_000);
  });

  it("SIGKILL of every worker: new connections wait in the backlog and are served after the restart", async () => {
    const w = await env.workers();
    const t0 = performance.now();
    for (const pid of w.pids) if (pid) process.kill(pid, "SIGKILL");
    // Connections opened while no worker runs: accepted by the kernel into the backlog, answered later.
    const rs = await Promise.all([
      ...Array.from({ length: 6 }, () => get(env.port, "/public/gap", { timeoutMs: 15_000 })),
      ...Array.from({ length: 6 }, () => get(env.port, "/private", { timeoutMs: 15_000 })),
    ]);
    const ms = performance.now() - t0;
    console.log(`# all workers killed: 12 requests made during the gap answered within ${ms.toFixed(0)} ms`);
    assert.deepEqual(
      rs.map((r) => r.status),
      [200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403],
    );
    assert.ok(ms < 10_000);
  });
});
