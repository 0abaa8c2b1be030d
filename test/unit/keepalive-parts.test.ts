import { describe, expect, it } from 'vitest';
import { hybridHistogram, type HybridHistogramOptions } from '../../runtime/policies/hybrid-histogram';
import { ttl } from '../../runtime/policies/ttl';
import type { EntryFacts, EvictionPolicy, EvictionRequest, Victim } from '../../runtime/policies/types';
import type { SimHints } from '../../sim/hints';
import { referenceHybridHistogram } from '../sim/reference-policies';
import { hitOrNeed, lcg, type Held } from './policy-drive';

// The keep-alive policies (hybrid-histogram, ttl) with their simulator hints, driven hook by hook
// as the simulator drives them, too fast a test for the simulations to be needed: every decision
// (victims, expirations, pre-warms, with their reasons) is compared with a plain version (the
// reference hybrid-histogram of test/sim/reference-policies.ts; a keep-alive written out below),
// and the hints are held to their contract (sim/hints.ts): `expiryCandidates` names every entry
// `expired` would name, and a check skipped before `nextCheckAt` would have named nothing.

interface Model { key: string; sizeBytes: number; loadMs: number; /** Usual gap between calls, ms. */ periodMs: number }
type Hinted = EvictionPolicy & SimHints;

/**
 * Time on a grid of `tick` ms (so checks land exactly on the windows' ends). Each model is called
 * about every `periodMs` (now and then much later); a check runs every `checkTicks` ticks: the
 * policy's `expired` on the evictable entries among its `expiryCandidates` (the plain version: on
 * all evictable entries), then `prewarm` with the free memory (or, `freeTold` false, without it), loads
 * what fits; a check before `nextCheckAt` with nothing changed since the last is skipped, and then
 * the plain version must name nothing (`nextCheckAt` is asked, as the simulator asks, only when no
 * hook has been called since the check, so stale deadlines may outlive a check; where free memory is told: the simulator always tells it,
 * and without it a pre-warm that did not fit is named again at each check). A model in flight at a call stays unevictable until the next.
 */
function drive(fast: Hinted, plain: EvictionPolicy, models: Model[], budget: number, seed: number, o: { tick: number; checkTicks: number; steps: number; freeTold: boolean }) {
  const r = lcg(seed);
  const held = new Map<string, Held>();
  const byKey = new Map(models.map((m) => [m.key, m]));
  let used = 0;
  let busy: string | undefined;
  let dirty = true;
  let wake = -Infinity;
  /** The time of the last check, while `nextCheckAt` has not been asked about it (as the simulator asks: only when its answer is used). */
  let askAt: number | undefined;
  const n = { victims: 0, expired: 0, prewarmed: 0, skipped: 0 };
  const next = new Map(models.map((m) => [m.key, Math.floor(r() * m.periodMs / o.tick) * o.tick]));
  const entryOf = (key: string): EntryFacts => ({ ...byKey.get(key)!, execMs: 1, popularity: 0, ...held.get(key)! });
  const both = (f: (p: EvictionPolicy) => void) => {
    f(fast);
    f(plain);
    dirty = true;
  };
  const evict = (key: string, now: number) => {
    used -= byKey.get(key)!.sizeBytes;
    held.delete(key);
    both((p) => p.onEvict?.(key, now));
  };
  const names = (vs: Victim[]) => vs.map((v) => v.key);
  for (let step = 0; step < o.steps; step++) {
    const now = step * o.tick;
    if (step % o.checkTicks === 0) {
      const evictable = [...held.keys()].filter((k) => k !== busy).map(entryOf);
      const free = o.freeTold ? budget - used : undefined;
      const isResident = (k: string) => held.has(k);
      if (!dirty && askAt !== undefined) {
        wake = fast.nextCheckAt!(askAt);
        askAt = undefined;
      }
      if (o.freeTold && !dirty && now < wake) {
        n.skipped++;
        expect(plain.expired?.(evictable, now) ?? []).toEqual([]);
        expect((plain.prewarm?.(now, isResident, free) ?? []).filter((w) => free === undefined || byKey.get(w.key)!.sizeBytes <= free)).toEqual([]);
      } else {
        const want = plain.expired?.(evictable, now) ?? [];
        const cands = new Set(fast.expiryCandidates!(now));
        expect(fast.expired!(evictable.filter((e) => cands.has(e.key)), now)).toEqual(want);
        n.expired += want.length;
        for (const v of want) evict(v.key, now);
        if (fast.prewarm) {
          const f2 = free === undefined ? undefined : budget - used;
          const pre = plain.prewarm!(now, isResident, f2).filter((w) => f2 === undefined || byKey.get(w.key)!.sizeBytes <= f2);
          expect(fast.prewarm(now, isResident, f2)).toEqual(pre);
          for (const w of pre) {
            const m = byKey.get(w.key)!;
            if (used + m.sizeBytes > budget) continue;
            used += m.sizeBytes;
            held.set(m.key, { loadedAt: now, lastUsedAt: now, hits: 0 });
            n.prewarmed++;
            both((p) => p.onLoad?.(entryOf(m.key), now));
          }
        }
        dirty = false;
        askAt = now;
      }
    }
    for (const m of models) {
      if (next.get(m.key)! !== now) continue;
      const later = r() < 0.05 ? 20 : 1;
      next.set(m.key, now + o.tick * Math.max(1, Math.round((later * m.periodMs * (0.9 + 0.2 * r())) / o.tick)));
      busy = r() < 0.2 ? [...held.keys()][Math.floor(r() * held.size)] : undefined;
      const need = hitOrNeed(held, m, now, used, budget, (k) => both((p) => p.onAccess?.(entryOf(k), now)));
      if (need === undefined) continue;
      if (need > 0) {
        const request: EvictionRequest = {
          now, needBytes: need, incoming: { ...m, execMs: 1, popularity: 0 },
          candidates: [...held.keys()].filter((k) => k !== busy).map(entryOf),
        };
        const victims = plain.selectVictims(request);
        expect(fast.selectVictims(request)).toEqual(victims);
        n.victims += victims.length;
        for (const k of names(victims)) {
          if (used + m.sizeBytes <= budget) break;
          evict(k, now);
        }
        if (used + m.sizeBytes > budget) continue;
      }
      // Loaded now for a call that arrived loadMs ago (what was in the way was evicted then).
      used += m.sizeBytes;
      held.set(m.key, { loadedAt: now, lastUsedAt: now, hits: 1 });
      both((p) => p.onLoad?.(entryOf(m.key), now));
    }
  }
  return n;
}

