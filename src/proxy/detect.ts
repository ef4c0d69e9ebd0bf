// Protocol detection on a connection's first bytes: HTTP/2 prior knowledge (the client preface),
// TLS (a ClientHello record), HTTP/1 (a request line: token, space). Decides as soon as the bytes
// allow and asks for more otherwise (bounded by the caller). Pure: no I/O.

export const Protocol = { NeedMore: 0, Http1: 1, Http2: 2, Tls: 3, Unknown: 4 } as const;
export type ProtocolCode = (typeof Protocol)[keyof typeof Protocol];

/** The client connection preface of HTTP/2 (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 0x20] = 1;

/** Longest method token looked at before deciding a connection is not HTTP/1. */
const MAX_METHOD = 32;

export function detectProtocol(buf: Buffer): ProtocolCode {
  const n = buf.length;
  if (n === 0) return Protocol.NeedMore;
  const b0 = buf[0] as number;
  // TLS handshake record (0x16), version 3.x, then a ClientHello (1) once visible.
  if (b0 === 0x16) {
    if (n < 2) return Protocol.NeedMore;
    if (buf[1] !== 0x03) return Protocol.Unknown;
    if (n < 6) return Protocol.NeedMore;
    return buf[5] === 0x01 ? Protocol.Tls : Protocol.Unknown;
  }
  // The HTTP/2 preface starts like an HTTP/1 request line ("PRI * HTTP/2.0"): compare it first.
  const k = Math.min(n, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, k, 0, k) === 0) return k === H2_PREFACE.length ? Protocol.Http2 : Protocol.NeedMore;
  // HTTP/1: leading CRLFs are allowed before a request line; then a token and a space.
  let i = 0;
  while (i < n && i < 8 && (buf[i] === 0x0d || buf[i] === 0x0a)) i++;
  const s = i;
  while (i < n && TCHAR[buf[i] as number]) {
    if (i - s >= MAX_METHOD) return Protocol.Unknown;
    i++;
  }
  if (i === n) return Protocol.NeedMore;
  return buf[i] === 0x20 && i > s ? Protocol.Http1 : Protocol.Unknown;
}
