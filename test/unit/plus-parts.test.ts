import { describe, expect, it } from 'vitest';
import { cremebruleePlus, type CremeBruleePlusOptions } from '../../runtime/policies/cremebrulee-plus';
import type { EntryFacts, EvictionPolicy, EvictionRequest } from '../../runtime/policies/types';
import type { SimHints } from '../../sim/hints';
import { cremebruleePlusReference } from '../sim/reference-plus';
import { hitOrNeed, lcg, type Held } from './policy-drive';

// cremebrulee-plus's options and its prefetch check, which the simulations exercise but too slowly
// for mutation testing: every decision (victims with their reasons, prefetch picks with theirs) is
// compared with the reference version (test/sim/reference-plus.ts, the code before its prefetch
// check used the utility bound) on small caches driven hook by hook; and a few cases by hand.

interface Model { key: string; sizeBytes: number; loadMs: number }

const entry = (key: string, o: Partial<EntryFacts> = {}): EntryFacts => ({
  key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 1, ...o,
});

/**
 * Drives two policies with the same hooks on a cache of `budget` bytes: calls of skewed popularity
 * (a miss asks both for victims, evicts those of the reference, loads), prefetch checks (the
 * reference's picks are loaded where they fit), now and then a model in flight (left out of the
 * candidates), a model forgotten, a prefetch check without free memory or with a model loading.
 * Returns the number of each decision compared.
 */
function drive(fast: EvictionPolicy, ref: EvictionPolicy, models: Model[], budget: number, seed: number, steps: number) {
  const r = lcg(seed);
  const held = new Map<string, Held>();
  const calls = new Map<string, number>();
  let total = 0;
  let used = 0;
  let now = 0;
  const byKey = new Map(models.map((m) => [m.key, m]));
  const entryOf = (key: string): EntryFacts => {
    const m = byKey.get(key)!;
    const h = held.get(key)!;
    return { ...m, execMs: 1, popularity: total === 0 ? 0 : (calls.get(key) ?? 0) / total, ...h };
  };
  const both = (f: (p: EvictionPolicy) => void) => {
    f(fast);
    f(ref);
  };
  const evict = (key: string) => {
    used -= byKey.get(key)!.sizeBytes;
    held.delete(key);
    both((p) => p.onEvict?.(key, now));
  };
  const n = { victims: 0, prefetch: 0 };
  for (let step = 0; step < steps; step++) {
    now += Math.floor(r() * r() * 3000);
    const x = r();
    if (x < 0.1 && fast.prewarm) {
      // A prefetch check: sometimes without free memory told, sometimes with a model loading.
      const free = r() < 0.1 ? undefined : budget - used;
      const loading = r() < 0.2 ? models[Math.floor(r() * models.length)]!.key : undefined;
      const isResident = (k: string) => held.has(k) || k === loading;
      // The simulator's hint: a check before quietUntil names nothing and changes nothing.
      const quiet = now < (fast as EvictionPolicy & SimHints).quietUntil!(now);
      const want = ref.prewarm!(now, isResident, free);
      if (quiet) expect(want).toEqual([]);
      expect(fast.prewarm(now, isResident, free)).toEqual(want);
      n.prefetch += want.length;
      for (const w of want) {
        const m = byKey.get(w.key)!;
        if (held.has(w.key) || used + m.sizeBytes > budget) continue;
        used += m.sizeBytes;
        held.set(w.key, { loadedAt: now, lastUsedAt: now, hits: 0 });
        both((p) => p.onLoad?.(entryOf(w.key), now));
      }
      continue;
    }
    if (x < 0.12) {
      // A model deleted or replaced.
      const key = models[Math.floor(r() * models.length)]!.key;
      if (held.has(key)) evict(key);
      both((p) => p.forget?.(key));
      continue;
    }
    // A call: skewed towards the first models.
    const m = models[Math.floor(models.length * r() * r())]!;
    calls.set(m.key, (calls.get(m.key) ?? 0) + 1);
    total++;
    const need = hitOrNeed(held, m, now, used, budget, (k) => both((p) => p.onAccess?.(entryOf(k), now)));
    if (need === undefined) continue;
    if (need > 0) {
      const busy = r() < 0.15 ? [...held.keys()][Math.floor(r() * held.size)] : undefined;
      const request: EvictionRequest = {
        now, needBytes: need, incoming: { ...m, execMs: 1, popularity: (calls.get(m.key) ?? 0) / total },
        candidates: [...held.keys()].filter((k) => k !== busy).map(entryOf),
      };
      const victims = ref.selectVictims(request);
      expect(fast.selectVictims(request)).toEqual(victims);
      n.victims += victims.length;
      for (const v of victims) {
        if (used + m.sizeBytes <= budget) break;
        evict(v.key);
      }
      if (used + m.sizeBytes > budget) continue; // refused: a model in flight holds the memory
    }
    now += m.loadMs;
    used += m.sizeBytes;
    held.set(m.key, { loadedAt: now, lastUsedAt: now, hits: 1 });
    both((p) => p.onLoad?.(entryOf(m.key), now));
  }
  return n;
}

