// The agent's ADS server and the proxy's ADS client over a real Unix socket: initial config, an
// update pushed in warming order, a NACK that keeps the old config, and a server restart after
// which the client reconnects and resyncs.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type NackInfo, XdsClient } from "../../../src/xds/client.ts";
import { cluster, clusterLoadAssignment, l7Policies, listener, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { type NackEvent, XdsServer } from "../../../src/xds/server.ts";

const NODE = "node-a";

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ms / 5; i++) {
    if (cond()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function resources(routeTo: string, opts: { badRegex?: boolean } = {}): XdsResource[] {
  const clusters = ["web", "api", "web2"];
  return [
    ...clusters.map((c): XdsResource => ({ typeUrl: TYPE.cluster, message: cluster({ name: c, lbPolicy: "LEAST_REQUEST", choiceCount: 2 }) })),
    ...clusters.map((c, i): XdsResource => ({ typeUrl: TYPE.endpoint, message: clusterLoadAssignment(c, [{ address: "127.0.0.1", port: 18080 + i }]) })),
    { typeUrl: TYPE.listener, message: listener({ name: "http", address: "127.0.0.1", port: 10080, http: { routeConfigName: "routes" } }) },
    {
      typeUrl: TYPE.route,
      message: routeConfiguration("routes", [{ name: "all", routes: [{ ...(opts.badRegex ? { regex: "/x(?=y)" } : { prefix: "/" }), cluster: routeTo }] }]),
    },
    ...l7Policies(256, "ingress", [{ proto: 6, port: 80, kind: "http", entries: [{ scope: 300, allowAll: false, rule: "r", l7: null }] }]).map(
      (m): XdsResource => ({ typeUrl: TYPE.l7policy, message: m }),
    ),
  ];
}

describe("ADS over a Unix socket", () => {
  let dir = "";
  let sock = "";
  let server: XdsServer | undefined;
  let client: XdsClient | undefined;
  const serverNacks: NackEvent[] = [];
  const clientNacks: NackInfo[] = [];
  /** The order in which the client accepted types. */
  const accepted: string[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-xds-"));
    sock = join(dir, "xds.sock");
  });

  after(async () => {
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const routeCluster = () => client?.config().routes.get("routes")?.virtual_hosts[0]?.routes[0]?.route.cluster;

  it("initial snapshot: the client gets every type, at the server's versions", async () => {
    server = await XdsServer.start({ socketPath: sock });
    server.on("nack", (e: NackEvent) => serverNacks.push(e));
    const versions = server.setSnapshot(NODE, resources("web"));
    const t0 = performance.now();
    client = new XdsClient({ target: `unix://${sock}`, node: { id: NODE }, backoff: { initialMs: 50, maxMs: 400 } });
    client.on("nack", (n: NackInfo) => clientNacks.push(n));
    client.on("config", (_c, { typeUrl }: { typeUrl: string }) => accepted.push(typeUrl));
    client.start();
    await waitFor("the whole initial config", () => {
      const v = client!.config().versions;
      return Object.entries(versions).every(([t, ver]) => v[t] === ver);
    });
    console.log(`# initial sync ${(performance.now() - t0).toFixed(1)} ms`);
    const cfg = client.config();
    assert.deepEqual([...cfg.clusters.keys()].sort(), ["api", "web", "web2"]);
    assert.deepEqual([...cfg.endpoints.keys()].sort(), ["api", "web", "web2"]);
    assert.equal(cfg.endpoints.get("web")?.endpoints?.[0]?.lb_endpoints[0]?.endpoint.address.socket_address?.port_value, 18080);
    assert.equal(cfg.clusters.get("api")?.lb_policy, "LEAST_REQUEST");
    assert.deepEqual([...cfg.listeners.keys()], ["http"]);
    assert.equal(routeCluster(), "web");
    assert.deepEqual([...cfg.l7policies.keys()], ["256/ingress/tcp/80"]);
    assert.equal(cfg.l7policies.get("256/ingress/tcp/80")?.entries?.[0]?.remote_identity, 300);
    assert.equal(clientNacks.length, 0);
    await waitFor("the server to see the ACKs", () => Object.entries(versions).every(([t, v]) => server!.status()[0]?.types[t]?.ackedVersion === v));
    const st = server.status();
    assert.equal(st.length, 1);
    assert.deepEqual(st[0]?.types[TYPE.endpoint]?.subscribed, ["api", "web", "web2"]);
  });

  it("update: a new route target is in force on the client; clusters were accepted before routes", async () => {
    const before = accepted.length;
    const t0 = performance.now();
    const v = server!.setSnapshot(NODE, resources("api"));
    await waitFor("route → api", () => routeCluster() === "api");
    console.log(`# update observed ${(performance.now() - t0).toFixed(1)} ms`);
    assert.equal(client!.config().versions[TYPE.route], v[TYPE.route]);
    assert.deepEqual(accepted.slice(before), [TYPE.route], "only the changed type is pushed");
    assert.ok(accepted.indexOf(TYPE.cluster) < accepted.indexOf(TYPE.route), "clusters before routes");
    assert.ok(accepted.indexOf(TYPE.endpoint) < accepted.indexOf(TYPE.route), "endpoints before routes");
  });

  it("NACK: an invalid route is refused naming the resource and field; the old config stays; the version is not re-sent", async () => {
    let rdsResponses = 0;
    const count = (e: { typeUrl: string }) => {
      if (e.typeUrl === TYPE.route) rdsResponses++;
    };
    server!.on("response", count);
    const good = client!.config().versions[TYPE.route];
    // An ACK that crosses a newer response has a stale nonce and is ignored (xDS rules), so settle first.
    await waitFor("the server to see the ACK of the good version", () => server!.status()[0]?.types[TYPE.route]?.ackedVersion === good);
    const v = server!.setSnapshot(NODE, resources("web2", { badRegex: true }));
    await waitFor("the server's NACK", () => serverNacks.length === 1);
    const n = serverNacks[0]!;
    assert.equal(n.version, v[TYPE.route]);
    assert.match(n.detail, /^RouteConfiguration "routes": virtual_hosts\[0\]\.routes\[0\]\.match\.safe_regex\.regex: invalid RE2 regular expression/);
    assert.equal(clientNacks[0]?.kept, good);
    assert.equal(client!.config().versions[TYPE.route], good);
    assert.equal(routeCluster(), "api", "the last good route is still in force");
    const st = server!.status()[0]?.types[TYPE.route];
    assert.equal(st?.nacked?.version, v[TYPE.route]);
    assert.equal(st?.ackedVersion, good);
    // The same bad snapshot again, and other types changing meanwhile: the refused version stays unsent.
    server!.setSnapshot(NODE, resources("web2", { badRegex: true }));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(rdsResponses, 1, "one RDS response (the refused one), none after it");
    server!.off("response", count);
    // A corrected version goes out and is accepted.
    server!.setSnapshot(NODE, resources("web2"));
    await waitFor("route → web2", () => routeCluster() === "web2");
  });

  it("server restart: the client keeps its config while the agent is away, then reconnects and resyncs", async () => {
    let disconnected = false;
    client!.once("disconnected", () => {
      disconnected = true;
    });
    server!.kill();
    await waitFor("the client to notice", () => disconnected);
    assert.equal(routeCluster(), "web2", "config kept while disconnected");
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    server = await XdsServer.start({ socketPath: sock });
    const v = server.setSnapshot(NODE, resources("web"));
    await waitFor("the resync after restart", () => routeCluster() === "web" && client!.config().versions[TYPE.cluster] === v[TYPE.cluster]);
    const ms = performance.now() - t0;
    console.log(`# reconnect + resync after server restart ${ms.toFixed(1)} ms (client streams opened: ${client!.streams})`);
    assert.ok(client!.streams >= 2);
    assert.ok(ms < 5000, "reconnects within the backoff ceiling");
    assert.equal(server.status()[0]?.nodeId, NODE);
  });
});
