// The node proxy under load on the local cluster (examples/l7): keep-alive clients on both nodes
// loop over an allowed path, a denied one and a third whose verdict a config push flips.
// - `kill -9` of node-1's proxy workers: serving resumes within a generous ceiling, only requests
//   in flight at the kill fail (at most one per client connection), and no denied request gets 200.
// - A policy change that allows the third path, applied while the load runs: 0 failed requests,
//   and the new verdict is in force once pushed (its 403s turn into 200s, never back).

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getJson } from "../../src/core/unix-http.ts";
import { REPO, TestCluster } from "../harness/cluster.ts";

const CLIENTS = 4; // keep-alive connections per load generator
const PATHS = ["/public/a", "/private", "/toggle"];

// A load generator run in a pod: CLIENTS sequential keep-alive loops for MS milliseconds; prints
// every request as [path index, start epoch ms, status or error code].
const LOAD = `const http=require("http");const [host,clients,ms]=[process.argv[1],Number(process.argv[2]),Number(process.argv[3])];
const paths=${JSON.stringify(PATHS)};const agent=new http.Agent({keepAlive:true,maxSockets:clients});const end=Date.now()+ms;const out=[];
const one=(p)=>new Promise((done)=>{const t=Date.now();const req=http.get({host,port:8080,path:paths[p],agent,headers:{host:"echo"}},(r)=>{r.resume();r.on("end",()=>done([p,t,r.statusCode]))});
req.setTimeout(5000,()=>req.destroy(Object.assign(new Error("timeout"),{code:"TIMEOUT"})));req.on("error",(e)=>done([p,t,e.code||e.message]))});
const loop=async(i)=>{for(let k=i;Date.now()<end&&out.length<200000;k++){out.push(await one(k%3))}};
setTimeout(()=>process.exit(3),ms+20000).unref();
Promise.all(Array.from({length:clients},(_,i)=>loop(i))).then(()=>{agent.destroy();console.log(JSON.stringify(out))});`;

type Request = [path: number, at: number, result: number | string];

/** Checks that need no timing: which request would be a policy bypass. */
function bypasses(reqs: Request[], toggleAllowedFrom = Number.POSITIVE_INFINITY): Request[] {
  return reqs.filter(([p, at, r]) => r === 200 && (p === 1 || (p === 2 && at < toggleAllowedFrom)));
}

