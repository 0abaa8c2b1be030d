import { describe, expect, it } from 'vitest';
import { createPolicy } from '../../runtime/policies';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import type { EvictionPolicy } from '../../runtime/policies/types';
import { WarmPool, type Lease } from '../../runtime/warm-pool';
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

/** Varied sizes, load and exec times, one model per function. */
const modelsOf = (trace: Trace): SimModel[] =>
  trace.functions.map((key, f) => ({ key, sizeBytes: 100 + ((f * 53) % 400), loadMs: 200 + ((f * 7919) % 3000), execMs: 20 + ((f * 31) % 200) }));

// Eviction alone (cremebrulee-plus without prefetching; `ttl` with its keep-alive sweep). The
// next describe adds pre-warming.
describe('the simulator and the runtime warm pool make the same choices', () => {
  const trace = randomTrace(11, 1500, 20);
  const models = modelsOf(trace);
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

/**
 * The same, with pre-warming: the pool's `prefetch` runs where the simulator checks (before each
 * dispatch, `sweepMs: 0`), and loads take virtual time, so a background load can still be running
 * when the next call comes (which then waits for it) or hold the memory a miss needs. Every load,
 * demand or background, finishes at its own virtual time, in order, as the simulator's events do.
 */
async function warmPoolWithPrefetch(trace: Trace, models: readonly SimModel[], policy: EvictionPolicy, budget: number) {
  let clock = 0;
  const index = new Map(models.map((m, f) => [m.key, f]));
  const pop = new PopularityTracker(models.length);
  const evictions: string[] = [];
  let cold = 0;
  let prewarms = 0;
  const loads: Array<{ at: number; done: () => void }> = [];
  const flush = () => new Promise<void>((r) => setImmediate(r));
  /** Moves the clock to `to`, finishing every load due by then at its own time (earliest first). */
  const advance = async (to: number) => {
    for (;;) {
      await flush();
      let k = -1;
      for (let j = 0; j < loads.length; j++) if (loads[j]!.at <= to && (k < 0 || loads[j]!.at < loads[k]!.at)) k = j;
      if (k < 0) break;
      const [l] = loads.splice(k, 1);
      clock = Math.max(clock, l!.at);
      pop.advanceTo(clock);
      l!.done();
    }
    clock = Math.max(clock, to);
    pop.advanceTo(clock);
  };
  const pool = new WarmPool<string>({
    budgetBytes: budget,
    policy,
    now: () => clock,
    load: (spec) => new Promise<string>((resolve) => loads.push({ at: clock + spec.loadMs, done: () => resolve(spec.key) })),
    popularity: (fn) => pop.popularity[index.get(fn)!]!,
    onEvict: (ev) => evictions.push(ev.key),
    onPrefetch: () => void prewarms++,
  });
  for (let i = 0; i < trace.times.length; i++) {
    const m = models[trace.fns[i]!]!;
    await advance(Math.max(clock, trace.times[i]!));
    pool.sweep();
    pool.prefetch();
    pop.record(trace.fns[i]!); // counted at dispatch, as the simulator does
    let lease: Lease<string> | undefined;
    const acquiring = pool.acquire({ key: m.key, fn: m.key, sizeBytes: m.sizeBytes, loadMs: m.loadMs, execMs: m.execMs }).then((l) => (lease = l));
    // Until it has its model: let the next load finish (its own, the one it joined, or one holding the memory).
    while (lease === undefined) {
      await flush();
      if (lease !== undefined) break;
      const next = Math.min(...loads.map((l) => l.at));
      if (next === Infinity) throw new Error('acquire waits for nothing');
      await advance(next);
    }
    await acquiring;
    if (lease.coldStart) cold++;
    await advance(clock + m.execMs);
    lease.release();
  }
  return { evictions, cold, prewarms };
}

describe('with pre-warming, the simulator and the warm pool still make the same choices', () => {
  const trace = randomTrace(12, 1500, 20);
  const models = modelsOf(trace);
  const cases: Array<[string, () => EvictionPolicy, number]> = [
    ['cremebrulee-plus (as the runtime runs it)', () => createPolicy('cremebrulee-plus'), 1500],
    ['cremebrulee-plus, scarce memory', () => createPolicy('cremebrulee-plus'), 600],
    ['hybrid-histogram (2 s bins)', () => hybridHistogram({ binMs: 2000, rangeMs: 120_000, minSamples: 5, fixedKeepAliveMs: 20_000 }), 1500],
  ];
  for (const [name, make, budget] of cases) {
    it(`${name}: same evictions, cold starts and pre-warm loads`, async () => {
      const simEv: string[] = [];
      const r = simulate(trace, models, make(), { budgetBytes: budget, sweepMs: 0, onEvict: (key) => simEv.push(key) });
      const pool = await warmPoolWithPrefetch(trace, models, make(), budget);
      expect(r.prewarmLoads).toBeGreaterThan(20);
      expect(simEv.length).toBeGreaterThan(50);
      expect(pool.prewarms).toBe(r.prewarmLoads);
      expect(pool.evictions).toEqual(simEv);
      expect(pool.cold).toBe(r.coldStarts);
    });
  }
});
