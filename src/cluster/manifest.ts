// Reads Kubernetes manifests (multi-document YAML, `List` objects) and validates each document
// against its kind's schema. Pure apart from reading the files named. Errors name the file, the
// document, the JSON path and the reason; nothing is half-applied by a caller that checks first.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import YAML from "yaml";
import { WeftError, type WeftErrorCode } from "../core/errors.ts";
import { policyKindValidator } from "../policy/validate.ts";
import { workloadSchemas } from "./schema.ts";
import { CLUSTER_SCOPED, type K8sObject } from "./store.ts";

export interface ManifestProblem {
  file: string;
  document: number;
  path: string;
  reason: string;
  /** The stable error code; WEFT_MANIFEST_INVALID unless the kind's own validator says otherwise. */
  code?: WeftErrorCode;
}

/** Validators for kinds owned by other modules (the policy kinds), registered at start-up. */
export type KindValidator = (doc: unknown) => { path: string; reason: string; code?: WeftErrorCode }[];
const extraKinds = new Map<string, KindValidator>();

export function registerKind(kind: string, validate: KindValidator): void {
  extraKinds.set(kind, validate);
}

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new Map<string, ValidateFunction>();
function validatorFor(kind: string): ValidateFunction | undefined {
  const schema = workloadSchemas[kind];
  if (!schema) return undefined;
  let v = compiled.get(kind);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(kind, v);
  }
  return v;
}

export function knownKinds(): string[] {
  return [...Object.keys(workloadSchemas), ...extraKinds.keys()].sort();
}

/** `/spec/containers/0/name` → `spec.containers[0].name`. */
export function jsonPath(pointer: string): string {
  let out = "";
  for (const part of pointer.split("/").slice(1)) {
    const seg = part.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

function ajvProblems(errors: ErrorObject[]): { path: string; reason: string }[] {
  const seen = new Set<string>();
  const out: { path: string; reason: string }[] = [];
  for (const e of errors) {
    let path = jsonPath(e.instancePath);
    let reason = e.message ?? "invalid";
    if (e.keyword === "additionalProperties") {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      path = path ? `${path}.${extra}` : extra;
      reason = "unknown field";
    } else if (e.keyword === "enum") {
      reason = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(", ")}`;
    } else if (e.keyword === "propertyNames") {
      const name = (e.params as { propertyName: string }).propertyName;
      path = path ? `${path}.${name}` : name;
      reason = "invalid label key (want [prefix/]name: letters, digits, '-', '_', '.'; name at most 63 characters)";
    } else if (e.keyword === "pattern" && /labels|selector|nodeSelector/.test(path)) {
      reason = "invalid label value (at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric)";
    } else if (e.keyword === "required") {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      path = path ? `${path}.${missing}` : missing;
      reason = "required field missing";
    }
    const key = `${path}: ${reason}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ path: path || "(document)", reason });
    }
  }
  return out;
}

/** Validates one parsed document; returns its problems (empty when valid). */
export function validateDocument(doc: unknown): { path: string; reason: string; code?: WeftErrorCode }[] {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return [{ path: "(document)", reason: "a manifest must be a YAML mapping with apiVersion, kind and metadata" }];
  }
  const kind = (doc as { kind?: unknown }).kind;
  if (typeof kind !== "string") return [{ path: "kind", reason: "required field missing" }];
  const extra = extraKinds.get(kind);
  if (extra) return extra(doc);
  const validate = validatorFor(kind);
  if (!validate) return [{ path: "kind", reason: `unknown kind "${kind}" (known: ${knownKinds().join(", ")})` }];
  return validate(doc) ? [] : ajvProblems(validate.errors ?? []);
}

/** Parses manifest text; `file` is used only in messages. */
export function parseManifests(text: string, file: string): { objects: K8sObject[]; problems: ManifestProblem[] } {
  const objects: K8sObject[] = [];
  const problems: ManifestProblem[] = [];
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  docs.forEach((d, i) => {
    const document = i + 1;
    if (d.errors.length > 0) {
      for (const e of d.errors) problems.push({ file, document, path: "(yaml)", reason: e.message.split("\n")[0] ?? e.message });
      return;
    }
    const value = d.toJS() as unknown;
    if (value === null || value === undefined) return; // empty document between separators
    const items =
      typeof value === "object" && (value as { kind?: string }).kind === "List" ? (((value as { items?: unknown[] }).items ?? []) as unknown[]) : [value];
    for (const item of items) {
      const found = validateDocument(item);
      if (found.length > 0) {
        for (const p of found) problems.push({ file, document, ...p });
        continue;
      }
      const o = item as K8sObject;
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace ??= "default";
      objects.push(o);
    }
  });
  return { objects, problems };
}

/** Lists manifest files: a file itself, or the *.yaml/*.yml/*.json files of a directory, sorted. */
export function manifestFiles(path: string): string[] {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw new WeftError("WEFT_NOT_FOUND", "no such file or directory", path);
  }
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => join(path, f));
}

export function formatProblems(problems: ManifestProblem[]): string {
  return problems.map((p) => `${p.code ?? "WEFT_MANIFEST_INVALID"}: ${p.file} (document ${p.document}): ${p.path}: ${p.reason}`).join("\n");
}

// The policy kinds are validated by the policy model (src/policy), whose problems carry their code.
for (const kind of ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"]) {
  registerKind(kind, (doc) =>
    policyKindValidator(doc).map((p) => {
      const m = /^(WEFT_[A-Z_]+): (.*)$/s.exec(p.reason);
      return m ? { path: p.path, reason: m[2] as string, code: m[1] as WeftErrorCode } : p;
    }),
  );
}

/** Reads and validates every manifest under `paths`; throws one WeftError listing every problem. */
export function loadManifests(paths: string[]): K8sObject[] {
  const objects: K8sObject[] = [];
  const problems: ManifestProblem[] = [];
  for (const p of paths) {
    for (const file of manifestFiles(p)) {
      const r = parseManifests(readFileSync(file, "utf8"), file);
      objects.push(...r.objects);
      problems.push(...r.problems);
    }
  }
  if (problems.length > 0) {
    const first = problems[0] as ManifestProblem;
    const code = first.code ?? "WEFT_MANIFEST_INVALID";
    const err = new WeftError(code, formatProblems(problems).slice(code.length + 2));
    Object.assign(err, { where: `${first.file} (document ${first.document}): ${first.path}` });
    throw err;
  }
  return objects;
}
