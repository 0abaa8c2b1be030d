import { describe, expect, it } from 'vitest';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { gdsf } from '../../runtime/policies/gdsf';
import { CREMEBRULEE_PLUS_TUNED } from '../../runtime/policies';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { random, seededRandom } from '../../runtime/policies/random';
import { byScore, lowestFirst, takeUntilFreed } from '../../runtime/policies/select';
import type { EntryFacts, EvictionPolicy } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import type { SimHints } from '../../sim/hints';
import type { SimModel } from '../../sim/trace';
import { randomTrace, traceOf } from './helpers';
import { cremebruleePlusReference } from './reference-plus';
import { referenceGdsf, referenceHybridHistogram, referenceRandom } from './reference-policies';

describe('lowestFirst picks the victims a full sort picks', () => {
  it('on random candidates with tied scores, tied last uses, infinities and any need', () => {
    const r = seededRandom(42);
    const pick = <T,>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
    for (let round = 0; round < 3000; round++) {
      const n = Math.floor(r() * 40);
      const scoreKind = pick(['few', 'many', 'inf']);
      const cands: EntryFacts[] = [];
      const keys = new Set<string>();
      while (cands.length < n) {
        const key = `k${Math.floor(r() * 1000)}`;
        if (keys.has(key)) continue;
        keys.add(key);
        cands.push({
          key, sizeBytes: 1 + Math.floor(r() * 10), loadMs: r() * 100, execMs: 1, popularity: Math.floor(r() * 3) / 3,
          loadedAt: 0, lastUsedAt: Math.floor(r() * 5), hits: Math.floor(r() * 4),
        });
      }
      const scores = new Map(cands.map((e) => [e.key, scoreKind === 'few' ? Math.floor(r() * 3) : scoreKind === 'inf' ? pick([-Infinity, Infinity, 0, 1]) : r()]));
      const score = (e: EntryFacts) => scores.get(e.key)!;
      const need = pick([0, -1, 1, 2, 5, 10, 30, 100, 1000, r() * 50]);
      const reason = (e: EntryFacts) => `${e.key}:${score(e)}`;
      const fast = lowestFirst(cands, need, score, reason);
      const ref = takeUntilFreed(byScore(cands, score), need, reason);
      expect(fast).toEqual(ref);
    }
  });
});

/** Every eviction and pre-warm load of a run, in order, and its result. */
function run(policy: EvictionPolicy, models: readonly SimModel[], budget: number, opts: Partial<SimOptions> = {}) {
  const trace = randomTrace(7, 4000, 40);
  const ev: string[] = [];
  const r = simulate(trace, models, policy, { budgetBytes: budget, onEvict: (k, t, cause) => ev.push(`${t}:${k}:${cause}`), ...opts });
  return { ev, r: { ...r, wallMs: 0 } };
}

