import type { MiddlewareHandler } from 'hono';
import type { Authorize, KeyScope } from '../auth';

/** A route's key check (see functions/auth.ts for who may do what). */
export function requireKey(authorize: Authorize, scope: KeyScope = 'admin'): MiddlewareHandler {
  return async (c, next) => {
    authorize(scope, c.req.header('authorization'));
    await next();
  };
}
