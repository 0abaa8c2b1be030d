import { timingSafeEqual } from 'node:crypto';
import { BruleeError } from '../errors';

/**
 * Who may do what, for every front end (REST and gRPC alike):
 * - `admin` calls change state (register, delete, load, unload). They need `API_KEY` when it is
 *   set (else `INVOKE_API_KEY` when that one is set, so changes are never less guarded than reads).
 * - `invoke` calls read and invoke (functions, stats, invocations, inference, bull-board). They
 *   need `INVOKE_API_KEY` or `API_KEY` when `INVOKE_API_KEY` is set; else they are open.
 * Health routes and `/metrics` are open (the HTTP app decides, see METRICS_AUTH).
 */
export type KeyScope = 'admin' | 'invoke';

export interface KeyOptions {
  /** Required for `admin` calls when set. */
  apiKey?: string | undefined;
  /** Required for `invoke` calls when set (API_KEY works there too). */
  invokeApiKey?: string | undefined;
}

/** Checks the `Authorization` header value of a call for a scope; throws 401/403 BruleeErrors. */
export type Authorize = (scope: KeyScope, authorization: string | undefined) => void;

function same(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The key in `Bearer <key>`, or the password of `Basic base64(user:key)` (what browsers send for /queues). */
function keyOf(authorization: string): Buffer {
  const m = /^(Bearer|Basic)\s+(.+)$/i.exec(authorization.trim());
  if (!m) return Buffer.alloc(0);
  if (m[1]!.toLowerCase() === 'bearer') return Buffer.from(m[2]!);
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  return Buffer.from(decoded.slice(decoded.indexOf(':') + 1));
}

export function authorizer(o: KeyOptions): Authorize {
  const admin = o.apiKey ? Buffer.from(o.apiKey) : undefined;
  const invoke = o.invokeApiKey ? Buffer.from(o.invokeApiKey) : undefined;
  return (scope, authorization) => {
    const keys: Buffer[] = [];
    for (const k of scope === 'admin' ? [admin ?? invoke] : invoke ? [invoke, admin] : []) if (k) keys.push(k);
    if (keys.length === 0) return;
    const needs = scope === 'admin' ? (admin ? 'API_KEY' : 'INVOKE_API_KEY') : 'INVOKE_API_KEY or API_KEY';
    if (!authorization) throw new BruleeError('UNAUTHORIZED', `this call ${scope === 'admin' ? 'changes state' : 'reads or invokes'} and needs the header Authorization: Bearer <${needs}>`);
    const got = keyOf(authorization);
    // Compare against every accepted key (no early exit), each in constant time.
    let ok = false;
    for (const k of keys) ok = same(got, k) || ok;
    if (!ok) throw new BruleeError('FORBIDDEN', `the key in the Authorization header is wrong (this call needs ${needs})`);
  };
}
