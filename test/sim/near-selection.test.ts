import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../runtime/policies/random';
import { Selection } from '../../runtime/policies/select';
import type { EntryFacts, EvictionPolicy } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import { createSimPolicy } from '../../sim/policies';
import { PopularityTracker } from '../../sim/popularity';
import { modelsOf, traceOf } from './helpers';

type Cand = EntryFacts & { idx: number };

describe('Selection.lowestNear: the victims lowestScored gives, from keys a few roundings off', () => {
  it('picks what the exact scores pick, where keys are out of order within their error and scores tie', () => {
    const r = seededRandom(11);
    for (let round = 0; round < 400; round++) {
      const n = 1 + Math.floor(r() * 60);
      const cands: Cand[] = Array.from({ length: n }, (_, idx) => ({
        idx, key: `m${(idx * 7919) % 1000}`, sizeBytes: 1 + Math.floor(r() * 4), loadMs: 1, execMs: 1,
        popularity: 0, loadedAt: 0, lastUsedAt: Math.floor(r() * 3), hits: 0,
      }));
      // Scores on a coarse grid (exact ties), nudged by a few ulps (near ties), some 0.
      const score = cands.map(() => (r() < 0.1 ? 0 : (1 + Math.floor(r() * 4)) * (1 + Math.floor(r() * 3) * 2 ** -50) * 1e-3));
      // Keys: C × score × (1 + δ), |δ| up to the 2^-30 lowestNear allows: they order near ties either way.
      const C = 1 + r() * 1000;
      const keys = Float64Array.from(score, (s) => C * s * (1 + (r() * 2 - 1) * 2 ** -30));
      const need = 1 + Math.floor(r() * 6);
      const exactSel = new Selection();
      exactSel.omitReasons();
      const want = exactSel.lowestScored(cands, Float64Array.from(score), need, () => '').map((v) => v.key);
      const nearSel = new Selection();
      nearSel.omitReasons();
      let low = Infinity;
      for (const k of keys) low = Math.min(low, k);
      const got = nearSel.lowestNear(cands, keys, low, (i) => score[i]!, need);
      if (got === null) expect(want.length).toBeGreaterThan(8);
      else expect(got.map((v) => v.key)).toEqual(want);
    }
  });

  it('gives up (null) where it cannot tell: a key NaN or tiny (its lowest NaN), more than 8 victims, reasons on', () => {
    const cands: Cand[] = Array.from({ length: 12 }, (_, idx) => ({ idx, key: `m${idx}`, sizeBytes: 1, loadMs: 1, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 0 }));
    const keys = Float64Array.from(cands, (_, i) => i + 1);
    const sel = new Selection();
    expect(sel.lowestNear(cands, keys, 1, (i) => i, 1)).toBeNull(); // (reasons on)
    sel.omitReasons();
    expect(sel.lowestNear(cands, keys, 1, (i) => i, 1)?.map((v) => v.key)).toEqual(['m0']);
    expect(sel.lowestNear(cands, keys, NaN, (i) => i, 1)).toBeNull();
    expect(sel.lowestNear(cands, keys, 1, (i) => i, 9)).toBeNull();
    expect(sel.lowestNear(cands, keys, 1, (i) => i, 8)?.length).toBe(8);
  });
});

describe('PopularityTracker: approxRate and approxTotal within approxError of the exact rates', () => {
  for (const [windowMs, spell] of [[20_000, 300], [2000, 1500]] as const) it(`through lags up to the catch-up, calls of every size, quiet spells of ${spell} refreshes (keep ${Math.exp(-1000 / windowMs).toFixed(2)})`, () => {
    const r = seededRandom(5);
    const F = 40;
    const p = new PopularityTracker(F, 1000, windowMs);
    p.trackApprox();
    let checked = 0;
    for (let step = 0; step < 6000; step++) {
      // Some functions called, most steps; long quiet spells too, where rates decay towards 0
      // (with keep 0.61, through subnormal numbers to 0).
      const quiet = step % (spell + 300) >= 300;
      if (!quiet) for (let j = Math.floor(r() * 4); j > 0; j--) for (let c = Math.floor(r() * r() * 50); c >= 0; c--) p.record(Math.floor(F * r() * r()));
      p.refreshRates();
      if (r() < 0.05) {
        const err = p.approxError();
        const approx = Array.from({ length: F }, (_, f) => p.approxRate(f));
        const at = p.approxTotal();
        const total = p.syncTotal();
        if (Number.isNaN(err)) continue;
        checked++;
        expect(err).toBeLessThan(2 ** -33);
        expect(Math.abs(at - total)).toBeLessThanOrEqual(err * total);
        for (let f = 0; f < F; f++) {
          const exact = p.rates[f]!;
          if (exact === 0) expect(approx[f]).toBe(0);
          else expect(Math.abs(approx[f]! - exact)).toBeLessThanOrEqual(err * exact);
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
  });
});

describe('selectByRates: cremebrulee and lfu decide as without it', () => {
  /** The policy without the hint (so the simulator writes every share and calls selectVictims). */
  const without = (p: EvictionPolicy): EvictionPolicy => {
    const q = Object.create(p) as EvictionPolicy;
    Object.defineProperty(q, 'selectByRates', { value: undefined });
    return q;
  };
  for (const name of ['cremebrulee', 'lfu'] as const) {
    it(`${name}: popularity refreshed often and decaying fast (long lags, rates tiny or 0), near ties`, () => {
      const r = seededRandom(3);
      const ev: [number, string][] = [];
      let t = 0;
      for (let i = 0; i < 6000; i++) {
        t += Math.floor(r() * r() * 4000);
        ev.push([t, `f${Math.floor(30 * r() * r())}`]);
      }
      const trace = traceOf(ev);
      // Two model shapes only: utilities tie where rates do.
      const models = modelsOf(trace, Object.fromEntries(trace.functions.map((f, i) => [f, { sizeBytes: 2 + (i % 2), loadMs: 300 * (1 + (i % 2)), execMs: 40 }])));
      for (const [refresh, windowMs] of [[50, 400], [500, 60_000], [10, 100_000]] as const) {
        for (const budgetBytes of [5, 12, 30]) {
          const run = (p: EvictionPolicy) => {
            const evicted: string[] = [];
            const opts: SimOptions = { budgetBytes, popularityRefreshMs: refresh, popularityWindowMs: windowMs, onEvict: (k, now) => evicted.push(`${k}@${now}`) };
            const { wallMs: _w, ...res } = simulate(trace, models, p, opts);
            return { res, evicted };
          };
          const fast = run(createSimPolicy(name));
          const slow = run(without(createSimPolicy(name)));
          expect(fast.evicted.length).toBeGreaterThan(100);
          expect(fast.evicted).toEqual(slow.evicted);
          expect(fast.res).toEqual(slow.res);
        }
      }
    });
  }
});
