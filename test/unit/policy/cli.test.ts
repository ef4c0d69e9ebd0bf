// `weft policy` end to end without a cluster: validate's exit code and report, get -f, and trace's
// output, JSON and usage errors.

import assert from "node:assert/strict";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { runPolicy } from "../../../src/cli/policy.ts";

const fixtures = new URL("../../fixtures/policy/", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runPolicy(args, {
    out: new Writable({
      write: (c, _e, cb) => {
        out += String(c);
        cb();
      },
    }),
    err: new Writable({
      write: (c, _e, cb) => {
        err += String(c);
        cb();
      },
    }),
  });
  return { code, out, err };
}

describe("weft policy validate", () => {
  it("exits 0 on valid files", async () => {
    const r = await run(["validate", join(fixtures, "valid")]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /26-http-method-path.yaml: OK \(1 policy\)/);
  });
  it("exits 1 listing every problem with code, file and path", async () => {
    const r = await run(["validate", join(fixtures, "invalid/56-several-problems.yaml"), join(fixtures, "invalid/03-port-unquoted.yaml")]);
    assert.equal(r.code, 1);
    assert.match(r.err, /WEFT_POLICY_INVALID: .*56-several-problems.yaml: spec.ingress\[0\].fromCIDR\[0\]: /);
    assert.match(r.err, /WEFT_POLICY_UNSUPPORTED: .*56-several-problems.yaml: spec.egress\[0\].toGroups: /);
    assert.match(r.err, /03-port-unquoted.yaml: spec.ingress\[0\].toPorts\[0\].ports\[0\].port: must be a string/);
    assert.match(r.err, /2 of 2 file\(s\) refused/);
  });
  it("-o json reports per file", async () => {
    const r = await run(["validate", "-o", "json", join(fixtures, "invalid/01-unknown-top-field.yaml")]);
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.out)[0].problems[0].path, "spec.ingres");
  });
  it("a missing file is WEFT_NOT_FOUND", async () => {
    const r = await run(["validate", "/nonexistent/policy.yaml"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^WEFT_NOT_FOUND: \/nonexistent\/policy.yaml/);
  });
  it("no file is a usage error", async () => assert.equal((await run(["validate"])).code, 2));
});

describe("weft policy get", () => {
  it("lists policies of files as a table", async () => {
    const r = await run(["get", "-f", join(fixtures, "valid/51-l7-and-l4-union.yaml")]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^KIND\s+NAMESPACE\s+NAME\s+RULES\s+DIRECTIONS/);
    assert.match(r.out, /CiliumNetworkPolicy\s+default\s+api-admins\s+1\s+ingress/);
  });
  it("-o json prints a List of the documents as written", async () => {
    const r = await run(["get", "-f", join(fixtures, "valid/15-ccnp-dns-lockdown.yaml"), "-o", "json"]);
    const list = JSON.parse(r.out);
    assert.equal(list.items[0].kind, "CiliumClusterwideNetworkPolicy");
    assert.equal(list.items[0].spec.egress[0].toPorts[0].rules.dns[0].matchPattern, "*");
  });
  it("-o yaml prints the documents", async () => {
    const r = await run(["get", "-f", join(fixtures, "valid/01-l3-label-ingress.yaml"), "-o", "yaml"]);
    assert.match(r.out, /kind: CiliumNetworkPolicy/);
  });
  it("-n filters by namespace", async () => {
    const r = await run(["get", "-f", join(fixtures, "valid/13-cross-namespace.yaml"), "-n", "default"]);
    assert.doesNotMatch(r.out, /ns1-from-ns2/);
  });
  it("an unknown output format is a usage error", async () => assert.equal((await run(["get", "-f", join(fixtures, "valid"), "-o", "xml"])).code, 2));
});

