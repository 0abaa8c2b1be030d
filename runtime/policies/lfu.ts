import { Selection } from './select';
import type { EvictionPolicy } from './types';

/**
 * Least frequently used, by popularity: evict the entry with the smallest share of recent
 * invocations (the workload-only "popularity" baseline of the paper); ties by hits, then recency.
 */
export function lfu(): EvictionPolicy {
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'lfu',
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.popularity + c[i]!.hits * 1e-12;
      return sel.lowestScored(c, s, req.needBytes, (e) =>
        `least frequently used (popularity ${e.popularity.toFixed(4)}, ${e.hits} hits)`,
      );
    },
  };
  return Object.assign(policy, {
    // Simulator speed hint (contract: `SimHints`, sim/hints.ts); the runtime does not use it.
    omitReasons: () => sel.omitReasons(),
  });
}
