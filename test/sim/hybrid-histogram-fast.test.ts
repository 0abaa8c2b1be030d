import { describe, expect, it } from 'vitest';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { seededRandom } from '../../runtime/policies/random';
import type { EntryFacts, EvictionPolicy, Victim } from '../../runtime/policies/types';
import { simulate } from '../../sim/engine';
import { simHints, type SimHints } from '../../sim/hints';
import type { SimModel } from '../../sim/trace';
import { randomTrace } from './helpers';
import { referenceHybridHistogram } from './reference-policies';

// Short bins and range, so histograms become representative and pre-warm windows open quickly.
const HH = { binMs: 500, rangeMs: 60_000, fixedKeepAliveMs: 20_000, minSamples: 5, minCv: 1.5 };

/** What a caller that loads named models in order, each that still fits, loads (the warm pool, the simulator). */
function loadedBy(named: readonly Victim[], sizes: ReadonlyMap<string, number>, freeBytes: number): string[] {
  const out: string[] = [];
  let used = 0;
  for (const v of named) {
    const size = sizes.get(v.key)!;
    if (used + size > freeBytes) continue;
    used += size;
    out.push(v.key);
  }
  return out;
}

/**
 * The fast and the reference policy fed the same hooks (random calls, loads, evictions), asked
 * `prewarm` at each step with a random amount of free memory.
 */
function drive(sizeOf: (i: number) => number, check: (fast: Victim[], ref: Victim[], free: number, sizes: ReadonlyMap<string, number>) => void) {
  const fast = hybridHistogram(HH);
  simHints(fast).prewarmInOrder!(); // as the simulator asks (the runtime does not)
  const ref = referenceHybridHistogram(HH);
  const r = seededRandom(5);
  const keys = Array.from({ length: 24 }, (_, i) => `k${i}`);
  const sizes = new Map(keys.map((k, i) => [k, sizeOf(i)]));
  const loaded = new Set<string>();
  const isResident = (k: string) => loaded.has(k);
  const entry = (key: string, hits: number, now: number): EntryFacts => ({
    key, sizeBytes: sizes.get(key)!, loadMs: 0, execMs: 1, popularity: 0, loadedAt: now, lastUsedAt: now, hits,
  });
  let now = 0;
  let named = 0;
  for (let step = 0; step < 20_000; step++) {
    now += Math.floor(r() * 400);
    const key = keys[Math.floor(keys.length * r() * r())]!;
    if (loaded.has(key)) {
      fast.onAccess!(entry(key, 2, now), now);
      ref.onAccess!(entry(key, 2, now), now);
    } else {
      loaded.add(key);
      fast.onLoad!(entry(key, 1, now), now);
      ref.onLoad!(entry(key, 1, now), now);
    }
    // Evict a few (the pre-warm windows then find them unloaded).
    for (const k of [...loaded]) {
      if (r() < 0.3) {
        loaded.delete(k);
        fast.onEvict!(k, now);
        ref.onEvict?.(k, now);
      }
    }
    const free = Math.floor(r() * 40) + (r() < 0.2 ? 0.5 : 0);
    const f = fast.prewarm!(now, isResident, free);
    const rf = ref.prewarm!(now, isResident);
    named += f.length;
    check(f, rf, free, sizes);
    // What the caller loaded is loaded (as the warm pool and the simulator report it).
    for (const key of loadedBy(f, sizes, free)) {
      loaded.add(key);
      fast.onLoad!(entry(key, 0, now), now);
      ref.onLoad!(entry(key, 0, now), now);
    }
  }
  expect(named).toBeGreaterThan(500);
}

describe('hybrid-histogram: prewarm names what the caller would load', () => {
  it('whole byte counts: in pre-warm order, only those that fit the free memory left by the ones named before', () => {
    drive((i) => 1 + ((i * 7) % 13), (fast, ref, free, sizes) => {
      const expected = Number.isInteger(free) ? loadedBy(ref, sizes, free) : ref.map((v) => v.key).filter((k) => sizes.get(k)! <= free);
      expect(fast.map((v) => v.key)).toEqual(expected);
      expect(fast.every((v) => v.reason === 'pre-warm window reached')).toBe(true);
    });
  });
  it('sizes that are not whole numbers: every model that fits alone, in pre-warm order', () => {
    drive((i) => 0.5 + ((i * 7) % 13), (fast, ref, free, sizes) => {
      expect(fast.map((v) => v.key)).toEqual(ref.map((v) => v.key).filter((k) => sizes.get(k)! <= free));
    });
  });
});

describe('hybrid-histogram: selectAmongLoaded answers as selectVictims does', () => {
  /** Every eviction of a run; with `among`, the simulator's `selectAmongLoaded` hint is used. */
  const run = (policy: EvictionPolicy, models: readonly SimModel[], budget: number) => {
    const trace = randomTrace(3, 5000, 60);
    const ev: string[] = [];
    const { wallMs: _w, ...r } = simulate(trace, models, policy, { budgetBytes: budget, onEvict: (k, t, c) => ev.push(`${t}:${k}:${c}`) });
    return { ev, r };
  };
  // A few large models among many small ones, so a miss on a large one needs many victims (more
  // than the few minimum scans before the rest come from a heap).
  const trace = randomTrace(3, 5000, 60);
  const models: SimModel[] = trace.functions.map((key, f) => ({
    key, sizeBytes: f % 9 === 4 ? 3000 + f : 20 + ((f * 53) % 200), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200),
  }));
  for (const budget of [3500, 6000, 12000]) {
    it(`budget ${budget}: the same evictions as the reference, and as without the hint`, () => {
      const withoutAmong = (): EvictionPolicy => {
        const p = hybridHistogram(HH);
        return Object.assign(Object.create(p) as EvictionPolicy, { selectAmongLoaded: undefined });
      };
      let asked = 0;
      let most = 0;
      const counted = (): EvictionPolicy => {
        const p = hybridHistogram(HH) as EvictionPolicy & Required<Pick<SimHints, 'selectAmongLoaded'>>;
        const among = p.selectAmongLoaded.bind(p);
        return Object.assign(Object.create(p) as EvictionPolicy, {
          selectAmongLoaded: (req: Parameters<typeof among>[0]) => {
            const v = among(req);
            asked++;
            most = Math.max(most, v.length);
            return v;
          },
        });
      };
      const fast = run(counted(), models, budget);
      const plain = run(withoutAmong(), models, budget);
      const ref = run(referenceHybridHistogram(HH), models, budget);
      expect(asked).toBeGreaterThan(100);
      expect(most).toBeGreaterThan(8);
      expect(fast.ev).toEqual(ref.ev);
      expect(fast.r).toEqual(ref.r);
      expect(plain.ev).toEqual(ref.ev);
    });
  }
});

