// Policy routing for tc's redirect into the node proxy (docs/redirect.md): a packet that
// bpf_sk_assign handed to the proxy's socket keeps its destination (a pod's address), so routing
// must deliver it locally. tc marks it (0x200/0xf00, lib/proxy.h); one rule sends marked packets to
// a table whose only route is `local 0.0.0.0/0 dev lo`. Only ever inside a node namespace.

import { WeftError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { MARK_TO_PROXY, MARK_TO_PROXY_MASK } from "./maps/redirect.ts";

/** The routing table and rule priority (Cilium uses the same table number for its proxy). */
export const PROXY_ROUTE_TABLE = 2004;
export const PROXY_RULE_PRIORITY = 9;

const mark = `0x${MARK_TO_PROXY.toString(16)}/0x${MARK_TO_PROXY_MASK.toString(16)}`;

/** The `ip` arguments that set it up, in order. Pure: no I/O. */
export function proxyRoutingCommands(): string[][] {
  return [
    ["rule", "add", "fwmark", mark, "lookup", String(PROXY_ROUTE_TABLE), "priority", String(PROXY_RULE_PRIORITY)],
    ["route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", String(PROXY_ROUTE_TABLE)],
  ];
}

/** The `ip` arguments that remove it. Pure: no I/O. */
export function proxyRoutingRemoval(): string[][] {
  return [
    ["rule", "del", "fwmark", mark, "lookup", String(PROXY_ROUTE_TABLE), "priority", String(PROXY_RULE_PRIORITY)],
    ["route", "flush", "table", String(PROXY_ROUTE_TABLE)],
  ];
}

function checkNetns(netns: string): void {
  // Never the root namespace: a node namespace is always named.
  if (!/^[A-Za-z0-9_.-]+$/.test(netns)) throw new WeftError("WEFT_USAGE", "not a network namespace name", netns);
}

/**
 * Sets up the proxy's policy routing in node namespace `netns` (a /run/netns name). Idempotent:
 * the rule is added only when absent. Call from the node set-up (src/cluster/net.ts) after the
 * node namespace exists, before the agent enables redirection.
 */
export async function setupProxyRouting(netns: string): Promise<void> {
  checkNetns(netns);
  const rules = await run("ip", ["-n", netns, "rule", "show", "priority", String(PROXY_RULE_PRIORITY)]);
  const [rule, route] = proxyRoutingCommands() as [string[], string[]];
  if (!rules.includes(`lookup ${PROXY_ROUTE_TABLE}`)) await run("ip", ["-n", netns, ...rule]);
  await run("ip", ["-n", netns, ...route]);
}

/** Removes it (nothing else is touched). */
export async function removeProxyRouting(netns: string): Promise<void> {
  checkNetns(netns);
  for (const args of proxyRoutingRemoval()) await run("ip", ["-n", netns, ...args]).catch(() => undefined);
}
