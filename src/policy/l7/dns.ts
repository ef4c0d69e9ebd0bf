// DNS names and patterns, shared by DNS rules (rules.dns) and toFQDNs selectors: matchName (exact,
// case-insensitive) and matchPattern ("*" alone matches every name; elsewhere "*" matches DNS
// characters within one label). Patterns become RE2 regexes. Pure: no I/O.

import { RE2JS } from "re2js";
import type { FieldProblem } from "./http-match.ts";

export interface DnsRuleDoc {
  matchName?: string;
  matchPattern?: string;
}

export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

export function validateDnsRule(rule: DnsRuleDoc, at: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  if (rule.matchName === undefined && rule.matchPattern === undefined) out.push({ path: at, reason: "one of matchName or matchPattern is required" });
  if (rule.matchName !== undefined && !/^[-a-zA-Z0-9_]+(\.[-a-zA-Z0-9_]+)*\.?$/.test(rule.matchName))
    out.push({ path: `${at}.matchName`, reason: `"${rule.matchName}" is not a DNS name` });
  if (rule.matchPattern !== undefined && !/^[-a-zA-Z0-9_*]+(\.[-a-zA-Z0-9_*]+)*\.?$/.test(rule.matchPattern))
    out.push({ path: `${at}.matchPattern`, reason: `"${rule.matchPattern}" is not a DNS pattern (letters, digits, "-", "_", "*", ".")` });
  return out;
}

const patternCache = new Map<string, RE2JS>();

export function patternRegex(pattern: string): RE2JS {
  const p = normalizeName(pattern);
  let re = patternCache.get(p);
  if (!re) {
    const body =
      p === "*"
        ? ".*"
        : p
            .split("*")
            .map((s) => s.replace(/[.\\+?()[\]{}|^$]/g, "\\$&"))
            .join("[-a-z0-9_]*");
    re = RE2JS.compile(body);
    if (patternCache.size > 10_000) patternCache.clear();
    patternCache.set(p, re);
  }
  return re;
}

export function matchDns(rule: DnsRuleDoc, name: string): boolean {
  const n = normalizeName(name);
  if (rule.matchName !== undefined && normalizeName(rule.matchName) === n) return true;
  if (rule.matchPattern !== undefined && patternRegex(rule.matchPattern).matches(n)) return true;
  return false;
}
