import type { EvictionPolicy, EvictionRequest, Victim } from './types';

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
  // Every key seen, in key order, with its rank: lets each call put the candidates in key order
  // in O(candidates + keys) instead of sorting strings.
  const sorted: string[] = [];
  const rank = new Map<string, number>();
  let slot = new Int32Array(0);
  let rankedKeys = 0;
  const rankOf = (key: string): number => {
    let r = rank.get(key);
    if (r === undefined) {
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[mid]! < key) lo = mid + 1;
        else hi = mid;
      }
      sorted.splice(lo, 0, key);
      for (let i = lo; i < sorted.length; i++) rank.set(sorted[i]!, i);
      r = lo;
    }
    return r;
  };
  // The ranks of the last call's candidates by position: callers tend to pass much the same
  // candidates in much the same order, so a candidate whose key is the one seen at its position
  // last time (and no key was added since) takes that rank without a lookup.
  let memoKeys: string[] = [];
  let memoRanks = new Int32Array(0);
  let memoSorted = -1;
  let pool = new Int32Array(0);
  let bits = new Int32Array(0);
  const policy: EvictionPolicy = {
    name: 'random',
    selectVictims(req) {
      // The candidates in key order (as a sort by key would give), then a seeded Fisher-Yates shuffle.
      const c = req.candidates;
      const n = c.length;
      if (memoRanks.length < n) {
        memoRanks = new Int32Array(2 * n);
        memoKeys = [];
      }
      for (let i = 0; i < n; i++) {
        const key = c[i]!.key;
        if (memoKeys[i] !== key || memoSorted !== sorted.length) {
          memoKeys[i] = key;
          memoRanks[i] = rankOf(key);
        }
      }
      if (n > 0 && sorted.length !== rankedKeys) {
        // Keys were added: ranks shift.
        rankedKeys = sorted.length;
        for (let i = 0; i < n; i++) memoRanks[i] = rank.get(c[i]!.key)!;
      }
      memoSorted = sorted.length;
      memoKeys.length = n; // positions past n hold older calls' ranks
      // The candidates' ranks as bits (a word per 32 ranks), read back lowest first: key order,
      // in one pass over the words and the candidates instead of over every key seen.
      if (slot.length < sorted.length) slot = new Int32Array(2 * sorted.length);
      const words = (sorted.length + 31) >>> 5;
      if (bits.length < words) bits = new Int32Array(2 * words);
      for (let i = 0; i < n; i++) {
        const r = memoRanks[i]!;
        slot[r] = i;
        bits[r >>> 5]! |= 1 << (r & 31);
      }
      // The shuffle moves candidate indices (in `pool`), not the entries.
      if (pool.length < n) pool = new Int32Array(2 * n);
      let m = 0;
      for (let w = 0; w < words; w++) {
        let b = bits[w]!;
        if (b === 0) continue;
        bits[w] = 0;
        while (b !== 0) {
          const low = b & -b;
          pool[m++] = slot[(w << 5) + 31 - Math.clz32(low)]!;
          b ^= low;
        }
      }
      shuffle(m);
      // As takeUntilFreed over the shuffled candidates.
      const victims: Victim[] = [];
      let freed = 0;
      for (let k = 0; k < m; k++) {
        if (freed >= req.needBytes) break;
        const e = c[pool[k]!]!;
        victims.push({ key: e.key, reason: 'chosen at random' });
        freed += e.sizeBytes;
      }
      return victims;
    },
    onLoad(e) {
      if (!keeping) return;
      loadedSize.set(e.key, e.sizeBytes);
      const r = rankOf(e.key);
      if (bitsFor === sorted.length) loadedBits[r >>> 5]! |= 1 << (r & 31);
    },
    onEvict(key) {
      if (!keeping || !loadedSize.delete(key)) return;
      const r = rank.get(key)!;
      if (bitsFor === sorted.length) loadedBits[r >>> 5]! &= ~(1 << (r & 31));
    },
  };
  /** Fisher-Yates over pool[0..m), with the generator's next m - 1 draws. */
  const shuffle = (m: number) => {
    for (let i = m - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      const t = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = t;
    }
  };
  // For `selectAmongLoaded`: the loaded models (with their sizes) and their ranks as bits, kept by
  // the hooks only from its first call on (built then from its candidates, the loaded models), so
  // a caller that never asks (the runtime) pays nothing at the hooks but a call. The bits are for
  // the ranks of `bitsFor` keys seen; a new key shifts ranks, and the next ask builds them again.
  let keeping = false;
  const loadedSize = new Map<string, number>();
  let loadedBits = new Int32Array(0);
  let bitsFor = -1;
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    selectAmongLoaded(req: EvictionRequest): Victim[] {
      if (!keeping) {
        keeping = true;
        for (const e of req.candidates) loadedSize.set(e.key, e.sizeBytes);
      }
      if (bitsFor !== sorted.length) {
        for (const key of loadedSize.keys()) rankOf(key);
        const words = (sorted.length + 31) >>> 5;
        if (loadedBits.length < words) loadedBits = new Int32Array(2 * words);
        loadedBits.fill(0);
        for (const key of loadedSize.keys()) {
          const r = rank.get(key)!;
          loadedBits[r >>> 5]! |= 1 << (r & 31);
        }
        bitsFor = sorted.length;
      }
      // The loaded models' ranks in key order (what selectVictims puts its candidates in), the
      // same shuffle, the same victims.
      const n = loadedSize.size;
      if (pool.length < n) pool = new Int32Array(2 * n);
      let m = 0;
      const words = (bitsFor + 31) >>> 5;
      for (let w = 0; w < words; w++) {
        let b = loadedBits[w]!;
        while (b !== 0) {
          const low = b & -b;
          pool[m++] = (w << 5) + 31 - Math.clz32(low);
          b ^= low;
        }
      }
      shuffle(m);
      const victims: Victim[] = [];
      let freed = 0;
      for (let k = 0; k < m; k++) {
        if (freed >= req.needBytes) break;
        const key = sorted[pool[k]!]!;
        victims.push({ key, reason: 'chosen at random' });
        freed += loadedSize.get(key)!;
      }
      return victims;
    },
  });
}
