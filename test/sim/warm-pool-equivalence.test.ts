import { describe, expect, it } from 'vitest';
import { WarmPool } from '../../runtime/warm-pool';
import { simulate } from '../../sim/engine';
import { createSimPolicy, type SimPolicyName } from '../../sim/policies';
import { PopularityTracker } from '../../sim/popularity';
import type { SimModel, Trace } from '../../sim/trace';
import { randomTrace } from './helpers';

/**
 * Drives the runtime's WarmPool with a fake clock and an instant loader (which advances the clock
 * by the load time) over the same requests as a serial simulated node, with popularity computed
 * by the same tracker, and returns its evictions in order.
 */
async function warmPoolEvictions(trace: Trace, models: readonly SimModel[], name: SimPolicyName, budget: number, sweepEachCall: boolean) {
  let clock = 0;
  const index = new Map(models.map((m, f) => [m.key, f]));
  const pop = new PopularityTracker(models.length);
  const evictions: string[] = [];
  let cold = 0;
  const pool = new WarmPool<string>({
    budgetBytes: budget,
    policy: createSimPolicy(name, { seed: 5, ttlMs: 20_000, prefetch: false }),
    now: () => clock,
    load: async (spec) => {
      clock += spec.loadMs;
      pop.advanceTo(clock);
      return spec.key;
    },
    popularity: (fn) => pop.popularity[index.get(fn)!]!,
    onEvict: (ev) => evictions.push(ev.key),
  });
  for (let i = 0; i < trace.times.length; i++) {
    const m = models[trace.fns[i]!]!;
    clock = Math.max(clock, trace.times[i]!);
    pop.advanceTo(clock);
    if (sweepEachCall) await pool.sweep();
    pop.record(trace.fns[i]!); // counted at dispatch, as the simulator does
    const lease = await pool.acquire({ key: m.key, fn: m.key, sizeBytes: m.sizeBytes, loadMs: m.loadMs, execMs: m.execMs });
    if (lease.coldStart) cold++;
    clock += m.execMs;
    pop.advanceTo(clock);
    lease.release();
  }
  return { evictions, cold };
}

// The warm pool never calls `prewarm`, so cremebrulee-plus runs here without its simulator-only
// prefetching: the eviction part, which is what the runtime runs.
describe('the simulator and the runtime warm pool make the same choices', () => {
  const trace = randomTrace(11, 1500, 20);
  const models: SimModel[] = trace.functions.map((key, f) => ({
    key,
    sizeBytes: 100 + ((f * 53) % 400),
    loadMs: 200 + ((f * 7919) % 3000),
    execMs: 20 + ((f * 31) % 200),
  }));
  const budget = 1500;
  const policies: SimPolicyName[] = ['cremebrulee', 'cremebrulee-plus', 'lru', 'lfu', 'gdsf', 'ttl', 'random'];
  for (const name of policies) {
    it(`${name}: same eviction sequence for the same requests`, async () => {
      const sweepEachCall = name === 'ttl';
      const simEv: string[] = [];
      const r = simulate(trace, models, createSimPolicy(name, { seed: 5, ttlMs: 20_000, prefetch: false }), {
        budgetBytes: budget,
        sweepMs: sweepEachCall ? 0 : 1000,
        onEvict: (key) => simEv.push(key),
      });
      const pool = await warmPoolEvictions(trace, models, name, budget, sweepEachCall);
      expect(simEv.length).toBeGreaterThan(50);
      expect(simEv).toEqual(pool.evictions);
      expect(r.coldStarts).toBe(pool.cold);
    });
  }
});
