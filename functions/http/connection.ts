import type { MiddlewareHandler } from 'hono';
import { BruleeError } from '../../errors';

/**
 * An answer sent before the request body was read (an unknown model, a missing key, a body past
 * the limit) says `Connection: close`. Otherwise the client sends its next request on a
 * connection whose unread body the server gives up draining (after 500 ms, in @hono/node-server)
 * and closes: that request meets a reset, with no HTTP answer at all.
 */
export function closeWhenBodyUnread(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const raw = c.req.raw;
    const hasBody = raw.body !== null && c.req.header('content-length') !== '0';
    if (hasBody && !raw.bodyUsed && !c.res.headers.has('connection')) c.header('Connection', 'close');
  };
}

/**
 * A draining gateway answers new requests with 503 SHUTTING_DOWN and `Connection: close` (the
 * client retries elsewhere; never a reset), and closes connections after the answers it still
 * gives to requests it had accepted.
 */
export function refuseWhenDraining(state: { draining?: boolean }): MiddlewareHandler {
  return async (c, next) => {
    if (state.draining) {
      c.header('Connection', 'close');
      c.header('Retry-After', '1');
      throw new BruleeError('SHUTTING_DOWN', 'this server is shutting down; send the request again (to another instance)');
    }
    await next();
    if (state.draining) c.header('Connection', 'close');
  };
}

/**
 * Bounds the bytes of request bodies this gateway reads and holds at once, each counted by its
 * Content-Length (capped at `maxRequestBytes`; a chunked body, with none, is bounded by the body
 * limit alone and not counted here): past `maxPendingBytes` a request is
 * answered 503 OVERLOADED with Retry-After before its body is read, so a burst of large calls
 * cannot take the process's memory.
 */
export function admitRequestBytes(maxPendingBytes: number, maxRequestBytes: number): MiddlewareHandler {
  let pending = 0;
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') return next();
    const declared = Number(c.req.header('content-length'));
    const bytes = Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, maxRequestBytes) : 0;
    if (bytes > 0 && pending > 0 && pending + bytes > maxPendingBytes) {
      c.header('Retry-After', '1');
      throw new BruleeError('OVERLOADED', `this server is already reading ${pending} bytes of requests, and ${bytes} more would pass its limit of ${maxPendingBytes} (MAX_PENDING_REQUEST_BYTES); retry in a moment`);
    }
    pending += bytes;
    try {
      await next();
    } finally {
      pending -= bytes;
    }
  };
}
