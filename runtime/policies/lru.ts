import { byScore, takeUntilFreed, type EvictionPolicy } from './types';

/** Least recently used: evict the entry whose last use is oldest. */
export function lru(): EvictionPolicy {
  return {
    name: 'lru',
    selectVictims(req) {
      return takeUntilFreed(byScore(req.candidates, (e) => e.lastUsedAt), req.needBytes, (e) =>
        `least recently used (idle ${Math.round(req.now - e.lastUsedAt)} ms)`,
      );
    },
  };
}
