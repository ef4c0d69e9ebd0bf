// The HTTP L7 policy filter: one port's rule set for one direction (an L7Set from the policy
// compiler) decides each request of a peer identity, with the policy's own matcher
// (src/policy/l7/http-match.ts). Allowed requests may carry header edits (headerMatches mismatch
// actions); denied ones are answered 403 "Access denied". Pure: no I/O; decide() allocates nothing
// unless a mismatch action fires.

import type { L7Set } from "../../policy/compile.ts";
import { type CompiledHttpRule, type HttpRequest, matchHttp } from "../../policy/l7/http-match.ts";

export type MismatchAction = "LOG" | "ADD" | "DELETE" | "REPLACE";

export interface HeaderEdit {
  op: "add" | "delete" | "replace";
  /** Lowercase. */
  name: string;
  value: string;
}

export interface HeaderMismatch {
  name: string;
  expected: string | undefined;
  actual: string | undefined;
  action: MismatchAction;
}

export interface HttpVerdict {
  allowed: boolean;
  /** Allowed by something that constrains nothing (`http: [{}]`, an L4-only allow, no L7 set): visibility. */
  visibilityOnly: boolean;
  /** The rule that allowed (as flows name it); "" when denied or no set applies. */
  rule: string;
  edits: readonly HeaderEdit[];
  mismatches: readonly HeaderMismatch[];
}

/** Request headers by lowercase name; duplicates joined with ",". MessageHead implements it. */
export interface HeaderSource {
  get(lower: string): string | undefined;
}

export interface PolicyRequest {
  method: string;
  /** The normalised path with its query: what goes upstream (Cilium matches :path, query included). */
  path: string;
  /** Host header or absolute-form authority, as sent (port included when sent). */
  authority: string;
  headers: HeaderSource;
}

const NONE: readonly never[] = Object.freeze([]);
const DENIED: HttpVerdict = Object.freeze({ allowed: false, visibilityOnly: false, rule: "", edits: NONE, mismatches: NONE });
const NO_POLICY: HttpVerdict = Object.freeze({ allowed: true, visibilityOnly: true, rule: "", edits: NONE, mismatches: NONE });

interface SoftMatch {
  name: string;
  value: string | undefined;
  action: MismatchAction;
}

interface Rule {
  strict: CompiledHttpRule;
  soft: SoftMatch[];
  verdict: HttpVerdict;
}

interface Entry {
  scope: number;
  allowAll: boolean;
  rules: Rule[];
  verdict: HttpVerdict;
}

const ACTIONS = new Set<string>(["LOG", "ADD", "DELETE", "REPLACE"]);

/** Splits a compiled rule: headerMatches with a mismatch action leave the match and become soft checks. */
function splitRule(rule: CompiledHttpRule, ruleId: string): Rule {
  const hm = rule.doc.headerMatches ?? [];
  const plain = rule.headers.length - hm.length; // compileHttpRule appends headerMatches after `headers`
  const strictHeaders = rule.headers.slice(0, plain);
  const soft: SoftMatch[] = [];
  hm.forEach((h, i) => {
    const action = h.mismatch?.toUpperCase();
    if (action && ACTIONS.has(action)) soft.push({ name: h.name.toLowerCase(), value: h.value, action: action as MismatchAction });
    else strictHeaders.push(rule.headers[plain + i] as { name: string; value?: string });
  });
  const strict = soft.length ? { ...rule, headers: strictHeaders } : rule;
  const visibilityOnly = !rule.method && !rule.path && !rule.host && rule.headers.length === 0;
  return { strict, soft, verdict: Object.freeze({ allowed: true, visibilityOnly, rule: ruleId, edits: NONE, mismatches: NONE }) };
}

export class HttpPolicy {
  /** Allows everything: the direction has no L7 rules on this port (the L3/L4 verdict stands). */
  static readonly none = new HttpPolicy([], false, []);
  private readonly entries: Entry[];
  private readonly denyAll: boolean;
  /** Header names any rule looks at: only these are read from the request. */
  private readonly headerNames: string[];
  private readonly scratch: HttpRequest & { host: string; headers: Record<string, string> } = { method: "", path: "", host: "", headers: {} };

  private constructor(entries: Entry[], denyAll: boolean, headerNames: string[]) {
    this.entries = entries;
    this.denyAll = denyAll;
    this.headerNames = headerNames;
  }

