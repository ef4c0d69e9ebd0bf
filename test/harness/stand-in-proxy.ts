// A stand-in for the node proxy in datapath tests: a small TCP server in a node namespace, in a
// cgroup of its own beside the hooked pods. It reports every accepted socket's addresses and, on
// command, answers or opens an upstream connection from a chosen local address and port.

import { transparentListenerArgv } from "../../src/datapath/loader.ts";
import { JsonLines } from "./child-lines.ts";
import type { Sandbox } from "./sandbox.ts";

// Listens on argv[1]: a port, or "fd:N" (an inherited listener); prints {"accept":id,...addresses}
// per connection; stdin commands, one JSON a line:
//   {"id":N,"answer":"text"}                                  write text to connection N and end it
//   {"id":N,"upstream":{host,port,localAddress,localPort}}     connect bound, pipe; prints {"upstream":N,"ok":...}
const PROXY = `
const net = require("node:net"), readline = require("node:readline");
setTimeout(() => process.exit(3), 300000).unref();
const out = (x) => process.stdout.write(JSON.stringify(x) + "\\n");
const conns = new Map(); let n = 0;
const srv = net.createServer({ pauseOnConnect: true }, (s) => {
  const id = ++n; conns.set(id, s); s.on("error", () => {});
  out({ accept: id, remoteAddress: s.remoteAddress, remotePort: s.remotePort, localAddress: s.localAddress, localPort: s.localPort });
});
const at = process.argv[1];
srv.listen(at.startsWith("fd:") ? { fd: Number(at.slice(3)) } : { port: Number(at), host: "0.0.0.0" }, () => out({ ready: true }));
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line), s = conns.get(c.id);
  if (!s) return;
  if (c.answer !== undefined) { s.end(c.answer); return; }
  const up = net.connect({ ...c.upstream, timeout: 1500 });
  up.on("timeout", () => { out({ upstream: c.id, ok: false, error: "timeout" }); up.destroy(); s.destroy(); });
  up.on("error", (e) => { out({ upstream: c.id, ok: false, error: e.code }); s.destroy(); });
  up.on("connect", () => { up.setTimeout(0); out({ upstream: c.id, ok: true }); s.pipe(up); up.pipe(s); s.resume(); });
});
process.stdin.on("end", () => process.exit(0));
`;

/** What the stand-in prints for an accepted connection. */
export interface Accepted {
  accept: number;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

export class StandInProxy extends JsonLines {
  /** How many connections it accepted so far. */
  accepts(): number {
    return this.seen.filter((x) => x.accept !== undefined).length;
  }
  /** The next accepted connection after `before` accepts. */
  accepted(before: number, ms?: number): Promise<Accepted> {
    return this.next<Accepted>((x) => x.accept === before + 1, ms);
  }
  stop(): void {
    this.child.stdin?.end();
  }
}

/**
 * Starts the stand-in in `cgroupDir` inside `netns`, listening on 0.0.0.0:`port`; `transparent`:
 * on an IP_TRANSPARENT listener made by the loader helper (listen-exec), so that a socket assigned
 * for a pod's address can answer from it. Resolves once it listens.
 */
export async function startStandInProxy(sb: Sandbox, cgroupDir: string, netns: string, opts: { port: number; transparent: boolean }): Promise<StandInProxy> {
  const argv = opts.transparent ? transparentListenerArgv("0.0.0.0", opts.port, 3, ["node", "-e", PROXY, "fd:3"]) : ["node", "-e", PROXY, String(opts.port)];
  const proxy = new StandInProxy(sb.spawnInCgroupAt(cgroupDir, netns, argv));
  await proxy.next((x) => x.ready === true);
  return proxy;
}
