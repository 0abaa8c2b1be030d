import { describe, expect, it } from 'vitest';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { seededRandom } from '../../runtime/policies/random';
import type { EvictionPolicy } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import type { SimModel } from '../../sim/trace';
import { traceOf } from './helpers';
import { referenceHybridHistogram } from './reference-policies';

// Short bins and range, so histograms become representative and windows open and close quickly.
const HH = { binMs: 500, rangeMs: 30_000, fixedKeepAliveMs: 4_000, minSamples: 4, minCv: 1.2 };

describe('hybrid-histogram with models in flight at their keep-alive end', () => {
  it('decides as the reference on several slots with runs as long as the windows (a model the check cannot evict is looked at again)', () => {
    let runs = 0;
    let expirations = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = seededRandom(seed);
      const events: [number, string][] = [];
      let t = 0;
      for (let i = 0; i < 1500; i++) {
        t += Math.floor(r() * 1500);
        events.push([t, `f${Math.floor(10 * r() * r())}`]);
      }
      const trace = traceOf(events);
      // Runs of 0.5-9 s against keep-alives of a few seconds: calls still run when their keep-alive ends.
      const models: SimModel[] = trace.functions.map((key) => ({ key, sizeBytes: 1 + Math.floor(r() * 4), loadMs: 100 * Math.floor(r() * 8), execMs: 500 + Math.floor(r() * 8500) }));
      const total = models.reduce((a, m) => a + m.sizeBytes, 0);
      for (const slots of [1, 2, 3]) {
        for (const budgetBytes of [6, Math.ceil(total / 2), total]) {
          for (const sweepMs of [250, 1000]) {
            const run = (p: EvictionPolicy) => {
              const log: string[] = [];
              const opts: SimOptions = { budgetBytes, slots, sweepMs, onEvict: (k, now, cause) => log.push(`${k}@${now}:${cause}`) };
              const { wallMs: _w, ...res } = simulate(trace, models, p, opts);
              return { res, log };
            };
            const fast = run(hybridHistogram(HH));
            const ref = run(referenceHybridHistogram(HH));
            expect(fast.log, `seed ${seed}, ${slots} slots, ${budgetBytes} bytes, checks every ${sweepMs} ms`).toEqual(ref.log);
            expect(fast.res).toEqual(ref.res);
            expirations += fast.res.expirations;
            runs++;
          }
        }
      }
    }
    expect(runs).toBe(4 * 3 * 3 * 2);
    expect(expirations).toBeGreaterThan(1000);
  }, 60_000);
});
