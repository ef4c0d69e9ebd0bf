// The per-node agent. For now it reports health: a heartbeat file and /healthz on a Unix socket.
// Later: sources → identities → policy → BPF maps, xDS to the proxy, flows, metrics, API.

import { rmSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { loadClusterConfig, runDir } from "../cluster/state.ts";
import { openStore, writeAtomic } from "../cluster/store.ts";
import { createLogger } from "../core/log.ts";

export function agentSocket(stateDir: string, node: string): string {
  return join(runDir(stateDir, node), "agent.sock");
}

export async function runAgent(cluster: string, node: string): Promise<void> {
  const cfg = loadClusterConfig(cluster);
  const log = createLogger(process.stderr, { component: "agent", cluster, node });
  const store = openStore(cluster);
  const started = new Date().toISOString();
  const health = () => ({ node, pid: process.pid, healthy: true, started, time: new Date().toISOString(), storeRevision: store.revision() });
  const sock = agentSocket(cfg.stateDir, node);
  rmSync(sock, { force: true });
  const server = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(health()));
      return;
    }
    res.writeHead(404).end();
  });
  server.listen(sock);
  const beat = () => writeAtomic(join(runDir(cfg.stateDir, node), "agent.health.json"), JSON.stringify(health()));
  beat();
  setInterval(beat, 2000).unref();
  log.info("agent started", { pid: process.pid, socket: sock });
  await new Promise<void>((resolve) => process.on("SIGTERM", () => server.close(() => resolve())));
}
