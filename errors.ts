/**
 * brulee's one error type. Every error carries a machine-readable `code` that the HTTP JSON
 * carries (`{"error": {"code", "message"}}`); the HTTP status lives in one table here, and the
 * Hono `onError` in `functions/http/errors.ts` is the only place that turns errors into responses.
 */
export const ErrorCode = {
  BAD_REQUEST: 400,
  MALFORMED_JSON: 400,
  INVALID_NAME: 400,
  INVALID_OPTION: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  FUNCTION_NOT_FOUND: 404,
  INVOCATION_NOT_FOUND: 404,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  INVALID_MODEL: 422,
  INVALID_INPUT: 422,
  MODEL_TOO_LARGE: 422,
  MODEL_BYTES_MISSING: 404,
  INFERENCE_FAILED: 422,
  CACHE_BUSY: 503,
  REDIS_UNAVAILABLE: 503,
  NO_NODE_AVAILABLE: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

export class BruleeError extends Error {
  override readonly name = 'BruleeError';
  readonly code: ErrorCodeName;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCodeName, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    if (details) this.details = details;
  }

  get status(): number {
    return ErrorCode[this.code];
  }

  toJSON() {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export function isBruleeError(e: unknown): e is BruleeError {
  return e instanceof BruleeError;
}

/** Rebuilds an error that crossed the queue as `CODE: message`. */
export function errorFromWire(text: string): BruleeError {
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(text);
  if (m && m[1]! in ErrorCode) return new BruleeError(m[1] as ErrorCodeName, m[2]!);
  return new BruleeError('INTERNAL', text);
}

/** Encodes an error for the queue so the gateway can rebuild it with its code. */
export function errorToWire(e: unknown): string {
  if (isBruleeError(e)) return `${e.code}: ${e.message}`;
  return `INTERNAL: ${e instanceof Error ? e.message : String(e)}`;
}
