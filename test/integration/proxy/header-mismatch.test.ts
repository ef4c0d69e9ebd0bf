// headerMatches mismatch actions through the real proxy (supervisor, workers, xDS) on loopback, over
// HTTP/1.1 and HTTP/2 (h2c prior knowledge): backends record the exact header fields they receive
// (raw, in order), so each action is pinned by bytes — LOG changes nothing, ADD adds a field next to
// a wrong one, DELETE removes the field, REPLACE leaves one field with the rule's value — while the
// normalised path, X-Forwarded-For and x-request-id still arrive; the L7 flows carry the actions as
// missing_headers / rejected_headers.

import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { Flow } from "../../../src/observe/flow.ts";
import type { HttpRuleDoc } from "../../../src/policy/l7/http-match.ts";
import { get, httpPolicy, type ProxyEnv, record, startProxy, waitFor } from "./harness.ts";

const CLIENT = 1001;
const SERVER = 2001;
const H1_FROM = "127.0.0.2";
const H2_FROM = "127.0.0.3";

/** One rule per action, told apart by path (requests add "/<case number>"); /strict has a headerMatch without action (it denies). */
const RULES: HttpRuleDoc[] = [
  { method: "GET", path: "/log/[0-9]+", headerMatches: [{ name: "X-Audit", value: "on", mismatch: "LOG" }] },
  { method: "GET", path: "/add/[0-9]+", headerMatches: [{ name: "X-Tenant", value: "blue", mismatch: "ADD" }] },
  { method: "GET", path: "/delete/[0-9]+", headerMatches: [{ name: "X-Debug", value: "off", mismatch: "DELETE" }] },
  { method: "GET", path: "/replace/[0-9]+", headerMatches: [{ name: "X-Role", value: "reader", mismatch: "REPLACE" }] },
  { method: "GET", path: "/strict/[0-9]+", headerMatches: [{ name: "X-Key", value: "k" }] },
];

interface Seen {
  path: string;
  /** Lowercase name → every value received for it, in order. */
  fields: Map<string, string[]>;
}

function fieldsOf(raw: string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    m.set(k, [...(m.get(k) ?? []), raw[i + 1] as string]);
  }
  return m;
}

/** HTTP/1 and h2c backends keeping every request's raw header fields. */
class RawBackends {
  readonly seen: Seen[] = [];
  h1!: http.Server;
  h2!: http2.Http2Server;
  h1Port = 0;
  h2Port = 0;
  async start(): Promise<void> {
    this.h1 = http.createServer((req, res) => {
      this.seen.push({ path: req.url ?? "", fields: fieldsOf(req.rawHeaders) });
      req.resume();
      req.on("end", () => res.end("ok\n"));
    });
    this.h2 = http2.createServer();
    this.h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      stream.on("error", () => {});
      this.seen.push({ path: String(headers[":path"]), fields: fieldsOf(raw) });
      stream.resume();
      stream.on("end", () => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200 });
        stream.end("ok\n");
      });
    });
    await new Promise<void>((r) => this.h1.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => this.h2.listen(0, "127.0.0.1", r));
    this.h1Port = (this.h1.address() as net.AddressInfo).port;
    this.h2Port = (this.h2.address() as net.AddressInfo).port;
  }
  async stop(): Promise<void> {
    this.h1.closeAllConnections();
    await new Promise<void>((r) => this.h1.close(() => r()));
    await new Promise<void>((r) => this.h2.close(() => r()));
  }
}

/** What each request must do: its path (maybe with dot segments), headers sent, status, and the fields the backend must see. */
interface Case {
  name: string;
  path: string;
  send: Record<string, string>;
  status: number;
  /** name → exact list of values at the backend ([] = absent). */
  want: Record<string, string[]>;
  /** The flow's missing_headers / rejected_headers. */
  missing?: { key: string; value: string }[];
  rejected?: { key: string; value: string }[];
}

