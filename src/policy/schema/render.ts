// CRD YAML text for the chart, rendered from the schemas. Pure: no I/O.

import YAML from "yaml";
import { CRD_FILES, customResourceDefinition } from "./documents.ts";

export function renderCrdFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, kind] of Object.entries(CRD_FILES)) {
    const header = "# Generated from src/policy/schema by src/policy/schema/write-crds.ts: do not edit by hand.\n";
    out[file] = header + YAML.stringify(customResourceDefinition(kind), { lineWidth: 0 });
  }
  return out;
}
