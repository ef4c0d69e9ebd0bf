// The HTTP L7 policy filter: one port's rule set for one direction (an L7Set from the policy
// compiler) decides each request of a peer identity, with the policy's own matcher
// (src/policy/l7/http-match.ts), and runs headerMatches mismatch actions (LOG/ADD/DELETE/REPLACE)
// as Cilium's proxy does; denied requests are answered 403 "Access denied". Pure: no I/O; decide()
// allocates nothing unless a mismatch action fires.

import type { HttpHeader, L7Http } from "../../observe/flow.ts";
import type { L7Set } from "../../policy/compile.ts";
import { headerActionRefusal, type MismatchAction } from "../../policy/l7/header-actions.ts";
import { type CompiledHttpRule, compileHttpRule, type HttpRequest, type HttpRuleDoc, matchHttp } from "../../policy/l7/http-match.ts";

export { headerActionRefusal, UNEDITABLE_HEADERS } from "../../policy/l7/header-actions.ts";
export type { MismatchAction };

/**
 * One header action of a headerMatches mismatch, in the order the rules ran: an edit of the request
 * that goes upstream, or (op "log") only a record. What flows report follows Cilium's access log:
 * ops other than "delete" log `value` as a missing header; `rejected` logs the request's value that
 * the action removed or overwrote.
 */
export interface HeaderEdit {
  op: "add" | "delete" | "replace" | "log";
  /** Lowercase. */
  name: string;
  /** add, replace: the value written; log: the value the rule expected ("" = presence only); delete: "". */
  value: string;
  /** The request's value (all its fields joined with ",") that a DELETE removed or a REPLACE overwrote. */
  rejected?: string;
}

export interface HttpVerdict {
  allowed: boolean;
  /** Allowed by something that constrains nothing (`http: [{}]`, an L4-only allow, no L7 set): visibility. */
  visibilityOnly: boolean;
  /** The rule that allowed (as flows name it); "" when denied or no set applies. */
  rule: string;
  /** Header actions of every rule that matched (empty when denied). */
  edits: readonly HeaderEdit[];
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
const DENIED: HttpVerdict = Object.freeze({ allowed: false, visibilityOnly: false, rule: "", edits: NONE });
const NO_POLICY: HttpVerdict = Object.freeze({ allowed: true, visibilityOnly: true, rule: "", edits: NONE });

interface SoftMatch {
  name: string;
  /** "" = presence only (Cilium treats an empty value so). */
  value: string;
  action: MismatchAction;
}

interface Rule {
  /** Method, path, host, headers and the headerMatches without an action: all must match. */
  strict: CompiledHttpRule;
  /** headerMatches with a mismatch action: checked, then acted upon, when `strict` matched. */
  soft: SoftMatch[];
  verdict: HttpVerdict;
}

interface Entry {
  scope: number;
  allowAll: boolean;
  rules: Rule[];
  verdict: HttpVerdict;
}

/**
 * Splits a compiled rule: headerMatches with a mismatch action leave the match and become soft
 * checks. One this proxy cannot enforce as written (see headerActionRefusal) stays strict: a
 * mismatch then denies (fail closed).
 */
function splitRule(rule: CompiledHttpRule, ruleId: string): Rule {
  const doc = rule.doc;
  const soft: SoftMatch[] = [];
  const strictMatches: NonNullable<HttpRuleDoc["headerMatches"]> = [];
  for (const h of doc.headerMatches ?? []) {
    const action = h.mismatch?.toUpperCase() ?? "";
    if (action && headerActionRefusal(h.name, action, h.value) === undefined)
      soft.push({ name: h.name.toLowerCase(), value: h.value ?? "", action: action as MismatchAction });
    else strictMatches.push(h);
  }
  // The matcher's own compilation of what must match, whatever its internal shape.
  const strict = soft.length ? compileHttpRule({ ...doc, headerMatches: strictMatches }) : rule;
  const visibilityOnly = !doc.method && !doc.path && !doc.host && !doc.headers?.length && !doc.headerMatches?.length;
  return { strict, soft, verdict: Object.freeze({ allowed: true, visibilityOnly, rule: ruleId, edits: NONE }) };
}

/** The request as the matcher reads it; header values are replaced as mismatch actions run. */
type Scratch = { method: string; path: string; host: string; headers: Record<string, string | undefined> };

export class HttpPolicy {
  /** Allows everything: the direction has no L7 rules on this port (the L3/L4 verdict stands). */
  static readonly none = new HttpPolicy([], false, [], false);
  private readonly entries: Entry[];
  private readonly denyAll: boolean;
  /** Header names any rule looks at: only these are read from the request. */
  private readonly headerNames: string[];
  /** Some rule has mismatch actions: every matching rule runs (as Cilium), no early return. */
  private readonly actions: boolean;
  private readonly scratch: Scratch = { method: "", path: "", host: "", headers: {} };

  private constructor(entries: Entry[], denyAll: boolean, headerNames: string[], actions: boolean) {
    this.entries = entries;
    this.denyAll = denyAll;
    this.headerNames = headerNames;
    this.actions = actions;
  }

  /**
   * `set` is the compiled L7 set of (port, direction) for the subject; undefined = no L7 rules here.
   * A set of another protocol, or a conflict of two, refuses every request (fail closed).
   */
  static compile(set: L7Set | undefined): HttpPolicy {
    if (!set) return HttpPolicy.none;
    if (set.kind !== "http") return new HttpPolicy([], true, [], false);
    const names = new Set<string>();
    let actions = false;
    const entries: Entry[] = set.entries.map((e) => {
      const rules = e.l7?.kind === "http" ? e.l7.rules.map((r) => splitRule(r, e.rule)) : [];
      for (const r of rules) {
        for (const h of r.strict.headers) names.add(h.name);
        for (const s of r.soft) names.add(s.name);
        if (r.soft.length) actions = true;
      }
      return {
        scope: e.scope,
        allowAll: e.allowAll,
        rules,
        verdict: Object.freeze({ allowed: true, visibilityOnly: true, rule: e.rule, edits: NONE }),
      };
    });
    return new HttpPolicy(entries, false, [...names], actions);
  }

