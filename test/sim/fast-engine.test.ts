import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../runtime/policies/random';
import { FutureIndex, kthSmallest, simulate, skipChecks, type SimOptions } from '../../sim/engine';
import { createSimPolicy, isOracle, SIM_POLICIES, type SimPolicyName } from '../../sim/policies';
import type { SimModel, Trace } from '../../sim/trace';
import { randomTrace, traceOf } from './helpers';

/**
 * One simulation with `serveSerial`'s whole-call shortcut and one with plain turns only: each
 * result (wall time left out) and its log of evictions, calls served and loads started.
 */
function withAndWithoutShortcut(trace: Trace, models: SimModel[], policy: SimPolicyName, ttlMs: number, opts: Partial<SimOptions> & { budgetBytes: number }) {
  const run = (plainTurns: boolean) => {
    const log: string[] = [];
    const r = simulate(trace, models, createSimPolicy(policy, { seed: 3, ttlMs }), {
      ...opts,
      future: isOracle(policy),
      plainTurns,
      onEvict: (k, now, cause) => log.push(`evict ${k} ${now} ${cause}`),
      onServe: (k, wait, cold) => log.push(`serve ${k} ${wait} ${cold}`),
      onLoadStart: (k, pre) => log.push(`load ${k} ${pre}`),
    });
    return { r: { ...r, wallMs: 0 }, log };
  };
  return { fast: run(false), plain: run(true) };
}

