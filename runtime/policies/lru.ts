import { lowestScored, scoreScratch, type EvictionPolicy } from './types';

/** Least recently used: evict the entry whose last use is oldest. */
export function lru(): EvictionPolicy {
  return {
    name: 'lru',
    usesPopularity: false,
    selectVictims(req) {
      const c = req.candidates;
      const s = scoreScratch(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.lastUsedAt;
      return lowestScored(c, s, req.needBytes, (e) =>
        `least recently used (idle ${Math.round(req.now - e.lastUsedAt)} ms)`,
      );
    },
  };
}