/** Models with sizes shared by several (the size groups of the prefetch check), load times apart. */
const models = (count: number, sizes: number[]): Model[] =>
  Array.from({ length: count }, (_, i) => ({ key: `m${String(i).padStart(2, '0')}`, sizeBytes: sizes[i % sizes.length]!, loadMs: 50 + ((i * 137) % 900) }));

describe('cremebrulee-plus decides as the reference version does, option by option', () => {
  const cases: [string, CremeBruleePlusOptions, number][] = [
    ['the defaults', {}, 100],
    ['prefetch (the check by size groups)', { prefetch: true }, 100],
    ['prefetch, a larger cache', { prefetch: true }, 200],
    ['prefetch of three, by saving, once due, every second', { prefetch: true, prefetchCount: 3, prefetchBy: 'saving', prefetchDue: 0.5, prefetchEveryMs: 1000 }, 120],
    ['prefetch by utility once due', { prefetch: true, prefetchDue: 0.8, prefetchEveryMs: 500 }, 120],
    ['a lifetime floor, popularity weight, trimming against prefetch', { prefetch: true, lifetimeFloor: 0.5, popularityWeight: 0.3, trimVictims: 'vsPrefetch' }, 120],
    ['a lifetime floor alone', { lifetimeFloor: 2 }, 100],
    ['popularity weight alone, all of it', { popularityWeight: 1 }, 100],
    ['trimming against prefetch, alpha 0.7', { alpha: 0.7, prefetch: true, trimVictims: 'vsPrefetch', prefetchEveryMs: 700 }, 100],
    ['scarce memory: the soonest due, trimming kept', { prefetch: true, scarce: { below: 3, prefetchBy: 'soonest', prefetchCount: 2, prefetchEveryMs: 500, prefetchDue: 0.2, trimVictims: true } }, 100],
    ['scarce memory: the tuned settings (no trimming while scarce)', { prefetch: true, scarce: { below: 1.5, prefetchCount: Infinity, prefetchEveryMs: 0, prefetchDue: 0.65 } }, 60],
    ['scarce memory, by saving', { prefetch: true, prefetchEveryMs: 300, scarce: { below: 2.5, prefetchBy: 'saving' } }, 90],
    ['scarce settings never scarce (a large cache)', { prefetch: true, scarce: { below: 1.5, prefetchBy: 'soonest', prefetchCount: 4 } }, 200],
    ['one sighting as CremeBrulee, no trimming', { oneSighting: 'popularity', trimVictims: false, prefetch: true, prefetchCount: 2 }, 100],
    ['prefetch without trimming', { prefetch: true, trimVictims: false, prefetchEveryMs: 2000 }, 100],
    // One prefetch by saving, a lifetime floor or a popularity weight: not the check by size groups.
    ['prefetch of one by saving', { prefetch: true, prefetchBy: 'saving', prefetchEveryMs: 800 }, 100],
    ['prefetch of one with a lifetime floor', { prefetch: true, lifetimeFloor: 3, prefetchEveryMs: 800 }, 100],
    ['prefetch of one with a popularity weight', { prefetch: true, popularityWeight: 0.3, prefetchEveryMs: 800 }, 100],
  ];
  const ms = models(14, [10, 20, 20, 35, 10, 50, 20]);
  for (const [name, o, budget] of cases) {
    it(name, () => {
      const n = { victims: 0, prefetch: 0 };
      for (const seed of [1, 2, 3]) {
        const d = drive(cremebruleePlus(o), cremebruleePlusReference(o), ms, budget, seed, 700);
        n.victims += d.victims;
        n.prefetch += d.prefetch;
      }
      // The runs decide something: evictions always, prefetches where the policy prefetches.
      expect(n.victims).toBeGreaterThan(30);
      if (o.prefetch) expect(n.prefetch).toBeGreaterThan(10);
    });
  }
});

