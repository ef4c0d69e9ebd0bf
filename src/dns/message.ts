// DNS messages (RFC 1035): parse a query, build answers. Used by the cluster DNS server and, later,
// by the proxy's DNS policy. Pure: no I/O. Malformed input throws DnsFormatError, never anything else.

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, ANY: 255 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export class DnsFormatError extends Error {}

export interface Question {
  name: string; // lower-case, no trailing dot
  type: number;
  class: number;
}

export interface Query {
  id: number;
  flags: number;
  opcode: number;
  recursionDesired: boolean;
  questions: Question[];
}

export interface ResourceRecord {
  name: string;
  type: number;
  ttl: number;
  /** Raw RDATA (an A record: 4 bytes). */
  data: Buffer;
}

/** Reads a possibly compressed name at `offset`; returns the name and the offset after it. */
export function readName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = offset;
  let next = -1;
  for (let hops = 0; hops < 64; hops++) {
    if (at >= msg.length) throw new DnsFormatError("name runs past the end of the message");
    const len = msg[at] as number;
    if (len === 0) {
      if (next < 0) next = at + 1;
      const name = labels.join(".").toLowerCase();
      if (name.length > 253) throw new DnsFormatError("name longer than 253 characters");
      return { name, next };
    }
    if ((len & 0xc0) === 0xc0) {
      if (at + 1 >= msg.length) throw new DnsFormatError("truncated compression pointer");
      if (next < 0) next = at + 2;
      at = ((len & 0x3f) << 8) | (msg[at + 1] as number);
      continue;
    }
    if (len > 63) throw new DnsFormatError(`label length ${len} > 63`);
    if (at + 1 + len > msg.length) throw new DnsFormatError("label runs past the end of the message");
    labels.push(msg.toString("latin1", at + 1, at + 1 + len));
    at += 1 + len;
  }
  throw new DnsFormatError("too many compression pointers");
}

export function parseQuery(msg: Buffer): Query {
  if (msg.length < 12) throw new DnsFormatError(`message of ${msg.length} bytes is shorter than a header`);
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) throw new DnsFormatError("a response, not a query");
  const qdcount = msg.readUInt16BE(4);
  if (qdcount > 16) throw new DnsFormatError(`${qdcount} questions`);
  const questions: Question[] = [];
  let at = 12;
  for (let i = 0; i < qdcount; i++) {
    const { name, next } = readName(msg, at);
    if (next + 4 > msg.length) throw new DnsFormatError("question runs past the end of the message");
    questions.push({ name, type: msg.readUInt16BE(next), class: msg.readUInt16BE(next + 2) });
    at = next + 4;
  }
  return { id, flags, opcode: (flags >> 11) & 0xf, recursionDesired: (flags & 0x0100) !== 0, questions };
}

function encodeName(name: string): Buffer {
  if (name === "") return Buffer.from([0]);
  const parts = name.split(".").map((l) => {
    const b = Buffer.from(l, "latin1");
    if (b.length === 0 || b.length > 63) throw new DnsFormatError(`bad label in ${name}`);
    return Buffer.concat([Buffer.from([b.length]), b]);
  });
  return Buffer.concat([...parts, Buffer.from([0])]);
}

export interface Answer {
  rcode: number;
  authoritative: boolean;
  answers: ResourceRecord[];
  /** SOA for negative answers (NXDOMAIN / NODATA), so resolvers can cache the negative result. */
  authority?: ResourceRecord[];
}

/** Builds a response to `query` (its first question echoed). */
export function buildResponse(query: Query, answer: Answer): Buffer {
  const q = query.questions[0];
  const flags = 0x8000 | (query.opcode << 11) | (answer.authoritative ? 0x0400 : 0) | (query.recursionDesired ? 0x0100 : 0) | 0x0080 | (answer.rcode & 0xf);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.id, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(q ? 1 : 0, 4);
  header.writeUInt16BE(answer.answers.length, 6);
  header.writeUInt16BE(answer.authority?.length ?? 0, 8);
  header.writeUInt16BE(0, 10);
  const parts: Buffer[] = [header];
  if (q) {
    const tail = Buffer.alloc(4);
    tail.writeUInt16BE(q.type, 0);
    tail.writeUInt16BE(q.class, 2);
    parts.push(encodeName(q.name), tail);
  }
  for (const rr of [...answer.answers, ...(answer.authority ?? [])]) {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(rr.type, 0);
    fixed.writeUInt16BE(CLASS_IN, 2);
    fixed.writeUInt32BE(rr.ttl, 4);
    fixed.writeUInt16BE(rr.data.length, 8);
    parts.push(encodeName(rr.name), fixed, rr.data);
  }
  return Buffer.concat(parts);
}

export function aRecord(name: string, ip: string, ttl: number): ResourceRecord {
  return { name, type: TYPE.A, ttl, data: Buffer.from(ip.split(".").map(Number)) };
}

export function soaRecord(zone: string, ttl: number): ResourceRecord {
  const nums = Buffer.alloc(20);
  nums.writeUInt32BE(1, 0); // serial
  nums.writeUInt32BE(7200, 4); // refresh
  nums.writeUInt32BE(1800, 8); // retry
  nums.writeUInt32BE(86400, 12); // expire
  nums.writeUInt32BE(ttl, 16); // negative-caching TTL
  return { name: zone, type: TYPE.SOA, ttl, data: Buffer.concat([encodeName(`ns.dns.${zone}`), encodeName(`hostmaster.${zone}`), nums]) };
}

/** A minimal FORMERR answer for input that could not be parsed (id kept if present). */
export function formErr(msg: Buffer): Buffer {
  const b = Buffer.alloc(12);
  if (msg.length >= 2) msg.copy(b, 0, 0, 2);
  b.writeUInt16BE(0x8000 | RCODE.FORMERR, 2);
  return b;
}
