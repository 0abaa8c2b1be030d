import { takeUntilFreed, type EvictionPolicy } from './types';

/** mulberry32: a small seeded generator, so random runs repeat. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random eviction (seeded): the paper's baseline for what cost-blind caching gives. */
export function random(seed = 1): EvictionPolicy {
  const next = seededRandom(seed);
  return {
    name: 'random',
    selectVictims(req) {
      const pool = [...req.candidates].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (let i = pool.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      return takeUntilFreed(pool, req.needBytes, () => 'chosen at random');
    },
  };
}
