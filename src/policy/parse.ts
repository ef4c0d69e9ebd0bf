// Reads policy files' text into documents: multi-document YAML (and JSON), `kind: List` unwrapped.
// Syntax errors become problems with the file and the document; nothing here judges the contents.
// Pure: no I/O (callers read the files).

import YAML from "yaml";

export interface ParsedDocument {
  file: string;
  /** 1-based position in the file. */
  document: number;
  value: unknown;
}

export interface Problem {
  code: "WEFT_POLICY_INVALID" | "WEFT_POLICY_UNSUPPORTED";
  file: string;
  document: number;
  /** JSON path inside the document, e.g. spec.ingress[0].toPorts[0].ports[0].port; "" for the whole. */
  path: string;
  reason: string;
}

export function parseDocuments(text: string, file: string): { documents: ParsedDocument[]; problems: Problem[] } {
  const documents: ParsedDocument[] = [];
  const problems: Problem[] = [];
  let docs: YAML.Document.Parsed[];
  try {
    docs = YAML.parseAllDocuments(text, { uniqueKeys: true }) as YAML.Document.Parsed[];
  } catch (err) {
    problems.push({ code: "WEFT_POLICY_INVALID", file, document: 1, path: "", reason: `not YAML: ${(err as Error).message}` });
    return { documents, problems };
  }
  if (!Array.isArray(docs)) docs = [docs as YAML.Document.Parsed];
  let n = 0;
  for (const d of docs) {
    n++;
    if (d.errors.length) {
      problems.push({ code: "WEFT_POLICY_INVALID", file, document: n, path: "", reason: `not YAML: ${d.errors[0]?.message.split("\n")[0]}` });
      continue;
    }
    let value: unknown;
    try {
      value = d.toJS({ maxAliasCount: 100 });
    } catch (err) {
      problems.push({ code: "WEFT_POLICY_INVALID", file, document: n, path: "", reason: `not YAML: ${(err as Error).message}` });
      continue;
    }
    if (value === null || value === undefined) continue; // an empty document between separators
    const list = value as { kind?: unknown; items?: unknown };
    if (typeof value === "object" && !Array.isArray(value) && typeof list.kind === "string" && list.kind.endsWith("List") && Array.isArray(list.items)) {
      for (const item of list.items) documents.push({ file, document: n, value: item });
    } else documents.push({ file, document: n, value });
  }
  return { documents, problems };
}
