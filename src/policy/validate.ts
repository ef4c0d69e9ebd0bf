// Validates policy documents: the kind's JSON Schema first (unknown fields refused), then what a
// schema cannot say (CIDRs, ports, regexes, rule combinations), then what Weft does not enforce yet
// (refused as WEFT_POLICY_UNSUPPORTED, never accepted and ignored). Every problem names its JSON
// path; all problems of a document are reported, not only the first. Pure: no I/O.

import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { WeftError } from "../core/errors.ts";
import { cidrContains, parseCidr } from "./cidr.ts";
import { validateDnsRule } from "./l7/dns.ts";
import { headerActionRefusal } from "./l7/header-actions.ts";
import { validateHttpRule } from "./l7/http-match.ts";
import { validateKafkaRule } from "./l7/kafka.ts";
import type { CiliumRuleDoc, KubeNetworkPolicy, NetworkPolicyPeerDoc, PeerRuleDoc, Policy, PolicySource } from "./model.ts";
import { type Problem, parseDocuments } from "./parse.ts";
import { icmpType, isNumericPort, isPortName } from "./ports.ts";
import { closeObjects, documentSchema, POLICY_KINDS, type PolicyKind } from "./schema/documents.ts";
import type { LabelSelectorDoc } from "./selectors.ts";

export type { Problem } from "./parse.ts";

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
ajv.addFormat("int32", true);
const validators = new Map<PolicyKind, ValidateFunction>();
function validatorFor(kind: PolicyKind): ValidateFunction {
  let v = validators.get(kind);
  if (!v) {
    v = ajv.compile(closeObjects(documentSchema(kind)) as object);
    validators.set(kind, v);
  }
  return v;
}

