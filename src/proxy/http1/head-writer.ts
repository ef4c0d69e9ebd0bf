// Writes the head the proxy forwards: the parsed head's own header lines copied in contiguous runs,
// minus hop-by-hop and replaced fields, plus the proxy's additions; nothing is re-serialised from
// objects. Pure: no I/O.

import { H, type MessageHead } from "./parser.ts";

/** Never dropped because a Connection header names them: framing and routing depend on them. */
const PROTECTED = new Set(["host", "content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto", "x-request-id"]);

/**
 * Marks (1) in `out` the fields that are hop-by-hop for this message: Connection, Keep-Alive,
 * Proxy-Connection, TE, Upgrade (kept when the request is an upgrade and `keepUpgrade`), and every
 * field the Connection header nominates (except framing and the proxy's own fields).
 * `out` is a per-connection scratch array of at least head.count bytes; returns it.
 */
export function markHopByHop(head: MessageHead, out: Uint8Array, keepUpgrade = true): Uint8Array {
  out.fill(0, 0, head.count);
  for (let i = 0; i < head.count; i++) {
    const k = head.known[i];
    if (k === H.connection || k === H["keep-alive"] || k === H["proxy-connection"] || k === H.te) out[i] = 1;
    else if (k === H.upgrade && !(keepUpgrade && head.upgrade)) out[i] = 1;
  }
  if (head.nominated)
    for (const name of head.nominated) {
      if (PROTECTED.has(name)) continue;
      for (let i = head.indexOf(name); i >= 0; i = head.indexOf(name, i + 1)) out[i] = 1;
    }
  return out;
}

/** Marks every field whose known id is `id` (for example H["x-forwarded-for"] when replacing it). */
export function markKnown(head: MessageHead, out: Uint8Array, id: number): void {
  if (!head.knownCount[id]) return;
  for (let i = head.firstKnown[id] as number; i < head.count; i++) if (head.known[i] === id) out[i] = 1;
}

/** Marks every field named `lower` (a header edit of the L7 policy). */
export function markName(head: MessageHead, out: Uint8Array, lower: string): void {
  for (let i = head.indexOf(lower); i >= 0; i = head.indexOf(lower, i + 1)) out[i] = 1;
}

function copyFields(head: MessageHead, drop: Uint8Array | null, dst: Buffer, at: number): number {
  const src = head.buf;
  let runStart = -1;
  let runEnd = -1;
  for (let i = 0; i < head.count; i++) {
    if (drop?.[i]) continue;
    const ls = head.lineStart(i);
    if (ls === runEnd) runEnd = head.lineEndOf(i);
    else {
      if (runStart >= 0) at += src.copy(dst, at, runStart, runEnd);
      runStart = ls;
      runEnd = head.lineEndOf(i);
    }
  }
  if (runStart >= 0) at += src.copy(dst, at, runStart, runEnd);
  return at;
}

function fieldBytes(head: MessageHead, drop: Uint8Array | null): number {
  let n = 0;
  for (let i = 0; i < head.count; i++) if (!drop?.[i]) n += head.lineEndOf(i) - head.lineStart(i);
  return n;
}

/**
 * The request head for the upstream: "METHOD target HTTP/1.1", the kept fields, `add` (lines, each
 * ending in CRLF), "connection: upgrade" for upgrades, the blank line. `target` replaces the
 * request-target (the normalised path and query); absolute-form targets always become origin-form.
 */
export function writeRequestHead(head: MessageHead, target: string | null, drop: Uint8Array | null, add = ""): Buffer {
  const t = target ?? (head.form === "absolute" ? head.pathAndQuery() : null);
  const lineLen = t === null ? head.targetEnd - head.start : head.method.length + 1 + t.length;
  const upgrade = head.upgrade ? "connection: upgrade\r\n" : "";
  const n = lineLen + 11 + fieldBytes(head, drop) + add.length + upgrade.length + 2;
  const dst = Buffer.allocUnsafe(n);
  let at = 0;
  if (t === null) at += head.buf.copy(dst, 0, head.start, head.targetEnd);
  else {
    at += dst.write(head.method, 0, "latin1");
    dst[at++] = 0x20;
    at += dst.write(t, at, "latin1");
  }
  at += dst.write(" HTTP/1.1\r\n", at, "latin1");
  at = copyFields(head, drop, dst, at);
  if (add) at += dst.write(add, at, "latin1");
  if (upgrade) at += dst.write(upgrade, at, "latin1");
  dst[at++] = 0x0d;
  dst[at++] = 0x0a;
  return at === n ? dst : dst.subarray(0, at);
}

/**
 * Would `writeResponseHead(head, drop, add)` give back the received bytes `head.buf[start, end)`?
 * True when nothing is dropped or added and the lines are contiguous: the head can then be
 * forwarded as received, in the same write as the body bytes after it.
 */
export function responseHeadUnchanged(head: MessageHead, drop: Uint8Array | null, add = ""): boolean {
  if (add !== "" || head.upgrade) return false;
  if (drop) for (let i = 0; i < head.count; i++) if (drop[i]) return false;
  return head.lineEnd - head.start + fieldBytes(head, null) + 2 === head.end - head.start && head.buf[head.end - 2] === 0x0d && head.buf[head.end - 1] === 0x0a;
}

/** The response head for the downstream: the status line as received, kept fields, `add`, blank line. */
export function writeResponseHead(head: MessageHead, drop: Uint8Array | null, add = ""): Buffer {
  const upgrade = head.upgrade ? "connection: upgrade\r\n" : "";
  const n = head.lineEnd - head.start + fieldBytes(head, drop) + add.length + upgrade.length + 2;
  const dst = Buffer.allocUnsafe(n);
  let at = head.buf.copy(dst, 0, head.start, head.lineEnd);
  at = copyFields(head, drop, dst, at);
  if (add) at += dst.write(add, at, "latin1");
  if (upgrade) at += dst.write(upgrade, at, "latin1");
  dst[at++] = 0x0d;
  dst[at++] = 0x0a;
  return dst.subarray(0, at);
}
