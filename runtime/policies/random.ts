import type { EvictionPolicy, EvictionRequest, NumberedEntry, Victim } from './types';

/** mulberry32's step: its state moves by this much at each draw (mod 2^32). */
const STEP = 0x6d2b79f5;

/** mulberry32's output from state `a` (already stepped): its 32 bits, as an int32. */
function bits32(a: number): number {
  let t = a;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return t ^ (t >>> 14);
}

/** mulberry32's draw from state `a` (already stepped): a number in [0, 1). */
function draw(a: number): number {
  return (bits32(a) >>> 0) / 4294967296;
}

/**
 * `Math.floor(draw(a) * n)` (n >= 1), a shuffle's index: for n <= 2^16 in integers, as the high
 * 32 bits of x·n (x the draw's 32 bits), which is what the float product gives exactly (x / 2^32
 * times n has at most 49 significant bits, so it is not rounded).
 */
function drawBelow(a: number, n: number): number {
  const x = bits32(a);
  if (n > 0x10000) return Math.floor(((x >>> 0) / 4294967296) * n);
  return (Math.imul(x >>> 16, n) + (Math.imul(x & 0xffff, n) >>> 16)) >>> 16;
}

/** mulberry32: a small seeded generator, so random runs repeat. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + STEP) >>> 0;
    return draw(a);
  };
}

/** Random eviction (seeded): the paper's baseline for what cost-blind caching gives. */
export function random(seed = 1): EvictionPolicy {
  // seededRandom(seed), with its state here: `selectAmongLoaded` moves it on by many draws at once.
  let state = seed >>> 0;
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
      if (byRank !== null) {
        const i = (e as NumberedEntry).idx;
        const r = rankOfModel[i]!;
        if ((loadedBits[r >>> 5]! & (1 << (r & 31))) === 0) nLoaded++;
        loadedBits[r >>> 5]! |= 1 << (r & 31);
        modelSize[i] = e.sizeBytes;
        return;
      }
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
      state = (state + STEP) >>> 0;
      const j = drawBelow(state, i + 1);
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
  // `selectAmongLoaded`'s shuffle without shuffling: the victims are the shuffled pool's first few
  // places, and where each comes from in the pool before the shuffle follows from the draws alone.
  // The shuffle swaps places i and j_i for i = m-1 down to 1 (j_i from the (m-i)-th draw), so place
  // p ends up holding what was at τ_{m-1}(...τ_1(p)), τ_i the swap of i and j_i: the draws in reverse
  // order (the state after draw d is the state before them + d steps), each place followed through
  // them, and the state left where the m-1 draws leave it. The pool before the shuffle is the
  // loaded ranks in order: the q-th is the q-th bit set in `loadedBits`.
  // With the caller's model numbers (the simulator's `numberModels`): every key's rank among all
  // of them, fixed (byRank: the models in key order; null until then), the loaded ones' ranks as
  // bits (`loadedBits`, kept at the hooks from the start) and their sizes by number.
  let byRank: Int32Array | null = null;
  let rankOfModel = new Int32Array(0);
  let modelKeys: readonly string[] = [];
  let modelSize = new Float64Array(0);
  let nLoaded = 0;
  const victimOf = (r: number): Victim => {
    if (byRank === null) return { key: sorted[r]!, reason: 'chosen at random' };
    const i = byRank[r]!;
    return { key: modelKeys[i]!, reason: 'chosen at random', idx: i } as Victim;
  };
  const sizeOf = (r: number): number => (byRank === null ? loadedSize.get(sorted[r]!)! : modelSize[byRank[r]!]!);
  const FRONT = 4;
  const front = new Int32Array(FRONT);
  /** By pool place: 1 + which of `front` is there now, or 0 (only places past FRONT are marked). */
  let mark = new Uint8Array(0);
  const nthLoaded = (q: number): number => {
    for (let w = 0; ; w++) {
      let b = loadedBits[w]!;
      const c = popcount(b);
      if (q >= c) {
        q -= c;
        continue;
      }
      for (; q > 0; q--) b &= b - 1;
      return (w << 5) + 31 - Math.clz32(b & -b);
    }
  };
  /** The victims from the shuffle's first FRONT places, or null (state untouched) if they free too little. */
  const shuffledFront = (m: number, needBytes: number): Victim[] | null => {
    const k = m < FRONT ? m : FRONT;
    const fr = front;
    for (let p = 0; p < k; p++) fr[p] = p;
    // The state after the last draw (the one of place 1), as an int32 (the same 32 bits: bits32
    // reads only those). The draws below are bits32 and drawBelow written out, with the step as a
    // literal and every array in a local: this loop runs m - 1 times an eviction, and through a
    // helper or a closure's variable each turn re-checked what it read.
    let st = (state + Math.imul(m - 1, STEP)) | 0;
    let i = 1;
    for (; i < m && i < FRONT; i++) {
      const j = drawBelow(st, i + 1);
      st = (st - 0x6d2b79f5) | 0;
      for (let p = 0; p < k; p++) {
        const at = fr[p]!;
        if (at === i) fr[p] = j;
        else if (at === j) fr[p] = i;
      }
    }
    if (i < m) {
      // From place FRONT on, every place followed is below i (it is where it was, or an earlier
      // step's i): only j_i can move one, to i.
      if (mark.length < m) mark = new Uint8Array(2 * m);
      const mk = mark;
      for (let p = 0; p < k; p++) mk[fr[p]!] = p + 1;
      for (; i < m; i++) {
        // j = drawBelow(st, i + 1).
        let t = st;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        t ^= t >>> 14;
        const n = i + 1;
        const j = n > 0x10000 ? Math.floor(((t >>> 0) / 4294967296) * n) : (Math.imul(t >>> 16, n) + (Math.imul(t & 0xffff, n) >>> 16)) >>> 16;
        st = (st - 0x6d2b79f5) | 0;
        const q = mk[j]!;
        if (q !== 0) {
          mk[j] = 0;
          mk[i] = q;
          fr[q - 1] = i;
        }
      }
      for (let p = 0; p < k; p++) mk[fr[p]!] = 0;
    }
    const victims: Victim[] = [];
    let freed = 0;
    for (let p = 0; p < k; p++) {
      if (freed >= needBytes) break;
      const r = nthLoaded(front[p]!);
      victims.push(victimOf(r));
      freed += sizeOf(r);
    }
    if (!(freed >= needBytes) && k < m) return null;
    if (m > 1) state = (state + Math.imul(m - 1, STEP)) >>> 0;
    return victims;
  };
  /** The loaded models' ranks in key order (what selectVictims puts its candidates in), the same shuffle, the same victims. */
  const amongLoadedBits = (n: number, words: number, needBytes: number): Victim[] => {
    const fast = shuffledFront(n, needBytes);
    if (fast !== null) return fast;
    if (pool.length < n) pool = new Int32Array(2 * n);
    let m = 0;
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
      if (freed >= needBytes) break;
      victims.push(victimOf(pool[k]!));
      freed += sizeOf(pool[k]!);
    }
    return victims;
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    selectAmongLoaded(req: EvictionRequest): Victim[] {
      if (byRank !== null) return amongLoadedBits(nLoaded, loadedBits.length, req.needBytes);
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
      return amongLoadedBits(loadedSize.size, (bitsFor + 31) >>> 5, req.needBytes);
    },
    numberModels(all: readonly string[]): boolean {
      if (sorted.length > 0 || keeping) return false; // (a key was seen: ranks are by key from then on)
      const n = all.length;
      byRank = Int32Array.from(all.keys()).sort((a, b) => (all[a]! < all[b]! ? -1 : all[a]! > all[b]! ? 1 : 0));
      rankOfModel = new Int32Array(n);
      for (let r = 0; r < n; r++) rankOfModel[byRank[r]!] = r;
      modelKeys = all;
      modelSize = new Float64Array(n);
      loadedBits = new Int32Array((n + 31) >>> 5);
      return true;
    },
    onEvictNumber(i: number): void {
      const r = rankOfModel[i]!;
      if ((loadedBits[r >>> 5]! & (1 << (r & 31))) === 0) return;
      loadedBits[r >>> 5]! &= ~(1 << (r & 31));
      nLoaded--;
    },
  });
}

/** The number of bits set in a 32-bit word. */
function popcount(b: number): number {
  b -= (b >>> 1) & 0x55555555;
  b = (b & 0x33333333) + ((b >>> 2) & 0x33333333);
  return (Math.imul((b + (b >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}