/** `/spec/ingress/0/toPorts` → `spec.ingress[0].toPorts`. */
export function jsonPath(pointer: string): string {
  let out = "";
  for (const part of pointer.split("/").slice(1)) {
    const seg = part.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

const join = (path: string, field: string) => (path ? `${path}.${field}` : field);

function schemaProblems(errors: ErrorObject[]): { path: string; reason: string }[] {
  const out: { path: string; reason: string }[] = [];
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === "anyOf").map((e) => e.instancePath));
  for (const e of errors) {
    const path = jsonPath(e.instancePath);
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case "additionalProperties": {
        const field = String(p.additionalProperty);
        const known = Object.keys(((e.parentSchema as { properties?: object } | undefined)?.properties ?? {}) as object);
        out.push({ path: join(path, field), reason: unknownFieldReason(field, path, known) });
        break;
      }
      case "required":
        out.push({ path: join(path, String(p.missingProperty)), reason: "required field is missing" });
        break;
      case "enum":
        out.push({ path, reason: `must be one of: ${(p.allowedValues as unknown[]).join(", ")}` });
        break;
      case "type":
        if (anyOfPaths.has(e.instancePath)) break;
        out.push({
          path,
          reason: `must be ${p.type === "object" ? "an object" : p.type === "array" ? "a list" : `a ${p.type}`}${p.type === "string" && /\.port$/.test(path) ? ' (quote port numbers: "80")' : ""}`,
        });
        break;
      case "anyOf":
        out.push({ path, reason: "must be an integer or a string" });
        break;
      case "pattern":
        out.push({ path, reason: /\.port$/.test(path) ? "is not a port number (0-65535) or a port name" : `does not match ${p.pattern}` });
        break;
      default:
        out.push({ path, reason: e.message ?? "invalid" });
    }
  }
  const seen = new Set<string>();
  return out.filter((x) => {
    const k = `${x.path}\n${x.reason}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Edit distance, for "did you mean" on unknown fields. */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
    prev = cur;
  }
  return prev[b.length] ?? 99;
}

function unknownFieldReason(field: string, path: string, known: string[]): string {
  if (field === "rules" && /Deny\[\d+\]\.toPorts\[\d+\]$/.test(path)) return 'unknown field "rules": deny rules match ports only, they cannot carry L7 rules';
  if (field === "toFQDNs" && /^(spec|specs\[\d+\])\.ingress/.test(path)) return 'unknown field "toFQDNs": FQDN selectors apply to egress only';
  if (field === "toFQDNs" && /egressDeny/.test(path)) return 'unknown field "toFQDNs": FQDN selectors are not allowed in deny rules';
  const best = known.map((k) => ({ k, d: distance(field, k) })).sort((x, y) => x.d - y.d)[0];
  return `unknown field "${field}"${best && best.d <= 2 ? ` (did you mean "${best.k}"?)` : ""}`;
}

type Push = (code: Problem["code"], path: string, reason: string) => void;

function checkSelector(sel: LabelSelectorDoc | undefined, at: string, push: Push): void {
  if (!sel) return;
  for (const [k] of Object.entries(sel.matchLabels ?? {})) if (!k) push("WEFT_POLICY_INVALID", `${at}.matchLabels`, "a label key is empty");
  (sel.matchExpressions ?? []).forEach((e, i) => {
    const vals = e.values ?? [];
    if ((e.operator === "In" || e.operator === "NotIn") && vals.length === 0)
      push("WEFT_POLICY_INVALID", `${at}.matchExpressions[${i}].values`, `operator ${e.operator} needs at least one value`);
    if ((e.operator === "Exists" || e.operator === "DoesNotExist") && vals.length > 0)
      push("WEFT_POLICY_INVALID", `${at}.matchExpressions[${i}].values`, `operator ${e.operator} takes no values`);
    if (!e.key) push("WEFT_POLICY_INVALID", `${at}.matchExpressions[${i}].key`, "a label key is empty");
  });
}

function checkCidr(text: string, at: string, push: Push): ReturnType<typeof parseCidr> {
  const c = parseCidr(text);
  if (typeof c === "string") push("WEFT_POLICY_INVALID", at, `"${text}": ${c}`);
  return c;
}

const L3_FIELDS = {
  ingress: ["fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes", "fromGroups"],
  egress: ["toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toNodes", "toGroups", "toServices", "toFQDNs"],
} as const;

const UNSUPPORTED_ENTITIES: Record<string, string> = {
  ingress: "the ingress entity (Cilium's Ingress controller) has no Weft counterpart yet",
  "world-ipv4": "world-ipv4 is not enforced yet: use world, or toCIDR 0.0.0.0/0",
  "world-ipv6": "world-ipv6 is not enforced yet: use world, or toCIDR ::/0",
};

function checkPeerRule(r: PeerRuleDoc, at: string, dir: "ingress" | "egress", push: Push): void {
  const side = dir === "ingress" ? "from" : "to";
  const rec = r as Record<string, unknown>;
  const present = L3_FIELDS[dir].filter((f) => Array.isArray(rec[f]) && (rec[f] as unknown[]).length > 0);
  if (present.length > 1)
    push("WEFT_POLICY_INVALID", at, `combining ${present.join(" and ")} in one rule is not supported (as in Cilium): write one rule for each`);
  const unsupported: [string, string][] = [
    [`${side}Requires`, `${side}Requires is deprecated in Cilium and not enforced by Weft: add the labels to ${side}Endpoints selectors instead`],
    [`${side}Groups`, `${side}Groups (cloud provider groups) is not enforced by Weft`],
    [`${side}Nodes`, `${side}Nodes (node selectors as peers) is not enforced by Weft yet: use the remote-node or host entity`],
    ["toServices", "toServices is not enforced by Weft yet: select the service's endpoints with toEndpoints or toCIDR"],
  ];
  for (const [f, reason] of unsupported) if (rec[f] !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${at}.${f}`, reason);
  if (r.authentication && r.authentication.mode !== "disabled")
    push("WEFT_POLICY_UNSUPPORTED", `${at}.authentication`, "mutual authentication is not enforced by Weft yet");
  const eps = dir === "ingress" ? r.fromEndpoints : r.toEndpoints;
  (eps ?? []).forEach((s, i) => {
    checkSelector(s, `${at}.${side}Endpoints[${i}]`, push);
  });
  const cidrs = dir === "ingress" ? r.fromCIDR : r.toCIDR;
  (cidrs ?? []).forEach((c, i) => {
    checkCidr(c, `${at}.${side}CIDR[${i}]`, push);
  });
  const sets = dir === "ingress" ? r.fromCIDRSet : r.toCIDRSet;
  (sets ?? []).forEach((s, i) => {
    const p = `${at}.${side}CIDRSet[${i}]`;
    if (s.cidrGroupRef !== undefined)
      push("WEFT_POLICY_UNSUPPORTED", `${p}.cidrGroupRef`, "CiliumCIDRGroup references are not enforced by Weft yet: write the prefixes in cidr");
    if (s.cidrGroupSelector !== undefined)
      push("WEFT_POLICY_UNSUPPORTED", `${p}.cidrGroupSelector`, "CiliumCIDRGroup selectors are not enforced by Weft yet: write the prefixes in cidr");
    if (s.cidr === undefined) {
      if (s.cidrGroupRef === undefined && s.cidrGroupSelector === undefined) push("WEFT_POLICY_INVALID", `${p}.cidr`, "required field is missing");
      return;
    }
    const outer = checkCidr(s.cidr, `${p}.cidr`, push);
    (s.except ?? []).forEach((e, j) => {
      const inner = checkCidr(e, `${p}.except[${j}]`, push);
      if (typeof outer !== "string" && typeof inner !== "string" && !cidrContains(outer, inner))
        push("WEFT_POLICY_INVALID", `${p}.except[${j}]`, `"${e}" is not inside ${outer.text}`);
    });
  });
  const ents = dir === "ingress" ? r.fromEntities : r.toEntities;
  (ents ?? []).forEach((e, i) => {
    const why = UNSUPPORTED_ENTITIES[e];
    if (why) push("WEFT_POLICY_UNSUPPORTED", `${at}.${side}Entities[${i}]`, why);
  });
  (r.toFQDNs ?? []).forEach((f, i) => {
    for (const p of validateDnsRule(f, `${at}.toFQDNs[${i}]`)) push("WEFT_POLICY_INVALID", p.path, p.reason);
  });
  if (r.icmps?.length && r.toPorts?.length)
    push("WEFT_POLICY_INVALID", `${at}.icmps`, "icmps and toPorts cannot be combined in one rule (as in Cilium): write one rule for each");
  (r.icmps ?? []).forEach((ic, i) => {
    (ic.fields ?? []).forEach((f, j) => {
      const t = icmpType(f.family ?? "IPv4", f.type);
      if (typeof t === "string") push("WEFT_POLICY_INVALID", `${at}.icmps[${i}].fields[${j}].type`, t);
    });
  });
  (r.toPorts ?? []).forEach((pr, j) => {
    const p = `${at}.toPorts[${j}]`;
    const ports = pr.ports ?? [];
    for (const f of ["terminatingTLS", "originatingTLS"] as const)
      if (pr[f] !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${p}.${f}`, "TLS interception is not enforced by Weft yet");
    if (pr.serverNames !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${p}.serverNames`, "SNI (serverNames) matching is not enforced by Weft yet");
    if (pr.listener !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${p}.listener`, "redirecting to a CiliumEnvoyConfig listener is not supported by Weft yet");
    ports.forEach((pp, k) => {
      const q = `${p}.ports[${k}]`;
      if (pp.protocol === "ICMP" || pp.protocol === "ICMPV6")
        push("WEFT_POLICY_UNSUPPORTED", `${q}.protocol`, `${pp.protocol} in toPorts is not enforced by Weft: use icmps`);
      const numeric = isNumericPort(pp.port);
      if (!numeric && !isPortName(pp.port)) push("WEFT_POLICY_INVALID", `${q}.port`, `"${pp.port}" is not a port number or a port name`);
      if (pp.endPort !== undefined && pp.endPort !== 0) {
        if (!numeric) push("WEFT_POLICY_INVALID", `${q}.endPort`, "endPort needs a numeric port");
        else if (Number(pp.port) === 0) push("WEFT_POLICY_INVALID", `${q}.endPort`, 'endPort with port "0" (all ports) makes no range');
        else if (pp.endPort < Number(pp.port)) push("WEFT_POLICY_INVALID", `${q}.endPort`, `endPort ${pp.endPort} is below port ${pp.port}`);
      }
    });
    const rules = pr.rules;
    if (!rules) {
      if (!ports.length) push("WEFT_POLICY_INVALID", `${p}.ports`, "a toPorts entry needs at least one port");
      return;
    }
    const kinds = (["http", "kafka", "dns", "l7proto"] as const).filter((k) => rules[k] !== undefined);
    if (rules.l7 !== undefined && !kinds.includes("l7proto")) kinds.push("l7proto");
    if (kinds.length > 1) push("WEFT_POLICY_INVALID", `${p}.rules`, `only one L7 protocol per port rule: found ${kinds.join(", ")}`);
    if (rules.l7proto !== undefined || rules.l7 !== undefined)
      push("WEFT_POLICY_UNSUPPORTED", `${p}.rules.${rules.l7proto !== undefined ? "l7proto" : "l7"}`, "generic L7 (l7proto) parsers are not supported by Weft");
    if (!kinds.length) return;
    if (!ports.length) push("WEFT_POLICY_INVALID", `${p}.ports`, "L7 rules need at least one port");
    ports.forEach((pp, k) => {
      const q = `${p}.ports[${k}]`;
      if (pp.endPort !== undefined && pp.endPort !== 0 && String(pp.endPort) !== pp.port)
        push("WEFT_POLICY_UNSUPPORTED", `${q}.endPort`, "L7 rules on a port range are not supported: list the ports");
      if (pp.port === "0" || /^0+$/.test(pp.port))
        push("WEFT_POLICY_UNSUPPORTED", `${q}.port`, 'L7 rules on port "0" (all ports) are not supported: name the port');
      if ((rules.http || rules.kafka) && (pp.protocol === "UDP" || pp.protocol === "SCTP"))
        push("WEFT_POLICY_INVALID", `${q}.protocol`, `${rules.http ? "HTTP" : "Kafka"} rules need TCP, not ${pp.protocol}`);
    });
    (rules.http ?? []).forEach((h, i) => {
      const q = `${p}.rules.http[${i}]`;
      for (const x of validateHttpRule(h, q)) push("WEFT_POLICY_INVALID", x.path, x.reason);
      (h.headerMatches ?? []).forEach((m, k) => {
        if (m.secret !== undefined)
          push("WEFT_POLICY_UNSUPPORTED", `${q}.headerMatches[${k}].secret`, "header values from Secrets are not supported by Weft yet");
        // LOG, ADD, DELETE, REPLACE are enforced by the proxy (src/proxy/filters/l7-policy.ts), except
        // edits of framing, hop-by-hop and forwarding headers, and values no header field can carry.
        const refusal = m.mismatch ? headerActionRefusal(m.name, m.mismatch, m.value) : undefined;
        if (refusal) push(refusal.invalid ? "WEFT_POLICY_INVALID" : "WEFT_POLICY_UNSUPPORTED", `${q}.headerMatches[${k}].${refusal.field}`, refusal.reason);
      });
    });
    (rules.kafka ?? []).forEach((kr, i) => {
      for (const x of validateKafkaRule(kr, `${p}.rules.kafka[${i}]`)) push("WEFT_POLICY_INVALID", x.path, x.reason);
    });
    if (rules.dns !== undefined && dir === "ingress")
      push("WEFT_POLICY_INVALID", `${p}.rules.dns`, "DNS rules apply to egress only (the DNS proxy sees a pod's queries)");
    (rules.dns ?? []).forEach((d, i) => {
      for (const x of validateDnsRule(d, `${p}.rules.dns[${i}]`)) push("WEFT_POLICY_INVALID", x.path, x.reason);
    });
  });
}

function checkCiliumRule(rule: CiliumRuleDoc, at: string, push: Push): void {
  if (rule.endpointSelector === undefined && rule.nodeSelector === undefined)
    push("WEFT_POLICY_INVALID", `${at}.endpointSelector`, "one of endpointSelector or nodeSelector is required");
  if (rule.endpointSelector !== undefined && rule.nodeSelector !== undefined)
    push("WEFT_POLICY_INVALID", `${at}.nodeSelector`, "endpointSelector and nodeSelector are mutually exclusive");
  if (rule.nodeSelector !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${at}.nodeSelector`, "host policies (nodeSelector) are not enforced by Weft yet");
  if (rule.log !== undefined) push("WEFT_POLICY_UNSUPPORTED", `${at}.log`, "policy log annotations are not supported by Weft yet");
  checkSelector(rule.endpointSelector, `${at}.endpointSelector`, push);
  for (const section of ["ingress", "ingressDeny", "egress", "egressDeny"] as const) {
    const dir = section.startsWith("ingress") ? "ingress" : "egress";
    (rule[section] ?? []).forEach((r, i) => {
      checkPeerRule(r, `${at}.${section}[${i}]`, dir, push);
    });
  }
}

function checkNetworkPolicyPeer(peer: NetworkPolicyPeerDoc, at: string, push: Push): void {
  if (!peer.podSelector && !peer.namespaceSelector && !peer.ipBlock) push("WEFT_POLICY_INVALID", at, "a peer needs podSelector, namespaceSelector or ipBlock");
  if (peer.ipBlock && (peer.podSelector || peer.namespaceSelector))
    push("WEFT_POLICY_INVALID", `${at}.ipBlock`, "ipBlock cannot be combined with podSelector or namespaceSelector");
  checkSelector(peer.podSelector, `${at}.podSelector`, push);
  checkSelector(peer.namespaceSelector, `${at}.namespaceSelector`, push);
  if (peer.ipBlock) {
    const outer = parseCidr(peer.ipBlock.cidr, false);
    if (typeof outer === "string" || !peer.ipBlock.cidr.includes("/"))
      push("WEFT_POLICY_INVALID", `${at}.ipBlock.cidr`, `"${peer.ipBlock.cidr}": ${typeof outer === "string" ? outer : "a CIDR needs a prefix length"}`);
    (peer.ipBlock.except ?? []).forEach((e, j) => {
      const inner = parseCidr(e);
      if (typeof inner === "string") push("WEFT_POLICY_INVALID", `${at}.ipBlock.except[${j}]`, `"${e}": ${inner}`);
      else if (typeof outer !== "string" && (!cidrContains(outer, inner) || inner.bits === outer.bits))
        push("WEFT_POLICY_INVALID", `${at}.ipBlock.except[${j}]`, `"${e}" is not strictly inside ${outer.text}`);
    });
  }
}

function checkNetworkPolicy(np: KubeNetworkPolicy, push: Push): void {
  const spec = np.spec;
  checkSelector(spec.podSelector, "spec.podSelector", push);
  const types = spec.policyTypes ?? [];
  if (new Set(types).size !== types.length) push("WEFT_POLICY_INVALID", "spec.policyTypes", "a policy type is listed twice");
  for (const dir of ["ingress", "egress"] as const) {
    (spec[dir] ?? []).forEach((r, i) => {
      const peers = dir === "ingress" ? (r as { from?: NetworkPolicyPeerDoc[] }).from : (r as { to?: NetworkPolicyPeerDoc[] }).to;
      (peers ?? []).forEach((p, j) => {
        checkNetworkPolicyPeer(p, `spec.${dir}[${i}].${dir === "ingress" ? "from" : "to"}[${j}]`, push);
      });
      (r.ports ?? []).forEach((pp, j) => {
        const at = `spec.${dir}[${i}].ports[${j}]`;
        if (typeof pp.port === "number" && (!Number.isInteger(pp.port) || pp.port < 1 || pp.port > 65535))
          push("WEFT_POLICY_INVALID", `${at}.port`, `${pp.port} is not a port in 1..65535`);
        if (typeof pp.port === "string" && !isPortName(pp.port))
          push("WEFT_POLICY_INVALID", `${at}.port`, `"${pp.port}" is not a port name (write numbers unquoted)`);
        if (pp.endPort !== undefined) {
          if (typeof pp.port !== "number") push("WEFT_POLICY_INVALID", `${at}.endPort`, "endPort needs a numeric port");
          else if (pp.endPort < pp.port) push("WEFT_POLICY_INVALID", `${at}.endPort`, `endPort ${pp.endPort} is below port ${pp.port}`);
        }
      });
    });
  }
}

export interface ValidationResult {
  policy?: Policy;
  problems: Problem[];
}

/** Validates one parsed document. `source` names where it came from for the problems. */
export function validateDocument(value: unknown, source: { file: string; document: number }): ValidationResult {
  const problems: Problem[] = [];
  const push: Push = (code, path, reason) => problems.push({ code, file: source.file, document: source.document, path, reason });
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    push("WEFT_POLICY_INVALID", "", "a policy document must be a YAML mapping");
    return { problems };
  }
  const doc = value as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: string; namespace?: string }; spec?: unknown; specs?: unknown };
  const kind = doc.kind;
  if (typeof kind !== "string" || !Object.hasOwn(POLICY_KINDS, kind)) {
    push(
      "WEFT_POLICY_INVALID",
      "kind",
      `${typeof kind === "string" ? `"${kind}"` : "a missing kind"} is not a policy kind (${Object.keys(POLICY_KINDS).join(", ")})`,
    );
    return { problems };
  }
  const k = kind as PolicyKind;
  const v = validatorFor(k);
  if (!v(value)) {
    for (const p of schemaProblems(v.errors ?? [])) push("WEFT_POLICY_INVALID", p.path, p.reason);
    return { problems };
  }
  const name = doc.metadata?.name as string;
  const src: PolicySource = { file: source.file, document: source.document };
  if (k === "NetworkPolicy") {
    const np: KubeNetworkPolicy = {
      kind: k,
      name,
      namespace: doc.metadata?.namespace ?? "default",
      spec: doc.spec as KubeNetworkPolicy["spec"],
      source: src,
      raw: value,
    };
    checkNetworkPolicy(np, push);
    return problems.length ? { problems } : { policy: np, problems };
  }
  const rules: { rule: CiliumRuleDoc; path: string }[] = [];
  if (doc.spec !== undefined) rules.push({ rule: doc.spec as CiliumRuleDoc, path: "spec" });
  ((doc.specs as CiliumRuleDoc[] | undefined) ?? []).forEach((r, i) => {
    rules.push({ rule: r, path: `specs[${i}]` });
  });
  if (!rules.length) push("WEFT_POLICY_INVALID", "spec", "one of spec or specs is required");
  for (const r of rules) checkCiliumRule(r.rule, r.path, push);
  if (problems.length) return { problems };
  const namespace = POLICY_KINDS[k].namespaced ? (doc.metadata?.namespace ?? "default") : undefined;
  return { policy: { kind: k as "CiliumNetworkPolicy", name, ...(namespace !== undefined ? { namespace } : {}), rules, source: src, raw: value }, problems };
}

