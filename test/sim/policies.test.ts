import { describe, expect, it } from 'vitest';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { gdsf } from '../../runtime/policies/gdsf';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import type { EntryFacts } from '../../runtime/policies/types';
import { simulate, type SimOptions } from '../../sim/engine';
import { createSimPolicy, isOracle, type SimPolicyName } from '../../sim/policies';
import { modelsOf, traceOf } from './helpers';

/** Cold starts of one policy on a hand-made trace (one serial node). */
function misses(name: SimPolicyName, events: [number, string][], budget: number, opts: Partial<SimOptions> = {}, table = {}): number {
  const t = traceOf(events);
  return simulate(t, modelsOf(t, table), createSimPolicy(name), { budgetBytes: budget, future: isOracle(name), ...opts }).coldStarts;
}

const spaced = (names: string) => names.split(' ').map((f, i) => [i * 20_000, f] as [number, string]);

describe('policies on hand-made traces (budget 2 models of 1 byte)', () => {
  // A B A C B A:
  //   LRU:    A- B- A+ C-(evicts B) B-(evicts A) A-(evicts C)       -> 5 misses
  //   Belady: A- B- A+ C-(evicts A: next use 6th, B's is 5th) B+ A-  -> 4 misses
  it('LRU evicts the least recently used', () => {
    expect(misses('lru', spaced('A B A C B A'), 2)).toBe(5);
  });
  it('Belady evicts the farthest next use', () => {
    expect(misses('belady', spaced('A B A C B A'), 2)).toBe(4);
  });
  // A A A B C A: at C, A has 3 of 4 past invocations, B 1.
  //   LFU: C evicts B, A hits -> 3 misses;   LRU: C evicts A, A misses -> 4.
  it('LFU evicts the least popular (popularity learned from the past)', () => {
    expect(misses('lfu', spaced('A A A B C A'), 2)).toBe(3);
    expect(misses('lru', spaced('A A A B C A'), 2)).toBe(4);
  });
  it('CremeBrulee keeps the costly model per byte', () => {
    // Equal popularity (A B alternate), C arrives: A's load costs 100 ms, B's 10 ms -> B goes.
    const ev = spaced('A B A B C A B');
    // A- B- A+ B+ C-(evicts B) A+ B-(evicts C: popularity of C lowest) -> 4
    expect(misses('cremebrulee', ev, 2, {}, { A: { loadMs: 100 }, B: { loadMs: 10 }, C: { loadMs: 10 } })).toBe(4);
  });
  it('frees only what is needed and never exceeds the budget', () => {
    const t = traceOf(spaced('A B C D A'));
    const r = simulate(t, modelsOf(t, { A: { sizeBytes: 3 }, B: { sizeBytes: 1 }, C: { sizeBytes: 1 }, D: { sizeBytes: 2 } }), createSimPolicy('lru'), { budgetBytes: 5 });
    // A(3) B(1) use 4; C(1) fits (5); D(2) needs 2 -> evict A only (LRU, 3 bytes) -> 3 used;
    // A(3) needs 1 + 3 - 0... used 4 + 3 - 5 = 2 -> evict B and C (LRU), not D -> 3 evictions.
    expect(r.peakUsedBytes).toBe(5);
    expect(r.evictions).toBe(3);
  });
  it('a model larger than the budget is refused, not loaded', () => {
    const t = traceOf(spaced('A B A'));
    const r = simulate(t, modelsOf(t, { A: { sizeBytes: 10 } }), createSimPolicy('lru'), { budgetBytes: 5 });
    expect(r.refused).toBe(2);
    expect(r.coldStarts).toBe(1);
    expect(r.peakUsedBytes).toBe(1);
  });
});

