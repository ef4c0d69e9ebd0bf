// Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4) and the flow hash the kernel uses
// to index the table: the reference both for the tables the agent writes into lb4_maglev and for
// tests that predict the kernel's choice. Pure: no I/O.

/** Table size used when a service does not choose one: prime, ≈ 100 × a large backend count. */
export const DEFAULT_MAGLEV_SIZE = 16381;
/** The largest table the datapath accepts (LB_MAGLEV_MAX in bpf/lib/lb.h). */
export const MAX_MAGLEV_SIZE = 131071;

export interface MaglevBackend {
  /** Stable and unique within the table (the agent uses "address:port"). */
  name: string;
  /** Relative weight, a positive integer; default 1. */
  weight?: number;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** MurmurHash3 x86_32 of a UTF-8 string: two seeds give the paper's two independent hashes. */
export function murmur3(text: string, seed: number): number {
  const data = Buffer.from(text, "utf8");
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = data.length >> 2;
  for (let i = 0; i < blocks; i++) {
    let k = data.readUInt32LE(i * 4);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  const rest = data.length & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= (data[tail + 2] as number) << 16;
    if (rest >= 2) k ^= (data[tail + 1] as number) << 8;
    k ^= data[tail] as number;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The lookup table: entry i is the index (into `backends`) of the backend serving hash i mod M.
 * Every slot is filled when there is at least one backend; each backend gets ≈ M × weight/Σweights
 * slots; removing one of N backends moves ≈ 1/N of the slots. Deterministic, and independent of
 * the order of `backends` (they are filled in name order).
 */
export function maglevTable(backends: readonly MaglevBackend[], size: number = DEFAULT_MAGLEV_SIZE): Uint32Array {
  if (!isPrime(size)) throw new RangeError(`maglev table size ${size} is not prime`);
  const table = new Uint32Array(size);
  const n = backends.length;
  if (n === 0) return table;
  if (new Set(backends.map((b) => b.name)).size !== n) throw new RangeError("maglev backend names must be unique");
  const order = backends.map((_, i) => i).sort((a, b) => ((backends[a] as MaglevBackend).name < (backends[b] as MaglevBackend).name ? -1 : 1));
  const offset = new Float64Array(n);
  const skip = new Float64Array(n);
  const weight = new Float64Array(n);
  let maxWeight = 0;
  for (let j = 0; j < n; j++) {
    const b = backends[order[j] as number] as MaglevBackend;
    const w = b.weight ?? 1;
    if (!Number.isInteger(w) || w < 1) throw new RangeError(`maglev weight of ${b.name} must be a positive integer`);
    offset[j] = murmur3(b.name, 0) % size;
    skip[j] = (murmur3(b.name, 0x9e3779b9) % (size - 1)) + 1;
    weight[j] = w;
    maxWeight = Math.max(maxWeight, w);
  }
  const next = new Float64Array(n);
  const credit = new Float64Array(n);
  const filled = new Uint8Array(size);
  let placed = 0;
  // Each round every backend earns its weight in credit and places one entry per maxWeight
  // earned; the heaviest places every round, so the loop ends after at most `size` rounds.
  for (let round = 0; round < size && placed < size; round++) {
    for (let j = 0; j < n && placed < size; j++) {
      credit[j] = (credit[j] as number) + (weight[j] as number);
      if ((credit[j] as number) < maxWeight) continue;
      credit[j] = (credit[j] as number) - maxWeight;
      // The next unfilled slot in backend j's permutation (offset + k·skip) mod M; a backend's
      // permutation visits every slot once, so `next` never passes M.
      let c = ((offset[j] as number) + (next[j] as number) * (skip[j] as number)) % size;
      while (filled[c]) {
        next[j] = (next[j] as number) + 1;
        c = ((offset[j] as number) + (next[j] as number) * (skip[j] as number)) % size;
      }
      filled[c] = 1;
      table[c] = order[j] as number;
      next[j] = (next[j] as number) + 1;
      placed++;
    }
  }
  return table;
}

// ---- the flow hash: bpf/lib/lb.h lb4_flow_hash ---------------------------------------------------

const JHASH_INITVAL = 0xdeadbeef;

function rol32(w: number, s: number): number {
  return ((w << s) | (w >>> (32 - s))) >>> 0;
}

/** Linux's jhash_3words (include/linux/jhash.h), as lb.h computes it. */
export function jhash3(a0: number, b0: number, c0: number, initval: number): number {
  const iv = (initval + JHASH_INITVAL + (3 << 2)) >>> 0;
  let a = (a0 + iv) >>> 0;
  let b = (b0 + iv) >>> 0;
  let c = (c0 + iv) >>> 0;
  c = ((c ^ b) - rol32(b, 14)) >>> 0;
  a = ((a ^ c) - rol32(c, 11)) >>> 0;
  b = ((b ^ a) - rol32(a, 25)) >>> 0;
  c = ((c ^ b) - rol32(b, 16)) >>> 0;
  a = ((a ^ c) - rol32(c, 4)) >>> 0;
  b = ((b ^ a) - rol32(a, 14)) >>> 0;
  c = ((c ^ b) - rol32(b, 24)) >>> 0;
  return c;
}

function ipv4Number(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new RangeError(`not an IPv4 address: ${ip}`);
  return (((p[0] as number) << 24) | ((p[1] as number) << 16) | ((p[2] as number) << 8) | (p[3] as number)) >>> 0;
}

export interface SocketFlow {
  /** The socket's bound source address ("0.0.0.0" when unbound). */
  saddr: string;
  /** The source port; 0 when the socket is not bound to one yet. */
  sport: number;
  /** The VIP and service port the app connects or sends to. */
  daddr: string;
  dport: number;
  /** IP protocol number: 6 TCP, 17 UDP. */
  proto: number;
  /** The socket's cookie: stands in for the source when sport is 0. */
  sockCookie?: bigint;
}

/** The hash the socket hooks index a Maglev table with (entry = hash mod M). */
export function flowHash(f: SocketFlow): number {
  let a = ipv4Number(f.saddr);
  if (f.sport === 0) {
    const cookie = f.sockCookie ?? 0n;
    a = (a ^ Number(cookie & 0xffffffffn) ^ Number((cookie >> 32n) & 0xffffffffn)) >>> 0;
  }
  return jhash3(a, ipv4Number(f.daddr), (((f.sport & 0xffff) << 16) | (f.dport & 0xffff)) >>> 0, f.proto);
}
