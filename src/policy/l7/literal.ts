// Cheap exact checks derived from RE2 patterns under full-match semantics (how policies match method,
// path and host): literals, alternations of literals, `.*` between literals, optional groups; else a
// literal prefix every match must start with, as a pre-filter before the engine. Pure: no I/O.

/**
 * A pattern as a union of globs: each branch is literal segments with `.*` between consecutive
 * ones (`["/a/", ""]` is `/a/.*`; one segment is an exact string). Segments never contain "\n" nor a
 * lone surrogate, so a `.*` (any code points but "\n") can be checked with plain string operations.
 */
export type Branches = string[][];

/** Most branches a pattern may expand to (`(a|b)(c|d)?` is 6); beyond, the engine runs. */
const MAX_BRANCHES = 32;

/** ASCII punctuation that RE2 takes literally after a backslash (`\.`, `\/`, `\_`, ...). */
const ESCAPABLE = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
/** Characters with a meaning outside a class; `]` and `}` are literal in RE2 but left to the engine. */
const META = new Set("\\.+*?()|[]{}^$");

class Unreducible extends Error {}
const NOPE = new Unreducible();

/** Concatenation of two unions: every branch of `a` followed by every branch of `b`. */
function concat(a: Branches, b: Branches): Branches {
  if (a.length * b.length > MAX_BRANCHES) throw NOPE;
  const out: Branches = [];
  for (const x of a)
    for (const y of b) {
      const first = y[0] ?? "";
      out.push([...x.slice(0, -1), (x[x.length - 1] ?? "") + first, ...y.slice(1)]);
    }
  return out;
}

/** Recursive descent over the subset of RE2 syntax that reduces to globs; throws NOPE on anything else. */
class Reader {
  private i = 0;
  constructor(private readonly p: string) {}

  all(): Branches {
    const b = this.alternation(0);
    if (this.i !== this.p.length) throw NOPE;
    return b;
  }

  private alternation(depth: number): Branches {
    const out: Branches = [];
    for (;;) {
      out.push(...this.sequence(depth));
      if (out.length > MAX_BRANCHES) throw NOPE;
      if (this.p[this.i] !== "|") return out;
      this.i++;
    }
  }

  private sequence(depth: number): Branches {
    let cur: Branches = [[""]];
    let atStart = true;
    for (;;) {
      const c = this.p[this.i];
      if (c === undefined || c === "|" || c === ")") return cur;
      // `^` at the start and `$` at the end of a top-level branch are no-ops for a full match
      // (RE2's default one-line mode: they mean start and end of text).
      if (c === "^" && depth === 0 && atStart) {
        this.i++;
        continue;
      }
      if (c === "$" && depth === 0) {
        const next = this.p[this.i + 1];
        if (next !== undefined && next !== "|") throw NOPE;
        this.i++;
        continue;
      }
      atStart = false;
      let atom = this.atom(depth);
      const q = this.p[this.i];
      if (q === "?" && atom !== STAR) {
        this.i++;
        if (this.p[this.i] === "?") this.i++; // non-greedy: the same language
        atom = [...atom, [""]];
      }
      const after = this.p[this.i];
      if (after === "*" || after === "+" || after === "?" || after === "{") throw NOPE;
      cur = concat(cur, atom === STAR ? [["", ""]] : atom);
    }
  }

