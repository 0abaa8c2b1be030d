import { lowestFirst, type EvictionPolicy } from './types';

/**
 * Fixed keep-alive (the default of most serverless platforms, e.g. 10 minutes): a model idle
 * longer than `ttlMs` is dropped even without memory pressure; under pressure, the entry closest
 * to expiry (least recently used) goes first.
 */
export function ttl(ttlMs = 600_000): EvictionPolicy {
  if (!(ttlMs > 0)) throw new RangeError(`ttl: ttlMs must be > 0, got ${ttlMs}`);
  return {
    name: 'ttl',
    selectVictims(req) {
      return lowestFirst(req.candidates, req.needBytes, (e) => e.lastUsedAt, (e) =>
        `under pressure, closest to keep-alive expiry (idle ${Math.round(req.now - e.lastUsedAt)} ms of ${ttlMs})`,
      );
    },
    expired(entries, now) {
      return entries
        .filter((e) => now - e.lastUsedAt >= ttlMs)
        .map((e) => ({ key: e.key, reason: `keep-alive of ${ttlMs} ms expired` }));
    },
  };
}
