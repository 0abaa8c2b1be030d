import type { MiddlewareHandler } from 'hono';

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
