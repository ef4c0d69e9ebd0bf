// Which headerMatches mismatch actions Weft can enforce as written: shared by policy validation
// (a refusal names the field) and the proxy filter (an unenforceable action stays a strict match).
// Pure: no I/O.

export type MismatchAction = "LOG" | "ADD" | "DELETE" | "REPLACE";

const ACTIONS = new Set<string>(["LOG", "ADD", "DELETE", "REPLACE"]);

/**
 * Headers a mismatch action may not edit: message framing, hop-by-hop fields, the authority (routing
 * is decided on it) and the fields the proxy writes itself. Editing them could desynchronise the
 * proxy and the upstream on where a request ends (smuggling). LOG may name any header.
 */
export const UNEDITABLE_HEADERS: ReadonlySet<string> = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "http2-settings",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-request-id",
]);

/** A header field value as RFC 9110 allows it (no CR, LF, NUL or other controls but HTAB). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Why a headerMatches mismatch action cannot be enforced as written (the field at fault and the
 * reason), or undefined when it can. `invalid`: no header field could carry the value at all.
 */
export function headerActionRefusal(
  name: string,
  action: string,
  value: string | undefined,
): { field: "mismatch" | "value"; invalid: boolean; reason: string } | undefined {
  if (!ACTIONS.has(action)) return { field: "mismatch", invalid: true, reason: `must be one of ${[...ACTIONS].join(", ")}` };
  if (action === "LOG") return undefined;
  if (UNEDITABLE_HEADERS.has(name.toLowerCase()))
    return {
      field: "mismatch",
      invalid: false,
      reason: `${action} of "${name}" is not supported: framing, hop-by-hop, Host and the proxy's own forwarding headers are never edited (LOG is)`,
    };
  if (value !== undefined && !FIELD_VALUE.test(value))
    return { field: "value", invalid: true, reason: "cannot be written as a header field value (control characters)" };
  return undefined;
}
