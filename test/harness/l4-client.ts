// A one-shot TCP/UDP client for datapath tests, run inside one of a sandbox's namespaces (and,
// when asked, in one of its cgroups, under the socket hooks). It reports what it read and whom
// it talked to, or the error; it bounds itself in time.

import { firstLine } from "./child-lines.ts";
import type { Sandbox } from "./sandbox.ts";

// tcp: one connection, read to the end; udp: one datagram "ping", the first answer; bench: `n`
// sequential TCP connections, each timed from connect to end. Prints one JSON line.
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const [kind, host, port, ms, n] = process.argv.slice(1);
const done = (r) => { process.stdout.write(JSON.stringify(r) + "\\n"); process.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), Number(ms)).unref();
if (kind === "tcp") {
  let data = "", peer = "";
  const s = net.connect(Number(port), host);
  s.on("connect", () => { peer = s.remoteAddress + ":" + s.remotePort; });
  s.on("data", (d) => (data += d)).on("end", () => done({ ok: true, data, peer })).on("error", (e) => done({ ok: false, error: e.code }));
} else if (kind === "udp") {
  const u = dgram.createSocket("udp4");
  u.on("message", (m, r) => done({ ok: true, data: String(m), peer: r.address + ":" + r.port }));
  u.send("ping", Number(port), host);
} else {
  const times = [];
  const one = (i) => {
    if (i === Number(n)) return done({ ok: true, times });
    const t0 = process.hrtime.bigint();
    const s = net.connect(Number(port), host);
    s.on("data", () => {}).on("end", () => { times.push(Number(process.hrtime.bigint() - t0) / 1e6); one(i + 1); })
     .on("error", (e) => done({ ok: false, error: e.code, after: i }));
  };
  one(0);
}
`;

export interface ClientResult {
  ok: boolean;
  /** What the peer sent (tcp: everything up to its end; udp: the first datagram). */
  data?: string;
  /** "address:port" of the peer the socket talked to (tcp: getpeername; udp: the answer's source). */
  peer?: string;
  error?: string;
  /** bench: each connection's time in ms. */
  times?: number[];
  /** bench: how many connections succeeded before the error. */
  after?: number;
}

export interface ClientOptions {
  kind?: "tcp" | "udp" | "bench";
  /** The client gives up after this long (it prints {ok:false,error:"timeout"}); default 2000. */
  ms?: number;
  /** bench: how many connections. */
  n?: number;
  /** Run in this cgroup of the sandbox (under its hooks); default: outside every hooked cgroup. */
  cgroup?: string;
}

/** Runs one client in `netns` toward host:port and resolves to what it printed. */
export async function runClient(sb: Sandbox, netns: string, host: string, port: number, opts: ClientOptions = {}): Promise<ClientResult> {
  const ms = opts.ms ?? 2000;
  const argv = ["node", "-e", CLIENT, opts.kind ?? "tcp", host, String(port), String(ms), String(opts.n ?? 0)];
  const child = opts.cgroup ? sb.spawnInCgroupAt(opts.cgroup, netns, argv) : sb.spawnIn(netns, argv);
  return JSON.parse(await firstLine(child, ms + 5000)) as ClientResult;
}
