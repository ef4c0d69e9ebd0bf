// Explains a verdict the way `cilium policy trace` does: for a source and a destination, the egress
// policy of the source and the ingress policy of the destination decide, each naming the rule(s)
// that decided. Evaluated on the compiled rules (the model), and cross-checked against the policy
// map entries through the datapath's own lookup, so a disagreement shows. Pure: no I/O.

import type { CompiledDirection, ResolvedRule, SubjectPolicy } from "./compile.ts";
import { describeIdentity, type IdentityTable, WILDCARD_IDENTITY } from "./identity.ts";
import { datapathLookup, PolicyMapView } from "./key.ts";
import { matchDns } from "./l7/dns.ts";
import { type HttpRequest, matchHttp } from "./l7/http-match.ts";
import { type KafkaRequest, matchKafka } from "./l7/kafka.ts";
import { PROTO, protoName } from "./ports.ts";
import type { Direction, L7Rules } from "./rules.ts";

export type Verdict = "ALLOWED" | "DENIED" | "AUDIT";

export interface TraceRequest {
  proto: number;
  /** Destination port, or the ICMP type. */
  port: number;
  http?: HttpRequest;
  dns?: { name: string };
  kafka?: KafkaRequest;
}

export interface DirectionTrace {
  direction: Direction;
  subject: number;
  peer: number;
  enforced: boolean;
  verdict: Verdict;
  reason: string;
  /** Rule ids that decided (with the L7 rule index for L7 decisions). */
  rules: string[];
  redirect: boolean;
  l7: "none" | "evaluated" | "not-evaluated";
  /** What the policy map gives for the same packet (deny, allow or miss). */
  datapath: "deny" | "allow" | "miss";
}

export interface TraceResult {
  verdict: Verdict;
  egress?: DirectionTrace;
  ingress?: DirectionTrace;
}

function portMatched(rr: ResolvedRule, proto: number, port: number): { l7: L7Rules | null; path: string }[] {
  return rr.items.filter((it) => (it.proto === PROTO.ANY || it.proto === proto) && it.lo <= port && port <= it.hi).map((it) => ({ l7: it.l7, path: it.path }));
}

function peerMatched(rr: ResolvedRule, peer: number): boolean {
  return rr.scopes.includes(WILDCARD_IDENTITY) || rr.scopes.includes(peer);
}

function evalL7(l7: L7Rules, req: TraceRequest): number | undefined | "absent" {
  switch (l7.kind) {
    case "http":
      if (!req.http) return "absent";
      return index(l7.rules.findIndex((r) => matchHttp(r, req.http as HttpRequest)));
    case "dns":
      if (!req.dns) return "absent";
      return index(l7.rules.findIndex((r) => matchDns(r, (req.dns as { name: string }).name)));
    case "kafka":
      if (!req.kafka) return "absent";
      return index(l7.rules.findIndex((r) => matchKafka(r, req.kafka as KafkaRequest)));
  }
}

const index = (i: number) => (i < 0 ? undefined : i);