  /**
   * `set` is the compiled L7 set of (port, direction) for the subject; undefined = no L7 rules here.
   * A set of another protocol, or a conflict of two, refuses every request (fail closed).
   */
  static compile(set: L7Set | undefined): HttpPolicy {
    if (!set) return HttpPolicy.none;
    if (set.kind !== "http") return new HttpPolicy([], true, []);
    const names = new Set<string>();
    const entries: Entry[] = set.entries.map((e) => {
      const rules = e.l7?.kind === "http" ? e.l7.rules.map((r) => splitRule(r, e.rule)) : [];
      for (const r of rules) {
        for (const h of r.strict.headers) names.add(h.name);
        for (const s of r.soft) names.add(s.name);
      }
      return {
        scope: e.scope,
        allowAll: e.allowAll,
        rules,
        verdict: Object.freeze({ allowed: true, visibilityOnly: true, rule: e.rule, edits: NONE, mismatches: NONE }),
      };
    });
    return new HttpPolicy(entries, false, [...names]);
  }

  /** The verdict for a request of `peer` (remote identity). */
  decide(peer: number, req: PolicyRequest): HttpVerdict {
    if (this.denyAll) return DENIED;
    if (this === HttpPolicy.none) return NO_POLICY;
    const m = this.scratch;
    m.method = req.method;
    m.path = req.path;
    m.host = req.authority;
    for (const n of this.headerNames) (m.headers as Record<string, string | undefined>)[n] = req.headers.get(n);
    let soft: Rule | undefined;
    for (const e of this.entries) {
      if (e.scope !== 0 && e.scope !== peer) continue;
      if (e.allowAll) return e.verdict;
      for (const r of e.rules) {
        if (!matchHttp(r.strict, m)) continue;
        if (r.soft.length === 0 || !this.mismatches(r, req.headers)) return r.verdict;
        soft ??= r;
      }
    }
    // Only rules whose headerMatches mismatched (with an action) allow: the first one's actions apply.
    return soft ? this.softVerdict(soft, req.headers) : DENIED;
  }

  private mismatches(r: Rule, headers: HeaderSource): boolean {
    for (const s of r.soft) {
      const v = headers.get(s.name);
      if (v === undefined || (s.value !== undefined && v !== s.value)) return true;
    }
    return false;
  }

  private softVerdict(r: Rule, headers: HeaderSource): HttpVerdict {
    const edits: HeaderEdit[] = [];
    const mismatches: HeaderMismatch[] = [];
    for (const s of r.soft) {
      const actual = headers.get(s.name);
      if (actual !== undefined && (s.value === undefined || actual === s.value)) continue;
      mismatches.push({ name: s.name, expected: s.value, actual, action: s.action });
      if (s.value === undefined) continue; // ADD/REPLACE need a value; without one they only log
      if (s.action === "ADD") edits.push({ op: "add", name: s.name, value: s.value });
      else if (s.action === "REPLACE") edits.push({ op: "replace", name: s.name, value: s.value });
      else if (s.action === "DELETE" && actual !== undefined) edits.push({ op: "delete", name: s.name, value: "" });
    }
    return { allowed: true, visibilityOnly: false, rule: r.verdict.rule, edits, mismatches };
  }
}

/** Header names whose existing fields go (delete, replace), and the lines to add (add, replace). */
export function editPlan(edits: readonly HeaderEdit[]): { drop: string[]; add: string } {
  const drop: string[] = [];
  let add = "";
  for (const e of edits) {
    if (e.op !== "add") drop.push(e.name);
    if (e.op !== "delete") add += `${e.name}: ${e.value}\r\n`;
  }
  return { drop, add };
}

const DENY_BODY = "Access denied\r\n";
const DENY_KEEP = Buffer.from(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENY_BODY.length}\r\n\r\n${DENY_BODY}`, "latin1");
const DENY_CLOSE = Buffer.from(
  `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENY_BODY.length}\r\nconnection: close\r\n\r\n${DENY_BODY}`,
  "latin1",
);

/** The 403 for a denied request (as Cilium's proxy answers); shared bytes, never mutate. */
export function denyResponse(keepAlive: boolean): Buffer {
  return keepAlive ? DENY_KEEP : DENY_CLOSE;
}
