import { timingSafeEqual } from 'node:crypto';
import { BruleeError } from '../errors';

/**
 * Who may do what, for every front end (REST and gRPC alike). `admin` calls change state
 * (register, delete, load, unload) and need `API_KEY` when it is set.
 */
export type KeyScope = 'admin' | 'invoke';

export interface KeyOptions {
  /** Required for `admin` calls when set. */
  apiKey?: string | undefined;
}

/** Checks the `Authorization` header value of a call for a scope; throws 401/403 BruleeErrors. */
export type Authorize = (scope: KeyScope, authorization: string | undefined) => void;

function same(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function authorizer(o: KeyOptions): Authorize {
  const admin = o.apiKey ? Buffer.from(o.apiKey) : undefined;
  return (scope, authorization) => {
    if (scope !== 'admin' || !admin) return;
    if (!authorization) throw new BruleeError('UNAUTHORIZED', 'this call changes state and needs the header Authorization: Bearer <API_KEY>');
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (!same(m ? Buffer.from(m[1]!) : Buffer.alloc(0), admin)) throw new BruleeError('FORBIDDEN', 'the API key in the Authorization header is wrong');
  };
}
