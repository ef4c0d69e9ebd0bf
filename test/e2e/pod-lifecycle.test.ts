// Pod lifecycle on the local cluster as Kubernetes defines it: restartPolicy, readiness and
// liveness probes, graceful termination, Deployments (scale, rolling update) and refused input.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type PodJson, TestCluster } from "../harness/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-lifecycle-"));
function manifest(name: string, yaml: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

function pod(name: string, spec: string): string {
  return manifest(name, `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  labels: {app: ${name}}\nspec:\n${spec}`);
}

const containerStatus = (p: PodJson | undefined) => p?.status.containerStatuses[0];

describe("pod lifecycle", () => {
  let c: TestCluster;
  const readyFlag = join(dir, "ready-flag");
  before(async () => {
    c = await TestCluster.start({ nodes: 2 });
  });
  after(async () => {
    await c?.down();
  });

  const find = async (name: string) => (await c.pods()).find((p) => p.metadata.name === name);

  it("restarts a container that exits when restartPolicy is Always", async () => {
    const f = pod("crasher", "  containers:\n    - name: main\n      command: [sh, -c, 'echo up; sleep 0.2; exit 3']\n");
    assert.equal((await c.apply(f)).code, 0);
    const p = await c.waitFor("two restarts", async () => {
      const x = await find("crasher");
      return (containerStatus(x)?.restartCount ?? 0) >= 2 && x;
    });
    assert.equal(p.status.phase, "Running");
    const logs = await c.cli(["logs", "crasher"]);
    assert.ok(logs.stdout.split("\n").filter((l) => l === "up").length >= 2, logs.stdout);
  });

  it("runs command and args with env and workingDir inside the pod's namespace", async () => {
    const f = pod(
      "envy",
      "  restartPolicy: Never\n  containers:\n    - name: main\n      command: [sh, -c]\n      args: ['echo \"cwd=$(pwd) greeting=$GREETING host=$HOSTNAME\"; ip -4 -o addr show dev eth0']\n      workingDir: /tmp\n      env: [{name: GREETING, value: hello world}]\n",
    );
    assert.equal((await c.apply(f)).code, 0);
    const p = await c.waitFor("envy Succeeded", async () => {
      const x = await find("envy");
      return x?.status.phase === "Succeeded" && x;
    });
    const logs = await c.cli(["logs", "envy"]);
    assert.match(logs.stdout, /cwd=\/tmp greeting=hello world host=envy/);
    assert.match(logs.stdout, new RegExp(`inet ${(p.status.podIP ?? "").replace(/\./g, "\\.")}/32`));
  });

  it("leaves a failed container down when restartPolicy is Never, and Succeeded after exit 0 with OnFailure", async () => {
    const never = pod("once-fails", "  restartPolicy: Never\n  containers:\n    - name: main\n      command: [sh, -c, 'exit 7']\n");
    const ok = pod("once-ok", "  restartPolicy: OnFailure\n  containers:\n    - name: main\n      command: ['true']\n");
    assert.equal((await c.apply(never)).code, 0);
    assert.equal((await c.apply(ok)).code, 0);
    const failed = await c.waitFor("pod Failed", async () => {
      const x = await find("once-fails");
      return x?.status.phase === "Failed" && x;
    });
    assert.equal(containerStatus(failed)?.restartCount, 0);
    assert.equal(containerStatus(failed)?.state.terminated?.exitCode, 7);
    const done = await c.waitFor("pod Succeeded", async () => {
      const x = await find("once-ok");
      return x?.status.phase === "Succeeded" && x;
    });
    assert.equal(containerStatus(done)?.state.terminated?.exitCode, 0);
    const table = await c.cli(["get", "pods"]);
    assert.match(table.stdout, /once-ok\s+0\/1\s+Completed/);
    assert.match(table.stdout, /once-fails\s+0\/1\s+Error/);
  });

  it("shows a pod NotReady while its readiness probe fails, and Ready once it passes", async () => {
    const f = pod(
      "gated",
      `  containers:\n    - name: main\n      command: [sleep, infinity]\n      readinessProbe:\n        exec:\n          command: [test, -f, ${readyFlag}]\n        periodSeconds: 1\n`,
    );
    assert.equal((await c.apply(f)).code, 0);
    await c.waitFor("gated running", async () => (await find("gated"))?.status.phase === "Running");
    await new Promise((r) => setTimeout(r, 2500)); // a few failing probe periods
    let p = await find("gated");
    assert.equal(p?.status.conditions.find((x) => x.type === "Ready")?.status, "False");
    assert.match((await c.cli(["get", "pods"])).stdout, /gated\s+0\/1\s+Running/);
    writeFileSync(readyFlag, "");
    p = await c.waitFor(
      "gated Ready",
      async () => {
        const x = await find("gated");
        return x?.status.conditions.find((y) => y.type === "Ready")?.status === "True" && x;
      },
      15_000,
    );
    assert.equal(containerStatus(p)?.ready, true);
  });

  it("restarts a container whose liveness probe fails", async () => {
    const f = pod(
      "unhealthy",
      "  containers:\n    - name: main\n      command: [sleep, infinity]\n      livenessProbe:\n        tcpSocket: {port: 9}\n        periodSeconds: 1\n        failureThreshold: 2\n",
    );
    assert.equal((await c.apply(f)).code, 0);
    const p = await c.waitFor(
      "liveness restart",
      async () => {
        const x = await find("unhealthy");
        return (containerStatus(x)?.restartCount ?? 0) >= 1 && x;
      },
      30_000,
    );
    assert.ok((containerStatus(p)?.restartCount ?? 0) >= 1);
  });

  it("goes through Terminating with its grace period when deleted", async () => {
    const f = pod(
      "graceful",
      `  terminationGracePeriodSeconds: 20\n  containers:\n    - name: main\n      command: [sh, -c, 'trap "sleep 8; exit 0" TERM; while true; do sleep 0.1; done']\n`,
    );
    assert.equal((await c.apply(f)).code, 0);
    await c.waitFor("graceful Running", async () => (await find("graceful"))?.status.phase === "Running");
    const del = await c.cli(["delete", "-f", f]);
    assert.equal(del.code, 0);
    assert.match(del.stdout, /Pod\/default\/graceful deleted/);
    // The container's TERM handler takes 8 s: long enough to see the pod Terminating on a loaded machine.
    const terminating = await c.waitFor(
      "deletionTimestamp set",
      async () => {
        const x = await find("graceful");
        return x?.metadata.deletionTimestamp ? x : undefined;
      },
      15_000,
    );
    assert.equal(terminating.status.conditions.find((x) => x.type === "Ready")?.status, "False", "a terminating pod is not Ready");
    assert.match((await c.cli(["get", "pods"])).stdout, /graceful\s+0\/1\s+Terminating/);
    const started = Date.now();
    await c.waitFor("graceful gone", async () => !(await find("graceful")), 30_000);
    assert.ok(Date.now() - started >= 1000, "the container's TERM handler ran before removal");
  });

  it("scales a Deployment and replaces its pods on a template change", async () => {
    const deploy = (replicas: number, version: string) =>
      manifest(
        "web",
        `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: weft/echo\n          env: [{name: VERSION, value: "${version}"}]\n          ports: [{containerPort: 8080}]\n          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n`,
      );
    const webPods = async () => (await c.pods()).filter((p) => p.metadata.labels.app === "web" && !p.metadata.deletionTimestamp);
    assert.equal((await c.apply(deploy(2, "v1"))).code, 0);
    const v1 = await c.waitFor("2 ready replicas", async () => {
      const ps = await webPods();
      return ps.length === 2 && ps.every((p) => p.status.conditions.find((x) => x.type === "Ready")?.status === "True") && ps;
    });
    assert.deepEqual(new Set(v1.map((p) => p.spec.nodeName)).size, 2, "spread over the nodes");
    assert.equal((await c.apply(deploy(3, "v1"))).code, 0);
    await c.waitFor("scaled to 3", async () => (await webPods()).length === 3);
    assert.equal((await c.apply(deploy(3, "v2"))).code, 0);
    const oldNames = new Set(v1.map((p) => p.metadata.name));
    const v2 = await c.waitFor("rolled to v2", async () => {
      const all = (await c.pods()).filter((p) => p.metadata.labels.app === "web");
      const fresh = all.filter((p) => !p.metadata.name.startsWith(v1[0]?.metadata.name.split("-").slice(0, 2).join("-") ?? "?"));
      return all.length === 3 && fresh.length === 3 && fresh.every((p) => p.status.conditions.find((x) => x.type === "Ready")?.status === "True") && fresh;
    });
    for (const p of v2) assert.equal(oldNames.has(p.metadata.name), false);
  });

  it("refuses bad manifests with file, field and reason, and keeps the cluster as it was", async () => {
    const before = (await c.pods()).map((p) => p.metadata.uid).sort();
    const revision = readFileSync(join(c.stateDir, "objects", "REVISION"), "utf8");
    const cases: [string, string, RegExp][] = [
      ["syntax", "apiVersion: v1\nkind: Pod\nmetadata: {name: x\nspec: {}\n", /syntax\.yaml \(document 1\): \(yaml\): /],
      ["unknown-kind", "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n", /unknown-kind\.yaml \(document 1\): kind: unknown kind "Frobnicator"/],
      [
        "unknown-field",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n    - name: a\n      image: weft/echo\n      comand: [sh]\n",
        /unknown-field\.yaml \(document 1\): spec\.containers\[0\]\.comand: unknown field/,
      ],
      ["bad-port", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 70000}]\n", /spec\.ports\[0\]\.port: must be <= 65535/],
      [
        "second-doc",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: a, command: [sleep, '9']}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: bad}\n",
        /second-doc\.yaml \(document 2\): spec: required field missing/,
      ],
    ];
    for (const [name, text, expected] of cases) {
      const r = await c.apply(manifest(name, text));
      assert.equal(r.code, 1, `${name}: ${r.stdout}`);
      assert.match(r.stderr, /WEFT_MANIFEST_INVALID/, name);
      assert.match(r.stderr, expected, name);
    }
    assert.equal(readFileSync(join(c.stateDir, "objects", "REVISION"), "utf8"), revision, "nothing written");
    assert.deepEqual((await c.pods()).map((p) => p.metadata.uid).sort(), before);
    assert.equal((await find("fine")) === undefined, true, "the valid document beside a bad one is not applied");
  });
});
