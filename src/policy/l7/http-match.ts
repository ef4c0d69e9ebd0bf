// HTTP rules of a policy (method, path, host as RE2 regexes, full match; headers and headerMatches):
// validation, compilation and matching a request. RE2 runs in linear time, so no pattern or request
// can stall a worker. Pure: no I/O.

import { RE2JS } from "re2js";

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

export interface CompiledHttpRule {
  doc: HttpRuleDoc;
  method?: RE2JS;
  path?: RE2JS;
  host?: RE2JS;
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
    return r;
  };
  const headers = (doc.headers ?? []).map(parseHeaderLine).filter((h) => h !== undefined);
  for (const h of doc.headerMatches ?? []) headers.push({ name: h.name.toLowerCase(), ...(h.value !== undefined ? { value: h.value } : {}) });
  return { doc, method: re(doc.method), path: re(doc.path), host: re(doc.host), headers };
}

export function matchHttp(rule: CompiledHttpRule, req: HttpRequest): boolean {
  if (rule.method && !rule.method.matches(req.method)) return false;
  if (rule.path && !rule.path.matches(req.path)) return false;
  if (rule.host && !rule.host.matches(req.host ?? "")) return false;
  if (rule.headers.length) {
    const lower = new Map(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    for (const h of rule.headers) {
      const v = lower.get(h.name);
      if (v === undefined || (h.value !== undefined && v !== h.value)) return false;
    }
  }
  return true;
}