  private atom(depth: number): Branches | typeof STAR {
    const p = this.p;
    const c = p[this.i] as string;
    if (c === "(") {
      this.i++;
      if (p[this.i] === "?") {
        // Only groups that change nothing but capturing: (?:...), (?P<name>...), (?<name>...). Flags: engine.
        const named = /^\?P?<[A-Za-z0-9_]+>/.exec(p.slice(this.i, this.i + 300));
        if (p[this.i + 1] === ":") this.i += 2;
        else if (named) this.i += named[0].length;
        else throw NOPE;
      }
      const inner = this.alternation(depth + 1);
      if (p[this.i] !== ")") throw NOPE;
      this.i++;
      return inner;
    }
    if (c === ".") {
      if (p[this.i + 1] !== "*") throw NOPE;
      this.i += 2;
      if (p[this.i] === "?") this.i++;
      return STAR;
    }
    if (c === "\\") {
      const e = p[this.i + 1];
      if (e === undefined || !ESCAPABLE.has(e)) throw NOPE;
      this.i += 2;
      return [[e]];
    }
    if (META.has(c) || c === "\n") throw NOPE;
    const u = c.charCodeAt(0);
    if (u >= 0xd800 && u <= 0xdfff) {
      const low = p.charCodeAt(this.i + 1);
      if (u > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) throw NOPE; // lone surrogate
      this.i += 2;
      return [[p.slice(this.i - 2, this.i)]];
    }
    this.i++;
    return [[c]];
  }
}

const STAR = Symbol("star");

/**
 * The pattern as globs, when it is made only of literals, `.*`, groups, `|` and `?` (also `^`/`$`
 * at the ends); undefined otherwise (classes, other repetitions, flags, escapes like `\d`).
 * Call only with a pattern RE2 accepted.
 */
export function globsOf(pattern: string): Branches | undefined {
  try {
    const b = new Reader(pattern).all();
    // Merge empty segments: `.*.*` is `.*`.
    return b.map((segs) => segs.filter((s, i) => s !== "" || i === 0 || i === segs.length - 1 || segs.length === 1));
  } catch (err) {
    if (err === NOPE) return undefined;
    throw err;
  }
}

/** Full match of one glob branch: first segment a prefix, last a suffix, the middle ones in order. */
function globMatch(segs: string[], s: string): boolean {
  const n = segs.length;
  const first = segs[0] as string;
  if (n === 1) return s === first;
  const last = segs[n - 1] as string;
  if (s.length < first.length + last.length || !s.startsWith(first) || !s.endsWith(last)) return false;
  const end = s.length - last.length;
  let pos = first.length;
  for (let k = 1; k < n - 1; k++) {
    const seg = segs[k] as string;
    const at = s.indexOf(seg, pos);
    if (at < 0 || at + seg.length > end) return false;
    pos = at + seg.length;
  }
  // What the `.*`s cover is everything outside the segments; segments have no "\n".
  return s.indexOf("\n") < 0;
}

/** A matcher for the globs, specialised for the common shapes (literal, `L.*`, `L1|L2|...`). */
export function globMatcher(branches: Branches): (s: string) => boolean {
  if (branches.every((b) => b.length === 1)) {
    const words = [...new Set(branches.map((b) => b[0] as string))];
    if (words.length === 1) {
      const w = words[0] as string;
      return (s) => s === w;
    }
    if (words.length <= 4) return (s) => words.includes(s);
    const set = new Set(words);
    return (s) => set.has(s);
  }
  if (branches.length === 1) {
    const segs = branches[0] as string[];
    const [first, last] = segs as [string, string];
    if (segs.length === 2 && last === "" && first !== "") {
      // The prefix's last unit first: rules often share a long head (`/api/v1/...`) and differ at its end.
      const at = first.length - 1;
      const unit = first.charCodeAt(at);
      return (s) => s.charCodeAt(at) === unit && s.startsWith(first) && s.indexOf("\n", first.length) < 0;
    }
    if (segs.length === 2 && first === "") return (s) => s.endsWith(last) && s.indexOf("\n") < 0;
    return (s) => globMatch(segs, s);
  }
  return (s) => {
    for (const b of branches) if (globMatch(b, s)) return true;
    return false;
  };
}

