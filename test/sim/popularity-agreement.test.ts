import { describe, expect, it } from 'vitest';
import { decayRates, POPULARITY_WINDOW_MS, shares, type RateState } from '../../runtime/popularity';
import { seededRandom } from '../../runtime/policies/random';
import { PopularityTracker } from '../../sim/popularity';

// The simulator keeps its own array-based copy of the runtime's decayed popularity (the runtime's
// works on Records from Redis, far too slow for millions of calls). They must give the same shares.
describe('the simulator popularity agrees with the runtime popularity', () => {
  it('gives the same shares over an hour of bursty counts, refresh by refresh', () => {
    const F = 12;
    const refreshMs = 10_000;
    const names = Array.from({ length: F }, (_, f) => `fn${f}`);
    const next = seededRandom(7);
    const sim = new PopularityTracker(F, refreshMs, POPULARITY_WINDOW_MS);
    let state: RateState | undefined;
    let worst = 0;
    for (let r = 1; r <= 360; r++) {
      const counts: Record<string, number> = {};
      for (let f = 0; f < F; f++) {
        // Skewed and bursty: function f is f times rarer, and silent for a while every so often.
        const c = (r + 7 * f) % 60 < 20 ? 0 : Math.floor((next() * 40) / (f + 1));
        for (let k = 0; k < c; k++) sim.record(f);
        if (c > 0) counts[names[f]!] = c;
      }
      const now = r * refreshMs;
      sim.refresh();
      // The runtime's first refresh has no earlier state: it counts over one window (as the sim, up to scale).
      state = decayRates(state, counts, state ? now : POPULARITY_WINDOW_MS, POPULARITY_WINDOW_MS, 0);
      const rt = shares(state.rates);
      for (let f = 0; f < F; f++) {
        const a = rt[names[f]!] ?? 0;
        const b = sim.popularity[f]!;
        if (r === 1) expect(b).toBeCloseTo(a, 12); // both: counts / total counts
        const rel = Math.abs(a - b) / Math.max(a, b, 1e-12);
        worst = Math.max(worst, rel);
        // The only difference: the runtime weighs its first interval's counts as a whole window's
        // average, 1 / (60 × (1 − e^(−1/60))) = 1.008 times what the simulator gives them, a
        // difference that decays with the window.
        expect(rel, `refresh ${r}, fn${f}: runtime ${a}, simulator ${b}`).toBeLessThan(r * refreshMs > POPULARITY_WINDOW_MS ? 4e-3 : 1e-2);
      }
    }
    expect(worst).toBeGreaterThan(0); // the comparison above did compare unequal numbers somewhere
  });
});

describe('the simulator popularity refresh', () => {
  it('gives exactly the shares of the plain formula (Σ rate added in function order), for any count of functions', () => {
    for (const F of [1, 3, 4, 13, 500]) {
      const next = seededRandom(F);
      const sim = new PopularityTracker(F, 10_000, POPULARITY_WINDOW_MS);
      const keep = Math.exp(-10_000 / POPULARITY_WINDOW_MS);
      const rate = new Float64Array(F);
      for (let r = 0; r < 300; r++) {
        const counts = new Float64Array(F);
        // Rates of very different sizes, so a sum taken in another order differs in its last bits.
        for (let f = 0; f < F; f++) if (next() < 0.3) counts[f] = Math.floor(next() ** 4 * 1e4);
        for (let f = 0; f < F; f++) for (let k = 0; k < counts[f]!; k++) sim.record(f);
        sim.refresh();
        let total = 0;
        for (let f = 0; f < F; f++) {
          rate[f] = rate[f]! * keep + ((1 - keep) * counts[f]!) / 10_000;
          total += rate[f]!;
        }
        for (let f = 0; f < F; f++) expect(sim.popularity[f], `${F} functions, refresh ${r}, fn${f}`).toBe(total > 0 ? rate[f]! / total : 0);
      }
    }
  });
});

describe('the simulator popularity refresh, read now and then', () => {
  it('gives exactly the plain formula when shares are read only after some refreshes (calls in between, long gaps)', () => {
    for (const F of [1, 5, 500]) {
      const next = seededRandom(100 + F);
      const sim = new PopularityTracker(F, 10_000, POPULARITY_WINDOW_MS);
      const keep = Math.exp(-10_000 / POPULARITY_WINDOW_MS);
      const rate = new Float64Array(F);
      let total = 0;
      for (let r = 0; r < 2000; r++) {
        // Mostly 0 or 1 call between refreshes (as on a busy simulated node), now and then a burst.
        const counts = new Float64Array(F);
        const calls = next() < 0.05 ? Math.floor(next() * 50) : Math.floor(next() * 2.2);
        for (let k = 0; k < calls; k++) {
          const f = Math.floor(next() ** 3 * F);
          counts[f]!++;
          sim.record(f);
        }
        sim.refreshRates();
        total = 0;
        for (let f = 0; f < F; f++) {
          rate[f] = rate[f]! * keep + ((1 - keep) * counts[f]!) / 10_000;
          total += rate[f]!;
        }
        // Read after 1 to ~300 refreshes (past the tracker's own catch-up every 256).
        const u = next();
        if (u < 0.3 || (u > 0.999 && r > 0)) {
          for (let k = 0; k < 3; k++) {
            const f = Math.floor(next() * F);
            expect(sim.share(f), `${F} functions, refresh ${r}, fn${f}`).toBe(total > 0 ? rate[f]! / total : 0);
          }
        }
        if (r === 700) for (let s = 0; s < 300; s++) {
          // A long quiet stretch with no read.
          sim.refreshRates();
          total = 0;
          for (let f = 0; f < F; f++) {
            rate[f] = rate[f]! * keep;
            total += rate[f]!;
          }
        }
      }
      for (let f = 0; f < F; f++) expect(sim.share(f)).toBe(total > 0 ? rate[f]! / total : 0);
    }
  });
});
