// Child cgroups of a cluster under /sys/fs/cgroup/unified/weft/<cluster>/: every process Weft starts
// for a cluster lives in one, so `weft down` can end exactly those processes (cgroup.kill) and no
// other. Never touches the root cgroup.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cgroupDir } from "./config.ts";

export function ensureCgroup(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

export function cgroupProcs(path: string): number[] {
  try {
    return readFileSync(join(path, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** All processes in a cgroup and its descendants. */
export function cgroupTreeProcs(path: string): number[] {
  if (!existsSync(path)) return [];
  const out = cgroupProcs(path);
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...cgroupTreeProcs(join(path, e.name)));
  }
  return out;
}

/** Kills every process in the subtree (the kernel's cgroup.kill) and waits until it is empty. */
export async function killCgroup(path: string, timeoutMs = 10_000): Promise<void> {
  if (!existsSync(path)) return;
  try {
    writeFileSync(join(path, "cgroup.kill"), "1");
  } catch {
    for (const pid of cgroupTreeProcs(path)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
  }
  const deadline = Date.now() + timeoutMs;
  // "populated 0" only once every task is released, not just gone from cgroup.procs: until then
  // the cgroups cannot be removed.
  while ((cgroupTreeProcs(path).length > 0 || populated(path)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

function populated(path: string): boolean {
  try {
    return /^populated 1$/m.test(readFileSync(join(path, "cgroup.events"), "utf8"));
  } catch {
    return false;
  }
}

/** Removes a cgroup subtree bottom-up (it must be empty of processes); true when it is gone. */
export function removeCgroupTree(path: string): boolean {
  if (!existsSync(path)) return true;
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroupTree(join(path, e.name));
  }
  try {
    rmdirSync(path);
  } catch {}
  return !existsSync(path);
}

export function podCgroup(cluster: string, node: string, uid: string): string {
  return cgroupDir(cluster, node, "pods", uid);
}
