import { BruleeError } from '../errors';

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
