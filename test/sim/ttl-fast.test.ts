import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../runtime/policies/random';
import { byScore, takeUntilFreed } from '../../runtime/policies/select';
import { ttl } from '../../runtime/policies/ttl';
import type { EntryFacts, EvictionPolicy } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import { simHints, type NumberedEntry } from '../../sim/hints';
import type { SimModel } from '../../sim/trace';
import { randomTrace, traceOf } from './helpers';

/** `ttl` as its doc says, with no hint: every candidate sorted, every loaded model asked at each check. */
function referenceTtl(ttlMs: number): EvictionPolicy {
  return {
    name: 'ttl',
    selectVictims: (req) => takeUntilFreed(byScore(req.candidates, (e) => e.lastUsedAt), req.needBytes, (e) => `under pressure, closest to keep-alive expiry (idle ${Math.round(req.now - e.lastUsedAt)} ms of ${ttlMs})`),
    expired: (entries, now) => entries.filter((e) => now - e.lastUsedAt >= ttlMs).map((e) => ({ key: e.key, reason: `keep-alive of ${ttlMs} ms expired` })),
  };
}

/** `ttl` without its numbers (the runtime's path: ids by key), its other hints kept. */
function byKey(p: EvictionPolicy): EvictionPolicy {
  const q = Object.create(p) as EvictionPolicy;
  Object.defineProperty(q, 'numberModels', { value: undefined });
  Object.defineProperty(q, 'onEvictNumber', { value: undefined });
  return q;
}

describe('ttl: its keep-alive list decides as the plain policy does', () => {
  it('in the simulator: the same evictions and expiries at the same times (ties of last use on a 100 ms grid)', () => {
    let runs = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = seededRandom(seed);
      const events: [number, string][] = [];
      let t = 0;
      for (let i = 0; i < 1500; i++) {
        t += 100 * Math.floor(r() * 20);
        events.push([t, `f${Math.floor(14 * r() * r())}`]);
      }
      // Seed 1 and 2: the random trace of other tests (times in whole ms); the rest on the grid.
      const trace = seed <= 2 ? randomTrace(seed, 1500, 20) : traceOf(events);
      const models: SimModel[] = trace.functions.map((key) => ({ key, sizeBytes: 1 + Math.floor(r() * 5), loadMs: 100 * Math.floor(r() * 10), execMs: 100 * Math.floor(r() * 6) }));
      const total = models.reduce((a, m) => a + m.sizeBytes, 0);
      for (const ttlMs of [1000, 2500, 20_000]) {
        for (const budgetBytes of [5, 12, Math.ceil(total / 2), total]) {
          for (const opts of [{ sweepMs: 1000 }, { sweepMs: 300 }, { sweepMs: 0 }, { sweepMs: 500, slots: 2 }] as Partial<SimOptions>[]) {
            const run = (p: EvictionPolicy) => {
              const log: string[] = [];
              const { wallMs: _w, policy: _p, ...res } = simulate(trace, models, p, { ...opts, budgetBytes, onEvict: (k, now, cause) => log.push(`${k}@${now}:${cause}`) });
              return { res, log };
            };
            const ref = run(referenceTtl(ttlMs));
            for (const fast of [run(ttl(ttlMs)), run(byKey(ttl(ttlMs)))]) {
              expect(fast.log, `seed ${seed} ttl ${ttlMs} budget ${budgetBytes} ${JSON.stringify(opts)}`).toEqual(ref.log);
              expect(fast.res).toEqual(ref.res);
            }
            runs++;
          }
        }
      }
    }
    expect(runs).toBe(4 * 3 * 4 * 4);
  }, 60_000);

  it('driven by hand: selectAmongLoaded (with reasons) is selectVictims of the loaded models, expiryCandidates holds every expired one, nextCheckAt is no later than the first expiry', () => {
    const ttlMs = 5000;
    const r = seededRandom(9);
    const keys = Array.from({ length: 30 }, (_, i) => `m${(i * 7) % 30}`); // (key order is not number order)
    for (const numbered of [false, true]) {
      const fast = ttl(ttlMs);
      const hints = simHints(fast);
      if (numbered) expect(hints.numberModels!(keys)).toBe(true);
      const ref = referenceTtl(ttlMs);
      const loaded = new Map<number, EntryFacts>();
      let now = 0;
      let expiring = 0;
      for (let step = 0; step < 6000; step++) {
        // Clocks that stand still (ties of last use, broken by key) and a few that run back.
        now += Math.floor(r() * 3) * 500 - (r() < 0.02 ? 700 : 0);
        const i = Math.floor(keys.length * r() * r());
        const e: NumberedEntry = { idx: i, key: keys[i]!, sizeBytes: 1 + Math.floor(r() * 4), loadMs: 0, execMs: 1, popularity: 0, loadedAt: now, lastUsedAt: now, hits: 1 };
        if (loaded.has(i)) fast.onAccess!(e, now);
        else fast.onLoad!(e, now);
        loaded.set(i, e);
        const entries = [...loaded.values()];
        const need = 1 + Math.floor(r() * 8);
        expect(hints.selectAmongLoaded!({ now, needBytes: need, candidates: entries, incoming: e }).map((v) => [v.key, v.reason]))
          .toEqual(ref.selectVictims({ now, needBytes: need, candidates: entries, incoming: e }).map((v) => [v.key, v.reason]));
        const at = now + Math.floor(r() * 8000);
        const expired = ref.expired!(entries, at).map((v) => v.key);
        const named = numbered ? hints.expiryCandidateNumbers!(at).map((id) => keys[id]!) : hints.expiryCandidates!(at);
        for (const k of expired) expect(named).toContain(k);
        if (expired.length > 0) expect(hints.nextCheckAt!(now)).toBeLessThanOrEqual(at);
        expiring += expired.length;
        // Some go (evicted, or expired).
        for (const [j, x] of loaded) {
          if (r() < 0.15 || (r() < 0.5 && at - x.lastUsedAt >= ttlMs)) {
            loaded.delete(j);
            if (numbered) hints.onEvictNumber!(j, now);
            else fast.onEvict!(keys[j]!, now);
          }
        }
      }
      expect(expiring).toBeGreaterThan(300);
    }
  });
});
