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
  /**
   * A request names one input twice: malformed, whatever the protocol (KServe v2 answers a malformed
   * request 400; Triton's "input already exists in request" is INVALID_ARG, its 400).
   */
  DUPLICATE_INPUT: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  FUNCTION_NOT_FOUND: 404,
  INVOCATION_NOT_FOUND: 404,
  NOT_FOUND: 404,
  /** A route exists at the path, but not for the request's method: `details.allow` lists the methods it takes (the HTTP Allow header). */
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  INVALID_MODEL: 422,
  INVALID_INPUT: 422,
  MODEL_TOO_LARGE: 422,
  MODEL_BYTES_MISSING: 404,
  /** The model store returned bytes whose sha256 is not the one registered: a damaged object. */
  MODEL_BYTES_CORRUPT: 500,
  INFERENCE_FAILED: 422,
  /** An invocation's outputs take more bytes than MAX_OUTPUT_BYTES. */
  OUTPUT_TOO_LARGE: 422,
  /** A function has as many invocations waiting or running as it may (MAX_QUEUED_PER_FUNCTION): retry after a moment. */
  QUEUE_FULL: 429,
  /**
   * The gateway holds as many request bytes as it may (MAX_PENDING_REQUEST_BYTES), or the queues as
   * many input bytes waiting to run (MAX_QUEUED_INPUT_BYTES): retry after a moment.
   */
  OVERLOADED: 503,
  CACHE_BUSY: 503,
  REDIS_UNAVAILABLE: 503,
  NO_NODE_AVAILABLE: 503,
  /** The model store (S3-compatible) did not answer, or refused our credentials. */
  MODEL_STORE_UNAVAILABLE: 503,
  /** The server is draining after SIGTERM: retry on another instance. */
  SHUTTING_DOWN: 503,
  TIMEOUT: 504,
  /**
   * Nodes died (MAX_NODE_DEATHS_PER_JOB of them) while running this one job, or its node lost it
   * that many times (its hold lapsed: a blocked event loop, a restart under the same NODE_ID): it is
   * not run again, so one input that crashes the runtime cannot take down node after node. 500, not
   * 503: the same call sent again would do the same.
   */
  NODE_CRASHED: 500,
  INTERNAL: 500,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * The gRPC status of each HTTP status in the table above (gRPC's own HTTP mapping, read the other
 * way), so the gRPC front end answers every error with the code its REST twin implies.
 */
const GRPC_OF_HTTP: Record<number, number> = {
  400: 3, // INVALID_ARGUMENT
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 5, // NOT_FOUND
  405: 12, // UNIMPLEMENTED
  409: 10, // ABORTED
  413: 8, // RESOURCE_EXHAUSTED
  422: 3, // INVALID_ARGUMENT
  429: 8, // RESOURCE_EXHAUSTED
  503: 14, // UNAVAILABLE
  504: 4, // DEADLINE_EXCEEDED
};

/**
 * Seconds a client should wait before sending the same request again (HTTP Retry-After), by code,
 * where the error does not say (`details.retryAfterS`: 429 QUEUE_FULL, 503 OVERLOADED name theirs).
 * CONFLICT: the name is being registered or deleted by another request, which holds its lock; most
 * finish within a second or a few (a model's profiling), and a lock whose holder died lapses within
 * REGISTRATION_LEASE_MS (15 s, renewed every 5 s while it runs): retrying each second finds the name
 * free soon after either, for the price of one refused SET NX. NO_NODE_AVAILABLE: no live node can
 * take the call; a node that starts (or comes back) is routed to from its first heartbeat (1 s).
 */
const RETRY_AFTER_S: Partial<Record<ErrorCodeName, number>> = { CONFLICT: 1, NO_NODE_AVAILABLE: 1 };

/** The gRPC status code for an error code: INTERNAL (13) for anything unmapped. */
export function grpcStatusOf(code: ErrorCodeName): number {
  return GRPC_OF_HTTP[ErrorCode[code]] ?? 13;
}

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

  /** Seconds to wait before retrying (HTTP Retry-After): what the error says, else its code's (RETRY_AFTER_S). */
  get retryAfterS(): number | undefined {
    const said = this.details?.retryAfterS;
    return typeof said === 'number' ? said : RETRY_AFTER_S[this.code];
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

/**
 * A short, safe rendering of a value from a request for an error message: at most `max`
 * characters (long strings and deep or large structures are cut with "…"), never recursing
 * deeper than a few levels, so a 20 000-level nested value or a 3 MB string can neither
 * overflow the stack nor be echoed back.
 */
export function preview(value: unknown, max = 80): string {
  let out = '';
  // Stops once past `max`, not at it: a value cut exactly at `max` must still get its "…".
  const put = (s: string) => {
    out += s;
    return out.length <= max;
  };
  const walk = (v: unknown, depth: number): boolean => {
    // A string longer than `max` is quoted from its first `max` characters only (its quoted form
    // is then longer than `max`, so the cut below marks it): a 3 MB string is never stringified.
    if (typeof v === 'string') return put(JSON.stringify(v.length > max ? v.slice(0, max) : v));
    if (typeof v !== 'object' || v === null) return put(String(v)); // numbers, bigints, booleans, null, undefined
    if (depth >= 3) return put(Array.isArray(v) ? '[…]' : '{…}');
    if (Array.isArray(v)) {
      if (!put('[')) return false;
      for (let i = 0; i < v.length; i++) {
        if ((i > 0 && !put(', ')) || !walk(v[i], depth + 1)) return false;
      }
      return put(']');
    }
    if (!put('{')) return false;
    let first = true;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if ((!first && !put(', ')) || !walk(k, depth + 1) || !put(': ') || !walk(x, depth + 1)) return false;
      first = false;
    }
    return put('}');
  };
  walk(value, 0);
  return out.length > max ? `${out.slice(0, max)}…` : out;
}