/** Skips a character class starting at `i` (`[`); returns the index after `]`, or -1 when unsure. */
function skipClass(p: string, i: number): number {
  let j = i + 1;
  if (p[j] === "^") j++;
  if (p[j] === "]") j++; // a leading `]` is a member
  for (; j < p.length; j++) {
    const c = p[j];
    if (c === "]") return j + 1;
    if (c === "[") return -1; // `[:alpha:]` and friends: not worth reading
    if (c === "\\") {
      const e = p[j + 1];
      if (e === "p" || e === "P") {
        if (p[j + 2] === "{") {
          const close = p.indexOf("}", j + 3);
          if (close < 0) return -1;
          j = close;
        } else j += 2;
      } else if (e === "Q" || e === "x" || e === undefined) return -1;
      else j++;
    }
  }
  return -1;
}

/**
 * A literal every full match starts with: the leading literal characters of a pattern without a
 * top-level `|`, minus a last one that a quantifier applies to. "" when there is none or when
 * unsure. Case-sensitive: a flag group stops the scan before it applies.
 */
export function requiredPrefix(pattern: string): string {
  const p = pattern;
  // One pass to refuse a top-level alternation (outside groups, classes and escapes).
  let depth = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "\\") {
      const e = p[i + 1];
      if (e === "Q") return ""; // quoted text runs to \E: not worth reading
      if ((e === "p" || e === "P") && p[i + 2] === "{") {
        const close = p.indexOf("}", i + 3);
        if (close < 0) return "";
        i = close;
      } else i++;
    } else if (c === "[") {
      const next = skipClass(p, i);
      if (next < 0) return "";
      i = next - 1;
    } else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return "";
  }
  let i = 0;
  while (p[i] === "^") i++;
  const units: string[] = [];
  for (;;) {
    const c = p[i];
    if (c === undefined) break;
    let lit: string;
    if (c === "\\") {
      const e = p[i + 1];
      if (e === undefined || !ESCAPABLE.has(e)) break;
      lit = e;
      i += 2;
    } else if (META.has(c) || c === "\n") break;
    else {
      const u = c.charCodeAt(0);
      if (u >= 0xd800 && u <= 0xdfff) {
        const low = p.charCodeAt(i + 1);
        if (u > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) break;
        lit = p.slice(i, i + 2);
        i += 2;
      } else {
        lit = c;
        i++;
      }
    }
    const q = p[i];
    if (q === "*" || q === "+" || q === "?" || q === "{") break; // the quantifier owns `lit`
    units.push(lit);
  }
  return units.join("");
}

/** How a field's pattern is checked: fully without the engine, or a pre-filter before it. */
export type LiteralPlan = { kind: "exact"; test: (s: string) => boolean; branches: Branches } | { kind: "prefix"; prefix: string } | { kind: "engine" };

/**
 * `(?i)` then an ASCII glob: compare after lowering A-Z only. Exact because no other character
 * folds to an ASCII letter except the Kelvin sign (k) and the long s (s): patterns with k or s, or
 * any non-ASCII literal (é folds with É), stay with the engine.
 */
function caseless(pattern: string): LiteralPlan | undefined {
  if (!pattern.startsWith("(?i)")) return undefined;
  const branches = globsOf(pattern.slice(4));
  if (!branches?.every((b) => b.every((seg) => /^[\x20-\x7e]*$/.test(seg) && !/[ks]/i.test(seg)))) return undefined;
  const lowered = branches.map((b) => b.map((seg) => seg.toLowerCase()));
  const test = globMatcher(lowered);
  return { kind: "exact", test: (s) => test(asciiLower(s)), branches: lowered };
}

const UPPER = /[A-Z]+/g;

/** Lowers A-Z and nothing else (String.prototype.toLowerCase maps U+212A to "k" and U+0130 to two units). */
function asciiLower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.replace(UPPER, (run) => run.toLowerCase());
  }
  return s;
}

export function literalPlan(pattern: string): LiteralPlan {
  const branches = globsOf(pattern);
  if (branches) return { kind: "exact", test: globMatcher(branches), branches };
  const ci = caseless(pattern);
  if (ci) return ci;
  const prefix = requiredPrefix(pattern);
  return prefix ? { kind: "prefix", prefix } : { kind: "engine" };
}
