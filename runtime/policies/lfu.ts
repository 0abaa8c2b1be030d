import { Selection } from './select';
import { SHARE, ShareOrder } from './share-order';
import type { EntryFacts, EvictionPolicy } from './types';

/** lfu's score of an entry whose popularity is `share`. */
const score = (share: number, e: EntryFacts): number => share + e.hits * 1e-12;

/**
 * Least frequently used, by popularity: evict the entry with the smallest share of recent
 * invocations (the workload-only "popularity" baseline of the paper); ties by hits, then recency.
 */
export function lfu(): EvictionPolicy {
  const sel = new Selection();
  const reason = (e: EntryFacts) => `least frequently used (popularity ${e.popularity.toFixed(4)}, ${e.hits} hits)`;
  // For `selectAmongLoadedByShare`: one group, and a score never below the share (share + x,
  // rounded, is at least share for x >= 0: hits count calls).
  const order = new ShareOrder({ group: () => 0, bound: () => SHARE, score });
  const policy: EvictionPolicy = {
    name: 'lfu',
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = score(c[i]!.popularity, c[i]!);
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };
  // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
  return Object.assign(policy, order.hints(sel, reason));
}