describe('cremebrulee-plus, its simulator hints by hand', () => {
  const no = () => false;
  it('usesPopularity: only where one sighting is rated by popularity, or popularity has a weight', () => {
    const uses = (o: CremeBruleePlusOptions) => (cremebruleePlus(o) as { usesPopularity?: boolean }).usesPopularity;
    expect([{}, { prefetch: true }, { oneSighting: 'window' as const, lifetimeFloor: 1 }].map(uses)).toEqual([false, false, false]);
    expect([{ oneSighting: 'popularity' as const }, { popularityWeight: 0.5 }, { prefetch: true, popularityWeight: 0.5 }, { prefetch: true, oneSighting: 'popularity' as const }].map(uses)).toEqual([true, true, true, true]);
  });

  it('quietUntil: the next prefetch check (every prefetchEveryMs, 5 s by default; the scarce setting while memory is scarce); none without prefetch', () => {
    expect('quietUntil' in cremebruleePlus()).toBe(false);
    const quiet = (p: EvictionPolicy) => (p as EvictionPolicy & SimHints).quietUntil!(0);
    const d = cremebruleePlus({ prefetch: true });
    expect(quiet(d)).toBe(-Infinity);
    d.prewarm!(1000, no, 100);
    expect(quiet(d)).toBe(6000);
    const p = cremebruleePlus({ prefetch: true, prefetchEveryMs: 700 });
    p.prewarm!(1000, no, 100);
    expect(quiet(p)).toBe(1700);
    p.prewarm!(1200, no, 100); // before it: nothing changes
    p.prewarm!(2000, no, undefined); // free memory not told: no check
    expect(quiet(p)).toBe(1700);
    // Scarce: f (gap 1000, 60 bytes) is the hottest; 50 bytes seen < 2 × 60: checks every 100 ms.
    const s = cremebruleePlus({ prefetch: true, prefetchEveryMs: 700, scarce: { below: 2, prefetchEveryMs: 100 } });
    for (const t of [0, 1000]) s.onAccess!(entry('f', { sizeBytes: 60, lastUsedAt: t }), t);
    s.prewarm!(2000, no, 50);
    expect(quiet(s)).toBe(2100);
    // 130 bytes seen (>= 2 × 60): not scarce.
    s.prewarm!(2100, no, 130);
    expect(quiet(s)).toBe(2800);
  });
});

