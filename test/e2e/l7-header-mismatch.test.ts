// headerMatches mismatch actions end to end on the local cluster: a CiliumNetworkPolicy on the echo
// pods with one rule per action (LOG, ADD, DELETE, REPLACE) and one without; curl from a client pod,
// over HTTP/1.1 and h2c, to echo pods on its own node and on the other; the echo pod's JSON shows
// the headers it received; LOG (and the other actions) show in `weft observe -o json` and in the
// node proxy's log.

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type PodJson, REPO, TestCluster } from "../harness/cluster.ts";

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: echo-header-mismatch
spec:
  endpointSelector:
    matchLabels:
      app: echo
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: client
      toPorts:
        - ports:
            - port: "8080"
              protocol: TCP
          rules:
            http:
              - path: "/log/.*"
                headerMatches:
                  - name: X-Audit
                    value: "on"
                    mismatch: LOG
              - path: "/add/.*"
                headerMatches:
                  - name: X-Tenant
                    value: blue
                    mismatch: ADD
              - path: "/delete/.*"
                headerMatches:
                  - name: X-Debug
                    value: "off"
                    mismatch: DELETE
              - path: "/replace/.*"
                headerMatches:
                  - name: X-Role
                    value: reader
                    mismatch: REPLACE
              - path: "/strict/.*"
                headerMatches:
                  - name: X-Key
                    value: k
