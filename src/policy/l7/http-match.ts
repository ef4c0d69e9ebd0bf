// HTTP rules of a policy (method, path, host as RE2 regexes, full match; headers and headerMatches):
// validation, compilation and matching a request. RE2 runs in linear time, so no pattern or request
// can stall a worker; literal patterns skip the engine (literal.ts). Pure: no I/O.

import { RE2JS } from "re2js";
import { headerActionRefusal } from "./header-actions.ts";
import { literalPlan } from "./literal.ts";

export interface HttpRuleDoc {
  method?: string;
  path?: string;
  host?: string;
  headers?: string[];
  headerMatches?: { name: string; value?: string; secret?: unknown; mismatch?: string }[];
}

export interface HttpRequest {
  method: string;
  path: string;
  host?: string;
  headers?: Record<string, string>;
}

/**
 * One method, path or host pattern: RE2 full-match semantics, decided by a literal check when the
 * pattern reduces to one (`GET`, `GET|HEAD`, `/public/.*`), else by the engine behind a required
 * literal prefix when there is one (`/api/v[0-9]+/.*` needs `/api/v`).
 */
export class Re2Field {
  readonly source: string;
  readonly re: RE2JS;
  /** Decides alone, exactly as the engine would; undefined when the pattern does not reduce. */
  readonly literal: ((s: string) => boolean) | undefined;
  /** Every match starts with it ("" = no pre-filter). */
  readonly prefix: string;

  constructor(source: string, re: RE2JS) {
    this.source = source;
    this.re = re;
    const plan = literalPlan(source);
    this.literal = plan.kind === "exact" ? plan.test : undefined;
    this.prefix = plan.kind === "prefix" ? plan.prefix : "";
  }

  matches(s: string): boolean {
    const literal = this.literal;
    if (literal !== undefined) return literal(s);
    if (this.prefix !== "" && !s.startsWith(this.prefix)) return false;
    return this.re.matches(s);
  }
}

export interface CompiledHttpRule {
  doc: HttpRuleDoc;
  method?: Re2Field;
  path?: Re2Field;
  host?: Re2Field;
  headers: { name: string; value?: string }[];
}

export interface FieldProblem {
  path: string;
  reason: string;
}

/** Compiles a Go/RE2 regex; returns the reason text when it is not one. */
export function compileRe2(pattern: string): RE2JS | string {
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    return `invalid RE2 regular expression: ${(err as Error).message}`;
  }
}

/** "X-Token: abc" → {x-token, abc}; "X-Token" → presence only. */
export function parseHeaderLine(line: string): { name: string; value?: string } | undefined {
  const m = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?::\s*(.*?))?\s*$/.exec(line) ?? /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s+(.*?)\s*$/.exec(line);
  if (!m?.[1]) return undefined;
  return m[2] === undefined ? { name: m[1].toLowerCase() } : { name: m[1].toLowerCase(), value: m[2] };
}

export function validateHttpRule(rule: HttpRuleDoc, at: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const f of ["method", "path", "host"] as const) {
    const v = rule[f];
    if (v === undefined) continue;
    const r = compileRe2(v);
    if (typeof r === "string") out.push({ path: `${at}.${f}`, reason: r });
  }
  (rule.headers ?? []).forEach((h, i) => {
    if (!parseHeaderLine(h)) out.push({ path: `${at}.headers[${i}]`, reason: `"${h}" is not a header name, nor "Name: value"` });
  });
  (rule.headerMatches ?? []).forEach((h, i) => {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h.name)) out.push({ path: `${at}.headerMatches[${i}].name`, reason: `"${h.name}" is not an HTTP header name` });
  });
  return out;
}

export function compileHttpRule(doc: HttpRuleDoc): CompiledHttpRule {
  const re = (p: string | undefined) => {
    if (p === undefined) return undefined;
    const r = compileRe2(p);
    if (typeof r === "string") throw new Error(r); // validated before: unreachable for accepted policies
    return new Re2Field(p, r);
  };
  const headers = (doc.headers ?? []).map(parseHeaderLine).filter((h) => h !== undefined);
  // A headerMatch with an enforceable mismatch action never fails its rule (the proxy logs or edits
  // instead); an empty value asks only for the header's presence (Cilium's semantics).
  for (const h of doc.headerMatches ?? []) {
    if (h.mismatch && headerActionRefusal(h.name, h.mismatch.toUpperCase(), h.value) === undefined) continue;
    headers.push({ name: h.name.toLowerCase(), ...(h.value ? { value: h.value } : {}) });
  }
  return { doc, method: re(doc.method), path: re(doc.path), host: re(doc.host), headers };
}

export function matchHttp(rule: CompiledHttpRule, req: HttpRequest): boolean {
  if (rule.method && !rule.method.matches(req.method)) return false;
  if (rule.path && !rule.path.matches(req.path)) return false;
  if (rule.host && !rule.host.matches(req.host ?? "")) return false;
  if (rule.headers.length) {
    const headers = req.headers ?? {};
    // The proxy passes lowercase names already: read them in place; otherwise lowercase a copy
    // (the last of two names differing in case wins, as before).
    let lowercase = true;
    for (const k in headers) if (hasUpper(k)) lowercase = false;
    const lower = lowercase ? undefined : new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    for (const h of rule.headers) {
      const v = lower ? lower.get(h.name) : Object.hasOwn(headers, h.name) ? headers[h.name] : undefined;
      if (v === undefined || (h.value !== undefined && v !== h.value)) return false;
    }
  }
  return true;
}

function hasUpper(k: string): boolean {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c > 127) return true;
  }
  return false;
}
