import { describe, expect, it } from 'vitest';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { CREMEBRULEE_PLUS_TUNED } from '../../runtime/policies/index';
import type { EvictionPolicy, Victim } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import type { SimHints } from '../../sim/hints';
import { createSimPolicy, isOracle, SIM_POLICIES, type SimPolicyName } from '../../sim/policies';
import { modelsOf, randomTrace, traceOf } from './helpers';

/** The same policy with the speed hints removed (so the simulator checks at every period, and names models by key). */
function withoutHints(p: EvictionPolicy): EvictionPolicy {
  const q = Object.create(p) as EvictionPolicy & { nextCheckAt?: unknown; checkAfterHooks?: unknown; checkSignals?: unknown; quietUntil?: unknown; idleCheckPeriod?: unknown; usesPopularity?: unknown; omitReasons?: unknown; reuseAnswers?: unknown; selectAmongLoaded?: unknown; selectAmongLoadedByShare?: unknown; numberModels?: unknown; onEvictNumber?: unknown };
  Object.defineProperty(q, 'nextCheckAt', { value: undefined });
  Object.defineProperty(q, 'idleCheckPeriod', { value: undefined });
  Object.defineProperty(q, 'checkAfterHooks', { value: undefined });
  Object.defineProperty(q, 'checkSignals', { value: undefined });
  Object.defineProperty(q, 'quietUntil', { value: undefined });
  Object.defineProperty(q, 'usesPopularity', { value: undefined });
  Object.defineProperty(q, 'omitReasons', { value: undefined });
  Object.defineProperty(q, 'reuseAnswers', { value: undefined });
  Object.defineProperty(q, 'selectAmongLoaded', { value: undefined });
  Object.defineProperty(q, 'selectAmongLoadedByShare', { value: undefined });
  Object.defineProperty(q, 'numberModels', { value: undefined }); // (so by key: hooks, victims, evictions)
  Object.defineProperty(q, 'onEvictNumber', { value: undefined });
  Object.defineProperty(q, 'expiredNumbers', { value: undefined });
  Object.defineProperty(q, 'prewarmNumbers', { value: undefined });
  return q;
}

/**
 * The policy, recording what each `selectVictims` / `expired` / `prewarm` returns; with
 * `keepReasons`, its `omitReasons` hint removed (so the simulator cannot turn reasons off).
 */
function recording(p: EvictionPolicy, keepReasons: boolean, out: Victim[][]): EvictionPolicy {
  const q = Object.create(p) as EvictionPolicy;
  if (keepReasons) Object.defineProperty(q, 'omitReasons', { value: undefined });
  // (Checks by number name no victims: asked through `expired` and `prewarm` instead.)
  Object.defineProperty(q, 'expiredNumbers', { value: undefined });
  Object.defineProperty(q, 'prewarmNumbers', { value: undefined });
  const rec = (v: Victim[]) => (out.push([...v]), v); // (a copy: the policy may refill its answer, `reuseAnswers`)
  q.selectVictims = (req) => rec(p.selectVictims(req));
  if (p.expired) q.expired = (entries, now) => rec(p.expired!(entries, now));
  if (p.prewarm) q.prewarm = (now, isResident, free) => rec(p.prewarm!(now, isResident, free));
  const among = (p as SimHints).selectAmongLoaded;
  if (among) (q as SimHints).selectAmongLoaded = (req) => rec(among(req));
  const byShare = (p as SimHints).selectAmongLoadedByShare;
  if (byShare) (q as SimHints).selectAmongLoadedByShare = (req, shares) => rec(byShare(req, shares));
  return q;
}

