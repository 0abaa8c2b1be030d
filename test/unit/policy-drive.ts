// What keepalive-parts.test.ts and plus-parts.test.ts drive policies with: a generator of their
// own and one call's first step. (Not a test file: vitest runs `*.test.ts` only.)

/** A small generator of our own (an LCG), so the drivers depend on no module under test. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** What a driver holds of a loaded model (the facts the policies are handed beside its model's). */
export interface Held { loadedAt: number; lastUsedAt: number; hits: number }

/**
 * A call of `m` at `now`, as the warm pool serves it: a model held is hit (its last use and hit
 * count updated first, then `access(key)` tells the policies) and the answer is undefined; else the
 * bytes its load needs freed, `used + sizeBytes - budget` (0 or less: it fits).
 */
export function hitOrNeed(held: Map<string, Held>, m: { key: string; sizeBytes: number }, now: number, used: number, budget: number, access: (key: string) => void): number | undefined {
  const h = held.get(m.key);
  if (h) {
    h.lastUsedAt = now;
    h.hits++;
    access(m.key);
    return undefined;
  }
  return used + m.sizeBytes - budget;
}