const CASES: Case[] = (
  [
    {
      name: "LOG: an absent header stays absent, the expected value is logged",
      path: "/log",
      send: {},
      status: 200,
      want: { "x-audit": [] },
      missing: [{ key: "x-audit", value: "on" }],
    },
    {
      name: "LOG: a wrong value goes through unchanged",
      path: "/log",
      send: { "x-audit": "off" },
      status: 200,
      want: { "x-audit": ["off"] },
      missing: [{ key: "x-audit", value: "on" }],
    },
    { name: "LOG: the right value, nothing logged", path: "/log", send: { "x-audit": "on" }, status: 200, want: { "x-audit": ["on"] } },
    {
      name: "ADD: an absent header is added",
      path: "/add",
      send: {},
      status: 200,
      want: { "x-tenant": ["blue"] },
      missing: [{ key: "x-tenant", value: "blue" }],
    },
    {
      name: "ADD: next to a wrong value, a second field",
      path: "/add",
      send: { "x-tenant": "red" },
      status: 200,
      want: { "x-tenant": ["red", "blue"] },
      missing: [{ key: "x-tenant", value: "blue" }],
    },
    { name: "ADD: the right value, untouched", path: "/add", send: { "x-tenant": "blue" }, status: 200, want: { "x-tenant": ["blue"] } },
    {
      name: "DELETE: a wrong value is removed",
      path: "/delete",
      send: { "x-debug": "on" },
      status: 200,
      want: { "x-debug": [] },
      rejected: [{ key: "x-debug", value: "on" }],
    },
    { name: "DELETE: the right value stays", path: "/delete", send: { "x-debug": "off" }, status: 200, want: { "x-debug": ["off"] } },
    { name: "DELETE: absent stays absent, nothing logged", path: "/delete", send: {}, status: 200, want: { "x-debug": [] } },
    {
      name: "REPLACE: a wrong value becomes the rule's",
      path: "/replace",
      send: { "x-role": "admin" },
      status: 200,
      want: { "x-role": ["reader"] },
      missing: [{ key: "x-role", value: "reader" }],
      rejected: [{ key: "x-role", value: "admin" }],
    },
    {
      name: "REPLACE: an absent header is set",
      path: "/replace",
      send: {},
      status: 200,
      want: { "x-role": ["reader"] },
      missing: [{ key: "x-role", value: "reader" }],
    },
    {
      name: "REPLACE after path normalisation: /x/../replace is /replace upstream",
      path: "/x/../replace",
      send: { "x-role": "root" },
      status: 200,
      want: { "x-role": ["reader"] },
      missing: [{ key: "x-role", value: "reader" }],
      rejected: [{ key: "x-role", value: "root" }],
    },
    { name: "no action: a wrong value is denied", path: "/strict", send: { "x-key": "nope" }, status: 403, want: {} },
  ] as Case[]
).map((c, i) => ({ ...c, path: `${c.path}/${i}` })); // one URL per case, so its flow is found by URL
/** The path the backend (and the flow) sees: dot segments resolved. */
const normalised = (path: string) => path.replace("/x/../", "/");

/** One HTTP/2 request on a session; status and body. */
function h2get(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": path, ":method": "GET", ":authority": "svc.test", ...headers });
    let status = 0;
    req.on("response", (h) => {
      status = Number(h[":status"]);
    });
    req.resume();
    req.on("end", () => resolve(status));
    req.on("error", reject);
    req.end();
  });
}

