// The answers the proxy gives itself (no upstream involved), as HTTP/1 bytes. Pure: no I/O.

const PHRASE: Record<number, string> = {
  404: "Not Found",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  502: "Bad Gateway",
  500: "Internal Server Error",
};

const cache = new Map<string, Buffer>();

/** A short text/plain answer; `close` adds "connection: close". */
export function localReply(status: number, body: string, close: boolean): Buffer {
  const k = `${status}|${body}|${close}`;
  let b = cache.get(k);
  if (!b) {
    b = Buffer.from(
      `HTTP/1.1 ${status} ${PHRASE[status] ?? "Error"}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${close ? "connection: close\r\n" : ""}\r\n${body}`,
      "latin1",
    );
    if (cache.size < 256) cache.set(k, b);
  }
  return b;
}

export const CONTINUE_100 = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