  /** The verdict for a request of `peer` (remote identity). */
  decide(peer: number, req: PolicyRequest): HttpVerdict {
    if (this.denyAll) return DENIED;
    if (this === HttpPolicy.none) return NO_POLICY;
    const m = this.scratch;
    m.method = req.method;
    m.path = req.path;
    m.host = req.authority;
    for (const n of this.headerNames) m.headers[n] = req.headers.get(n);
    if (this.actions) return this.decideWithActions(peer);
    for (const e of this.entries) {
      if (e.scope !== 0 && e.scope !== peer) continue;
      if (e.allowAll) return e.verdict;
      for (const r of e.rules) if (matchHttp(r.strict, m as HttpRequest)) return r.verdict;
    }
    return DENIED;
  }

  /**
   * Cilium's order when a rule has header actions: every entry of the peer and every rule whose
   * strict part matches runs its actions, in order, each seeing the headers as the ones before left
   * them; the request passes when any of them allows. The first allowing rule names the verdict.
   */
  private decideWithActions(peer: number): HttpVerdict {
    const m = this.scratch;
    let first: HttpVerdict | undefined;
    let edits: HeaderEdit[] | undefined;
    for (const e of this.entries) {
      if (e.scope !== 0 && e.scope !== peer) continue;
      if (e.allowAll) {
        first ??= e.verdict;
        continue;
      }
      for (const r of e.rules) {
        if (!matchHttp(r.strict, m as HttpRequest)) continue;
        first ??= r.verdict;
        for (const s of r.soft) {
          const edit = runAction(s, m.headers);
          if (edit) (edits ??= []).push(edit);
        }
      }
    }
    if (!first) return DENIED;
    return edits ? { allowed: true, visibilityOnly: false, rule: first.rule, edits } : first;
  }
}

/**
 * One headerMatch with a mismatch action against the headers as they stand (`view`, by lowercase
 * name, updated in place): nothing when it matches; otherwise what Cilium's proxy does
 * (cilium/proxy, cilium/network_policy.cc, HeaderMatch::allowed).
 */
function runAction(s: SoftMatch, view: Record<string, string | undefined>): HeaderEdit | undefined {
  const cur = view[s.name];
  const presence = s.value === "";
  if (presence ? cur !== undefined : cur === s.value) return undefined;
  switch (s.action) {
    case "LOG":
      return { op: "log", name: s.name, value: s.value };
    case "ADD":
      view[s.name] = cur === undefined ? s.value : `${cur},${s.value}`;
      return { op: "add", name: s.name, value: s.value };
    case "DELETE":
      // A failed presence match has nothing to remove, nor has an absent header.
      if (presence || cur === undefined) return undefined;
      view[s.name] = undefined;
      return { op: "delete", name: s.name, value: "", rejected: cur };
    case "REPLACE":
      view[s.name] = s.value;
      return cur === undefined ? { op: "replace", name: s.name, value: s.value } : { op: "replace", name: s.name, value: s.value, rejected: cur };
  }
}

/**
 * The net effect of the edits on the upstream request (HTTP/1): names whose received fields go, and
 * the field lines to append. Applied in order, so an ADD after a DELETE of the same name survives.
 */
export function editPlan(edits: readonly HeaderEdit[]): { drop: string[]; add: string } {
  const state = new Map<string, { drop: boolean; values: string[] }>();
  for (const e of edits) {
    if (e.op === "log") continue;
    let s = state.get(e.name);
    if (!s) state.set(e.name, (s = { drop: false, values: [] }));
    if (e.op === "add") s.values.push(e.value);
    else {
      s.drop = true;
      s.values = e.op === "replace" ? [e.value] : [];
    }
  }
  const drop: string[] = [];
  let add = "";
  for (const [name, s] of state) {
    if (s.drop) drop.push(name);
    for (const v of s.values) add += `${name}: ${v}\r\n`;
  }
  return { drop, add };
}

/** Applies the edits, in order, to an HTTP/2 header object (lowercase names; several values as a list). */
export function applyEdits(out: Record<string, string | string[] | number | undefined>, edits: readonly HeaderEdit[]): void {
  for (const e of edits) {
    if (e.op === "log") continue;
    if (e.op === "delete") {
      delete out[e.name];
      continue;
    }
    const cur = e.op === "add" ? out[e.name] : undefined;
    out[e.name] = cur === undefined ? e.value : [...(Array.isArray(cur) ? cur : [String(cur)]), e.value];
  }
}

const NO_HEADER_LOG: Pick<L7Http, "missing_headers" | "rejected_headers"> = Object.freeze({});

/** What an L7 flow records of the header actions (Cilium's access log: missing and rejected headers). */
export function headerActionLog(edits: readonly HeaderEdit[] | undefined): Pick<L7Http, "missing_headers" | "rejected_headers"> {
  if (!edits?.length) return NO_HEADER_LOG;
  const missing: HttpHeader[] = [];
  const rejected: HttpHeader[] = [];
  for (const e of edits) {
    if (e.rejected !== undefined) rejected.push({ key: e.name, value: e.rejected });
    if (e.op !== "delete") missing.push({ key: e.name, value: e.value });
  }
  return { ...(missing.length ? { missing_headers: missing } : {}), ...(rejected.length ? { rejected_headers: rejected } : {}) };
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