describe('lazy checks and the popularity skip change no decision', () => {
  const names: SimPolicyName[] = ['ttl', 'hybrid-histogram', 'cremebrulee-plus', 'lru', 'gdsf', 'random', 'cremebrulee', 'lfu'];
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
          // (3000: cremebrulee-plus's 5 s prefetch period is no whole number of checks.)
          for (const sweepMs of [1000, 3000, 5000]) {
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

describe('lfu and cremebrulee with hundreds of models loaded: the same decisions from ShareOrder', () => {
  // Long lists by rate (one group for lfu, four for cremebrulee), so walks in from the end pass many
  // members and ShareOrder's express lanes are built, used and cut by evictions and calls.
  for (const name of ['lfu', 'cremebrulee'] as const) {
    it(name, () => {
      for (const seed of [1, 2]) {
        const t = randomTrace(seed, 20_000, 400);
        const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 2), loadMs: 200 + 7000 * ((i >> 1) % 2), execMs: 50 + (i % 4) * 900 }])));
        for (const budgetBytes of [150, 300, 450]) {
          const run = (p: EvictionPolicy) => {
            const ev: string[] = [];
            const { wallMs: _w, ...r } = simulate(t, models, p, { budgetBytes, popularityRefreshMs: 3000, onEvict: (k, now, c) => ev.push(`${k}@${now}:${c}`) });
            return { r, ev };
          };
          const fast = run(createSimPolicy(name));
          const slow = run(withoutHints(createSimPolicy(name)));
          expect(fast.r.evictions).toBeGreaterThan(1000);
          expect(fast.ev).toEqual(slow.ev);
          expect(fast.r).toEqual(slow.r);
        }
      }
    });
  }
});

describe('omitReasons: the simulator turns victims\' reasons off, and nothing else changes', () => {
  for (const name of SIM_POLICIES) {
    it(name, () => {
      const t = randomTrace(7, 3000, 30);
      const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 5), loadMs: 200 + 7000 * (i % 3), execMs: 50 + (i % 4) * 900 }])));
      const run = (keepReasons: boolean, hints = true) => {
        const out: Victim[][] = [];
        const p = createSimPolicy(name, { ttlMs: 60_000 });
        const { wallMs: _w, ...r } = simulate(t, models, recording(hints ? p : withoutHints(p), keepReasons, out), {
          budgetBytes: 12, future: isOracle(name),
        });
        return { r, out };
      };
      const omitted = run(false);
      const kept = run(true);
      // Kept, they are the reasons the policy gives without the simulator's hints (a hint that
      // chooses victims its own way must say what selectVictims would).
      const reasonsOf = (o: Victim[][]) => o.flat().map((v) => `${v.key}: ${v.reason}`);
      expect(reasonsOf(kept.out)).toEqual(reasonsOf(run(true, false).out));
      expect(omitted.r).toEqual(kept.r);
      const keys = (o: Victim[][]) => o.map((vs) => vs.map((v) => v.key));
      expect(keys(omitted.out)).toEqual(keys(kept.out));
      const reasons = (o: Victim[][]) => o.flat().map((v) => v.reason);
      expect(reasons(kept.out).length).toBeGreaterThan(100);
      expect(reasons(kept.out).every((x) => x.length > 0)).toBe(true);
      // Every policy whose reasons cost anything to format leaves them out (random's and the
      // constant ones may stay).
      if (!['random'].includes(name)) expect(reasons(omitted.out).filter((x) => x.length > 0 && !CONSTANT_REASONS.has(x))).toEqual([]);
    });
  }
});

/** Reasons that are one fixed string (nothing formatted), which a policy may keep giving. */
const CONSTANT_REASONS = new Set(['keep-alive window ended', 'pre-warm window reached', 'keep-alive of 60000 ms expired']);

