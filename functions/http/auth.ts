import type { MiddlewareHandler } from 'hono';
import { timingSafeEqual } from 'node:crypto';
import { BruleeError } from '../../errors';

/** With an API key set, calls that change state need `Authorization: Bearer <key>`: 401 without, 403 wrong. */
export function requireKey(apiKey: string | undefined): MiddlewareHandler {
  const want = apiKey ? Buffer.from(apiKey) : undefined;
  return async (c, next) => {
    if (want) {
      const header = c.req.header('authorization');
      if (!header) throw new BruleeError('UNAUTHORIZED', 'this call changes state and needs the header Authorization: Bearer <API_KEY>');
      const m = /^Bearer\s+(.+)$/i.exec(header.trim());
      const got = m ? Buffer.from(m[1]!) : Buffer.alloc(0);
      if (got.length !== want.length || !timingSafeEqual(got, want)) throw new BruleeError('FORBIDDEN', 'the API key in the Authorization header is wrong');
    }
    await next();
  };
}
