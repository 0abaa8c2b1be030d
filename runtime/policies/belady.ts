import { lowestScored, scoreScratch, type EvictionPolicy } from './types';

/**
 * Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", IBM
 * Systems Journal 1966): evict the entry whose next use is farthest in the future. Optimal in
 * misses when all entries have one size; with mixed sizes and costs it is a strong oracle, not
 * the optimum. Needs `EvictionRequest.future`, so it runs in the simulator only.
 */
export function belady(): EvictionPolicy {
  return {
    name: 'belady',
    usesPopularity: false,
    selectVictims(req) {
      const future = req.future;
      if (!future) throw new Error('belady needs future facts (EvictionRequest.future): it is a simulator-only oracle');
      // Farthest next use first: ascending by the negated next use.
      const c = req.candidates;
      const s = scoreScratch(c.length);
      for (let i = 0; i < c.length; i++) s[i] = -future.nextUse(c[i]!.key, req.now);
      return lowestScored(c, s, req.needBytes, (e) => {
        const next = future.nextUse(e.key, req.now);
        return `next use farthest away (${next === Infinity ? 'never' : `at ${Math.round(next)} ms`})`;
      });
    },
  };
}
