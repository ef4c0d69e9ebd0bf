// Why an HTTP/1 message is refused and the status to answer: the parsers' one error type, with a
// stable reason code for flows and tests, and the canned response bytes. Pure: no I/O.

export type RefusalStatus = 400 | 413 | 417 | 431 | 501 | 502 | 505;

export type RefusalReason =
  | "bad-request-line"
  | "bad-method"
  | "bad-request-target"
  | "bad-version"
  | "http-0.9"
  | "version-unsupported"
  | "bad-header-name"
  | "bad-header-value"
  | "space-before-colon"
  | "obs-fold"
  | "bare-cr"
  | "bare-lf"
  | "headers-too-large"
  | "too-many-headers"
  | "content-length-invalid"
  | "content-length-duplicate"
  | "content-length-with-transfer-encoding"
  | "transfer-encoding-unsupported"
  | "transfer-encoding-chunked-not-final"
  | "transfer-encoding-duplicate"
  | "transfer-encoding-in-http-1.0"
  | "body-too-large"
  | "bad-chunk-size"
  | "bad-chunk-extension"
  | "bad-chunk-data"
  | "bad-trailer"
  | "host-missing"
  | "host-duplicate"
  | "host-invalid"
  | "host-mismatch"
  | "expectation-unsupported"
  | "connect-with-body"
  | "bad-status-line"
  | "truncated";

/** A refused message: `status` is what to answer downstream (502 when an upstream response is bad). */
export class HttpRefusal extends Error {
  readonly status: RefusalStatus;
  readonly reason: RefusalReason;

  constructor(status: RefusalStatus, reason: RefusalReason, detail?: string) {
    super(detail ? `${status} ${reason}: ${detail}` : `${status} ${reason}`);
    this.name = "HttpRefusal";
    this.status = status;
    this.reason = reason;
  }
}

const REASON_PHRASE: Record<RefusalStatus, string> = {
  400: "Bad Request",
  413: "Payload Too Large",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  502: "Bad Gateway",
  505: "HTTP Version Not Supported",
};

const cache = new Map<RefusalStatus, Buffer>();

/** The response to a refused request; the connection closes after it (the framing is not trusted). */
export function refusalResponse(status: RefusalStatus): Buffer {
  let b = cache.get(status);
  if (!b) {
    const body = `${REASON_PHRASE[status]}\r\n`;
    b = Buffer.from(
      `HTTP/1.1 ${status} ${REASON_PHRASE[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      "latin1",
    );
    cache.set(status, b);
  }
  return b;
}
