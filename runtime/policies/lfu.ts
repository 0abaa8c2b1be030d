import { ByRates, KEY_TINY, Selection } from './select';
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
  const byRates = new ByRates(
    sel,
    policy,
    (e, popularity) => popularity + e.hits * 1e-12,
    (c, keys, pop) => {
      // The scores from the rates and sum as approximated (each within 2^-33, all terms
      // positive: within 2^-30 of the exact score).
      const inv = 1 / pop.approxTotal();
      let low = Infinity;
      let tiny = false;
      for (let i = 0; i < c.length; i++) {
        const e = c[i]!;
        const x = pop.approxRate(e.idx) * inv + e.hits * 1e-12;
        keys[i] = x;
        low = Math.min(low, x);
        if (x < KEY_TINY && x !== 0) tiny = true;
      }
      return tiny ? NaN : low;
    },
  );
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    omitReasons: () => sel.omitReasons(),
    ...byRates.hints,
  });
}
