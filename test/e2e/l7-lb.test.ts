// L7 load balancing per Service end to end on the local cluster (examples/: three echo replicas over
// two nodes): Services annotated `service.weft.io/l7-lb` are steered into the client node's proxy
// with no L7 policy at all, and the proxy balances every request, not every connection: round robin
// spreads 30 requests of ONE keep-alive connection 10/10/10; ring hash by `x-user` keeps a user on
// one pod and spreads users, and so does Maglev by cookie; least request sends less to a slow pod
// than round robin would; outlier detection ejects a pod after N consecutive 5xx.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type PodJson, REPO, TestCluster } from "../harness/cluster.ts";

const OUTLIER_5XX = 3;

function service(name: string, annotations: Record<string, string>): string {
  const ann = Object.entries(annotations)
    .map(([k, v]) => `    ${k}: "${v}"`)
    .join("\n");
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  annotations:
${ann}
spec:
  selector:
    app: echo
  ports:
    - name: http
      port: 80
      targetPort: http
`;
}

interface Answer {
  code: number;
  pod: string;
  connects: number;
}

describe("L7 load balancing per Service (annotations), through the node proxy", () => {
  let c: TestCluster;
  let dir: string;
  let echoPods: PodJson[];

  before(async () => {
    c = await TestCluster.start({ nodes: 2, manifests: join(REPO, "examples") });
    dir = mkdtempSync(join(tmpdir(), "weft-l7lb-"));
    writeFileSync(
      join(dir, "services.yaml"),
      [
        service("echo-rr", { "service.weft.io/l7-lb": "round-robin" }),
        service("echo-hash", { "service.weft.io/l7-lb": "ring-hash", "service.weft.io/l7-lb-hash-header": "x-user" }),
        service("echo-maglev", { "service.weft.io/l7-lb": "maglev", "service.weft.io/l7-lb-hash-cookie": "session" }),
        service("echo-lr", { "service.weft.io/l7-lb": "least-request" }),
        service("echo-outlier", {
          "service.weft.io/l7-lb": "round-robin",
          "service.weft.io/l7-outlier-consecutive-5xx": String(OUTLIER_5XX),
          "service.weft.io/l7-outlier-base-ejection-time": "5m",
          "service.weft.io/l7-outlier-max-ejection-percent": "50",
        }),
      ].join("---\n"),
    );
    const r = await c.apply(dir);
    assert.equal(r.code, 0, r.stderr);
    await c.waitForRedirect();
    echoPods = await c.waitFor("three echo pods ready", async () => {
      const pods = (await c.pods()).filter(
        (p) => p.metadata.labels.app === "echo" && p.status.conditions?.some((x) => x.type === "Ready" && x.status === "True"),
      );
      return pods.length === 3 ? pods : undefined;
    });
  });
  after(async () => {
    await c?.down();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * `n` requests in ONE curl invocation: curl keeps one keep-alive connection for all of them
   * (`num_connects` is 1 for the first and 0 after). Each answer: status, the echo pod, connects.
   */
  const burst = (from: string, url: string, n: number, headers: string[] = []): Promise<Answer[]> => segments(from, url, n, [headers]);
  /** One curl invocation, one `--next` segment per header set, `n` requests each; answers in order. */
  const segments = async (from: string, url: string, n: number, headerSets: string[][]): Promise<Answer[]> => {
    const args = ["curl"];
    for (const [i, headers] of headerSets.entries()) {
      if (i > 0) args.push("--next");
      args.push("-s", "--max-time", "20", ...headers.flatMap((h) => ["-H", h]), "-w", "\\n@@ %{http_code} %{num_connects}\\n");
      for (let k = 0; k < n; k++) args.push(url);
    }
    const r = await c.exec(from, args);
    const out: Answer[] = [];
    let body = "";
    for (const line of r.stdout.split("\n")) {
      const m = /^@@ (\d+) (\d+)$/.exec(line);
      if (!m) {
        body += line;
        continue;
      }
      let pod = "";
      try {
        pod = (JSON.parse(body) as { pod: string }).pod;
      } catch {}
      out.push({ code: Number(m[1]), pod, connects: Number(m[2]) });
      body = "";
    }
    return out;
  };

  const counts = (as: Answer[]) => {
    const m = new Map<string, number>();
    for (const a of as) m.set(a.pod, (m.get(a.pod) ?? 0) + 1);
    return m;
  };

  it("round robin: 30 requests on one keep-alive connection are spread 10/10/10 over the 3 pods", async () => {
    // The agent's xDS push reaches the proxy shortly after the Service is applied; until then the
    // proxy passes to the socket hook's backend (one pod per connection). Wait for balancing.
    for (const client of ["client-1", "client-2"]) {
      // Each node's proxy has its own agent and xDS stream: wait for the one this client uses.
      await c.waitFor(`round robin in force (${client})`, async () => counts(await burst(client, "http://echo-rr/", 6)).size === 3, 60_000);
      const started = Date.now();
      const as = await burst(client, "http://echo-rr/", 30);
      if (as.some((a) => a.code !== 200)) console.log(`# ${client} codes: ${as.map((a) => a.code).join(" ")}`);
      const ms = Date.now() - started;
      console.log(`# ${client}: 30 requests on one connection in ${ms} ms: ${JSON.stringify(Object.fromEntries(counts(as)))}`);
      assert.equal(as.length, 30);
      assert.ok(
        as.every((a) => a.code === 200),
        JSON.stringify(as.map((a) => a.code)),
      );
      assert.equal(
        as.reduce((s, a) => s + a.connects, 0),
        1,
        "one TCP connection for all 30 requests",
      );
      assert.deepEqual([...counts(as).entries()].sort(), echoPods.map((p) => [p.metadata.name, 10]).sort());
      assert.ok(ms < 20_000, `generous ceiling: ${ms} ms`);
    }
    // The contrast: the same pods behind the plain `echo` Service (L4 only, no proxy) give one
    // connection's requests all to the one backend chosen at connect().
    const plain = await burst("client-1", "http://echo/", 12);
    assert.equal(plain.length, 12);
    assert.equal(counts(plain).size, 1, JSON.stringify(Object.fromEntries(counts(plain))));
  });

  for (const [svc, what, key] of [
    ["echo-hash", "ring hash by x-user", (u: string) => `x-user: ${u}`],
    ["echo-maglev", "Maglev by cookie", (u: string) => `cookie: theme=dark; session=${u}`],
  ] as const) {
    it(`${what}: one user always meets the same pod, different users spread`, async () => {
      const users = Array.from({ length: 12 }, (_, u) => `user-${u}`);
      for (const client of ["client-1", "client-2"])
        await c.waitFor(
          `${what} in force (${client})`,
          async () =>
            new Set(
              (
                await segments(
                  client,
                  `http://${svc}/`,
                  1,
                  users.map((u) => [key(`probe-${u}`)]),
                )
              )
                .filter((a) => a.code === 200)
                .map((a) => a.pod),
            ).size >= 2,
        );
      // 5 requests per user from client-1, then 2 per user from client-2 (the other node's proxy:
      // the same table from the same endpoints, so the same pod).
      const mine = await segments(
        "client-1",
        `http://${svc}/`,
        5,
        users.map((u) => [key(u)]),
      );
      const theirs = await segments(
        "client-2",
        `http://${svc}/`,
        2,
        users.map((u) => [key(u)]),
      );
      assert.equal(mine.length, 5 * users.length);
      assert.equal(theirs.length, 2 * users.length);
      const podOf = new Map<string, string>();
      for (const [i, user] of users.entries()) {
        const pods = new Set(mine.slice(5 * i, 5 * i + 5).map((a) => a.pod));
        assert.equal(pods.size, 1, `${user} met ${[...pods].join(", ")}`);
        podOf.set(user, [...pods][0] ?? "");
        assert.deepEqual(
          theirs.slice(2 * i, 2 * i + 2).map((a) => a.pod),
          [podOf.get(user), podOf.get(user)],
          `${user} from client-2`,
        );
      }
      const spread = new Set(podOf.values());
      console.log(`# ${what}: 12 users over ${spread.size} pods: ${JSON.stringify(Object.fromEntries(podOf))}`);
      assert.ok(spread.size >= 2, "different users spread over pods");
    });
  }

  it("least request: a pod that holds requests longer gets fewer of 60 concurrent requests than round robin's 20", async () => {
    await c.waitFor("least request in force", async () => counts(await burst("client-1", "http://echo-lr/", 9)).size === 3, 60_000);
    const slow = echoPods[0]?.metadata.name ?? "";
    // 6 concurrent keep-alive connections, 10 sequential requests each: the proxy balances requests.
    const urls = Array.from({ length: 10 }, () => `-o /dev/null http://echo-lr/delay/300?only=${slow}`).join(" ");
    const one = `curl -s --max-time 20 -w 'LB %{http_code} %header{x-pod}\\n' ${urls}`;
    const started = Date.now();
    const r = await c.exec("client-1", ["sh", "-c", `for i in 1 2 3 4 5 6; do ${one} & done; wait`]);
    const answers = r.stdout
      .split("\n")
      .map((l) => /^LB (\d+) (\S+)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ code: Number(m[1]), pod: m[2] as string }));
    const byPod = new Map<string, number>();
    for (const a of answers) byPod.set(a.pod, (byPod.get(a.pod) ?? 0) + 1);
    console.log(`# least request, ${slow} slow (300 ms): ${JSON.stringify(Object.fromEntries(byPod))} in ${Date.now() - started} ms`);
    assert.equal(answers.length, 60, r.stderr);
    assert.ok(
      answers.every((a) => a.code === 200),
      "all answered",
    );
    const slowCount = byPod.get(slow) ?? 0;
    assert.ok(slowCount < 16, `the slow pod got ${slowCount} (round robin would give it 20)`);
    for (const [pod, n] of byPod) if (pod !== slow) assert.ok(n > slowCount, `${pod} (${n}) got more than the slow pod (${slowCount})`);
  });

  it(`outlier detection: a pod answering ${OUTLIER_5XX} consecutive 5xx is ejected`, async () => {
    await c.waitFor("round robin in force (outlier service)", async () => counts(await burst("client-1", "http://echo-outlier/", 6)).size === 3, 60_000);
    const bad = echoPods[0]?.metadata.name ?? "";
    // One connection (one worker, whose cluster keeps the outlier state): round robin sends every
    // third request to `bad`, which answers 500; after OUTLIER_5XX of them it is ejected and the
    // rest of the connection's requests (and the next connections) only meet the other two pods.
    const as = await burst("client-1", `http://echo-outlier/status/500?only=${bad}`, 3 * OUTLIER_5XX + 30);
    const failures = as.filter((a) => a.code === 500);
    console.log(
      `# ${as.length} requests, ${failures.length} × 500 from ${bad}; after: ${JSON.stringify(Object.fromEntries(counts(as.slice(3 * OUTLIER_5XX))))}`,
    );
    assert.equal(
      as.reduce((s, a) => s + a.connects, 0),
      1,
      "one connection",
    );
    assert.equal(failures.length, OUTLIER_5XX, "exactly N 5xx before the ejection");
    assert.ok(
      failures.every((a) => a.pod === bad),
      "only the failing pod answered 500",
    );
    const afterEjection = as.slice(3 * OUTLIER_5XX);
    assert.ok(
      afterEjection.every((a) => a.code === 200 && a.pod !== bad),
      JSON.stringify(afterEjection),
    );
    assert.equal(counts(afterEjection).size, 2, "the other two pods share the rest");
  });
});
