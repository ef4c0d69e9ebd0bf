// IPv4/IPv6 prefixes as numbers: parsing (text → network and length) and containment.
// Pure: no I/O.

export interface Cidr {
  family: 4 | 6;
  /** Network address with host bits cleared. */
  addr: bigint;
  bits: number;
  /** Canonical text, e.g. "10.0.0.0/8". */
  text: string;
}

function parseV4(s: string): bigint | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(s: string): bigint | undefined {
  if (s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string): bigint[] | undefined => {
    if (h === "") return [];
    const out: bigint[] = [];
    const items = h.split(":");
    for (let i = 0; i < items.length; i++) {
      const it = items[i] ?? "";
      if (i === items.length - 1 && it.includes(".")) {
        const v4 = parseV4(it);
        if (v4 === undefined) return undefined;
        out.push(v4 >> 16n, v4 & 0xffffn);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(it)) return undefined;
        out.push(BigInt(`0x${it}`));
      }
    }
    return out;
  };
  const head = groups(halves[0] ?? "");
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  let v = 0n;
  for (const g of [...head, ...new Array<bigint>(missing).fill(0n), ...tail]) v = (v << 16n) | g;
  return v;
}

function mask(family: 4 | 6, bits: number): bigint {
  const width = family === 4 ? 32 : 128;
  return bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(width - bits);
}

export function formatAddr(family: 4 | 6, addr: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 255n)).join(".");
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((addr >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return g.join(":");
  return `${g.slice(0, best).join(":")}::${g.slice(best + bestLen).join(":")}`;
}

/**
 * Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128, as Cilium accepts).
 * Returns a reason string when the text is not a prefix. Host bits set are refused unless `loose`.
 */
export function parseCidr(text: string, loose = true): Cidr | string {
  if (typeof text !== "string" || text.length === 0 || text.length > 64) return "not an IP address or CIDR";
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const bitsText = slash < 0 ? undefined : text.slice(slash + 1);
  const v4 = parseV4(addrText);
  const family: 4 | 6 = v4 !== undefined ? 4 : 6;
  const addr = v4 ?? parseV6(addrText);
  if (addr === undefined) return `"${addrText}" is not an IPv4 or IPv6 address`;
  const width = family === 4 ? 32 : 128;
  let bits = width;
  if (bitsText !== undefined) {
    if (!/^(0|[1-9]\d{0,2})$/.test(bitsText) || Number(bitsText) > width) return `prefix length "${bitsText}" is not in 0..${width}`;
    bits = Number(bitsText);
  }
  const net = addr & mask(family, bits);
  if (!loose && net !== addr) return "host bits are set";
  return { family, addr: net, bits, text: `${formatAddr(family, net)}/${bits}` };
}

/** Is `inner` inside (or equal to) `outer`? */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.bits <= inner.bits && (inner.addr & mask(outer.family, outer.bits)) === outer.addr;
}

export function isZeroPrefix(c: Cidr): boolean {
  return c.bits === 0;
}
