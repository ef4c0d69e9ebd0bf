// The node's proxy supervisor: owns the proxy's listening sockets and hands them to the proxy
// process, restarting it when it exits. While the proxy is down, new connections wait in the
// listen backlog: they are never passed around the proxy.

import { type ChildProcess, fork } from "node:child_process";
import net from "node:net";
import { WEFT_BIN } from "../cluster/images.ts";
import { createLogger } from "../core/log.ts";

export const PROXY_PORT = 15001;

export async function runSupervisor(cluster: string, node: string, port = PROXY_PORT): Promise<void> {
  const log = createLogger(process.stderr, { component: "proxy-supervisor", cluster, node });
  const listener = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ port, host: "0.0.0.0", backlog: 4096 }, resolve);
  });
  // The supervisor never accepts itself: only the proxy child does, through the shared handle.
  listener.removeAllListeners("connection");
  let restarts = 0;
  let stopping = false;
  let current: ChildProcess | undefined;
  const startProxy = () => {
    const child = fork(WEFT_BIN, ["proxy", "--cluster", cluster, "--node", node], { stdio: "inherit" });
    child.on("spawn", () => child.send("listener", listener));
    child.on("exit", (code, signal) => {
      if (stopping) return;
      restarts++;
      log.warn("proxy exited; restarting", { code, signal, restarts });
      setTimeout(startProxy, Math.min(200 * restarts, 5000));
    });
    current = child;
  };
  startProxy();
  log.info("proxy supervisor started", { pid: process.pid, port });
  await new Promise<void>((resolve) =>
    process.on("SIGTERM", () => {
      stopping = true;
      current?.kill("SIGTERM");
      listener.close(() => resolve());
    }),
  );
}
