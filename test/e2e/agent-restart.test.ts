// An agent killed with SIGKILL under traffic: pinned programs and maps keep serving (0 failed
// requests), changes made while it is down are applied when it returns, and its maps then hold
// exactly what the cluster asks for: no duplicates, no leaks, and the same contents as an agent
// that starts from nothing (its pins removed).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { dumpMap, pinRoot, pins, removePins } from "../../src/datapath/loader.ts";
import { endpointKey } from "../../src/datapath/maps/endpoints.ts";
import { ipcacheKey } from "../../src/datapath/maps/ipcache.ts";
import { backendIdsOf, LB_MAPS, lb4Key, lb4Service, SVC_AFFINITY, SVC_MAGLEV, slotsOf } from "../../src/datapath/maps/lb.ts";
import { REPO, TEST_STATE_ROOT, TestCluster, WEFT } from "../harness/cluster.ts";
import { diffDumps, dumpNodeMaps } from "../harness/map-dump.ts";

const LB_MAP_MAX = 32_768;
/** max_entries of a node's pinned map, from bpftool. */
const maxEntries = (root: string, map: string) =>
  (JSON.parse(execFileSync("bpftool", ["-j", "map", "show", "pinned", pins.map(root, map)], { encoding: "utf8" })) as { max_entries: number }).max_entries;

const dir = mkdtempSync(join(tmpdir(), "weft-restart-"));
const deploy = (replicas: number) => {
  const file = join(dir, "echo.yaml");
  writeFileSync(
    file,
    `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo, labels: {app: echo}}\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      containers:\n        - name: echo\n          image: weft/echo\n          ports: [{name: http, containerPort: 8080}]\n          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 2}\n`,
  );
  return file;
};

