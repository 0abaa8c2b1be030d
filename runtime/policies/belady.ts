import { Selection } from './select';
import type { EvictionPolicy } from './types';

/**
 * Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", IBM
 * Systems Journal 1966): evict the entry whose next use is farthest in the future. Optimal in
 * misses when all entries have one size; with mixed sizes and costs it is a strong oracle, not
 * the optimum. Needs `EvictionRequest.future`, so it runs in the simulator only.
 */
export function belady(): EvictionPolicy {
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'belady',
    selectVictims(req) {
      const future = req.future;
      if (!future) throw new Error('belady needs future facts (EvictionRequest.future): it is a simulator-only oracle');
      // Farthest next use first: ascending by the negated next use.
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = -future.nextUse(c[i]!.key, req.now);
      return sel.lowestScored(c, s, req.needBytes, (e) => {
        const next = future.nextUse(e.key, req.now);
        return `next use farthest away (${next === Infinity ? 'never' : `at ${Math.round(next)} ms`})`;
      });
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
  });
}