describe("the simulator's shortcuts give what the plain computation gives", () => {
  it('kthSmallest: the k-th of a sort (p99 without sorting every latency)', () => {
    const rand = seededRandom(5);
    for (let trial = 0; trial < 400; trial++) {
      const n = 1 + Math.floor(rand() * 300);
      const distinct = 1 + Math.floor(rand() * 20); // many ties
      const a = Float64Array.from({ length: n }, () => (trial % 2 ? Math.floor(rand() * distinct) : rand() * 1e6));
      const sorted = a.slice().sort();
      for (const k of [0, n - 1, Math.floor(rand() * n), Math.min(n - 1, Math.ceil(0.99 * n) - 1)]) {
        expect(kthSmallest(a.slice(), n, k)).toBe(sorted[k]);
      }
    }
  });

  it('kthSmallest on long arrays (narrowed to the values about k first): the k-th of a sort, the sample misleading or not', () => {
    const rand = seededRandom(7);
    for (let trial = 0; trial < 8; trial++) {
      const n = (1 << 16) + Math.floor(rand() * 100_000);
      const distinct = trial % 4 === 1 ? 3 : 1 + Math.floor(rand() * 5000);
      const a = Float64Array.from({ length: n }, () => (trial % 2 ? Math.floor(rand() * distinct) : rand() * 1e6));
      // Trials 2 and 3: the values a stride sample reads are far above the rest (the search falls back to the whole array).
      if (trial === 2 || trial === 3) for (let j = 0; j < n; j += Math.floor(n / 1024)) a[j] = 1e9 + j;
      const sorted = a.slice().sort();
      for (const k of [0, n - 1, Math.floor(rand() * n), Math.ceil(0.99 * n) - 1, Math.floor(0.5 * n)]) {
        expect(kthSmallest(a.slice(), n, k)).toBe(sorted[k]);
      }
    }
  });

  it('skipChecks: one jump lands where stepping check by check does', () => {
    const rand = seededRandom(11);
    const stepped = (x: number, step: number, tNext: number, lim: number) => {
      while (x <= tNext && x < lim) x += step;
      return x;
    };
    for (let trial = 0; trial < 3000; trial++) {
      const step = trial % 3 === 0 ? 0.1 + rand() * 900 : 1 + Math.floor(rand() * 1000);
      const x = trial % 5 === 0 ? rand() * 1e6 : step * Math.floor(rand() * 1000);
      const pick = () => (rand() < 0.2 ? x + step * Math.floor(rand() * 3000) : x + rand() * 3e6);
      const tNext = pick();
      const lim = rand() < 0.1 ? Infinity : pick();
      expect(skipChecks(x, step, tNext, lim)).toBe(stepped(x, step, tNext, lim));
    }
  });

  it('FutureIndex: usesWithin and nextUse as a binary search from the served pointer gives them', () => {
    const rand = seededRandom(9);
    for (let trial = 0; trial < 50; trial++) {
      const F = 1 + Math.floor(rand() * 6);
      const perFn = Array.from({ length: F }, () => {
        const n = Math.floor(rand() * 40);
        // Ties included (whole seconds).
        return Float64Array.from({ length: n }, () => Math.floor(rand() * 100) * 1000).sort();
      });
      const keys = perFn.map((_, f) => `f${f}`);
      const fut = new FutureIndex(perFn, new Map(keys.map((k, f) => [k, f])));
      const served = new Array<number>(F).fill(0);
      const plainUses = (f: number, lim: number) => {
        let c = 0;
        for (let p = served[f]!; p < perFn[f]!.length; p++) if (perFn[f]![p]! <= lim) c++;
        return c;
      };
      let now = 0;
      for (let step = 0; step < 400; step++) {
        const r = rand();
        if (r < 0.3) now += Math.floor(rand() * 3) * 500; // the clock moves forward (or stays)
        if (rand() < 0.1) fut.newRequest(); // lookups by position start again
        const f = Math.floor(rand() * F);
        if (r > 0.8 && served[f]! < perFn[f]!.length) {
          fut.served(f);
          served[f]!++;
        }
        // Mostly one horizon (as an oracle asks); sometimes a shorter one (the limit goes back).
        const h = rand() < 0.85 ? 10_000 : Math.floor(rand() * 20) * 1000;
        expect(fut.usesWithin(keys[f]!, now, h)).toBe(plainUses(f, now + h));
        const next = served[f]! < perFn[f]!.length ? perFn[f]![served[f]!]! : Infinity;
        expect(fut.nextUse(keys[f]!)).toBe(next);
      }
      // Keys asked in another order than last time, and unknown keys, at every position.
      for (let round = 0; round < 20; round++) {
        fut.newRequest();
        const order = keys.map((_, f) => f).sort(() => rand() - 0.5);
        for (const f of order) {
          if (rand() < 0.2) expect(fut.nextUse(`x${f}`)).toBe(Infinity);
          expect(fut.nextUse(keys[f]!)).toBe(served[f]! < perFn[f]!.length ? perFn[f]![served[f]!]! : Infinity);
        }
      }
      expect(fut.usesWithin('unknown', now, 1000)).toBe(0);
      expect(fut.nextUse('unknown')).toBe(Infinity);
    }
  });

  it('serveSerial: whole calls in one step on a serial node give what the general turns give, event for event', () => {
    // Load times around the popularity refresh (10 s) and the check period, so that refreshes and
    // checks fall inside loads and runs; exec 0 for some models (a load's end and its completion
    // at one instant); some models larger than the smaller budgets (refused).
    const trace = randomTrace(13, 2500, 24);
    const models: SimModel[] = trace.functions.map((key, f) => ({
      key,
      sizeBytes: 100 + ((f * 53) % 400),
      loadMs: 300 + ((f * 7919) % 14_000),
      execMs: f % 5 === 0 ? 0 : 20 + ((f * 31) % 3000),
    }));
    const total = models.reduce((a, m) => a + m.sizeBytes, 0);
    const variants: Partial<SimOptions>[] = [
      {},
      { sweepMs: 700, popularityRefreshMs: 3000, popularityFirstRefreshMs: 0 },
      { sweepMs: 0 },
      { reportFromMs: 200_000, reportToMs: 1_500_000, popularityWindowMs: 60_000 },
    ];
    for (const policy of SIM_POLICIES) {
      for (const pct of [0.06, 0.15, 0.4, 1]) {
        for (const v of variants) {
          const { fast, plain } = withAndWithoutShortcut(trace, models, policy, 20_000, { ...v, budgetBytes: Math.round(pct * total) });
          expect(fast.r, `${policy} at ${pct} ${JSON.stringify(v)}`).toEqual(plain.r);
          expect(fast.log).toEqual(plain.log);
        }
      }
    }
  }, 60_000);
  it('serveSerial where events tie: calls, loads, completions, checks and refreshes on one 100 ms grid, models that do not fit', () => {
    // Every time a multiple of 100 ms, checks every 300-1000 ms: a check due exactly at a call's
    // arrival or at a load's end (which the shortcut must hand to the turns, `<=`, not `<`).
    let runs = 0;
    for (let seed = 1; seed <= 8; seed++) {
      const r = seededRandom(seed);
      const nf = 4 + Math.floor(r() * 8);
      const events: [number, string][] = [];
      let t = 0;
      for (let i = 0; i < 400; i++) {
        t += 100 * Math.floor(r() * 12);
        events.push([t, `f${Math.floor(nf * r() * r())}`]);
      }
      const trace = traceOf(events);
      const models: SimModel[] = trace.functions.map((key) => ({ key, sizeBytes: 1 + Math.floor(r() * 5), loadMs: 100 * (1 + Math.floor(r() * 10)), execMs: 100 * Math.floor(r() * 6) }));
      const total = models.reduce((a, m) => a + m.sizeBytes, 0);
      const variants: Partial<SimOptions>[] = [
        { sweepMs: 500, popularityRefreshMs: 1000, popularityFirstRefreshMs: 0 },
        { sweepMs: 1000 },
        { sweepMs: 300, popularityRefreshMs: 600, popularityFirstRefreshMs: 300 },
      ];
      for (const policy of SIM_POLICIES) {
        for (const budget of [2, 4, Math.ceil(total / 2), total]) {
          for (const v of variants) {
            const { fast, plain } = withAndWithoutShortcut(trace, models, policy, 1500, { ...v, budgetBytes: budget });
            expect(fast.r, `seed ${seed}, ${policy} at ${budget} bytes, ${JSON.stringify(v)}`).toEqual(plain.r);
            expect(fast.log).toEqual(plain.log);
            runs++;
          }
        }
      }
    }
    expect(runs).toBe(8 * SIM_POLICIES.length * 4 * 3);
  }, 60_000);
});
