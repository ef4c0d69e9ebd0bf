// The node's L7 proxy process. It receives its listening socket from the supervisor. Until the
// agent configures it (xDS, a later issue), it holds no policy, so it fails closed: every
// connection it is handed is refused.

import type net from "node:net";
import { createLogger } from "../core/log.ts";

export async function runProxy(cluster: string, node: string): Promise<void> {
  const log = createLogger(process.stderr, { component: "proxy", cluster, node });
  await new Promise<void>((resolve) => {
    process.on("message", (msg, handle) => {
      if (msg !== "listener" || !handle) return;
      const server = handle as net.Server;
      server.on("connection", (socket: net.Socket) => socket.destroy());
      log.info("proxy serving listener from supervisor", { pid: process.pid });
    });
    process.on("SIGTERM", () => resolve());
    process.on("disconnect", () => resolve());
  });
}
