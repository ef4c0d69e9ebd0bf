// Files of a running local cluster besides the object store: its config (written by `weft up`),
// each node's pod status (written by that node's kubelet) and heartbeats. Readers merge them.

import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { WeftError } from "../core/errors.ts";
import { type ClusterConfig, defaultStateRoot } from "./config.ts";
import type { DesiredPod } from "./schedule.ts";
import { writeAtomic } from "./store.ts";

export type ContainerState = "waiting" | "running" | "terminated";

export interface ContainerStatus {
  name: string;
  state: ContainerState;
  reason?: string;
  exitCode?: number;
  restartCount: number;
  ready: boolean;
  started: boolean;
  pid?: number;
  startedAt?: string;
  finishedAt?: string;
}

export type PodPhase = "Pending" | "Running" | "Succeeded" | "Failed";

export interface PodStatusRecord {
  namespace: string;
  name: string;
  uid: string;
  node: string;
  desired: DesiredPod;
  podIP?: string;
  hostIP: string;
  netns?: string;
  veth?: string;
  phase: PodPhase;
  ready: boolean;
  terminating: boolean;
  deletionTimestamp?: string;
  creationTimestamp: string;
  startTime?: string;
  message?: string;
  containers: ContainerStatus[];
}

export interface NodeStatus {
  node: string;
  updated: string;
  kubeletPid: number;
  pods: PodStatusRecord[];
  components: Record<string, { pid?: number; healthy: boolean; restarts: number; detail?: string }>;
}

export function clusterDir(cluster: string, stateRoot = defaultStateRoot()): string {
  return join(stateRoot, cluster);
}

export function saveClusterConfig(cfg: ClusterConfig): void {
  mkdirSync(cfg.stateDir, { recursive: true });
  writeAtomic(join(cfg.stateDir, "cluster.json"), `${JSON.stringify(cfg, null, 2)}\n`);
}

export function loadClusterConfig(cluster: string, stateRoot = defaultStateRoot()): ClusterConfig {
  const file = join(clusterDir(cluster, stateRoot), "cluster.json");
  if (!existsSync(file)) {
    throw new WeftError("WEFT_CLUSTER_STATE", `no local cluster "${cluster}" is up (start one with: weft up)`, file);
  }
  return JSON.parse(readFileSync(file, "utf8")) as ClusterConfig;
}

function statusDir(stateDir: string): string {
  return join(stateDir, "status");
}

export function writeNodeStatus(stateDir: string, status: NodeStatus): void {
  mkdirSync(statusDir(stateDir), { recursive: true });
  writeAtomic(join(statusDir(stateDir), `${status.node}.json`), JSON.stringify(status));
}

export function readNodeStatuses(stateDir: string): NodeStatus[] {
  return parseNodeStatuses(readNodeStatusTexts(stateDir));
}

/** Every node's status file as written (JSON text), in file name order. */
export function readNodeStatusTexts(stateDir: string): string[] {
  const dir = statusDir(stateDir);
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith(".json")) continue;
    try {
      out.push(readFileSync(join(dir, f), "utf8"));
    } catch {
      // being replaced right now; the next read sees it
    }
  }
  return out;
}

/** The statuses of readNodeStatusTexts; a text that does not parse (a file cut short) is left out. */
export function parseNodeStatuses(texts: readonly string[]): NodeStatus[] {
  const out: NodeStatus[] = [];
  for (const t of texts) {
    try {
      out.push(JSON.parse(t) as NodeStatus);
    } catch {
      // being replaced right now; the next read sees it
    }
  }
  return out;
}

/**
 * A status text without its `updated` time (the kubelet writes one every pass): two texts with the
 * same content otherwise are equal. (`updated` is the second member writeNodeStatus writes; a
 * string member elsewhere is escaped, so only the status's own member matches.)
 */
export function statusContent(text: string): string {
  return text.replace(/"updated":"[^"]*",/, "");
}

export function logDir(stateDir: string, ...parts: string[]): string {
  const dir = join(stateDir, "logs", ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function runDir(stateDir: string, ...parts: string[]): string {
  const dir = join(stateDir, "run", ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}