describe('GDSF priority arithmetic', () => {
  const e = (key: string, hits: number, loadMs: number, sizeBytes: number): EntryFacts => ({
    key, hits, loadMs, sizeBytes, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0,
  });
  it('priority = clock + hits x cost / size, and the clock rises to each victim', () => {
    const p = gdsf();
    const a = e('A', 1, 100, 10); // 0 + 10
    const b = e('B', 1, 30, 10); // 0 + 3
    p.onLoad!(a, 0);
    p.onLoad!(b, 0);
    const v1 = p.selectVictims({ now: 0, needBytes: 1, candidates: [a, b], incoming: e('C', 0, 10, 10) });
    expect(v1.map((v) => v.key)).toEqual(['B']);
    p.onEvict!('B', 0); // clock = 3
    const c = e('C', 1, 10, 10); // 3 + 1 = 4
    p.onLoad!(c, 0);
    const a2 = e('A', 2, 100, 10); // 3 + 20 = 23
    p.onAccess!(a2, 0);
    const v2 = p.selectVictims({ now: 0, needBytes: 20, candidates: [a2, c], incoming: e('D', 0, 1, 20) });
    expect(v2.map((v) => v.key)).toEqual(['C', 'A']);
    expect(v2[0]!.reason).toContain('4.000e+0');
    expect(v2[1]!.reason).toContain('2.300e+1');
  });
});

describe('TTL keep-alive expiry', () => {
  const ttl = (events: [number, string][], sweepMs: number) => {
    const t = traceOf(events);
    return simulate(t, modelsOf(t, { A: { loadMs: 0, execMs: 1 } }), createSimPolicy('ttl', { ttlMs: 1000 }), { budgetBytes: 10, sweepMs });
  };
  it('a model idle for the keep-alive is dropped even without pressure', () => {
    // Idle 1100 ms >= 1000 before the third call: expired -> 2 misses.
    const r = ttl([[0, 'A'], [500, 'A'], [1600, 'A']], 0);
    expect(r.coldStarts).toBe(2);
    expect(r.expirations).toBe(1);
  });
  it('a model used within the keep-alive stays', () => {
    expect(ttl([[0, 'A'], [900, 'A'], [1800, 'A']], 0).coldStarts).toBe(1);
  });
  it('with periodic sweeps, expiry happens at the first sweep after the keep-alive', () => {
    // Last use 500; sweeps every 1000 ms: expired at the sweep at 2000, so a call at 1600 still hits.
    expect(ttl([[0, 'A'], [500, 'A'], [1600, 'A']], 1000).coldStarts).toBe(1);
    expect(ttl([[0, 'A'], [500, 'A'], [2100, 'A']], 1000).coldStarts).toBe(2);
  });
});

describe('hybrid-histogram windows (ATC\'20)', () => {
  const MIN = 60_000;
  const entry = (hits = 1): EntryFacts => ({ key: 'A', sizeBytes: 1, loadMs: 0, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits });
  it('a regular 30-minute function: unloaded for 27 min (p5 x 0.9), pre-warmed, kept to 34.1 min (p99 bin end x 1.1)', () => {
    const p = hybridHistogram();
    let t = 0;
    p.onLoad!(entry(), t);
    for (let k = 0; k < 12; k++) {
      t += 30 * MIN;
      p.onAccess!(entry(), t);
    }
    const isRes = (r: boolean) => () => r;
    expect(p.expired!([entry()], t + 1 * MIN).map((v) => v.key)).toEqual(['A']);
    expect(p.prewarm!(t + 26.9 * MIN, isRes(false))).toEqual([]);
    expect(p.prewarm!(t + 27 * MIN, isRes(false)).map((v) => v.key)).toEqual(['A']);
    expect(p.prewarm!(t + 27 * MIN, isRes(true))).toEqual([]);
    expect(p.expired!([entry(0)], t + 28 * MIN)).toEqual([]);
    expect(p.expired!([entry(0)], t + 34.0 * MIN)).toEqual([]);
    expect(p.expired!([entry(0)], t + 34.1 * MIN).map((v) => v.reason)).toEqual(['keep-alive window ended']);
  });
  it('too few samples: a fixed keep-alive, no pre-warm', () => {
    const p = hybridHistogram({ fixedKeepAliveMs: 10 * MIN });
    p.onLoad!(entry(), 0);
    p.onAccess!(entry(), 30 * MIN);
    expect(p.expired!([entry()], 31 * MIN)).toEqual([]);
    expect(p.prewarm!(35 * MIN, () => false)).toEqual([]);
    expect(p.expired!([entry()], 40 * MIN).length).toBe(1);
  });
});

