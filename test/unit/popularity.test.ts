import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config';
import { decayRates, POPULARITY_WINDOW_MS, shares, type RateState } from '../../runtime/popularity';
import { seededRandom } from '../../runtime/policies/random';
import { PopularityTracker } from '../../sim/popularity';

/**
 * The simulator's popularity must be the runtime's, or `cremebrulee` in sim/ is another policy
 * than the one the runtime runs. The runtime's cron folds counts with `decayRates` every 10 s
 * (POPULARITY_CRON's default); the simulator's tracker does the same on its virtual clock.
 */
describe('simulator popularity equals the runtime popularity', () => {
  it('uses the runtime window and the cron period', () => {
    const t = new PopularityTracker(1);
    expect(t.windowMs).toBe(POPULARITY_WINDOW_MS);
    expect(POPULARITY_WINDOW_MS).toBe(600_000);
    expect(t.refreshMs).toBe(10_000);
    expect(loadConfig({}).popularityCron).toBe('*/10 * * * * *');
  });

  it('gives the same shares as decayRates + shares, refresh after refresh', () => {
    const names = ['a', 'b', 'c', 'd'];
    const rand = seededRandom(7);
    const sim = new PopularityTracker(names.length);
    // A cluster whose popularity state began empty at time 0, as the simulated one does.
    let state: RateState = { rates: {}, at: 0 };
    for (let step = 1; step <= 60; step++) {
      const counts: Record<string, number> = {};
      names.forEach((n, f) => {
        // Skewed, changing traffic, with idle intervals (a function with no calls at all in one).
        const c = Math.floor(rand() * (f + 1) * 4 * (step % 7 === f ? 0 : 1));
        for (let i = 0; i < c; i++) sim.record(f);
        if (c > 0) counts[n] = c;
      });
      const now = step * 10_000;
      sim.advanceTo(now);
      state = decayRates(state, counts, now, POPULARITY_WINDOW_MS);
      const want = shares(state.rates);
      names.forEach((n, f) => {
        expect(sim.popularity[f], `step ${step}, ${n}`).toBeCloseTo(want[n] ?? 0, 12);
        expect(sim.share(f)).toBe(sim.popularity[f]);
      });
    }
  });

  it('decays by exp(-dt / window): literals worked out by hand', () => {
    // One call per 10 s of a, then 10 s of silence: rate 0.1/s × (1 - e^-1/60), then × e^-1/60.
    const keep = Math.exp(-10_000 / 600_000);
    const s1 = decayRates({ rates: {}, at: 0 }, { a: 1, b: 3 }, 10_000, 600_000);
    expect(s1.rates.a).toBeCloseTo(0.1 * (1 - keep), 15);
    expect(s1.rates.b).toBeCloseTo(0.3 * (1 - keep), 15);
    const s2 = decayRates(s1, { b: 1 }, 20_000, 600_000);
    expect(s2.rates.a).toBeCloseTo(0.1 * (1 - keep) * keep, 15);
    expect(s2.rates.b).toBeCloseTo(0.3 * (1 - keep) * keep + 0.1 * (1 - keep), 15);
    expect(shares(s2.rates).a).toBeCloseTo((0.1 * keep) / (0.3 * keep + 0.1 + 0.1 * keep), 12);
    const sim = new PopularityTracker(2);
    sim.record(0);
    for (let i = 0; i < 3; i++) sim.record(1);
    sim.advanceTo(10_000);
    expect(sim.popularity[0]).toBeCloseTo(0.25, 15);
    sim.record(1);
    sim.advanceTo(20_000);
    expect(sim.popularity[0]).toBeCloseTo((0.1 * keep) / (0.3 * keep + 0.1 + 0.1 * keep), 12);
  });
});