`;

interface Echoed {
  pod: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A received header as one string (node joins repeated fields with ", "). */
const one = (v: string | string[] | undefined) => (v === undefined ? undefined : ([] as string[]).concat(v).join(", "));

describe("headerMatches mismatch actions through the node proxies", () => {
  let c: TestCluster;
  let echoPods: PodJson[];
  const dir = mkdtempSync(join(tmpdir(), "weft-e2e-hm-"));
  const t0 = performance.now();

  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    const file = join(dir, "policy.yaml");
    writeFileSync(file, POLICY);
    const r = await c.apply(file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await c.cli(["policy", "wait"])).code, 0);
    await c.waitForRedirect();
    echoPods = (await c.pods()).filter((p) => p.metadata.labels.app === "echo" && p.status.phase === "Running");
    assert.ok(
      ["node-1", "node-2"].every((n) => echoPods.some((p) => p.spec.nodeName === n)),
      "echo pods on both nodes",
    );
    console.log(`# ready in ${(performance.now() - t0).toFixed(0)} ms`);
  });
  after(async () => {
    await c?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  /** curl from client-1; `h2`: HTTP/2 with prior knowledge. Returns the status and the echo's JSON. */
  const curl = async (ip: string, path: string, headers: Record<string, string>, h2: boolean) => {
    const args = ["curl", "-s", "--max-time", "5", ...(h2 ? ["--http2-prior-knowledge"] : []), "-w", "\n%{http_code}"];
    for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
    const r = await c.exec("client-1", [...args, `http://${ip}:8080${path}`]);
    const lines = r.stdout.split("\n");
    const code = lines.pop() ?? "";
    return { code, echoed: code === "200" ? (JSON.parse(lines.join("\n")) as Echoed) : undefined, body: lines.join("\n") };
  };

  const cases: { name: string; path: string; send: Record<string, string>; header: string; want: string | undefined }[] = [
    { name: "LOG leaves a missing header missing", path: "/log/a", send: {}, header: "x-audit", want: undefined },
    { name: "LOG leaves a wrong value as it was", path: "/log/b", send: { "X-Audit": "off" }, header: "x-audit", want: "off" },
    { name: "ADD adds a missing header", path: "/add/a", send: {}, header: "x-tenant", want: "blue" },
    { name: "ADD adds the value next to a wrong one", path: "/add/b", send: { "X-Tenant": "red" }, header: "x-tenant", want: "red, blue" },
    { name: "DELETE removes a wrong value", path: "/delete/a", send: { "X-Debug": "on" }, header: "x-debug", want: undefined },
    { name: "DELETE keeps the right value", path: "/delete/b", send: { "X-Debug": "off" }, header: "x-debug", want: "off" },
    { name: "REPLACE overwrites a wrong value", path: "/replace/a", send: { "X-Role": "admin" }, header: "x-role", want: "reader" },
    { name: "REPLACE sets a missing header", path: "/replace/b", send: {}, header: "x-role", want: "reader" },
  ];

  for (const h2 of [false, true])
    it(`${h2 ? "h2c" : "HTTP/1.1"}: the echo pods (same node and other node) receive the headers as each action leaves them`, async () => {
      const t = performance.now();
      for (const pod of echoPods.filter((p, i, all) => all.findIndex((q) => q.spec.nodeName === p.spec.nodeName) === i)) {
        const ip = pod.status.podIP as string;
        for (const k of cases) {
          const r = await curl(ip, k.path, k.send, h2);
          if (r.code !== "200") console.log(`# ${k.name} → ${ip}: ${r.code}\n${await c.diagnoseProxies(ip)}`);
          assert.equal(r.code, "200", `${k.name} → ${pod.metadata.name}: ${r.body}`);
          const e = r.echoed as Echoed;
          assert.equal(e.path, k.path);
          assert.equal(one(e.headers[k.header]), k.want, `${k.name} (${h2 ? "h2c" : "HTTP/1.1"} → ${pod.metadata.name} on ${pod.spec.nodeName})`);
          assert.ok(e.headers["x-request-id"], "x-request-id still added");
          assert.ok(e.headers["x-forwarded-for"], "X-Forwarded-For still added");
        }
        const denied = await curl(ip, "/strict/a", { "X-Key": "nope" }, h2);
        assert.equal(denied.code, "403", "a headerMatch without an action still denies");
        assert.equal(denied.body, "Access denied\r\n");
      }
      console.log(`# ${h2 ? "h2c" : "HTTP/1.1"}: ${(cases.length + 1) * 2} requests in ${(performance.now() - t).toFixed(0)} ms`);
    });

  it("weft observe -o json shows LOG (and the other actions) on the L7 flows; the proxy log names them", async () => {
    type Hdr = { key: string; value: string }[] | undefined;
    const t = performance.now();
    const flows = await c.waitFor(
      "mismatch flows in weft observe",
      async () => {
        const all = (await c.flows()).filter((f) => f.Type === "L7");
        const log = all.filter((f) => f.l7?.http?.url.endsWith("/log/a"));
        return log.length >= 4 ? all : undefined; // 2 pods × 2 protocols
      },
      20_000,
    );
    const http = (suffix: string) => flows.filter((f) => f.l7?.http?.url.endsWith(suffix)).map((f) => f.l7?.http);
    for (const h of http("/log/a")) {
      assert.deepEqual(h?.missing_headers, [{ key: "x-audit", value: "on" }], `LOG on ${h?.protocol}`);
      assert.equal(h?.rejected_headers, undefined);
    }
    assert.deepEqual(new Set(http("/log/a").map((h) => h?.protocol)), new Set(["HTTP/1.1", "HTTP/2"]));
    for (const h of http("/replace/a")) {
      assert.deepEqual(h?.missing_headers, [{ key: "x-role", value: "reader" }]);
      assert.deepEqual(h?.rejected_headers, [{ key: "x-role", value: "admin" }]);
    }
    for (const h of http("/delete/a")) assert.deepEqual(h?.rejected_headers, [{ key: "x-debug", value: "on" }]);
    for (const h of http("/delete/b")) assert.equal(h?.missing_headers ?? h?.rejected_headers, undefined, "nothing to log when the header matches");
    assert.ok(
      flows.some((f) => f.verdict === "FORWARDED" && f.l7?.http?.url.endsWith("/add/b") && f.l7.http.missing_headers?.[0]?.value === "blue"),
      "ADD logged as missing",
    );

    // The proxy log of the echo pods' nodes has one line per request with an action.
    const lines: string[] = [];
    for (const node of ["node-1", "node-2"]) {
      const d = join(c.stateDir, "logs", "nodes", node);
      for (const f of readdirSync(d).filter((x) => x.endsWith(".log")))
        for (const l of readFileSync(join(d, f), "utf8").split("\n")) if (l.includes('"headerMatches mismatch"')) lines.push(l);
    }
    const logged = lines.map((l) => JSON.parse(l) as { url: string; missing_headers?: Hdr });
    assert.ok(
      logged.some((l) => l.url.endsWith("/log/a") && l.missing_headers?.[0]?.key === "x-audit"),
      `proxy log lines: ${lines.length}`,
    );
    console.log(`# ${flows.length} L7 flows, ${lines.length} proxy log lines; checked in ${(performance.now() - t).toFixed(0)} ms`);
  });
});
