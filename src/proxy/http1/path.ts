// Path normalisation before policy and routing, with Envoy's semantics and order: escaped slashes
// (%2F, %5C) first, then normalize_path (RFC 3986 dot-segment removal, percent-decoding of
// unreserved characters, uppercase hex in the escapes left), then merge_slashes. The query string
// is never touched. The result is what the policy matches and what goes upstream. Pure: no I/O.

export type EscapedSlashes = "keep" | "reject" | "unescape-and-redirect" | "unescape-and-forward";

export interface PathOptions {
  /** Envoy normalize_path (Cilium turns it on): default true. */
  normalize: boolean;
  /** Envoy merge_slashes: default false, as Envoy and Cilium. */
  mergeSlashes: boolean;
  /** Envoy path_with_escaped_slashes_action: default "keep" (KEEP_UNCHANGED, Envoy's and Cilium's). */
  escapedSlashes: EscapedSlashes;
}

export const DEFAULT_PATH_OPTIONS: Readonly<PathOptions> = Object.freeze({ normalize: true, mergeSlashes: false, escapedSlashes: "keep" });

export const PathAction = {
  Forward: 0,
  /** Answer 400. */
  Reject: 1,
  /** Answer 307 with Location = `path` (the client re-asks with the unescaped path). */
  Redirect: 2,
} as const;
export type PathActionCode = (typeof PathAction)[keyof typeof PathAction];

const HEXV = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEXV[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEXV[0x41 + c] = HEXV[0x61 + c] = 10 + c;
const HEXU = "0123456789ABCDEF";

function unreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function hex(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c < 128 ? (HEXV[c] as number) : -1;
}

/**
 * One per worker: `run(target)` returns a PathAction and sets `path` (normalised path + "?" + query,
 * unchanged when nothing needed doing: no allocation on the common path) and, on Reject, `reason`.
 * `target` is the origin-form path and query, "*", or an absolute-form URL (its path is used).
 */
export class PathNormalizer {
  readonly opts: PathOptions;
  path = "";
  reason = "";

  constructor(opts: Partial<PathOptions> = {}) {
    this.opts = { ...DEFAULT_PATH_OPTIONS, ...opts };
  }

  run(target: string): PathActionCode {
    this.reason = "";
    if (target === "*") {
      this.path = target;
      return PathAction.Forward;
    }
    let t = target;
    if (t.charCodeAt(0) !== 0x2f) {
      const m = /^https?:\/\/[^/?#]*/i.exec(t);
      if (!m) return this.reject("not an origin-form or absolute-form target");
      t = t.slice(m[0].length);
      if (t === "" || t.charCodeAt(0) === 0x3f) t = `/${t}`;
    }
    if (t.includes("#")) return this.reject("fragment in the target");
    const q = t.indexOf("?");
    let p = q < 0 ? t : t.slice(0, q);
    const query = q < 0 ? "" : t.slice(q);
    let action: PathActionCode = PathAction.Forward;
    const { normalize, mergeSlashes, escapedSlashes } = this.opts;

    if (escapedSlashes !== "keep" && /%(2f|5c)/i.test(p)) {
      if (escapedSlashes === "reject") return this.reject("escaped slash (%2F or %5C) in the path");
      p = p.replace(/%2f/gi, "/").replace(/%5c/gi, "\\");
      if (escapedSlashes === "unescape-and-redirect") action = PathAction.Redirect;
    }
    if (normalize) {
      const n = normalizePath(p);
      if (n === null) return this.reject("bad percent-encoding in the path");
      p = n;
    }
    if (mergeSlashes && p.includes("//")) p = p.replace(/\/{2,}/g, "/");
    this.path = query ? p + query : p;
    return action;
  }

  private reject(reason: string): PathActionCode {
    this.reason = reason;
    this.path = "";
    return PathAction.Reject;
  }
}

/**
 * RFC 3986 normalisation of a path (no query): unreserved escapes decoded, other escapes uppercased,
 * "\\" read as "/" (as Envoy's canonicaliser), dot segments removed ("..", also as %2e%2e, never
 * above the root). Returns null on a malformed escape.
 */
export function normalizePath(p: string): string | null {
  // Fast path: nothing to decode, no dots, no backslashes.
  if (p.indexOf("%") < 0 && p.indexOf(".") < 0 && p.indexOf("\\") < 0) return p.length === 0 ? "/" : p;
  let s = "";
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0x25) {
      const h1 = hex(p, i + 1);
      const h2 = hex(p, i + 2);
      if (h1 < 0 || h2 < 0) return null;
      const v = h1 * 16 + h2;
      s += unreserved(v) ? String.fromCharCode(v) : `%${HEXU[h1]}${HEXU[h2]}`;
      i += 2;
    } else s += c === 0x5c ? "/" : p[i];
  }
  if (s.length === 0 || s.charCodeAt(0) !== 0x2f) s = `/${s}`;
  if (!s.includes(".")) return s;
  const segs = s.split("/");
  const out: string[] = [];
  let trailing = false;
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string;
    const last = i === segs.length - 1;
    if (seg === ".") trailing = last;
    else if (seg === "..") {
      out.pop();
      trailing = last;
    } else {
      out.push(seg);
      trailing = false;
    }
  }
  const body = out.join("/");
  return out.length === 0 ? "/" : `/${body}${trailing ? "/" : ""}`;
}

/** The 307 answer of unescape-and-redirect. */
export function redirectResponse(location: string, keepAlive: boolean): Buffer {
  return Buffer.from(
    `HTTP/1.1 307 Temporary Redirect\r\nlocation: ${location}\r\ncontent-length: 0\r\n${keepAlive ? "" : "connection: close\r\n"}\r\n`,
    "latin1",
  );
}