/** Kinds that may sit beside policies in a file (trace reads them for namespace/pod labels). */
export const CONTEXT_KINDS = new Set(["Namespace", "Pod"]);

/** Validates every policy document in a file's text; context kinds are skipped, not refused. */
export function validateText(text: string, file: string): { policies: Policy[]; context: unknown[]; problems: Problem[] } {
  const { documents, problems } = parseDocuments(text, file);
  const policies: Policy[] = [];
  const context: unknown[] = [];
  for (const d of documents) {
    const kind = (d.value as { kind?: unknown } | null)?.kind;
    if (typeof kind === "string" && CONTEXT_KINDS.has(kind) && (d.value as { apiVersion?: unknown }).apiVersion === "v1") {
      context.push(d.value);
      continue;
    }
    const r = validateDocument(d.value, { file: d.file, document: d.document });
    problems.push(...r.problems);
    if (r.policy) policies.push(r.policy);
  }
  return { policies, context, problems };
}

export function problemWhere(p: Problem): string {
  const file = p.document > 1 ? `${p.file} (document ${p.document})` : p.file;
  return p.path ? `${file}: ${p.path}` : file;
}

export function problemError(p: Problem): WeftError {
  return new WeftError(p.code, p.reason, problemWhere(p));
}

/** Validates a cluster object (no file): the shape the manifest loader registers per kind. */
export function policyKindValidator(doc: unknown): { path: string; reason: string }[] {
  return validateDocument(doc, { file: "", document: 1 }).problems.map((p) => ({ path: p.path, reason: `${p.code}: ${p.reason}` }));
}
