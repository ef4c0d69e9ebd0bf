// Errors with a stable code and a place: every user-facing failure in Weft is a WeftError.
// Pure: no I/O.

export type WeftErrorCode =
  | "WEFT_USAGE"
  | "WEFT_PREREQ_MISSING"
  | "WEFT_MANIFEST_INVALID"
  | "WEFT_POLICY_INVALID"
  | "WEFT_POLICY_UNSUPPORTED"
  | "WEFT_NOT_FOUND"
  | "WEFT_CLUSTER_STATE"
  | "WEFT_BPF"
  | "WEFT_TIMEOUT"
  | "WEFT_XDS";

export class WeftError extends Error {
  readonly code: WeftErrorCode;
  /** Where the problem is: a file, a JSON path, a pod name. */
  readonly where: string | undefined;

  constructor(code: WeftErrorCode, message: string, where?: string) {
    super(where ? `${code}: ${where}: ${message}` : `${code}: ${message}`);
    this.name = "WeftError";
    this.code = code;
    this.where = where;
  }
}

export function isWeftError(err: unknown): err is WeftError {
  return err instanceof WeftError;
}