/** A fixed keep-alive written out plainly: idle at least ttlMs expires; under pressure, least recently used first. */
function plainTtl(ttlMs: number): EvictionPolicy {
  return {
    name: 'ttl',
    selectVictims(req) {
      const order = [...req.candidates].sort((a, b) => a.lastUsedAt - b.lastUsedAt || (a.key < b.key ? -1 : 1));
      const out: Victim[] = [];
      let freed = 0;
      for (const e of order) {
        if (freed >= req.needBytes) break;
        out.push({ key: e.key, reason: `under pressure, closest to keep-alive expiry (idle ${Math.round(req.now - e.lastUsedAt)} ms of ${ttlMs})` });
        freed += e.sizeBytes;
      }
      return out;
    },
    expired: (entries, now) => entries.filter((e) => now - e.lastUsedAt >= ttlMs).map((e) => ({ key: e.key, reason: `keep-alive of ${ttlMs} ms expired` })),
  };
}

const models = (count: number, periods: number[], tick: number): Model[] =>
  Array.from({ length: count }, (_, i) => ({
    key: `m${String(i).padStart(2, '0')}`, sizeBytes: 10 + 10 * (i % 4), loadMs: tick * (1 + (i % 3)), periodMs: periods[i % periods.length]!,
  }));

describe('hybrid-histogram decides as the reference version does; its hints keep their contract', () => {
  const cases: [string, HybridHistogramOptions, number, number][] = [
    // name, options, budget, check every n ticks of 50 ms
    ['windows of 500 ms bins, checks at every tick', { binMs: 500, rangeMs: 20_000, fixedKeepAliveMs: 6000, minSamples: 5, minCv: 1.5 }, 90, 1],
    ['checks every 3 ticks, a larger cache', { binMs: 500, rangeMs: 20_000, fixedKeepAliveMs: 6000, minSamples: 5, minCv: 1.5 }, 200, 3],
    ['no margin, other percentiles', { binMs: 250, rangeMs: 15_000, fixedKeepAliveMs: 4000, minSamples: 4, minCv: 1, margin: 0, headPct: 20, tailPct: 80 }, 110, 1],
    ['a short range: idle times out of it', { binMs: 400, rangeMs: 4000, fixedKeepAliveMs: 3000, minSamples: 3, minCv: 1 }, 90, 3],
  ];
  const ms = models(12, [600, 1200, 2500, 5000, 900, 8000], 50);
  for (const [name, o, budget, checkTicks] of cases) {
    it(name, () => {
      const n = { victims: 0, expired: 0, prewarmed: 0, skipped: 0 };
      for (const [seed, freeTold] of [[1, true], [2, true], [3, false]] as const) {
        const d = drive(hybridHistogram(o) as Hinted, referenceHybridHistogram(o), ms, budget, seed, { tick: 50, checkTicks, steps: 1500, freeTold });
        for (const k of ['victims', 'expired', 'prewarmed', 'skipped'] as const) n[k] += d[k];
      }
      expect(n.victims).toBeGreaterThan(10);
      expect(n.expired).toBeGreaterThan(10);
      expect(n.prewarmed).toBeGreaterThan(5);
      expect(n.skipped).toBeGreaterThan(10);
    });
  }
});

