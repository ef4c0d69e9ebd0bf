// Checks what the local cluster needs from the machine, and refuses with the missing piece named.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { WeftError } from "../core/errors.ts";
import { CGROUP_ROOT } from "./config.ts";

const TOOLS = ["ip", "bridge", "nsenter", "sysctl", "sh"];

function onPath(tool: string): boolean {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      accessSync(`${dir}/${tool}`, constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

export function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root: the local cluster creates namespaces and cgroups (run as root)");
  if (!existsSync("/sys/kernel/btf/vmlinux")) missing.push("kernel BTF: /sys/kernel/btf/vmlinux is absent (needs CONFIG_DEBUG_INFO_BTF)");
  if (!existsSync(`${CGROUP_ROOT}/cgroup.procs`) || !existsSync(`${CGROUP_ROOT}/cgroup.subtree_control`)) {
    missing.push(`cgroup v2: no cgroup2 hierarchy mounted at ${CGROUP_ROOT}`);
  }
  let bpffs = false;
  try {
    bpffs = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[1] === "/sys/fs/bpf" && l.split(" ")[2] === "bpf");
  } catch {}
  if (!bpffs) missing.push("bpffs: nothing mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf; the set-up does this)");
  for (const t of TOOLS) if (!onPath(t)) missing.push(`command "${t}" not found on PATH (Debian package iproute2/util-linux/procps)`);
  return missing;
}

export function requirePrerequisites(): void {
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    throw new WeftError("WEFT_PREREQ_MISSING", `the local cluster cannot start:\n  - ${missing.join("\n  - ")}`);
  }
}