describe("proxy: headerMatches mismatch actions on the request that goes upstream", () => {
  let env: ProxyEnv;
  const be = new RawBackends();
  const t0 = performance.now();

  before(async () => {
    await be.start();
    env = await startProxy({
      workers: 2,
      resources: [httpPolicy(SERVER, be.h1Port, CLIENT, RULES), httpPolicy(SERVER, be.h2Port, CLIENT, RULES)],
      records: [
        { remote: H1_FROM, ...record("10.96.7.1", 80, "127.0.0.1", be.h1Port, CLIENT, SERVER) },
        { remote: H2_FROM, ...record("10.96.7.2", 80, "127.0.0.1", be.h2Port, CLIENT, SERVER) },
      ],
    });
    console.log(`# proxy up in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  after(async () => {
    await env?.stop();
    await be.stop();
  });

  const check = (c: Case, seen: Seen | undefined, protocol: string) => {
    if (c.status !== 200) return;
    assert.ok(seen, `${protocol} ${c.path}: the backend got the request`);
    assert.equal(seen.path, normalised(c.path), "the normalised path goes upstream");
    for (const [name, values] of Object.entries(c.want)) assert.deepEqual(seen.fields.get(name) ?? [], values, `${protocol} ${c.name}: ${name}`);
    assert.deepEqual(seen.fields.get("x-forwarded-for"), [protocol === "HTTP/2" ? H2_FROM : H1_FROM], "X-Forwarded-For");
    assert.equal(seen.fields.get("x-request-id")?.length, 1, "x-request-id");
    assert.match(seen.fields.get("x-request-id")?.[0] ?? "", /^[0-9a-f-]{16,}$/);
  };

  it("HTTP/1.1: each action, exactly as the backend receives it", async () => {
    const t = performance.now();
    for (const c of CASES) {
      const before = be.seen.length;
      const r = await get(env.port, c.path, { localAddress: H1_FROM, headers: c.send });
      assert.equal(r.status, c.status, `${c.name}: ${r.body}`);
      check(c, be.seen.length > before ? be.seen[be.seen.length - 1] : undefined, "HTTP/1.1");
    }
    console.log(`# ${CASES.length} HTTP/1.1 requests in ${(performance.now() - t).toFixed(0)} ms`);
  });

  it("HTTP/2 (h2c): each action, exactly as the backend receives it, on one connection", async () => {
    const t = performance.now();
    const session = http2.connect(`http://127.0.0.1:${env.port}`, {
      createConnection: () => net.connect({ host: "127.0.0.1", port: env.port, localAddress: H2_FROM }),
    });
    session.on("error", () => {});
    try {
      for (const c of CASES) {
        const before = be.seen.length;
        // node's HTTP/2 client normalises nothing in :path, so the dot segments reach the proxy.
        const status = await h2get(session, c.path, c.send);
        assert.equal(status, c.status, c.name);
        check(c, be.seen.length > before ? be.seen[be.seen.length - 1] : undefined, "HTTP/2");
      }
    } finally {
      session.close();
    }
    console.log(`# ${CASES.length} HTTP/2 streams in ${(performance.now() - t).toFixed(0)} ms`);
  });

  it("the L7 flows carry each request's missing and rejected headers, on both protocols", async () => {
    const t = performance.now();
    const l7 = () => env.flows.flows.filter((f) => f.Type === "L7");
    await waitFor("every request's flow", () => l7().length >= CASES.length * 2, 5000);
    console.log(`# flows arrived ${(performance.now() - t).toFixed(0)} ms after the last request`);
    for (const protocol of ["HTTP/1.1", "HTTP/2"])
      for (const c of CASES) {
        const mine = l7().filter((f) => f.l7?.http?.protocol === protocol && f.l7.http.url.endsWith(normalised(c.path)));
        assert.equal(mine.length, 1, `${protocol} ${c.name}: one flow`);
        const f = mine[0] as Flow;
        const h = f.l7?.http;
        assert.equal(h?.code, c.status, `${protocol} ${c.name}`);
        assert.deepEqual(h?.missing_headers, c.missing, `${protocol} ${c.name}: missing_headers`);
        assert.deepEqual(h?.rejected_headers, c.rejected, `${protocol} ${c.name}: rejected_headers`);
        assert.equal(f.verdict, c.status === 403 ? "DROPPED" : "FORWARDED");
      }
  });
});
