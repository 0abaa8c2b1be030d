import { Selection } from './select';
import type { EvictionPolicy } from './types';

/** Least recently used: evict the entry whose last use is oldest. */
export function lru(): EvictionPolicy {
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'lru',
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.lastUsedAt;
      return sel.lowestScored(c, s, req.needBytes, (e) =>
        `least recently used (idle ${Math.round(req.now - e.lastUsedAt)} ms)`,
      );
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
  });
}