/** One direction at one subject: the model's verdict and the rules behind it. */
export function traceDirection(sp: SubjectPolicy, direction: Direction, peer: number, req: TraceRequest): DirectionTrace {
  const cd: CompiledDirection = sp[direction];
  const dp = datapathLookup(new PolicyMapView(cd.entries), direction, peer, req.proto, req.port).kind;
  const base = { direction, subject: sp.identity, peer, enforced: cd.enforced, datapath: dp };
  const matching = cd.rules.map((rr) => ({ rr, ports: peerMatched(rr, peer) ? portMatched(rr, req.proto, req.port) : [] })).filter((m) => m.ports.length);
  const denies = matching.filter((m) => m.rr.rule.action === "deny");
  if (denies.length) {
    return {
      ...base,
      verdict: cd.audit ? "AUDIT" : "DENIED",
      reason: cd.audit ? "denied by a deny rule (audit mode: logged, not dropped)" : "denied by a deny rule (deny beats allow)",
      rules: denies.map((m) => m.rr.rule.id),
      redirect: false,
      l7: "none",
    };
  }
  const allows = matching.filter((m) => m.rr.rule.action === "allow");
  if (!allows.length) {
    if (!cd.enforced)
      return {
        ...base,
        verdict: "ALLOWED",
        reason: `no policy with ${direction} rules selects the endpoint: ${direction} is not enforced`,
        rules: [],
        redirect: false,
        l7: "none",
      };
    return {
      ...base,
      verdict: cd.audit ? "AUDIT" : "DENIED",
      reason: cd.audit ? "no rule allows it (audit mode: logged, not dropped)" : "no rule allows it (default deny)",
      rules: [],
      redirect: false,
      l7: "none",
    };
  }
  const redirect = allows.some((m) => m.ports.some((p) => p.l7));
  const plain = allows.filter((m) => m.ports.some((p) => !p.l7));
  if (plain.length) {
    return {
      ...base,
      verdict: "ALLOWED",
      reason: redirect ? "allowed at L3/L4 by a rule without L7 rules (redirected to the proxy for visibility)" : "allowed",
      rules: plain.map((m) => m.rr.rule.id),
      redirect,
      l7: "none",
    };
  }
  const l7s = allows.flatMap((m) => m.ports.flatMap((p) => (p.l7 ? [{ id: m.rr.rule.id, policy: m.rr.rule.policy.name, path: p.path, l7: p.l7 }] : [])));
  const kinds = new Set(l7s.map((x) => x.l7.kind));
  if (kinds.size > 1)
    return {
      ...base,
      verdict: "DENIED",
      reason: `rules of several L7 protocols (${[...kinds].join(", ")}) on one port: the proxy refuses all`,
      rules: l7s.map((x) => x.id),
      redirect,
      l7: "evaluated",
    };
  const kind = [...kinds][0] as string;
  let absent = false;
  for (const x of l7s) {
    const hit = evalL7(x.l7, req);
    if (hit === "absent") absent = true;
    else if (hit !== undefined)
      return {
        ...base,
        verdict: "ALLOWED",
        reason: `${kind.toUpperCase()} request matches an L7 rule`,
        rules: [`${x.policy} ${x.path}.rules.${kind}[${hit}]`],
        redirect,
        l7: "evaluated",
      };
  }
  if (absent)
    return {
      ...base,
      verdict: "ALLOWED",
      reason: `allowed at L3/L4 and redirected to the proxy: its ${kind.toUpperCase()} rules decide each request (give the request to trace it)`,
      rules: uniq(l7s.map((x) => x.id)),
      redirect,
      l7: "not-evaluated",
    };
  return {
    ...base,
    verdict: "DENIED",
    reason: `no ${kind.toUpperCase()} rule matches the request (the proxy answers it with a denial)`,
    rules: uniq(l7s.map((x) => x.id)),
    redirect,
    l7: "evaluated",
  };
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}

export interface TracePeer {
  identity: number;
  /** A local endpoint (its policy applies) rather than an outside address or reserved peer. */
  endpoint: boolean;
  name: string;
}

/** Source's egress policy, then destination's ingress policy; DENIED if either denies. */
export function traceFlow(subject: (id: number) => SubjectPolicy | undefined, src: TracePeer, dst: TracePeer, req: TraceRequest): TraceResult {
  const out: TraceResult = { verdict: "ALLOWED" };
  const sp = src.endpoint ? subject(src.identity) : undefined;
  if (sp) out.egress = traceDirection(sp, "egress", dst.identity, req);
  const dp = dst.endpoint ? subject(dst.identity) : undefined;
  if (dp) out.ingress = traceDirection(dp, "ingress", src.identity, req);
  const vs = [out.egress?.verdict, out.ingress?.verdict];
  out.verdict = vs.includes("DENIED") ? "DENIED" : vs.includes("AUDIT") ? "AUDIT" : "ALLOWED";
  return out;
}

export function formatTrace(r: TraceResult, src: TracePeer, dst: TracePeer, req: TraceRequest, table: IdentityTable): string {
  const lines: string[] = [];
  const proto = protoName(req.proto);
  lines.push(`From: ${src.name}  identity ${describeIdentity(table.get(src.identity), src.identity)}`);
  lines.push(`To:   ${dst.name}  identity ${describeIdentity(table.get(dst.identity), dst.identity)}`);
  lines.push(
    `Traffic: ${proto === "ICMP" || proto === "ICMPv6" ? `${proto} type ${req.port}` : `${req.port}/${proto}`}${req.http ? `  HTTP ${req.http.method} ${req.http.path}${req.http.host ? ` host ${req.http.host}` : ""}` : ""}${req.dns ? `  DNS ${req.dns.name}` : ""}${req.kafka ? `  Kafka ${req.kafka.apiKey}${req.kafka.topic ? ` topic ${req.kafka.topic}` : ""}` : ""}`,
  );
  for (const d of [r.egress, r.ingress]) {
    if (!d) continue;
    lines.push("");
    lines.push(`${d.direction === "egress" ? "Egress from the source" : "Ingress to the destination"}: ${d.verdict}${d.enforced ? "" : " (not enforced)"}`);
    lines.push(`  ${d.reason}`);
    for (const rule of d.rules) lines.push(`  rule: ${rule}`);
    if (d.redirect) lines.push("  redirect: to the node's L7 proxy");
  }
  if (!r.egress && !r.ingress) lines.push("\nNeither end is a local endpoint: no Weft policy applies.");
  lines.push("");
  lines.push(`Final verdict: ${r.verdict}`);
  return `${lines.join("\n")}\n`;
}
