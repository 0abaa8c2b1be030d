import { lowestFirst, type EvictionPolicy } from './types';

/**
 * Least frequently used, by popularity: evict the entry with the smallest share of recent
 * invocations (the workload-only "popularity" baseline of the paper); ties by hits, then recency.
 */
export function lfu(): EvictionPolicy {
  return {
    name: 'lfu',
    selectVictims(req) {
      return lowestFirst(req.candidates, req.needBytes, (e) => e.popularity + e.hits * 1e-12, (e) =>
        `least frequently used (popularity ${e.popularity.toFixed(4)}, ${e.hits} hits)`,
      );
    },
  };
}
