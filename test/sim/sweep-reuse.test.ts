import { describe, expect, it } from 'vitest';
import { simulate } from '../../sim/engine';
import { createSimPolicy } from '../../sim/policies';
import { runOne, sweep, sweepJobs, sweepParallel, type SweepResult } from '../../sim/sweep';
import { totalBytes, type SimModel } from '../../sim/trace';
import { randomTrace } from './helpers';

// A sweep takes a run whose budget never decided anything as the result at a lower budget it
// covers (sim/sweep.ts SweepQueue): each result must be what the run at its own budget gives.
describe('a sweep reusing a run for the budgets it covers', () => {
  const trace = randomTrace(5, 3000, 30);
  const models: SimModel[] = trace.functions.map((key, f) => ({ key, sizeBytes: 100 + ((f * 53) % 400), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200) }));
  const all = totalBytes(models);
  const policyOptions = { ttlMs: 20_000 };
  const plain = (policy: 'ttl' | 'lru' | 'hybrid-histogram', budgetBytes: number): SweepResult =>
    runOne(trace, models, { policies: [policy], budgets: [], policyOptions }, { index: 0, policy, budgetBytes });
  const decisions = ({ wallMs: _w, sameAsBudgetBytes: _s, ...r }: SweepResult) => r;
  // ttl with every model's room never bound: its peak; one byte less binds (a load needs room).
  const peak = plain('ttl', all).peakUsedBytes;
  // A budget that binds, and the peak it reaches (below it); hybrid-histogram's peak with room for all.
  const tight = Math.round(peak * 0.95);
  const tightPeak = plain('ttl', tight).peakUsedBytes;
  const hhPeak = plain('hybrid-histogram', all).peakUsedBytes;
  const budgets = [{ bytes: all }, { bytes: peak }, { bytes: peak - 1 }, { bytes: tight }, { bytes: tightPeak }, { bytes: hhPeak }];
  const opts = { policies: ['ttl', 'lru', 'hybrid-histogram'] as const, budgets, policyOptions };

  it('the case has teeth: below the peak a run differs; the other budgets are below a run that bound or read the free memory', () => {
    expect(decisions({ ...plain('ttl', peak - 1), budgetBytes: peak, budgetPct: 0 })).not.toEqual(decisions({ ...plain('ttl', peak), budgetPct: 0 }));
    expect(peak).toBeLessThan(all);
    expect(tightPeak).toBeLessThan(tight);
    expect(plain('ttl', tight).evictions).toBeGreaterThan(0);
    expect(hhPeak).toBeLessThan(all);
    expect([peak - 1, tight, tightPeak].every((b) => b < peak) && hhPeak > peak).toBe(true);
  });

  for (const jobs of [1, 2]) {
    it(`every result is the run at its own budget (${jobs} thread${jobs > 1 ? 's' : ''}), and ttl at or above its peak is not run`, async () => {
      const got = await sweepParallel(trace, models, { ...opts, policies: [...opts.policies], jobs });
      const want = sweepJobs(models, opts).map((j) => runOne(trace, models, { ...opts, policies: [...opts.policies] }, j));
      expect(got.map(decisions)).toEqual(want.map(decisions));
      const reused = got.filter((r) => r.sameAsBudgetBytes !== undefined).map((r) => [r.policy, r.budgetBytes, r.sameAsBudgetBytes, r.wallMs]);
      // ttl at its peak and at hybrid-histogram's (above it); not ttl at tightPeak (the run at
      // tight evicted), lru (at 100% it loads every model: its peak is the budget), nor
      // hybrid-histogram at its peak (its prewarm reads the free memory).
      expect(reused).toEqual([['ttl', peak, all, 0], ['ttl', hhPeak, all, 0]]);
    }, 30_000);
  }

  it('the engine says when the budget first decides something, and not in a run where it never does', () => {
    const calls = (policy: 'ttl' | 'lru' | 'hybrid-histogram', budgetBytes: number) => {
      let n = 0;
      simulate(trace, models, createSimPolicy(policy, policyOptions), { budgetBytes, onBudgetBound: () => n++ });
      return n;
    };
    expect([calls('ttl', all), calls('ttl', peak), calls('ttl', peak - 1), calls('ttl', tight), calls('lru', all), calls('lru', all - 1), calls('hybrid-histogram', all)]).toEqual([0, 0, 1, 1, 0, 1, 1]);
  });

  it('reuses nothing when the caller watches each run (onEvict)', () => {
    const got = sweep(trace, models, { ...opts, policies: ['ttl'], onEvict: () => {} });
    expect(got.every((r) => r.sameAsBudgetBytes === undefined)).toBe(true);
  });
});