describe('ttl decides as a plain keep-alive does; its hints keep their contract', () => {
  for (const [ttlMs, budget, checkTicks] of [[1000, 90, 1], [700, 200, 1], [2500, 120, 3]] as const) {
    it(`keep-alive ${ttlMs} ms, budget ${budget}, checks every ${checkTicks} ticks`, () => {
      const n = { victims: 0, expired: 0, prewarmed: 0, skipped: 0 };
      const ms = models(12, [300, 600, 1200, 2500, 400, 5000], 50);
      for (const seed of [1, 2]) {
        const d = drive(ttl(ttlMs) as Hinted, plainTtl(ttlMs), ms, budget, seed, { tick: 50, checkTicks, steps: 1500, freeTold: true });
        for (const k of ['victims', 'expired', 'prewarmed', 'skipped'] as const) n[k] += d[k];
      }
      expect(n.victims).toBeGreaterThan(10);
      expect(n.expired).toBeGreaterThan(10);
      expect(n.skipped).toBeGreaterThan(10);
    });
  }
});

describe('keep-alive policies past their first 64 functions, by hand', () => {
  const entry = (key: string, lastUsedAt: number, hits = 1): EntryFacts => ({ key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt, hits });
  const keys = Array.from({ length: 70 }, (_, i) => `f${i}`);

  it('hybrid-histogram: 70 functions, 100 bins (4 bit words each): every one its own windows', () => {
    // f_i is called every P = 100 (i + 1) ms: three idle times in bin i + 1 (the bins of f69 reach
    // the third bit word). Representative (3 samples, one bin: 100 × 9 >= (1 + 2²) × 3²). Head and
    // tail bin i + 1, no margin: after the call at 3P, idle until 4P, kept until 3P + (i + 2) × 100.
    const p = hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 3, margin: 0, fixedKeepAliveMs: 5000 });
    keys.forEach((k, i) => {
      for (let c = 0; c <= 3; c++) p.onAccess!(entry(k, c * 100 * (i + 1)), c * 100 * (i + 1));
    });
    const P = (i: number) => 100 * (i + 1);
    for (const [i, k] of keys.entries()) {
      const e = entry(k, 3 * P(i));
      expect(p.selectVictims({ now: 3 * P(i), needBytes: 1, candidates: [e], incoming: { ...e, key: 'x' } })).toEqual([{ key: k, reason: `keep-alive window ends soonest (in ${P(i) + 100} ms)` }]);
      expect(p.expired!([e], 3 * P(i))).toEqual([{ key: k, reason: `idle until the pre-warm window at ${4 * P(i)} ms` }]);
      // A model loaded by a pre-warm (no call yet) is not idle: it is there for the call to come.
      expect(p.expired!([entry(k, 3 * P(i), 0)], 3 * P(i))).toEqual([]);
    }
    for (const k of keys) p.onEvict!(k, 0);
    // Each pre-warm window opens at 4P, after the one before has closed (4P' + 100 <= 4P).
    for (const [i, k] of keys.entries()) {
      expect(p.prewarm!(4 * P(i) - 1, () => false, 1000)).toEqual([]);
      expect(p.prewarm!(4 * P(i), () => false, 1000)).toEqual([{ key: k, reason: 'pre-warm window reached' }]);
    }
  });

  it('ttl: 70 loaded models, their expiries in time order; what hooks change, the hints follow', () => {
    const p = ttl(1000) as Hinted;
    keys.forEach((k, i) => p.onLoad!(entry(k, i), i));
    expect(p.nextCheckAt!(0)).toBe(998); // f0 expires at 1000; 2 ms of margin
    expect(p.expiryCandidates!(998)).toEqual([]);
    expect(p.expiryCandidates!(1009)).toEqual(keys.slice(0, 11)); // expiries up to 1010
    // Named and still loaded (in flight, say): named again later, with the rest now due.
    expect(p.expiryCandidates!(1069)).toEqual(keys);
    expect(p.nextCheckAt!(1069)).toBe(998);
    p.onEvict!('f0', 1069);
    expect(p.nextCheckAt!(1069)).toBe(999);
    p.onAccess!(entry('f1', 1500), 1500);
    expect(p.nextCheckAt!(1500)).toBe(1000);
    expect(p.expiryCandidates!(1500)).toEqual(keys.slice(2));
    expect(p.expiryCandidates!(2499)).toEqual([...keys.slice(2), 'f1']);
  });
});