describe("agent restart", () => {
  let c: TestCluster;
  before(async () => {
    // A non-default service map size: the restarted and the fresh agent must both keep it.
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples"), upArgs: ["--lb-map-max", String(LB_MAP_MAX)] });
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
  });
  after(async () => {
    await c?.down();
  });

  it("kill -9 of node-1's agent during a new-connection-per-request loop fails 0 requests; the change made meanwhile lands", async () => {
    const healthFile = join(c.stateDir, "run", "node-1", "agent.health.json");
    const oldPid = (JSON.parse(readFileSync(healthFile, "utf8")) as { pid: number }).pid;
    // Client on node-1: one new connection per request, bounded in count and time.
    const loop = spawn(
      process.execPath,
      [
        WEFT,
        "exec",
        "client-1",
        "--cluster",
        c.name,
        "--",
        "sh",
        "-c",
        "for i in $(seq 400); do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 3 http://echo/ || echo fail; sleep 0.03; done",
      ],
      {
        env: { ...process.env, WEFT_STATE_DIR: TEST_STATE_ROOT },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    loop.stdout.on("data", (d) => (out += d));
    const done = new Promise((r) => loop.on("exit", r));
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(oldPid, "SIGKILL");
    const killedAt = Date.now();
    assert.equal((await c.apply(deploy(5))).code, 0, "scale while the agent is down");
    const back = await c.waitFor(
      "agent back",
      async () => {
        const h = JSON.parse(readFileSync(healthFile, "utf8")) as { pid: number; healthy: boolean };
        return h.pid !== oldPid && h.healthy && h;
      },
      60_000,
    );
    const downMs = Date.now() - killedAt;
    console.log(`# agent down for ${downMs} ms (new pid ${back.pid})`);
    assert.ok(downMs >= 5000, "the agent stayed down >= 5 s");
    assert.equal((await c.cli(["policy", "wait", "--timeout", "60"])).code, 0);
    await done;
    const codes = out.trim().split("\n");
    console.log(`# ${codes.length} requests during the restart`);
    assert.ok(codes.length >= 100, `loop ran: ${codes.length}`);
    assert.deepEqual(
      codes.filter((x) => x !== "200"),
      [],
      "no failed request",
    );
    // The scaled replicas serve once node-1's agent registered them.
    await c.waitFor(
      "5 ready echo pods",
      async () =>
        (await c.pods()).filter((p) => p.metadata.labels.app === "echo" && p.status.conditions.find((x) => x.type === "Ready")?.status === "True").length === 5,
      60_000,
    );
  });

  it("after the restart every map holds exactly what the cluster asks for", async () => {
    await c.cli(["policy", "wait"]);
    await new Promise((r) => setTimeout(r, 1000));
    const pods = await c.pods("default");
    const system = await c.pods("kube-system");
    const all = [...pods, ...system];
    const root = pinRoot(c.name, "node-1");
    // ipcache: one entry per pod IP, per node address, per remote pod CIDR, and world.
    const ipcache = (await dumpMap(pins.map(root, "weft_ipcache"))).entries.map((e) => {
      const k = ipcacheKey.decode(e.key);
      return `${k.addr}/${k.prefixlen}`;
    });
    assert.equal(new Set(ipcache).size, ipcache.length, "no duplicate ipcache keys");
    const podIPs = all.map((p) => `${p.status.podIP}/32`).sort();
    assert.deepEqual(ipcache.filter((x) => x.startsWith("10.200.") && x.endsWith("/32") && !/^10\.200\.\d+\.1\//.test(x)).sort(), podIPs);
    // endpoints: exactly the pods of node-1.
    const eps = (await dumpMap(pins.map(root, "weft_endpoints"))).entries.map((e) => endpointKey.decode(e.key).addr).sort();
    assert.deepEqual(
      eps,
      all
        .filter((p) => p.spec.nodeName === "node-1")
        .map((p) => p.status.podIP)
        .sort(),
    );
    // services: every slot says where its backend is; entries that pick by id (ClientIP affinity,
    // Maglev) name only backends lb4_backends holds, and it holds no other (none orphaned).
    const svc = (await dumpMap(pins.map(root, LB_MAPS.services))).entries.map((e) => ({ k: lb4Key.decode(e.key), v: lb4Service.decode(e.value) }));
    for (const s of svc) {
      const slots = slotsOf(s.v.backends, backendIdsOf(s.v.backend_ids).length);
      assert.ok(
        slots.every((x) => x.address.startsWith("10.200.") && x.port > 0),
        `${s.k.address}:${s.k.dport} entry ${s.k.slot}: ${JSON.stringify(slots)}`,
      );
    }
    const pickById = new Set(svc.filter((s) => s.k.slot === 0 && s.v.flags & (SVC_AFFINITY | SVC_MAGLEV)).map((s) => s.v.service_id));
    const backendIds = new Set((await dumpMap(pins.map(root, LB_MAPS.backends))).entries.map((e) => e.key.readUInt32LE(0)));
    const referenced = new Set(svc.filter((s) => pickById.has(s.v.service_id)).flatMap((s) => backendIdsOf(s.v.backend_ids)));
    assert.deepEqual(
      [...referenced].filter((id) => !backendIds.has(id)),
      [],
      "slots of services that pick by id point at existing backends",
    );
    assert.deepEqual(
      [...backendIds].filter((id) => !referenced.has(id)),
      [],
      "no orphaned backends",
    );
    const echoVip = svc.find((s) => s.k.slot === 0 && s.k.dport === 80);
    assert.equal(echoVip?.v.count, 5, "the echo service has the 5 ready backends");
  });

  it("the restarted agent's maps equal those of an agent started from nothing", async () => {
    const root = pinRoot(c.name, "node-1");
    const restarted = await dumpNodeMaps(root);
    const count = (m: string) => restarted.maps[m]?.length ?? 0;
    console.log(
      `# node-1 maps: ${Object.entries(restarted.maps)
        .map(([m, l]) => `${m} ${l.length}`)
        .join(", ")}; skipped (run-time): ${restarted.skipped.join(", ")}`,
    );
    assert.ok(count(LB_MAPS.services) > 0 && count("weft_ipcache") > 0 && count("weft_endpoints") > 0, "the dump has content");
    assert.equal(maxEntries(root, LB_MAPS.services), LB_MAP_MAX, "weft up --lb-map-max sized the service map");
    // A fresh start: the agent goes, and so does everything it pinned (programs, links, maps).
    const healthFile = join(c.stateDir, "run", "node-1", "agent.health.json");
    const oldPid = (JSON.parse(readFileSync(healthFile, "utf8")) as { pid: number }).pid;
    process.kill(oldPid, "SIGKILL");
    await c.waitFor(
      "agent gone",
      async () => {
        try {
          process.kill(oldPid, 0);
          return false;
        } catch {
          return true;
        }
      },
      10_000,
    );
    await removePins(root);
    await c.waitFor(
      "agent back",
      async () => {
        const h = JSON.parse(readFileSync(healthFile, "utf8")) as { pid: number; healthy: boolean };
        return h.pid !== oldPid && h.healthy;
      },
      60_000,
    );
    // Starts that failed before this one (the kubelet restarts the agent with a growing back-off).
    const logs = join(c.stateDir, "logs", "nodes", "node-1");
    const exits = readFileSync(join(logs, "kubelet.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes("node component exited") && l.includes('"name":"agent"'));
    const crashes = readFileSync(join(logs, "agent.log"), "utf8")
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("{"))
      .slice(-5);
    console.log(`# agent exits seen by the kubelet: ${exits.length}; last non-log output of the agent:\n# ${crashes.join("\n# ")}`);
    assert.equal((await c.cli(["policy", "wait", "--timeout", "60"])).code, 0);
    // Converges within a bound; then the two dumps must be equal line for line.
    const t0 = Date.now();
    let diff: string[] = [];
    await c
      .waitFor(
        "fresh maps equal the restarted agent's",
        async () => {
          diff = diffDumps(restarted, await dumpNodeMaps(root));
          return diff.length === 0;
        },
        30_000,
      )
      .catch(() => undefined);
    console.log(`# fresh start converged in ${Date.now() - t0} ms`);
    assert.deepEqual(diff, [], "restarted vs fresh");
    assert.equal(maxEntries(root, LB_MAPS.backends), LB_MAP_MAX, "the fresh agent sized its maps from the cluster's setting");
    // And the fresh datapath serves.
    const r = await c.exec("client-1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://echo/"]);
    assert.equal(r.stdout.trim(), "200");
  });
});
