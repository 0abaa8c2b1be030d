import { describe, expect, it } from 'vitest';
import { simulate } from '../../sim/engine';
import { createSimPolicy } from '../../sim/policies';
import { runOne, sweep, sweepJobs, sweepParallel, type SweepResult } from '../../sim/sweep';
import { totalBytes, type SimModel } from '../../sim/trace';
import { randomTrace } from './helpers';

// A sweep takes a run whose budget never decided anything as the result at a lower budget it
// covers, and as the result of a policy that decides nothing unasked (as lru, gdsf and belady) at
// a budget it covers when its own does not either (sim/sweep.ts SweepQueue): each result must be
// what the run at its own budget gives.
describe('a sweep reusing a run for the budgets it covers', () => {
  const trace = randomTrace(5, 3000, 30);
  const models: SimModel[] = trace.functions.map((key, f) => ({ key, sizeBytes: 100 + ((f * 53) % 400), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200) }));
  const all = totalBytes(models);
  const policyOptions = { ttlMs: 20_000 };
  const plain = (policy: 'ttl' | 'lru' | 'hybrid-histogram', budgetBytes: number): SweepResult =>
    runOne(trace, models, { policies: [policy], budgets: [], policyOptions }, { index: 0, policy, budgetBytes });
  const decisions = ({ wallMs: _w, sameAs: _s, ...r }: SweepResult) => r;
  // ttl with every model's room never bound: its peak; one byte less binds (a load needs room).
  const peak = plain('ttl', all).peakUsedBytes;
  // A budget that binds, and the peak it reaches (below it); hybrid-histogram's peak with room for all.
  const tight = Math.round(peak * 0.95);
  const tightPeak = plain('ttl', tight).peakUsedBytes;
  const hhPeak = plain('hybrid-histogram', all).peakUsedBytes;
  const budgets = [{ bytes: all }, { bytes: peak }, { bytes: peak - 1 }, { bytes: tight }, { bytes: tightPeak }, { bytes: hhPeak }];
  const opts = { policies: ['ttl', 'lru', 'hybrid-histogram', 'gdsf', 'belady'] as const, budgets, policyOptions };

  it('the case has teeth: below the peak a run differs; the other budgets are below a run that bound or read the free memory', () => {
    expect(decisions({ ...plain('ttl', peak - 1), budgetBytes: peak, budgetPct: 0 })).not.toEqual(decisions({ ...plain('ttl', peak), budgetPct: 0 }));
    expect(peak).toBeLessThan(all);
    expect(tightPeak).toBeLessThan(tight);
    expect(plain('ttl', tight).evictions).toBeGreaterThan(0);
    expect(hhPeak).toBeLessThan(all);
    expect([peak - 1, tight, tightPeak].every((b) => b < peak) && hhPeak > peak).toBe(true);
  });

  for (const jobs of [1, 2]) {
    it(`every result is the run at its own budget (${jobs} thread${jobs > 1 ? 's' : ''}), and the ones covered are not run`, async () => {
      const got = await sweepParallel(trace, models, { ...opts, policies: [...opts.policies], jobs });
      const want = sweepJobs(models, opts).map((j) => runOne(trace, models, { ...opts, policies: [...opts.policies] }, j));
      expect(got.map(decisions)).toEqual(want.map(decisions));
      const reused = got.filter((r) => r.sameAs !== undefined);
      // ttl at its peak and at hybrid-histogram's (above it), from ttl at 100%; gdsf and belady
      // at 100% from lru's (one thread: it comes first). Not ttl at tightPeak (the run at tight
      // evicted), lru below 100% (at 100% it loads every model: its peak is the budget),
      // hybrid-histogram (its prewarm reads the free memory), nor any other policy from ttl's
      // runs (it expires models unasked).
      const covered = [['gdsf', all, 'lru', all], ['belady', all, 'lru', all], ['ttl', peak, 'ttl', all], ['ttl', hhPeak, 'ttl', all]];
      const pairs = reused.map((r) => [r.policy, r.budgetBytes, r.sameAs!.policy, r.sameAs!.budgetBytes]);
      if (jobs === 1) expect(pairs).toEqual(covered);
      else {
        // Which thread takes what first varies: a subset, each from a run of an unasked policy that was run.
        expect(pairs.filter((p) => p[0] === 'ttl')).toEqual(covered.slice(2));
        for (const [p, b, from, fromB] of pairs.filter((x) => x[0] !== 'ttl')) {
          expect(['lru', 'gdsf', 'belady']).toContain(from);
          expect([b, fromB]).toEqual([all, all]);
          expect(got.some((r) => r.policy === from && r.budgetBytes === fromB && r.sameAs === undefined && p !== from)).toBe(true);
        }
      }
      expect(reused.every((r) => r.wallMs === 0)).toBe(true);
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
    expect(got.every((r) => r.sameAs === undefined)).toBe(true);
  });
});