describe('hybrid-histogram: percentiles kept as samples come equal those counted from the histogram', () => {
  // Idle times whose spread changes every few hundred calls (one bin, a few, the whole range, out
  // of range), so each function's percentiles move up and down across the bit words of its bins.
  // After each call, the windows (keep-alive end from the tail, pre-warm from the head) of the fast
  // policy and the reference (which counts from bin 0 at every call), read through the reasons.
  const cases: [string, Parameters<typeof hybridHistogram>[0]][] = [
    ['5th and 99th percentiles, 100 bins', { binMs: 100, rangeMs: 10_000, margin: 0, minSamples: 3, minCv: 0.5, fixedKeepAliveMs: 5000 }],
    ['30th and 60th percentiles, 70 bins', { binMs: 100, rangeMs: 7000, margin: 0, minSamples: 5, minCv: 0.2, headPct: 30, tailPct: 60, fixedKeepAliveMs: 5000 }],
    ['20th and 50th percentiles, 33 bins', { binMs: 300, rangeMs: 9900, margin: 0, minSamples: 2, minCv: 0.1, headPct: 20, tailPct: 50, fixedKeepAliveMs: 5000 }],
  ];
  for (const [name, o] of cases) {
    it(name, () => {
      const fast = hybridHistogram(o);
      const ref = referenceHybridHistogram(o);
      const r = seededRandom(11);
      const keys = Array.from({ length: 6 }, (_, i) => `f${i}`);
      const last = new Map<string, number>();
      const spread = new Map<string, number>();
      const entry = (key: string, now: number): EntryFacts => ({ key, sizeBytes: 1, loadMs: 0, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: now, hits: 2 });
      let moved = 0;
      let idle = 0;
      let before = '';
      for (let step = 0; step < 30_000; step++) {
        const key = keys[Math.floor(r() * keys.length)]!;
        if (step % 400 === 0 || !spread.has(key)) spread.set(key, [100, 700, 3000, 12_000, 40_000][Math.floor(r() * 5)]!);
        const now = (last.get(key) ?? 0) + 1 + Math.floor(r() * spread.get(key)!);
        last.set(key, now);
        fast.onAccess!(entry(key, now), now);
        ref.onAccess!(entry(key, now), now);
        const e = entry(key, now);
        const req = { now, needBytes: 1, candidates: [e], incoming: { ...e, key: 'x' } };
        const got = [fast.selectVictims(req)[0]!.reason, fast.expired!([e], now)] as const;
        expect(got).toEqual([ref.selectVictims(req)[0]!.reason, ref.expired!([e], now)]);
        // (The keep-alive window's length, from the tail; a pre-warm window, from the head.)
        if (got[0] !== before) moved++;
        before = got[0];
        if (got[1].length > 0) idle++;
      }
      expect(moved).toBeGreaterThan(3000); // the tail percentile moves
      expect(idle).toBeGreaterThan(3000); // the head percentile above bin 0
    });
  }
});

describe('hybrid-histogram: checks by number (expiredNumbers, prewarmNumbers) act as expired and prewarm do', () => {
  /** hybrid-histogram with the two hints or without them (the simulator then asks `expired` and `prewarm`). */
  const make = (byNumber: boolean): EvictionPolicy => {
    const p = hybridHistogram(HH);
    return byNumber ? p : Object.assign(Object.create(p) as EvictionPolicy, { expiredNumbers: undefined, prewarmNumbers: undefined });
  };
  for (const slots of [1, 3]) {
    it(`${slots} slot(s): the same expirations and pre-warm loads, in the same order, and the same results`, () => {
      for (const seed of [1, 2]) {
        const t = randomTrace(seed, 5000, 30);
        const models: SimModel[] = t.functions.map((key, i) => ({ key, sizeBytes: 1 + (i % 5), loadMs: 150 + 1300 * (i % 4), execMs: 20 + (i % 3) * 700 }));
        for (const budgetBytes of [8, 25, 100]) {
          const run = (byNumber: boolean) => {
            const log: string[] = [];
            const { wallMs: _w, ...r } = simulate(t, models, make(byNumber), {
              budgetBytes, slots,
              onEvict: (k, now, c) => log.push(`${k}@${now}:${c}`),
              onLoadStart: (k, pre) => log.push(`load ${k} ${pre}`),
            });
            return { r, log };
          };
          const fast = run(true);
          const slow = run(false);
          expect(fast.r.prewarmLoads).toBeGreaterThan(50);
          expect(fast.r.expirations).toBeGreaterThan(50);
          expect(fast.log).toEqual(slow.log);
          expect(fast.r).toEqual(slow.r);
        }
      }
    });
  }
});
