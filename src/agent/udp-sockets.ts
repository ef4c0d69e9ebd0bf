// Connected UDP sockets keep talking to the backend they were translated to; when that backend
// leaves a service, the agent closes such sockets in the node's pods (`ss -K`, the kernel's
// SOCK_DESTROY), so applications notice and reconnect through the service again.

import { tryRun } from "../core/run.ts";
import type { LbBackend } from "../datapath/services.ts";

/** UDP backends as "address:port" keys. Pure. */
export function udpBackendKeys(backends: readonly LbBackend[]): Set<string> {
  return new Set(backends.filter((b) => b.proto === "UDP").map((b) => `${b.address}:${b.port}`));
}

/** Keys in `before` that are not in `after`. Pure. */
export function removedKeys(before: ReadonlySet<string>, after: ReadonlySet<string>): string[] {
  return [...before].filter((k) => !after.has(k)).sort();
}

/** Destroys every UDP socket connected to one of `backends` in each of the namespaces. */
export async function destroyUdpSockets(netns: readonly string[], backends: readonly string[]): Promise<number> {
  let calls = 0;
  for (const ns of netns) {
    for (const b of backends) {
      const i = b.lastIndexOf(":");
      await tryRun("nsenter", [`--net=/run/netns/${ns}`, "ss", "-K", "-u", "dst", b.slice(0, i), "dport", "=", `:${b.slice(i + 1)}`]);
      calls++;
    }
  }
  return calls;
}
