// Runs external commands (ip, nsenter, bpftool...) and turns a failure into an error that names the
// command and what it printed. The edge between Weft and the system's tools.

import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    readonly status: number | null,
  ) {
    super(`command failed (exit ${status}): ${argv.join(" ")}: ${stderr.trim()}`);
  }
}

export async function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  try {
    const child = execFileP(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 });
    if (opts.input !== undefined) {
      child.child.stdin?.end(opts.input);
    }
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: number | string };
    throw new CommandError([cmd, ...args], e.stderr ?? String(err), typeof e.code === "number" ? e.code : null);
  }
}

export function runSync(cmd: string, args: string[], timeoutMs = 30_000): string {
  try {
    return execFileSync(cmd, args, { timeout: timeoutMs, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; status?: number | null };
    throw new CommandError([cmd, ...args], String(e.stderr ?? err), e.status ?? null);
  }
}

/** Runs a command and ignores its failure (clean-up of things that may already be gone). */
export async function tryRun(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** Runs `ip` inside a network namespace without entering it (`ip -n NS ...`). */
export function ipIn(netns: string, ...args: string[]): Promise<string> {
  return run("ip", ["-n", netns, ...args]);
}