describe('hybrid-histogram at the edges of its representative test and percentiles, by hand', () => {
  /** f called at 0 and after each idle time; the reason of its keep-alive at its last call. */
  const keepAlive = (o: HybridHistogramOptions, idles: number[]) => {
    const p = hybridHistogram({ margin: 0, fixedKeepAliveMs: 5000, ...o });
    const at = (t: number): EntryFacts => ({ key: 'f', sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: t, hits: 1 });
    let t = 0;
    p.onAccess!(at(0), 0);
    for (const d of idles) p.onAccess!(at((t += d)), t);
    return {
      keep: p.selectVictims({ now: t, needBytes: 1, candidates: [at(t)], incoming: { ...at(t), key: 'x' } })[0]!.reason,
      idle: p.expired!([at(t)], t).map((v) => v.reason),
    };
  };
  const ten = { binMs: 100, rangeMs: 1000, minSamples: 4, minCv: 2 }; // 10 bins

  it('CV exactly at the limit: the pass over the bins decides, rounding and all (as it always did)', () => {
    // Two bins of 2 (of 10): nBins × sumSq = 80 = (1 + 2²) × 4², CV computed 2.0000000000000004 >= 2:
    // representative; the tail (4th of 4) in bin 1: kept 200 ms.
    expect(keepAlive(ten, [50, 150, 50, 150])).toEqual({ keep: 'keep-alive window ends soonest (in 200 ms)', idle: [] });
    // Two bins of 3: 180 = 5 × 6², CV computed 1.9999999999999996 < 2: not representative.
    expect(keepAlive(ten, [50, 150, 50, 150, 50, 150])).toEqual({ keep: 'keep-alive window ends soonest (in 5000 ms)', idle: [] });
    // Two bins of 2 and two idle times out of range, for a second function: the pass over its
    // bins counts the 4 in range (CV 2.0000000000000004): representative, the tail past them.
    const p = hybridHistogram({ ...ten, margin: 0, fixedKeepAliveMs: 5000 });
    const at = (key: string, t: number): EntryFacts => ({ key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: t, hits: 1 });
    p.onAccess!(at('g', 0), 0);
    for (const t of [0, 50, 200, 250, 400, 5400, 10_400]) p.onAccess!(at('f', t), t);
    expect(p.selectVictims({ now: 10_400, needBytes: 1, candidates: [at('f', 10_400)], incoming: at('x', 0) })[0]!.reason).toBe('keep-alive window ends soonest (in 1000 ms)');
    // Two bins of 5: CV computed exactly 2, at least the limit: representative.
    expect(keepAlive(ten, [50, 150, 50, 150, 50, 150, 50, 150, 50, 150]).keep).toBe('keep-alive window ends soonest (in 200 ms)');
  });

  it('idle times at or past the range are out of it; half out is still representative, more is not', () => {
    // 2 in bin 0, 2 out (5000, and 1000: exactly the range). Representative on the 2 in range; the
    // tail (4th of 4) is past them: the last bin, kept 1000 ms.
    expect(keepAlive(ten, [50, 50, 5000, 1000]).keep).toBe('keep-alive window ends soonest (in 1000 ms)');
    expect(keepAlive(ten, [50, 50, 5000, 1000, 5000]).keep).toBe('keep-alive window ends soonest (in 5000 ms)');
  });

  it('the tail from the highest bin with a count, in a higher bit word than the last one counted', () => {
    // 100 bins; idle times in bin 40, then three in bin 5: tail (4th of 4) bin 40, kept 4100 ms;
    // head (1st) bin 5: idle until 500 ms after the last call (5700).
    expect(keepAlive({ binMs: 100, rangeMs: 10_000, minSamples: 4 }, [4050, 550, 550, 550])).toEqual({
      keep: 'keep-alive window ends soonest (in 4100 ms)', idle: ['idle until the pre-warm window at 6200 ms'],
    });
  });
});

describe('keep-alive policies read no popularity (the usesPopularity hint)', () => {
  it('ttl and hybrid-histogram say so', () => {
    expect([(ttl() as Hinted).usesPopularity, (hybridHistogram() as Hinted).usesPopularity]).toEqual([false, false]);
  });
});

