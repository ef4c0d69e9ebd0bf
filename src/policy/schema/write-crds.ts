// Renders charts/weft/crds/*.yaml from the policy schemas. Run after changing a schema:
//   node --import tsx src/policy/schema/write-crds.ts
// (a unit test fails while the files and the schemas disagree).

import { writeFileSync } from "node:fs";
import { renderCrdFiles } from "./render.ts";

const dir = new URL("../../../charts/weft/crds/", import.meta.url);
for (const [file, text] of Object.entries(renderCrdFiles())) {
  writeFileSync(new URL(file, dir), text);
  process.stdout.write(`wrote charts/weft/crds/${file}\n`);
}