describe("weft policy trace", () => {
  const l7 = join(fixtures, "valid/26-http-method-path.yaml");
  const base = ["trace", "-f", l7, "--src-labels", "org=empire,class=tiefighter", "--dst-labels", "org=empire,class=deathstar", "--dport", "80/tcp"];
  it("prints the deciding L7 rule for an allowed request", async () => {
    const r = await run([...base, "--http-method", "POST", "--http-path", "/v1/request-landing"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /rule: CiliumNetworkPolicy default\/rule1 spec.ingress\[0\].toPorts\[0\].rules.http\[0\]/);
    assert.match(r.out, /Final verdict: ALLOWED/);
  });
  it("prints DENIED for a request no rule matches", async () => {
    const r = await run([...base, "--http-method", "PUT", "--http-path", "/v1/exhaust-port"]);
    assert.match(r.out, /Final verdict: DENIED/);
  });
  it("without a request, says the proxy decides", async () => {
    const r = await run(base);
    assert.match(r.out, /redirected to the proxy/);
  });
  it("-o json carries the verdict and both directions", async () => {
    const r = await run([...base, "-o", "json", "--http-method", "POST", "--http-path", "/v1/request-landing"]);
    const j = JSON.parse(r.out);
    assert.equal(j.verdict, "ALLOWED");
    assert.equal(j.ingress.redirect, true);
    assert.equal(j.egress.enforced, false);
  });
  it("an invalid policy file refuses the trace with its problems", async () => {
    const r = await run(["trace", "-f", join(fixtures, "invalid/12-bad-http-regex.yaml"), "--src-labels", "a=b", "--dst-labels", "c=d", "--dport", "80"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /spec.ingress\[0\].toPorts\[0\].rules.http\[1\].path/);
  });
  const usage: [string, string[]][] = [
    ["no --dport", ["trace", "-f", l7, "--src-labels", "a=b", "--dst-labels", "c=d"]],
    ["a bad --dport", ["trace", "-f", l7, "--src-labels", "a=b", "--dst-labels", "c=d", "--dport", "80/http"]],
    ["two sources", ["trace", "-f", l7, "--src-labels", "a=b", "--src-cidr", "1.1.1.1", "--dst-labels", "c=d", "--dport", "80"]],
    ["no destination", ["trace", "-f", l7, "--src-labels", "a=b", "--dport", "80"]],
    ["an unknown entity", ["trace", "-f", l7, "--src-entity", "moon", "--dst-labels", "c=d", "--dport", "80"]],
    ["a bad label list", ["trace", "-f", l7, "--src-labels", "novalue", "--dst-labels", "c=d", "--dport", "80"]],
    ["an unknown flag", ["trace", "--frobnicate"]],
    ["an unknown subcommand", ["explain"]],
  ];
  for (const [name, args] of usage) it(`${name} is a usage error (exit 2)`, async () => assert.equal((await run(args)).code, 2));
  it("an unknown pod is WEFT_NOT_FOUND", async () => {
    const r = await run(["trace", "-f", l7, "--src-pod", "default/ghost", "--dst-labels", "c=d", "--dport", "80"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /WEFT_NOT_FOUND/);
  });
});

describe("weft policy against a cluster's state", () => {
  it("get and trace read the cluster's policies; a refused one is reported, not enforced", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { openStore } = await import("../../../src/cluster/store.ts");
    const root = mkdtempSync(join(tmpdir(), "weft-policy-"));
    const saved = process.env.WEFT_STATE_DIR;
    process.env.WEFT_STATE_DIR = root;
    try {
      openStore("t1", root).write([
        {
          apiVersion: "cilium.io/v2",
          kind: "CiliumNetworkPolicy",
          metadata: { name: "api", namespace: "shop" },
          spec: { endpointSelector: { matchLabels: { app: "api" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "web" } }] }] },
        },
        {
          apiVersion: "cilium.io/v2",
          kind: "CiliumNetworkPolicy",
          metadata: { name: "broken", namespace: "shop" },
          spec: { endpointSelector: {}, ingress: [{ fromCIDR: ["nope"] }] },
        },
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { team: "a" } } },
      ]);
      const g = await run(["get", "--cluster", "t1"]);
      assert.match(g.out, /CiliumNetworkPolicy\s+shop\s+api/);
      assert.match(g.err, /WEFT_POLICY_INVALID: CiliumNetworkPolicy\/shop\/broken: spec.ingress\[0\].fromCIDR\[0\]/);
      assert.equal(g.code, 1);
      const t = await run([
        "trace",
        "--cluster",
        "t1",
        "--src-labels",
        "app=web,io.kubernetes.pod.namespace=shop",
        "--dst-labels",
        "app=api,io.kubernetes.pod.namespace=shop",
        "--dport",
        "80/tcp",
      ]);
      assert.match(t.out, /refused \(not enforced\): WEFT_POLICY_INVALID: CiliumNetworkPolicy\/shop\/broken/);
      assert.match(t.out, /Final verdict: ALLOWED/);
      const d = await run([
        "trace",
        "--cluster",
        "t1",
        "--src-labels",
        "app=db,io.kubernetes.pod.namespace=shop",
        "--dst-labels",
        "app=api,io.kubernetes.pod.namespace=shop",
        "--dport",
        "80/tcp",
      ]);
      assert.match(d.out, /Final verdict: DENIED/);
    } finally {
      if (saved === undefined) delete process.env.WEFT_STATE_DIR;
      else process.env.WEFT_STATE_DIR = saved;
      rmSync(root, { recursive: true, force: true });
    }
  });
});
