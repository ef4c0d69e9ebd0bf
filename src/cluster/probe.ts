// Runs one readiness or liveness probe (httpGet, tcpSocket, exec) against a pod, from its node.

import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import type { ContainerSpec, ProbeSpec } from "./schedule.ts";

export interface ProbeTarget {
  podIP: string;
  container: ContainerSpec;
  /** Runs a command inside the container (for exec probes); resolves to its exit code. */
  exec: (argv: string[], timeoutMs: number) => Promise<number>;
}

export function resolvePort(port: number | string, c: ContainerSpec): number {
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = c.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`named port "${port}" not found in container ${c.name}`);
  return named.containerPort;
}

/** Resolves to true on success. Never rejects. */
export async function runProbe(probe: ProbeSpec, target: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) {
      const port = resolvePort(probe.httpGet.port, target.container);
      return await httpProbe(probe.httpGet.host ?? target.podIP, port, probe.httpGet.path ?? "/", timeoutMs);
    }
    if (probe.tcpSocket) {
      const port = resolvePort(probe.tcpSocket.port, target.container);
      return await tcpProbe(probe.tcpSocket.host ?? target.podIP, port, timeoutMs);
    }
    if (probe.exec) return (await target.exec(probe.exec.command, timeoutMs)) === 0;
  } catch {
    return false;
  }
  return false;
}

function httpProbe(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, timeout: timeoutMs, agent: false, headers: { "user-agent": "kube-probe/weft" } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve(code >= 200 && code < 400);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: timeoutMs });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("timeout", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(false));
  });
}

/** Spawns `argv` and resolves to its exit code, killing it after `timeoutMs` (exit code -1). */
export function execWithTimeout(argv: string[], timeoutMs: number, spawnArgs: (argv: string[]) => [string, string[]]): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, args] = spawnArgs(argv);
    const child = spawn(cmd, args, { stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", () => {
      clearTimeout(timer);
      resolve(-1);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}
