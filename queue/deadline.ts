import { BruleeError } from '../errors';

/**
 * The least time a read of Redis is given before it is taken as hung, ms: a loaded but live Redis
 * answers well within it, so a call with a short timeout is not failed for a slow read.
 */
export const REDIS_HUNG_MS = 2000;

/**
 * `p`, or a TIMEOUT error once `ms` have passed without it settling (`p` goes on; what it settles
 * to late is dropped). For what a call waits on before its deadline's own timer runs (its
 * function's record, the live nodes: Redis reads): a Redis that hangs (stopped, or cut off by the
 * network with its connections left open) would otherwise keep its caller waiting for ever.
 */
export function beforeDeadline<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BruleeError('TIMEOUT', message())), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