describe('the fast policies decide as the reference versions do', () => {
  const trace = randomTrace(7, 4000, 40);
  const models: SimModel[] = trace.functions.map((key, f) => ({
    key, sizeBytes: 100 + ((f * 53) % 400), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200),
  }));
  // Short bins and range, so histograms become representative and pre-warm windows open on this trace.
  const hh = { binMs: 500, rangeMs: 60_000, fixedKeepAliveMs: 20_000, minSamples: 5, minCv: 1.5 };
  for (const budget of [800, 2000, 5000, 20000]) {
    for (const sweepMs of [0, 250, 1000]) {
      it(`hybrid-histogram, budget ${budget}, checks every ${sweepMs} ms`, () => {
        const fast = run(hybridHistogram(hh), models, budget, { sweepMs });
        const ref = run(referenceHybridHistogram(hh), models, budget, { sweepMs });
        expect(ref.r.prewarmLoads + ref.r.expirations).toBeGreaterThan(0);
        expect(fast.ev).toEqual(ref.ev);
        expect(fast.r).toEqual(ref.r);
      });
    }
  }
  it('random, called directly on candidate lists that change between calls (keys come and go, move, new keys appear)', () => {
    const fast = random(3);
    const ref = referenceRandom(seededRandom(3));
    const rand = seededRandom(11);
    const all = Array.from({ length: 80 }, (_, i) => ({
      key: `k${(i * 37) % 80}`, sizeBytes: 1 + (i % 4), loadMs: 1, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 1,
    }));
    let list = all.slice(0, 20);
    let known = 20; // keys beyond this one have not been seen yet (a new one shifts the ranks)
    for (let step = 0; step < 3000; step++) {
      const r = rand();
      if (r < 0.3 && list.length > 1) {
        const i = Math.floor(rand() * list.length); // swap-remove, as the simulator does
        list[i] = list[list.length - 1]!;
        list.pop();
      } else if (r < 0.6) {
        const pick = r < 0.35 && known < all.length ? known++ : Math.floor(rand() * known);
        if (!list.some((e) => e.key === all[pick]!.key)) list.push(all[pick]!);
      } else if (r < 0.62) {
        list = list.slice().sort(() => rand() - 0.5);
      } else if (r < 0.64) {
        list = list.slice(0, Math.floor(rand() * list.length));
      } else if (r < 0.66) {
        list = list.map((e) => ({ ...e })); // the same keys in other objects (and other strings)
        for (const e of list) e.key = (' ' + e.key).slice(1);
      }
      const req = { now: step, needBytes: 1 + Math.floor(rand() * 8), candidates: list, incoming: all[0]! };
      expect(fast.selectVictims(req)).toEqual(ref.selectVictims(req));
    }
  });
  for (const numbered of [false, true]) {
    it(`random, selectAmongLoaded over the loaded models${numbered ? ' (numbered)' : ''} (any need: one victim to all of them, the shuffle's front and past it)`, () => {
      const fast = random(5) as EvictionPolicy & SimHints;
      const ref = referenceRandom(seededRandom(5));
      const rand = seededRandom(17);
      const keys = Array.from({ length: 90 }, (_, i) => `k${(i * 7919) % 90}`);
      if (numbered) expect(fast.numberModels!(keys)).toBe(true);
      const loaded = new Map<string, EntryFacts>();
      let asked = 0;
      for (let step = 0; step < 4000; step++) {
        const idx = Math.floor(rand() * 90);
        const key = keys[idx]!;
        if (loaded.has(key)) {
          if (rand() < 0.5) {
            loaded.delete(key);
            if (numbered) fast.onEvictNumber!(idx, step);
            else fast.onEvict!(key, step);
          }
        } else {
          const e = { key, idx, sizeBytes: 1 + Math.floor(rand() * 4), loadMs: 1, execMs: 1, popularity: 0, loadedAt: step, lastUsedAt: step, hits: 1 };
          loaded.set(key, e);
          fast.onLoad!(e, step);
        }
        if (step % 2 === 0) {
          const needBytes = [0, 1, 3, 8, 20, 1000][Math.floor(rand() * 6)]!;
          const req = { now: step, needBytes, candidates: [...loaded.values()], incoming: loaded.values().next().value! };
          const got = asked++ % 5 === 0 ? fast.selectVictims(req) : fast.selectAmongLoaded!(req);
          expect(got.map((v) => ({ key: v.key, reason: v.reason }))).toEqual(ref.selectVictims(req));
          if (numbered && asked % 5 !== 1) expect(got.map((v) => (v as { idx?: number }).idx)).toEqual(got.map((v) => keys.indexOf(v.key)));
        }
      }
    });
  }
  for (const budget of [800, 2000, 5000]) {
    for (const slots of [1, 3]) {
      it(`gdsf, budget ${budget}, ${slots} slot(s) (priorities found by candidate position)`, () => {
        const fast = run(gdsf(), models, budget, { slots });
        const ref = run(referenceGdsf(), models, budget, { slots });
        expect(fast.ev.length).toBeGreaterThan(100);
        expect(fast.ev).toEqual(ref.ev);
        expect(fast.r).toEqual(ref.r);
      });
    }
  }
  for (const budget of [800, 2000]) {
    it(`random, budget ${budget}`, () => {
      const fast = run(random(9), models, budget);
      const ref = run(referenceRandom(seededRandom(9)), models, budget);
      expect(fast.ev.length).toBeGreaterThan(100);
      expect(fast.ev).toEqual(ref.ev);
      expect(fast.r).toEqual(ref.r);
    });
  }
});

