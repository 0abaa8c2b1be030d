import { describe, expect, it } from 'vitest';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { CREMEBRULEE_PLUS_TUNED } from '../../runtime/policies/index';
import type { EvictionPolicy } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import { createSimPolicy, type SimPolicyName } from '../../sim/policies';
import { modelsOf, randomTrace } from './helpers';

/** The same policy with the speed hints removed (so the simulator checks at every period). */
function withoutHints(p: EvictionPolicy): EvictionPolicy {
  const q = Object.create(p) as EvictionPolicy & { nextCheckAt?: unknown; quietUntil?: unknown; usesPopularity?: unknown };
  Object.defineProperty(q, 'nextCheckAt', { value: undefined });
  Object.defineProperty(q, 'quietUntil', { value: undefined });
  Object.defineProperty(q, 'usesPopularity', { value: undefined });
  return q;
}

describe('lazy checks and the popularity skip change no decision', () => {
  const names: SimPolicyName[] = ['ttl', 'hybrid-histogram', 'cremebrulee-plus', 'lru', 'gdsf', 'random'];
  const make: [string, (seed: number) => EvictionPolicy][] = names.map((name) => [name, (seed) => createSimPolicy(name, { seed, ttlMs: 60_000 })]);
  // Popularity read at checks too (prefetch ranks by it): refreshes must come before the checks
  // and the calls they precede, skipped checks or not.
  make.push(['cremebrulee-plus with popularity weight', () => cremebruleePlus({ ...CREMEBRULEE_PLUS_TUNED, popularityWeight: 0.5 })]);
  for (const [name, create] of make) {
    it(name, () => {
      for (const seed of [1, 2, 3]) {
        const t = randomTrace(seed, 4000, 40);
        const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 5), loadMs: 200 + 7000 * (i % 3), execMs: 50 + (i % 4) * 900 }])));
        for (const budgetBytes of [6, 20, 60]) {
          for (const sweepMs of [1000, 5000]) {
            const run = (p: EvictionPolicy) => {
              const ev: string[] = [];
              const opts: SimOptions = { budgetBytes, sweepMs, popularityRefreshMs: 3000, onEvict: (k, now, c) => ev.push(`${k}@${now}:${c}`) };
              const { wallMs: _w, ...r } = simulate(t, models, p, opts);
              return { r, ev };
            };
            const fast = run(create(seed));
            const slow = run(withoutHints(create(seed)));
            expect(fast.ev).toEqual(slow.ev);
            expect(fast.r).toEqual(slow.r);
          }
        }
      }
    });
  }
});
