import { BruleeError } from '../errors';

/**
 * The least time a wait on Redis is given before Redis is taken as hung, ms: a loaded but live
 * Redis answers well within it, so a call with a short timeout is not failed for a slow read.
 */
export const REDIS_HUNG_MS = 2000;

/**
 * `p`, a wait on Redis, or a TIMEOUT error once `ms` (REDIS_HUNG_MS if longer) have passed without
 * it settling (`p` goes on; what it settles to late is dropped). For what a call waits on before
 * its deadline's own timer runs (its function's record, the live nodes, an async call's writes): a
 * Redis that hangs (stopped, or cut off by the network with its connections left open) would
 * otherwise keep its caller waiting for ever. `late(bound)` says what was not done within the
 * bound; the message adds why and what to check.
 */
export function whileRedisAnswers<T>(p: Promise<T>, ms: number, late: (bound: number) => string): Promise<T> {
  const bound = Math.max(ms, REDIS_HUNG_MS);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BruleeError('TIMEOUT', `${late(bound)}: Redis did not answer in time; check that Redis is up and reachable`)), bound);
  });
  p.catch(() => undefined);
  return Promise.race([p, timedOut]).finally(() => clearTimeout(timer));
}
