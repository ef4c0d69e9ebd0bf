// `weft proxy`: one proxy worker run by hand (the supervisor forks src/proxy/worker.ts itself). It
// takes its listening socket from a parent over IPC, as the supervisor's workers do, and its
// configuration from the node agent's xDS socket.

import { join } from "node:path";
import { loadClusterConfig, runDir } from "../cluster/state.ts";
import { createLogger } from "../core/log.ts";
import { runWorker } from "./worker.ts";

export async function runProxy(cluster: string, node: string): Promise<void> {
  const cfg = loadClusterConfig(cluster);
  const dir = runDir(cfg.stateDir, node);
  const log = createLogger(process.stderr, { component: "proxy", cluster, node });
  await runWorker(
    {
      nodeId: node,
      xdsTarget: `unix://${join(dir, "xds.sock")}`,
      redirects: process.env.WEFT_PROXY_REDIRECTS ? { kind: "file", path: process.env.WEFT_PROXY_REDIRECTS } : { kind: "kernel" },
      ports: process.env.WEFT_PROXY_REDIRECTS ? { kind: "memory" } : { kind: "kernel" },
      portRange: [20000, 29999],
      flowSocket: join(dir, "agent.sock"),
    },
    { index: 0, count: 1 },
    log,
  );
}
