// Typed mirrors of the C structs in bpf/lib/: one definition per struct gives its size, each
// field's offset (C's natural alignment) and its encoding. A test compares every mirror with the
// BTF of the compiled objects (test/integration/datapath/mirrors.test.ts), so C and TypeScript
// cannot drift apart. Pure: no I/O.

/** Field types. `be16`/`be32` are stored in network byte order; `ipv4` is a dotted quad in NBO. */
export type FieldType = "u8" | "u16" | "u32" | "u64" | "be16" | "be32" | "ipv4" | { bytes: number };

type FieldValue<F extends FieldType> = F extends "u64" ? bigint : F extends "ipv4" ? string : F extends { bytes: number } ? Buffer : number;

export type StructValue<Fs extends readonly (readonly [string, FieldType])[]> = {
  [K in Fs[number] as K[0]]: FieldValue<K[1]>;
};

export interface StructMirror<T> {
  /** The C struct's name, as in BTF. */
  cName: string;
  size: number;
  offsets: Record<string, number>;
  encode(value: T): Buffer;
  decode(buf: Buffer, at?: number): T;
}

function sizeOf(t: FieldType): number {
  if (typeof t === "object") return t.bytes;
  return { u8: 1, u16: 2, be16: 2, u32: 4, be32: 4, ipv4: 4, u64: 8 }[t];
}

function alignOf(t: FieldType): number {
  return typeof t === "object" ? 1 : sizeOf(t);
}

export function ipv4ToBuffer(ip: string): Buffer {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return Buffer.from(parts);
}

export function defineStruct<const Fs extends readonly (readonly [string, FieldType])[]>(cName: string, fields: Fs): StructMirror<StructValue<Fs>> {
  const offsets: Record<string, number> = {};
  let at = 0;
  let maxAlign = 1;
  for (const [name, type] of fields) {
    const a = alignOf(type);
    maxAlign = Math.max(maxAlign, a);
    at = Math.ceil(at / a) * a;
    offsets[name] = at;
    at += sizeOf(type);
  }
  const size = Math.ceil(at / maxAlign) * maxAlign;

  return {
    cName,
    size,
    offsets,
    encode(value) {
      const buf = Buffer.alloc(size);
      const v = value as Record<string, unknown>;
      for (const [name, type] of fields) {
        const o = offsets[name] as number;
        const x = v[name];
        if (typeof type === "object") (x as Buffer).copy(buf, o, 0, type.bytes);
        else if (type === "u8") buf.writeUInt8(x as number, o);
        else if (type === "u16") buf.writeUInt16LE(x as number, o);
        else if (type === "be16") buf.writeUInt16BE(x as number, o);
        else if (type === "u32") buf.writeUInt32LE(x as number, o);
        else if (type === "be32") buf.writeUInt32BE(x as number, o);
        else if (type === "u64") buf.writeBigUInt64LE(x as bigint, o);
        else ipv4ToBuffer(x as string).copy(buf, o);
      }
      return buf;
    },
    decode(buf, base = 0) {
      const out: Record<string, unknown> = {};
      for (const [name, type] of fields) {
        const o = base + (offsets[name] as number);
        if (typeof type === "object") out[name] = Buffer.from(buf.subarray(o, o + type.bytes));
        else if (type === "u8") out[name] = buf.readUInt8(o);
        else if (type === "u16") out[name] = buf.readUInt16LE(o);
        else if (type === "be16") out[name] = buf.readUInt16BE(o);
        else if (type === "u32") out[name] = buf.readUInt32LE(o);
        else if (type === "be32") out[name] = buf.readUInt32BE(o);
        else if (type === "u64") out[name] = buf.readBigUInt64LE(o);
        else out[name] = [...buf.subarray(o, o + 4)].join(".");
      }
      return out as StructValue<Fs>;
    },
  };
}
