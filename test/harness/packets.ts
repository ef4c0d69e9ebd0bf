// Crafted Ethernet/IPv4/TCP/UDP/ICMP frames for BPF unit tests (BPF_PROG_TEST_RUN): small, pure,
// with valid IPv4 header checksums (the datapath does not check L4 checksums). Pure: no I/O.

export const PROTO = { ICMP: 1, TCP: 6, UDP: 17 } as const;
export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export interface L3 {
  src: string;
  dst: string;
  ttl?: number;
  /** Fragment offset in 8-byte units; more-fragments flag. */
  fragOffset?: number;
  moreFragments?: boolean;
}

function ipBytes(ip: string): number[] {
  const p = ip.split(".").map(Number);
  if (p.length !== 4) throw new Error(`not IPv4: ${ip}`);
  return p;
}

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += (b[b.length - 1] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function frame(l3: L3, proto: number, l4: Buffer): Buffer {
  const eth = Buffer.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0x1234, 4);
  ip.writeUInt16BE(((l3.moreFragments ? 0x2000 : 0) | (l3.fragOffset ?? 0)) & 0xffff, 6);
  ip[8] = l3.ttl ?? 64;
  ip[9] = proto;
  Buffer.from(ipBytes(l3.src)).copy(ip, 12);
  Buffer.from(ipBytes(l3.dst)).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([eth, ip, l4]);
}

export function tcp(l3: L3, sport: number, dport: number, flags: number = TCP.SYN, payload = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(1, 4);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(65535, 14);
  return frame(l3, PROTO.TCP, Buffer.concat([h, payload]));
}

export function udp(l3: L3, sport: number, dport: number, payload = Buffer.from("weft")): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return frame(l3, PROTO.UDP, Buffer.concat([h, payload]));
}

/** ICMPv4; echo request is type 8, echo reply type 0 (then `id` is the echo identifier). */
export function icmp(l3: L3, type: number, code = 0, id = 0x77, seq = 1): Buffer {
  const h = Buffer.alloc(8 + 8);
  h[0] = type;
  h[1] = code;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  h.writeUInt16BE(checksum(h), 2);
  return frame(l3, PROTO.ICMP, h);
}

/** An IPv4 header with only `len` bytes of L4 (truncated), for malformed-packet cases. */
export function truncated(l3: L3, proto: number, len: number): Buffer {
  return frame(l3, proto, Buffer.alloc(len));
}

/** A struct __sk_buff context for BPF_PROG_TEST_RUN carrying only `mark` (offset 8); 0 elsewhere. */
export function skbCtx(opts: { mark?: number } = {}): Buffer {
  const ctx = Buffer.alloc(192); // sizeof(struct __sk_buff)
  ctx.writeUInt32LE(opts.mark ?? 0, 8);
  return ctx;
}

// ---- L4 checksums and reading frames back (NAT tests) -------------------------------------------

function l4Sum(frame: Buffer): number {
  const ihl = ((frame[14] as number) & 0x0f) * 4;
  const proto = frame[23] as number;
  const l4 = frame.subarray(14 + ihl, 14 + frame.readUInt16BE(16));
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, 26, 34);
  pseudo[9] = proto;
  pseudo.writeUInt16BE(l4.length, 10);
  return checksum(Buffer.concat([pseudo, l4]));
}

function l4CsumOffset(frame: Buffer): number {
  const ihl = ((frame[14] as number) & 0x0f) * 4;
  return 14 + ihl + (frame[23] === PROTO.TCP ? 16 : 6);
}

/** The frame with a correct TCP or UDP checksum (the builders above leave it 0). */
export function withL4Checksum(frame: Buffer): Buffer {
  const out = Buffer.from(frame);
  const off = l4CsumOffset(out);
  out.writeUInt16BE(0, off);
  let sum = l4Sum(out);
  if (sum === 0 && out[23] === PROTO.UDP) sum = 0xffff; // UDP sends a computed 0 as all ones
  out.writeUInt16BE(sum, off);
  return out;
}

/** Whether the IPv4 header checksum and the TCP/UDP checksum (0 = none, for UDP) verify. */
export function checksumsOk(frame: Buffer): { ip: boolean; l4: boolean } {
  const ihl = ((frame[14] as number) & 0x0f) * 4;
  const ip = checksum(frame.subarray(14, 14 + ihl)) === 0;
  if (frame[23] === PROTO.UDP && frame.readUInt16BE(l4CsumOffset(frame)) === 0) return { ip, l4: true };
  return { ip, l4: l4Sum(frame) === 0 };
}

export interface FrameFields {
  dmac: string;
  smac: string;
  src: string;
  dst: string;
  ttl: number;
  proto: number;
  sport: number;
  dport: number;
  /** The raw L4 checksum field. */
  l4csum: number;
}

/** The fields a NAT rewrites, read from an Ethernet/IPv4/TCP|UDP frame. */
export function readFrame(frame: Buffer): FrameFields {
  const mac = (o: number) => [...frame.subarray(o, o + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
  const ip = (o: number) => [...frame.subarray(o, o + 4)].join(".");
  const ihl = ((frame[14] as number) & 0x0f) * 4;
  return {
    dmac: mac(0),
    smac: mac(6),
    src: ip(26),
    dst: ip(30),
    ttl: frame[22] as number,
    proto: frame[23] as number,
    sport: frame.readUInt16BE(14 + ihl),
    dport: frame.readUInt16BE(16 + ihl),
    l4csum: frame.readUInt16BE(l4CsumOffset(frame)),
  };
}