describe('cremebrulee-plus at its edges, by hand', () => {
  const no = () => false;
  const r = (candidates: EntryFacts[], needBytes: number, now: number): EvictionRequest => ({
    now, needBytes, candidates, incoming: { key: 'new', sizeBytes: needBytes, loadMs: 10, execMs: 1, popularity: 0 },
  });
  /** Seen at each time (as calls of a loaded model), then evicted: absent, with a learned gap. */
  const absentAfter = (p: EvictionPolicy, key: string, times: number[], o: Partial<EntryFacts> = {}) => {
    for (const t of times) p.onAccess!(entry(key, { lastUsedAt: t, ...o }), t);
    p.onEvict!(key, times.at(-1)!);
  };
  const quiet = (p: EvictionPolicy) => (p as EvictionPolicy & SimHints).quietUntil!(0);

  it('before any call is seen, a one-sighting rate is popularity × 1e-6 even with the window setting', () => {
    const p = cremebruleePlus();
    const c = [entry('a', { popularity: 0.5 }), entry('b', { popularity: 0.25 })];
    expect(p.selectVictims(r(c, 10, 5000))).toEqual([{ key: 'b', reason: 'utility 2.500e-7 lowest (gap NaN ms, idle 5000 ms)' }]);
  });

  it('a zero-byte victim that the eviction does not need is kept', () => {
    const p = cremebruleePlus();
    p.onAccess!(entry('x', { lastUsedAt: 1000 }), 1000);
    // Never seen: utility = loadMs / size / 4000: z 1 / 1 (size 0 counts as 1), b 100 / 10: z first.
    const c = [entry('z', { sizeBytes: 0, loadMs: 1 }), entry('b', { loadMs: 100 })];
    expect(p.selectVictims(r(c, 10, 5000)).map((v) => v.key)).toEqual(['b']);
  });

  it('a load whose call arrived before the last call seen learns no gap from it', () => {
    const p = cremebruleePlus();
    for (const t of [1000, 2000]) p.onAccess!(entry('f', { lastUsedAt: t }), t); // gap 1000
    p.onEvict!('f', 2000);
    // Reloaded at 2100 with a measured load time of 500: its call "arrived" at 1600, before 2000.
    p.onLoad!(entry('f', { lastUsedAt: 2100, loadMs: 500 }), 2100);
    expect(p.selectVictims(r([entry('f', { lastUsedAt: 2100 })], 1, 2600))[0]!.reason).toBe('utility 1.000e-3 lowest (gap 1000 ms, idle 1000 ms)') // last 1600: idle 1000;
  });

  it('evicting or forgetting a model never seen is a no-op', () => {
    const p = cremebruleePlus({ prefetch: true });
    expect(() => p.onEvict!('ghost', 0)).not.toThrow();
    expect(() => p.forget!('ghost')).not.toThrow();
    expect(p.prewarm!(0, no, 100)).toEqual([]);
  });

  it('a function seen once is never prefetched, whatever its utility', () => {
    const p = cremebruleePlus({ prefetch: true });
    p.onLoad!(entry('once', { loadMs: 1000, lastUsedAt: 1000 }), 1000); // one call (at 0)
    p.onEvict!('once', 1000);
    absentAfter(p, 'g', [1000, 2000]);
    expect(p.prewarm!(3000, no, 100).map((v) => v.key)).toEqual(['g']);
  });

  it('the check by size groups: ties of utility go to the smaller key, whichever was evicted first', () => {
    for (const order of [['b', 'a'], ['a', 'b']]) {
      const p = cremebruleePlus({ prefetch: true });
      // Both called at 1000 and 2000 (gap 1000) and evicted: at 2500 (idle 500 < gap) each utility
      // is its bound, 1/1000 × 10/10, exactly.
      for (const k of order) absentAfter(p, k, [1000, 2000]);
      expect(p.prewarm!(2500, no, 100)).toEqual([{ key: 'a', reason: 'prefetch: utility 1.000e-3, among the highest of what is not loaded' }]);
    }
  });

  it('prefetch of several: ties of utility in key order, whichever was evicted first', () => {
    for (const order of [['b', 'a'], ['a', 'b']]) {
      const p = cremebruleePlus({ prefetch: true, prefetchCount: 2 });
      for (const k of order) absentAfter(p, k, [1000, 2000]);
      expect(p.prewarm!(2500, no, 100).map((v) => v.key)).toEqual(['a', 'b']);
    }
  });

  it('prefetchDue: due once idle for exactly that fraction of the gap', () => {
    const p = cremebruleePlus({ prefetch: true, prefetchDue: 0.5, prefetchEveryMs: 0 });
    absentAfter(p, 'f', [1000, 2000]); // gap 1000: due from 2500
    expect(p.prewarm!(2499, no, 100)).toEqual([]);
    expect(p.prewarm!(2500, no, 100).map((v) => v.key)).toEqual(['f']);
  });

  it('trimming against prefetch keeps a victim whose utility equals the best prefetch', () => {
    const p = cremebruleePlus({ prefetch: true, trimVictims: 'vsPrefetch' });
    // a and k alike (gap 1000, last 2000, 1 ms / 10 bytes); k not loaded; c frees the need alone.
    for (const k of ['a', 'k']) for (const t of [1000, 2000]) p.onAccess!(entry(k, { lastUsedAt: t, loadMs: 1 }), t);
    p.onEvict!('k', 2000);
    for (const t of [1000, 3000]) p.onAccess!(entry('c', { lastUsedAt: t, sizeBytes: 40 }), t);
    // At 10000: a 1/8000 × 1/10 = 1.25e-5 < c 1/7000 × 10/40 = 3.57e-5: a, then c (50 >= 40).
    // Without a, 40 still frees 40, and a is worth what prefetching k into its 10 bytes would be.
    const c = [entry('a', { lastUsedAt: 2000, loadMs: 1 }), entry('c', { lastUsedAt: 3000, sizeBytes: 40 })];
    expect(p.selectVictims(r(c, 40, 10_000)).map((v) => v.key)).toEqual(['c']);
  });

  it('scarce memory: the hottest function (smallest gap; ties to the first seen) against the memory seen', () => {
    const scarce = () => cremebruleePlus({ prefetch: true, prefetchEveryMs: 700, scarce: { below: 2, prefetchEveryMs: 100 } });
    // h (gap 500, 20 bytes) is the hottest; b (gap 2000) the largest, 70 bytes.
    const two = () => {
      const p = scarce();
      for (const t of [0, 500]) p.onAccess!(entry('h', { lastUsedAt: t, sizeBytes: 20 }), t);
      for (const t of [0, 2000]) p.onAccess!(entry('b', { lastUsedAt: t, sizeBytes: 70 }), t);
      return p;
    };
    const p1 = two();
    p1.prewarm!(3000, no, 100); // 100 < 2 × 70, but not < 2 × 20: not scarce
    expect(quiet(p1)).toBe(3700);
    const p2 = two();
    p2.prewarm!(3000, no, 40); // exactly 2 × 20: not scarce
    expect(quiet(p2)).toBe(3700);
    const p3 = two();
    p3.prewarm!(3000, no, 39);
    expect(quiet(p3)).toBe(3100);
    // h2 (70 bytes) called as often as h (gap 500) but seen after it: h is the hottest.
    const p4 = two();
    for (const t of [0, 500]) p4.onAccess!(entry('h2', { lastUsedAt: t, sizeBytes: 70 }), t);
    p4.prewarm!(3000, no, 100);
    expect(quiet(p4)).toBe(3700);
  });

  it('scarce memory needs a hottest function: with no gap learned yet, memory is not scarce', () => {
    const p = cremebruleePlus({ prefetch: true, prefetchEveryMs: 700, scarce: { below: 2, prefetchEveryMs: 100 } });
    p.onLoad!(entry('f', { sizeBytes: 60, lastUsedAt: 1000 }), 1000); // one call: no gap
    expect(p.prewarm!(2000, no, 50)).toEqual([]); // 50 < 2 × 60, but no function is the hottest
    expect(quiet(p)).toBe(2700);
  });

  it('scarce memory counts loaded bytes: a model forgotten after its eviction, and loaded again', () => {
    const scarce = () => {
      const p = cremebruleePlus({ prefetch: true, prefetchEveryMs: 700, scarce: { below: 2, prefetchEveryMs: 100 } });
      for (const t of [0, 500]) p.onAccess!(entry('h', { lastUsedAt: t, sizeBytes: 70 }), t); // hottest, 70 bytes
      p.onLoad!(entry('f', { sizeBytes: 60, lastUsedAt: 1000 }), 1000);
      p.onEvict!('f', 1000);
      p.forget!('f');
      return p;
    };
    const p = scarce();
    p.prewarm!(2000, no, 150); // 0 loaded + 150 free >= 2 × 70: not scarce
    expect(quiet(p)).toBe(2700);
    const q = scarce();
    q.onLoad!(entry('f', { sizeBytes: 60, lastUsedAt: 1500 }), 1500);
    q.prewarm!(2000, no, 90); // 60 loaded + 90 free: not scarce
    expect(quiet(q)).toBe(2700);
  });

  it('scarce memory by the soonest expected call (then the shortest gap)', () => {
    const p = cremebruleePlus({ prefetch: true, scarce: { below: 100, prefetchBy: 'soonest', prefetchCount: 3, prefetchEveryMs: 0 } });
    absentAfter(p, 'r', [3000, 6000]); // next call expected at 9000: overdue at 10000
    absentAfter(p, 'p', [8500, 9500]); // at 10500
    absentAfter(p, 'q', [9790, 9990]); // at 10190 (the shortest gap)
    expect(p.prewarm!(10_000, no, 500).map((v) => v.key)).toEqual(['r', 'q', 'p']);
  });
});