describe('hybrid-histogram: models it never saw called, and windows that move, by hand', () => {
  const e = (key: string, lastUsedAt: number, hits = 1): EntryFacts => ({ key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt, hits });
  const no = () => false;
  const req = (candidates: EntryFacts[], now: number): EvictionRequest => ({ now, needBytes: 100, candidates, incoming: { ...e('x', 0), key: 'x' } });

  it('a model loaded ahead of any call (hits 0) or never reported is scored by its last use and never expires', () => {
    const p = hybridHistogram({ fixedKeepAliveMs: 1000 });
    p.onAccess!(e('f', 0), 0); // kept until 1000
    p.onAccess!(e('g', 4000), 4000); // kept until 5000
    p.onLoad!(e('pre', 5000, 0), 5000);
    // Scores: f 1000, unseen 4500 (its last use), g 5000, pre 5000 (its last use; g used earlier).
    const c = [e('unseen', 4500), e('pre', 5000, 0), e('f', 0), e('g', 4000)];
    expect(p.selectVictims(req(c, 6000))).toEqual([
      { key: 'f', reason: 'keep-alive window ends soonest (in -5000 ms)' },
      { key: 'unseen', reason: 'keep-alive window ends soonest (in -1500 ms)' },
      { key: 'g', reason: 'keep-alive window ends soonest (in -1000 ms)' },
      { key: 'pre', reason: 'keep-alive window ends soonest (in -1000 ms)' },
    ]);
    expect(p.expired!(c, 6000).map((v) => v.key)).toEqual(['f', 'g']);
    // Once called, the model first seen at position 0 is scored by its keep-alive there too.
    p.onAccess!(e('unseen', 6000), 6000); // kept until 7000
    p.onAccess!(e('h', 5500), 5500); // kept until 6500
    expect(p.selectVictims(req([e('unseen', 6000), e('g', 4000), e('h', 5500)], 6500)).map((v) => v.key)).toEqual(['g', 'h', 'unseen']);
  });

  it('evicting a model it never saw pre-warms nothing', () => {
    const p = hybridHistogram();
    p.onAccess!(e('f', 0), 0);
    p.onEvict!('f', 0);
    p.onEvict!('ghost', 0);
    p.forget!('ghost');
    expect(p.prewarm!(1, no, 100)).toEqual([]);
  });

  it('no pre-warm window (the head in bin 0): an evicted model is not pre-warmed', () => {
    const p = hybridHistogram({ binMs: 100, rangeMs: 1000, minSamples: 4, margin: 0, fixedKeepAliveMs: 5000 });
    for (const t of [0, 50, 200, 250, 400]) p.onAccess!(e('f', t), t); // bins (2, 2): representative, head bin 0
    p.onEvict!('f', 400);
    expect([p.prewarm!(400, no, 100), p.prewarm!(500, no, 100)]).toEqual([[], []]);
  });

  it('called again inside its keep-alive with a later window: the earlier keep-alive end does not cancel the new pre-warm', () => {
    const p = hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 3, margin: 0, fixedKeepAliveMs: 5000 });
    // Idle 550 three times (bin 5): at 1650, idle until 2150, kept until 2250.
    for (const t of [0, 550, 1100, 1650]) p.onAccess!(e('f', t), t);
    // Again at 2100 (idle 450, bin 4): head bin 4, tail bin 5: idle until 2500, kept until 2700.
    p.onAccess!(e('f', 2100), 2100);
    p.onEvict!('f', 2100);
    expect(p.prewarm!(2250, no, 100)).toEqual([]);
    expect(p.prewarm!(2500, no, 100)).toEqual([{ key: 'f', reason: 'pre-warm window reached' }]);
  });
});

describe('hybrid-histogram after omitReasons (the simulator\'s hint)', () => {
  it('names the same victims and idle models with empty reasons; the constant reasons stay', () => {
    const p = hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 4, margin: 0, fixedKeepAliveMs: 5000 });
    (p as Hinted).omitReasons!();
    const at = (t: number): EntryFacts => ({ key: 'f', sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: t, hits: 1 });
    // As "the tail from the highest bin" above: at 5700, idle until 6200 and kept until 9800.
    for (const t of [0, 4050, 4600, 5150, 5700]) p.onAccess!(at(t), t);
    expect(p.selectVictims({ now: 5700, needBytes: 1, candidates: [at(5700)], incoming: { ...at(0), key: 'x' } })).toEqual([{ key: 'f', reason: '' }]);
    expect(p.expired!([at(5700)], 5700)).toEqual([{ key: 'f', reason: '' }]);
    expect(p.expired!([at(5700)], 9800)).toEqual([{ key: 'f', reason: 'keep-alive window ended' }]);
  });
});
