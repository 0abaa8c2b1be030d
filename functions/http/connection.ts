import type { MiddlewareHandler } from 'hono';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { BruleeError } from '../../errors';
import { declaredLength } from './parse';

/** How long a connection answered before its body was read goes on taking (and dropping) that body, at most. */
const LINGER_MS = 10_000;
/** ... and how long the client may stay silent meanwhile. */
const LINGER_IDLE_MS = 2_000;

/**
 * Lets the client of `socket` read an answer sent before its body was read. Node, and
 * @hono/node-server past 64 MiB or 500 ms of draining, close such a socket with the rest of the
 * body unread, and the kernel then sends a reset, which throws away the answer on the client's
 * side: a client that writes its whole body before it reads (tritonclient.http's geventhttpclient,
 * python's http.client) met EPIPE, never the 413 of a body past MAX_REQUEST_BYTES (always past
 * those 64 MiB by default). As nginx's lingering close: the answer and a FIN go out, what the
 * client still sends is read and dropped, and the socket goes when the client closes, is silent
 * LINGER_IDLE_MS, or after LINGER_MS.
 */
export function lingerOnClose(socket: Socket): void {
  let lingering = false;
  // Called twice (node's end of the response, then @hono/node-server's drain): once is enough.
  socket.destroySoon = () => {
    if (socket.destroyed || lingering) return;
    lingering = true;
    if (socket.writable) socket.end();
    const done = () => socket.destroy();
    const timer = setTimeout(done, LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('end', done);
    socket.setTimeout(LINGER_IDLE_MS, done);
    socket.resume();
  };
}

/**
 * An answer sent before the request body was read (an unknown model, a missing key, a body past
 * the limit) says `Connection: close`. Otherwise the client sends its next request on a
 * connection whose unread body the server gives up draining (after 500 ms, in @hono/node-server)
 * and closes: that request meets a reset, with no HTTP answer at all.
 */
export function closeWhenBodyUnread(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    // From the headers, not `raw.body`: touching the body would build a web stream for it (parse.ts
    // `limit`). A GET's or HEAD's body is never read by a handler (node reads and drops it).
    const length = c.req.header('content-length');
    const method = c.req.method;
    const hasBody = method !== 'GET' && method !== 'HEAD' && (c.req.header('transfer-encoding') !== undefined || (length !== undefined && length !== '0'));
    if (hasBody && !c.req.raw.bodyUsed && !c.res.headers.has('connection')) {
      c.header('Connection', 'close');
      // Served by @hono/node-server, whose env holds node's request (not under app.request()).
      const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket;
      if (socket) lingerOnClose(socket);
    }
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
 * Bounds the bytes of request bodies this gateway reads and holds at once. A body with a
 * Content-Length is counted by it (capped at `maxRequestBytes`) before it is read; a chunked body,
 * with none, is counted as its chunks arrive. Past `maxPendingBytes` a request is answered 503
 * OVERLOADED with Retry-After (before its body is read, or at the chunk that passes the limit), so
 * a burst of large calls cannot take the process's memory. A request alone always gets in (up to
 * the body limits).
 */
export function admitRequestBytes(maxPendingBytes: number, maxRequestBytes: number): MiddlewareHandler {
  let pending = 0;
  const overloaded = (held: number, more: number) =>
    new BruleeError('OVERLOADED', `this server is already reading ${held} bytes of requests, and ${more} more would pass its limit of ${maxPendingBytes} (MAX_PENDING_REQUEST_BYTES); retry in a moment`, { retryAfterS: 1 });
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') return next();
    const raw = c.req.raw;
    const declared = declaredLength(c);
    if (declared === undefined && c.req.header('transfer-encoding') !== undefined && raw.body !== null) {
      // Chunked: counted chunk by chunk while whoever reads the body reads it.
      let mine = 0;
      const counted = raw.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, ctl) {
            const n = Math.min(chunk.byteLength, Math.max(0, maxRequestBytes - mine));
            if (pending - mine > 0 && pending + n > maxPendingBytes) throw overloaded(pending - mine, mine + n);
            pending += n;
            mine += n;
            ctl.enqueue(chunk);
          },
        }),
      );
      c.req.raw = new Request(raw, { body: counted, duplex: 'half' } as RequestInit);
      try {
        await next();
      } finally {
        pending -= mine;
      }
      return;
    }
    // Counted by its Content-Length, without touching the body (parse.ts `limit`).
    const bytes = Math.min(declared ?? 0, maxRequestBytes);
    if (bytes > 0 && pending > 0 && pending + bytes > maxPendingBytes) {
      c.header('Retry-After', '1');
      throw overloaded(pending, bytes);
    }
    pending += bytes;
    try {
      await next();
    } finally {
      pending -= bytes;
    }
  };
}
