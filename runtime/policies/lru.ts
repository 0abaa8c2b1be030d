import { lowestFirst, type EvictionPolicy } from './types';

/** Least recently used: evict the entry whose last use is oldest. */
export function lru(): EvictionPolicy {
  return {
    name: 'lru',
    usesPopularity: false,
    selectVictims(req) {
      return lowestFirst(req.candidates, req.needBytes, (e) => e.lastUsedAt, (e) =>
        `least recently used (idle ${Math.round(req.now - e.lastUsedAt)} ms)`,
      );
    },
  };
}