describe('cremebrulee-plus prefetching', () => {
  const e = (key: string, hits: number, sizeBytes = 1): EntryFacts => ({ key, hits, loadMs: 10, sizeBytes, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0 });
  it('names the best function that is not loaded, has a learned gap and fits the free memory', () => {
    const p = cremebruleePlus({ prefetch: true, prefetchEveryMs: 0 });
    p.onLoad!(e('A', 1), 10); // A invoked at 0
    p.onAccess!(e('A', 2), 100); // gap 100
    p.onLoad!(e('B', 1, 2), 110); // B seen once: no gap, never prefetched
    p.onEvict!('A', 150);
    p.onEvict!('B', 150);
    expect(p.prewarm!(200, () => false, 5).map((v) => v.key)).toEqual(['A']);
    expect(p.prewarm!(200, () => true, 5)).toEqual([]); // already loading
    expect(p.prewarm!(200, () => false, 0)).toEqual([]); // does not fit
    expect(p.prewarm!(200, () => false)).toEqual([]); // caller gives no free memory: no prefetching
    p.onLoad!(e('A', 0), 210); // the prefetch load: no invocation, so no new gap
    expect(p.prewarm!(300, () => false, 5)).toEqual([]);
  });
  it('checks at most every prefetchEveryMs (5 s by default)', () => {
    const p = cremebruleePlus({ prefetch: true });
    p.onLoad!(e('A', 1), 10);
    p.onAccess!(e('A', 2), 100);
    p.onEvict!('A', 150);
    expect(p.prewarm!(200, () => true, 5)).toEqual([]); // checked (A is loading): next check at 5200
    expect(p.prewarm!(5199, () => false, 5)).toEqual([]);
    expect(p.prewarm!(5200, () => false, 5).map((v) => v.key)).toEqual(['A']);
  });
  it('scarce memory (below × the hottest model): every due function that fits, at every check', () => {
    const run = (below: number) => {
      const p = cremebruleePlus({ prefetch: true, prefetchEveryMs: 0, scarce: { below, prefetchCount: Infinity, prefetchEveryMs: 0, prefetchDue: 0.65 } });
      p.onLoad!(e('A', 1, 4), 10); // A (4 bytes), the hottest: gap 100
      p.onAccess!(e('A', 2, 4), 100);
      p.onLoad!(e('B', 1), 10);
      p.onAccess!(e('B', 2), 1000); // gap 1000
      p.onEvict!('B', 1001);
      p.onLoad!(e('C', 1), 10);
      p.onAccess!(e('C', 2), 1100);
      p.onAccess!(e('C', 3), 1600); // gap 1100, then 500: average 920
      p.onEvict!('C', 1601);
      // At 1700: loaded 4 + free 2 = 6 bytes. B idle 700 >= 0.65 x 1000 (due); C idle 100 < 0.65 x 920.
      return p.prewarm!(1700, () => false, 2).map((v) => v.key);
    };
    expect(run(2)).toEqual(['B']); // 6 < 2 x 4: scarce, only what is due
    expect(run(1.5)).toEqual(['C']); // 6 is not < 6: the usual rule, best utility (C's shorter gap)
  });
  it('without the option it has no prewarm hook (the runtime gets the eviction part only)', () => {
    expect(cremebruleePlus().prewarm).toBeUndefined();
  });
});