describe('expiryCandidates: expired gets only the evictable entries among them', () => {
  it('a model in flight is not handed to expired, even when it is the only one named', () => {
    const t = traceOf([[0, 'f0']]);
    const models = modelsOf(t, { f0: { sizeBytes: 1, loadMs: 10, execMs: 5000 } });
    const seen: [number, string[]][] = [];
    const policy = Object.assign(
      {
        name: 'script',
        selectVictims: () => [],
        expired: (entries: readonly { key: string }[], now: number) => {
          seen.push([now, entries.map((e) => e.key)]);
          return [];
        },
      } satisfies EvictionPolicy,
      { expiryCandidates: () => ['f0'] },
    );
    simulate(t, models, policy, { budgetBytes: 10, sweepMs: 1000 });
    // In flight from 0 (load, then exec) to 5010: checks at 1000..5000 have nothing to hand over.
    expect(seen.filter(([now]) => now < 5010)).toEqual([]);
  });
});

describe('quietUntil: the checks it rules out are skipped at once', () => {
  it('a quiet of Infinity ends the checks, and the run ends as without the hint', () => {
    const t = randomTrace(3, 500, 5);
    const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 3), loadMs: 300, execMs: 2000 }])));
    const make = (hint: boolean): EvictionPolicy => {
      const p: EvictionPolicy = { name: 'quiet', selectVictims: (req) => req.candidates.slice(0, 1).map((e) => ({ key: e.key, reason: '' })), expired: () => [] };
      return hint ? Object.assign(p, { quietUntil: () => Infinity }) : p;
    };
    const run = (hint: boolean) => {
      const { wallMs: _w, ...r } = simulate(t, models, make(hint), { budgetBytes: 4, sweepMs: 1000 });
      return r;
    };
    expect(run(true)).toEqual(run(false));
  });
});

describe('checkSignals: checks skipped on the signals, without asking checkAfterHooks, are the ones it would skip', () => {
  // Short bins and range (as in hybrid-histogram-fast.test.ts), so histograms become
  // representative and models are unloaded for their pre-warm windows and loaded again.
  const HH = { binMs: 500, rangeMs: 60_000, fixedKeepAliveMs: 20_000, minSamples: 5, minCv: 1.5 };
  /** hybrid-histogram with its signals or without, counting the times `checkAfterHooks` is asked. */
  const make = (signals: boolean, asked: { n: number }): EvictionPolicy => {
    const p = hybridHistogram(HH) as EvictionPolicy & Required<Pick<SimHints, 'checkAfterHooks'>>;
    return Object.assign(Object.create(p) as EvictionPolicy, {
      checkAfterHooks: (free: number, inFlight: (i: number) => boolean) => {
        asked.n++;
        return p.checkAfterHooks(free, inFlight);
      },
      ...(signals ? {} : { checkSignals: undefined }),
    });
  };
  for (const slots of [1, 2]) {
    it(`${slots} slot(s): the same evictions, loads and results, with far fewer questions`, () => {
      let withAsked = 0;
      let withoutAsked = 0;
      for (const seed of [1, 2]) {
        const t = randomTrace(seed, 5000, 30);
        const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 5), loadMs: 150 + 1300 * (i % 4), execMs: 20 + (i % 3) * 700 }])));
        for (const budgetBytes of [8, 25, 100]) {
          for (const sweepMs of [300, 1000]) {
            const run = (signals: boolean) => {
              const asked = { n: 0 };
              const log: string[] = [];
              const { wallMs: _w, ...r } = simulate(t, models, make(signals, asked), {
                budgetBytes, sweepMs, slots,
                onEvict: (k, now, c) => log.push(`${k}@${now}:${c}`),
                onLoadStart: (k, pre) => log.push(`load ${k} ${pre}`),
              });
              return { r, log, asked: asked.n };
            };
            const fast = run(true);
            const slow = run(false);
            expect(fast.log).toEqual(slow.log);
            expect(fast.r).toEqual(slow.r);
            expect(fast.r.prewarmLoads).toBeGreaterThan(50);
            expect(fast.r.expirations).toBeGreaterThan(50);
            withAsked += fast.asked;
            withoutAsked += slow.asked;
          }
        }
      }
      expect(withAsked).toBeLessThan(0.7 * withoutAsked);
    });
  }
});
