// A node:test reporter that writes one block per failed test: where it is, its name and the
// first lines of its error. The test command prints the blocks last, so the tail of a CI log
// (often all that is kept) says what failed and why.
const MAX_ERROR_LINES = 10;

function errorText(error) {
  const inner = error?.cause ?? error;
  const text = inner instanceof Error ? `${inner.name}: ${inner.message}` : String(inner);
  return text.split("\n").slice(0, MAX_ERROR_LINES).join("\n    ");
}

export default async function* failureSummary(source) {
  for await (const event of source) {
    if (event.type !== "test:fail") continue;
    const { name, file, line, details } = event.data;
    // A suite that failed only because a test inside it did is already named by that test.
    if (details?.error?.failureType === "subtestsFailed") continue;
    const where = file ? `${file.replace(`${process.cwd()}/`, "")}${line ? `:${line}` : ""}` : "(no file)";
    yield `not ok  ${where} › ${name}\n    ${errorText(details?.error)}\n`;
  }
}