describe("the node proxy under load: worker kill and config push", () => {
  let c: TestCluster;
  let target: string; // the echo pod on node-1: its ingress rules run in node-1's proxy
  const dir = mkdtempSync(join(tmpdir(), "weft-l7-res-"));
  const admin = () => join(c.stateDir, "run", "node-1", "proxy-admin.sock");

  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    assert.equal((await c.apply(join(REPO, "examples", "l7"))).code, 0);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    await c.waitForRedirect(["node-1"]);
    const pod = (await c.pods()).find((p) => p.metadata.labels.app === "echo" && p.spec.nodeName === "node-1");
    assert.ok(pod?.status.podIP, "an echo pod on node-1");
    target = pod.status.podIP;
  });
  after(async () => {
    await c?.down();
  });

  /** Runs the load generator in a pod for `ms`; resolves with its requests. */
  const load = async (from: string, ms: number): Promise<Request[]> => {
    const r = await c.exec(from, [process.execPath, "-e", LOAD, target, String(CLIENTS), String(ms)]);
    assert.equal(r.code, 0, `load from ${from}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Request[];
  };
  const stats = async () => (await getJson<{ total: Record<string, number> }>(admin(), "/stats", 5000))?.total ?? {};
  /** Waits until both generators' connections reached node-1's proxy and requests flow. */
  const loadRunning = async () => {
    const base = await stats();
    await c
      .waitFor(
        "load reaching node-1's proxy",
        async () => {
          const now = await stats();
          const delta = (k: string) => (now[k] ?? 0) - (base[k] ?? 0);
          return delta("downstream_cx_total") >= 2 * CLIENTS && delta("downstream_rq_total") >= 300;
        },
        30_000,
      )
      .catch(async (e) => {
        console.log(`# ${await c.diagnoseProxies(target, ["node-1"])}`);
        throw e;
      });
    await new Promise((r) => setTimeout(r, 500));
  };
  const expected = (p: number, toggleAllowed: boolean) => (p === 0 || (p === 2 && toggleAllowed) ? 200 : 403);

  it("kill -9 of the workers: serving again within a ceiling, only in-flight requests fail, no denied request gets 200", async () => {
    const before = await getJson<{ pids: (number | undefined)[]; restarts: number }>(admin(), "/workers");
    assert.ok(before);
    const pids = before.pids.filter((p): p is number => typeof p === "number");
    assert.ok(pids.length >= 1, "node-1's proxy has workers");
    const runs = [load("client-1", 12_000), load("client-2", 12_000)];
    await loadRunning();
    const killedAt = Date.now();
    for (const pid of pids) process.kill(pid, "SIGKILL");
    const results = await Promise.all(runs);
    const restarted = await c.waitFor("workers replaced", async () => {
      const w = await getJson<{ pids: (number | undefined)[]; ready: number; restarts: number }>(admin(), "/workers");
      return w !== undefined && w.ready === w.pids.length && w.restarts > before.restarts && w;
    });
    assert.ok(!restarted.pids.some((p) => p !== undefined && pids.includes(p)), "every killed worker was replaced");
    for (const [i, reqs] of results.entries()) {
      const from = i === 0 ? "client-1 (same node)" : "client-2 (other node)";
      const failed = reqs.filter(([p, , r]) => r !== expected(p, false));
      const firstOkAfter = reqs.filter(([, at, r]) => at >= killedAt && typeof r === "number").sort((a, b) => a[1] - b[1])[0];
      const gapMs = firstOkAfter ? firstOkAfter[1] - killedAt : Number.NaN;
      console.log(
        `# ${from}: ${reqs.length} requests, ${failed.length} failed (${[...new Set(failed.map((f) => f[2]))].join(", ")}), first answer to a request started after the kill: +${gapMs} ms`,
      );
      assert.ok(reqs.filter(([, at]) => at < killedAt).length > 20, `${from}: load ran before the kill`);
      assert.ok(reqs.filter(([, at]) => at > killedAt + 1000).length > 20, `${from}: load ran after the kill`);
      assert.deepEqual(bypasses(reqs), [], `${from}: a denied request got 200`);
      assert.ok(failed.length <= CLIENTS, `${from}: at most one failure per connection (the request in flight), got ${failed.length}`);
      for (const [, at, r] of failed)
        assert.ok(at <= killedAt + 1000 && typeof r === "string", `${from}: a failure that was not in flight at the kill: ${r} at +${at - killedAt} ms`);
      assert.ok(gapMs < 30_000, `${from}: serving again within 30 s`);
    }
  });

  it("a policy push under load that allows /toggle: 0 failed requests, the new verdict in force", async () => {
    const policy = readFileSync(join(REPO, "examples", "l7", "policy.yaml"), "utf8").split(/^---$/m)[0] as string;
    const file = join(dir, "toggle.yaml");
    writeFileSync(file, policy.replace('path: "/public/.*"', 'path: "/public/.*"\n              - method: GET\n                path: "/toggle"'));
    assert.ok(readFileSync(file, "utf8").includes("/toggle"), "the edited policy allows /toggle");
    const runs = [load("client-1", 20_000), load("client-2", 20_000)];
    await loadRunning();
    const pushedAt = Date.now();
    const applied = await c.apply(file);
    assert.equal(applied.code, 0, applied.stderr);
    console.log(`# weft apply took ${applied.ms} ms under the load`);
    const results = await Promise.all(runs);
    for (const [i, reqs] of results.entries()) {
      const from = i === 0 ? "client-1 (same node)" : "client-2 (other node)";
      const wrong = reqs.filter(([p, , r]) => r !== expected(p, false) && r !== expected(p, true));
      assert.deepEqual(wrong, [], `${from}: every request answered 200 or 403 as the rules say`);
      const toggles = reqs.filter(([p]) => p === 2).sort((a, b) => a[1] - b[1]);
      const firstAllowed = toggles.find(([, , r]) => r === 200);
      assert.ok(firstAllowed, `${from}: /toggle allowed after the push`);
      console.log(`# ${from}: ${reqs.length} requests, 0 failed; /toggle allowed ${firstAllowed[1] - pushedAt} ms after the apply started`);
      assert.deepEqual(
        toggles.filter(([, at, r]) => at < pushedAt && r !== 403),
        [],
        `${from}: /toggle denied before the push`,
      );
      // Requests start concurrently on several connections, so allow the flip to straddle one
      // round of them; after that every /toggle is allowed.
      const settled = toggles.filter(([, at]) => at > firstAllowed[1] + 500);
      assert.ok(settled.length > 10, `${from}: load ran after the flip`);
      assert.deepEqual(
        settled.filter(([, , r]) => r !== 200),
        [],
        `${from}: /toggle stays allowed`,
      );
      assert.deepEqual(bypasses(reqs, firstAllowed[1] - 500), [], `${from}: /private never 200`);
    }
  });
});
