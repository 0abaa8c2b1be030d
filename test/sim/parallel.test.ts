import { describe, expect, it } from 'vitest';
import { sweep, sweepParallel } from '../../sim/sweep';
import type { SimModel } from '../../sim/trace';
import { randomTrace } from './helpers';

describe('sweepParallel', () => {
  it('gives the same results, in the same order, on worker threads as one run after another', async () => {
    const trace = randomTrace(3, 3000, 30);
    const models: SimModel[] = trace.functions.map((key, f) => ({ key, sizeBytes: 100 + ((f * 53) % 400), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200) }));
    const opts = {
      policies: ['cremebrulee-plus', 'lru', 'hybrid-histogram', 'belady', 'random'] as const,
      budgets: [{ percent: 10 }, { bytes: 2000 }],
      policyOptions: { seed: 4 },
    };
    const strip = (rs: { wallMs: number }[]) => rs.map((r) => ({ ...r, wallMs: 0 }));
    const serial = sweep(trace, models, { ...opts, policies: [...opts.policies] });
    const seen: number[] = [];
    const parallel = await sweepParallel(trace, models, { ...opts, policies: [...opts.policies], jobs: 2, onRun: (_r, k) => seen.push(k) });
    expect(strip(parallel)).toEqual(strip(serial));
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  }, 30_000);
});