describe('cremebrulee-plus after omitReasons (the simulator\'s hint)', () => {
  const no = () => false;
  const omit = (p: EvictionPolicy) => {
    (p as EvictionPolicy & SimHints).omitReasons!();
    return p;
  };
  const absentAfter = (p: EvictionPolicy, key: string, times: number[]) => {
    for (const t of times) p.onAccess!(entry(key, { lastUsedAt: t }), t);
    p.onEvict!(key, times.at(-1)!);
  };
  const req = (candidates: EntryFacts[], needBytes: number, now: number): EvictionRequest => ({
    now, needBytes, candidates, incoming: { key: 'new', sizeBytes: needBytes, loadMs: 10, execMs: 1, popularity: 0 },
  });

  it('victims are the same, each with an empty reason (with and without prefetch)', () => {
    for (const o of [{}, { prefetch: true }]) {
      const p = omit(cremebruleePlus(o));
      // As "before any call is seen" above: b's utility 2.5e-7 is the lowest.
      const c = [entry('a', { popularity: 0.5 }), entry('b', { popularity: 0.25 })];
      expect(p.selectVictims(req(c, 10, 5000))).toEqual([{ key: 'b', reason: '' }]);
    }
  });

  it('prefetch picks are the same, each with an empty reason (the check by size groups, and of several)', () => {
    const one = omit(cremebruleePlus({ prefetch: true }));
    for (const k of ['b', 'a']) absentAfter(one, k, [1000, 2000]);
    expect(one.prewarm!(2500, no, 100)).toEqual([{ key: 'a', reason: '' }]);
    const two = omit(cremebruleePlus({ prefetch: true, prefetchCount: 2 }));
    for (const k of ['b', 'a']) absentAfter(two, k, [1000, 2000]);
    expect(two.prewarm!(2500, no, 100)).toEqual([{ key: 'a', reason: '' }, { key: 'b', reason: '' }]);
  });
});
