// A test child process's stdout read as lines: its first line, a "ready" line, or JSON lines
// with waiters. Every wait is bounded in time; nothing here starts or ends a process itself
// except killing a child that gave no first line in time.

import type { ChildProcess } from "node:child_process";

/** The child's first stdout line; rejects (and kills the child) after `timeoutMs` or if it exits without one. */
export function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no output after ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    child.stderr?.on("data", (d) => {
      err += d;
    });
    child.stdout?.on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      if (!out.includes("\n")) reject(new Error(`exited ${code} without output; stderr: ${err}`));
    });
  });
}

/** Resolves once the child printed "ready"; rejects if it exits first or after `timeoutMs`. */
export function untilReady(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms; printed ${JSON.stringify(out)}`)), timeoutMs);
    child.stdout?.on("data", (d: Buffer) => {
      out += d;
      if (out.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before it was ready`));
    });
  });
}

/** A child's stdout as JSON lines, with a waiter for the next line that matches; `send` writes one to stdin. */
export class JsonLines {
  readonly seen: Record<string, unknown>[] = [];
  private waiters: { pred: (x: Record<string, unknown>) => boolean; resolve: (x: Record<string, unknown>) => void }[] = [];
  constructor(readonly child: ChildProcess) {
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const x = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        this.seen.push(x);
        const hit = this.waiters.filter((w) => w.pred(x));
        this.waiters = this.waiters.filter((w) => !hit.includes(w));
        for (const w of hit) w.resolve(x);
      }
    });
  }
  next<T>(pred: (x: Record<string, unknown>) => boolean, ms = 5000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line in ${ms} ms; seen ${JSON.stringify(this.seen)}`)), ms);
      this.waiters.push({
        pred,
        resolve: (x) => {
          clearTimeout(timer);
          resolve(x as T);
        },
      });
    });
  }
  send(cmd: unknown): void {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }
}
