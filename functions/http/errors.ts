import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from 'pino';
import { BruleeError } from '../../errors';
import { isRedisConnectionError, redisUnavailable } from '../../queue/connection';

/** Anything thrown, as a BruleeError (unknown errors become INTERNAL, logged with their stack). */
export function asBruleeError(e: unknown, log?: Logger): BruleeError {
  if (e instanceof BruleeError) return e;
  if (isRedisConnectionError(e)) return redisUnavailable(e);
  if (e instanceof HTTPException) {
    const code = e.status === 413 ? 'PAYLOAD_TOO_LARGE' : e.status === 401 ? 'UNAUTHORIZED' : e.status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST';
    return new BruleeError(code, e.message || 'bad request');
  }
  log?.error({ err: e }, 'unexpected error');
  return new BruleeError('INTERNAL', 'internal error; see the server log');
}

/**
 * The one place errors become HTTP responses: `{"error": {"code", "message"}}` with the code's
 * status, except on the Open Inference Protocol routes (`/v2`), whose clients expect
 * `{"error": "<message>"}`.
 */
export function onError(log: Logger) {
  return (e: Error, c: Context) => {
    const err = asBruleeError(e, log);
    const status = err.status as 400;
    const retry = err.retryAfterS;
    if (retry !== undefined) c.header('Retry-After', String(retry));
    // A 401 names the scheme that authenticates (RFC 9110 11.6.1): the key as a bearer token (functions/auth.ts).
    if (err.status === 401) c.header('WWW-Authenticate', 'Bearer realm="brulee"');
    const allow = err.details?.allow;
    if (Array.isArray(allow)) c.header('Allow', allow.join(', '));
    if (c.req.path === '/v2' || c.req.path.startsWith('/v2/')) return c.json({ error: err.message }, status);
    return c.json({ error: err.toJSON() }, status);
  };
}