describe('cremebrulee-plus eviction: functions seen once, and only the victims needed', () => {
  /** Evictions (in order) and cold starts of cremebrulee-plus (eviction only) on a hand-made trace. */
  const run = (opts: Parameters<typeof cremebruleePlus>[0], events: [number, string][], budget: number, table = {}) => {
    const t = traceOf(events);
    const evicted: string[] = [];
    const r = simulate(t, modelsOf(t, table), cremebruleePlus(opts), { budgetBytes: budget, onEvict: (key) => evicted.push(key) });
    return { evicted, cold: r.coldStarts };
  };
  it("oneSighting 'window': functions seen once rank by load cost per byte, not by recency", () => {
    // S (1 byte) and L (10 bytes), each called once, same load time; X needs 1 byte.
    const ev: [number, string][] = [[0, 'S'], [100, 'L'], [200, 'X'], [300, 'S']];
    const table = { L: { sizeBytes: 10 } };
    // One call in the time watched, for both: S is worth 10x more per byte, so L goes; S then hits.
    expect(run({ oneSighting: 'window', trimVictims: false }, ev, 11, table)).toEqual({ evicted: ['L'], cold: 3 });
    // As before (popularity share, 0 for both before any refresh): the least recently used, S.
    expect(run({ oneSighting: 'popularity', trimVictims: false }, ev, 11, table)).toEqual({ evicted: ['S', 'L'], cold: 4 });
  });
  it("oneSighting 'window': a function seen once ranks below one with a learned gap", () => {
    const p = cremebruleePlus();
    const e = (key: string, lastUsedAt: number): EntryFacts => ({ key, hits: 1, loadMs: 10, sizeBytes: 1, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt });
    p.onLoad!(e('A', 0), 10); // A at 0 and 100: gap 100
    p.onAccess!(e('A', 100), 100);
    p.onLoad!(e('B', 500), 510); // B once, at 500
    // At 1000: A's rate 1 / max(100, 900); B's 1 / (1000 − 0), lower, though B was used later.
    expect(p.selectVictims({ now: 1000, needBytes: 1, candidates: [e('A', 100), e('B', 500)], incoming: e('C', 1000) }).map((v) => v.key)).toEqual(['B']);
  });
  it('trimVictims: a large victim that alone frees enough spares the small ones taken before it', () => {
    // Budget 7: A (1), B (1) and C (5). A and B every 6 s, C every 100 ms; D (5) arrives at 12 s.
    const ev: [number, string][] = [[0, 'A'], [100, 'B'], [6000, 'A'], [6100, 'B']];
    for (let t = 6200; t < 12000; t += 100) ev.push([t, 'C']);
    ev.push([12000, 'D'], [12100, 'A'], [12200, 'B']);
    const table = { C: { sizeBytes: 5 }, D: { sizeBytes: 5 } };
    // Lowest utility first: A, B (2 bytes, not enough), then C. C alone frees the 5 bytes D needs.
    const trimmed = run({ trimVictims: true }, ev, 7, table);
    const untrimmed = run({ trimVictims: false }, ev, 7, table);
    expect(trimmed.evicted).toEqual(['C']);
    expect(untrimmed.evicted).toEqual(['A', 'B', 'C']);
    expect(trimmed.cold).toBe(untrimmed.cold - 2); // A and B then hit
  });
  it('trimVictims keeps the order and stops at what is needed (direct call)', () => {
    const e = (key: string, sizeBytes: number, loadMs: number): EntryFacts => ({ key, hits: 1, loadMs, sizeBytes, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0 });
    // Utility per byte: S1 1, S2 2, M 3, L 4 (load / size; all seen once: equal rates).
    const c = [e('S1', 1, 1), e('S2', 1, 2), e('M', 3, 9), e('L', 5, 20)];
    const [p, q] = [cremebruleePlus(), cremebruleePlus({ trimVictims: false })];
    for (const x of c) [p, q].forEach((y) => y.onLoad!(x, 1));
    // Need 6: S1 + S2 + M free 5, then L.
    expect(q.selectVictims({ now: 2, needBytes: 6, candidates: c, incoming: e('X', 6, 1) }).map((v) => v.key)).toEqual(['S1', 'S2', 'M', 'L']);
    // Keep the most valuable first: M (the other three free 7 >= 6), then S2 (6 >= 6); not S1
    // (L alone frees 5 < 6). S1 then L, still lowest utility first.
    expect(p.selectVictims({ now: 2, needBytes: 6, candidates: c, incoming: e('X', 6, 1) }).map((v) => v.key)).toEqual(['S1', 'L']);
  });
});