describe('cremebrulee-plus prefetching by utility bound decides as the full scan did', () => {
  // The previous version (a scan of every function not loaded at each prefetch check) is kept in reference-plus.ts.
  // Sizes of their own, and five sizes shared by many functions (as a catalog of models is).
  const fns = randomTrace(7, 4000, 40).functions;
  const catalogs: [string, SimModel[]][] = [
    ['sizes of their own', fns.map((key, f) => ({ key, sizeBytes: 50 + ((f * 97) % 400), loadMs: 100 + ((f * 7919) % 3000), execMs: 10 + ((f * 31) % 200) }))],
    ['five shared sizes', fns.map((key, f) => ({ key, sizeBytes: 50 + (f % 5) * 90, loadMs: 100 + ((f * 7919) % 3000), execMs: 10 + ((f * 31) % 200) }))],
  ];
  for (const [catalog, models] of catalogs) for (const budget of [500, 1500, 4000]) {
    for (const sweepMs of [0, 1000]) {
      it(`${catalog}, budget ${budget}, checks ${sweepMs === 0 ? 'before every dispatch' : 'every second'}: same evictions, pre-warm loads and results`, () => {
        const go = (p: EvictionPolicy) => {
          const loads: string[] = [];
          const out = run(p, models, budget, { sweepMs, onLoadStart: (k, pre) => pre && loads.push(k) });
          return { ...out, loads };
        };
        const fast = go(cremebruleePlus(CREMEBRULEE_PLUS_TUNED));
        const ref = go(cremebruleePlusReference(CREMEBRULEE_PLUS_TUNED));
        expect(fast.ev.length).toBeGreaterThan(100);
        expect(fast.loads.length).toBeGreaterThan(20);
        expect(fast.loads).toEqual(ref.loads);
        expect(fast.ev).toEqual(ref.ev);
        expect(fast.r).toEqual(ref.r);
      });
    }
  }
});

describe('cremebrulee-plus prefetching with tied utility bounds picks as the full scan did', () => {
  // Whole-second clocks, two sizes and load times: many functions not loaded share a bound, so one
  // leaving its size group must be found among those of its bound (not the first of them taken).
  it('hooks in random order, prefetch checks between them', () => {
    const r = seededRandom(5);
    let named = 0;
    for (let round = 0; round < 40; round++) {
      const fast = cremebruleePlus(CREMEBRULEE_PLUS_TUNED);
      const ref = cremebruleePlusReference(CREMEBRULEE_PLUS_TUNED);
      const loaded = new Map<string, EntryFacts & { lastUsedAt: number; hits: number }>();
      let now = 0;
      for (let step = 0; step < 600; step++) {
        if (r() < 0.5) now += 1000 * Math.floor(1 + r() * 2);
        const key = `m${Math.floor(r() * 40)}`;
        const e = loaded.get(key);
        if (e && r() < 0.4) {
          fast.onEvict!(key, now);
          ref.onEvict!(key, now);
          loaded.delete(key);
        } else if (e) {
          e.hits++;
          e.lastUsedAt = now;
          fast.onAccess!(e, now);
          ref.onAccess!(e, now);
        } else {
          const f = { key, sizeBytes: 1 + Math.floor(r() * 2), loadMs: 1000 * (1 + Math.floor(r() * 2)), execMs: 1, popularity: 0, loadedAt: now, lastUsedAt: now, hits: 1 };
          loaded.set(key, f);
          fast.onLoad!(f, now);
          ref.onLoad!(f, now);
        }
        const free = Math.floor(r() * 3);
        const a = fast.prewarm!(now, (k) => loaded.has(k), free).map((v) => v.key);
        expect(a).toEqual(ref.prewarm!(now, (k) => loaded.has(k), free).map((v) => v.key));
        named += a.length;
      }
    }
    expect(named).toBeGreaterThan(200);
  });
});
