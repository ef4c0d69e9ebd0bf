// `weft proxy`: one proxy worker run by hand (the supervisor forks src/proxy/worker.ts itself). It
// takes its listening socket from a parent over IPC, as the supervisor's workers do, and its
// configuration from the node agent's xDS socket.

import { createLogger } from "../core/log.ts";
import { nodeWorkerOptions } from "./supervisor.ts";
import { runWorker } from "./worker.ts";

export async function runProxy(cluster: string, node: string): Promise<void> {
  const log = createLogger(process.stderr, { component: "proxy", cluster, node });
  await runWorker(nodeWorkerOptions(cluster, node), { index: 0, count: 1 }, log);
}
