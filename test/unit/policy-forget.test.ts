import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { gdsf } from '../../runtime/policies/gdsf';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { CREMEBRULEE_PLUS_TUNED } from '../../runtime/policies/index';
import type { EntryFacts, EvictionPolicy, EvictionRequest } from '../../runtime/policies/types';

// A model forgotten for good (its function deleted, its version replaced) leaves no record in the
// policy: a node where functions come and go must not grow with every model it ever held.

const entry = (key: string, o: Partial<EntryFacts> = {}): EntryFacts => ({
  key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 1, ...o,
});
const req = (candidates: EntryFacts[], needBytes: number, now: number): EvictionRequest => ({
  now, needBytes, candidates, incoming: { key: 'new', sizeBytes: needBytes, loadMs: 10, execMs: 1, popularity: 0 },
});

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Bytes held by this process's JS heap and array buffers (typed arrays' memory), after a full collection. */
const held = () => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

describe('a model forgotten for good leaves no record in its policy', () => {
  const policies: Array<[string, () => EvictionPolicy]> = [
    ['gdsf', gdsf],
    ['cremebrulee-plus (the runtime\'s settings)', () => cremebruleePlus(CREMEBRULEE_PLUS_TUNED)],
    ['cremebrulee-plus (defaults)', () => cremebruleePlus()],
    ['hybrid-histogram', () => hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 3 })],
  ];
  for (const [name, make] of policies) {
    it(`${name}: 80 000 functions registered, called, evicted and deleted in turn beside 4 that stay hold what 1 000 do`, () => {
      const p = make();
      let now = 0;
      const stay = [0, 1, 2, 3].map((i) => entry(`stay-${i}@0123456789abcdef`, { sizeBytes: 10 + i }));
      for (const e of stay) p.onLoad!(e, now);
      // One function's life: loaded, called every 250 ms (a histogram, a learned gap), a
      // candidate of an eviction, a keep-alive and a pre-warm check (as a node's sweep and prefetch
      // make), then evicted and deleted.
      const life = (i: number) => {
        const key = `fn-${i}@${(i * 2654435761).toString(16).padStart(16, '0')}`;
        now += 10;
        p.onLoad!(entry(key, { sizeBytes: 10 + (i % 97), loadedAt: now, lastUsedAt: now }), now);
        for (let k = 2; k <= 6; k++) {
          now += 250;
          p.onAccess!(entry(key, { sizeBytes: 10 + (i % 97), loadedAt: now - 250 * (k - 1), lastUsedAt: now, hits: k }), now);
        }
        p.selectVictims(req([...stay, entry(key, { lastUsedAt: now, hits: 6 })], 15, now));
        p.expired?.(stay, now);
        p.prewarm?.(now, () => false, 1000);
        p.onEvict!(key, now);
        p.forget!(key, 'deleted');
      };
      let i = 0;
      for (; i < 1000; i++) life(i);
      const before = held();
      for (; i < 81_000; i++) life(i);
      const grown = held() - before;
      // A record kept per function is 100 bytes or more (gdsf's box and key; hybrid-histogram's
      // histogram alone is 400): 8 MB and up (40 000 grew 7.4 MB with gdsf's, 36.6 MB with
      // hybrid-histogram's); one stale reminder each, 2.6 MB. Allowance: 12.5 bytes per function
      // (40 000 with the records gone measured -0.36 to +0.12 MB in three runs).
      expect(grown).toBeLessThan(1_000_000);
    });
  }
});

describe('a key forgotten and then loaded again (the same bytes registered again) is a new function to its policy', () => {
  it("gdsf: its new priority is read, not its old record's", () => {
    const p = gdsf();
    p.onLoad!(entry('a'), 0); // priority 0 + 1 x 10 / 10 = 1
    p.onLoad!(entry('b', { hits: 5 }), 0); // 5
    expect(p.selectVictims(req([entry('a'), entry('b', { hits: 5 })], 10, 0)).map((v) => v.key)).toEqual(['a']);
    p.onEvict!('a', 1); // clock 1
    p.forget!('a', 'deleted');
    p.onLoad!(entry('a'), 2); // 1 + 1 = 2
    p.onLoad!(entry('c', { hits: 10 }), 2); // 11
    p.onEvict!('c', 3); // clock 11
    // a (2) before b (5); a's box as of before its deletion has no priority: 11 + 1 = 12, after b.
    const victims = p.selectVictims(req([entry('a'), entry('b', { hits: 5 })], 10, 4));
    expect(victims).toEqual([{ key: 'a', reason: expect.stringMatching(/^lowest GDSF priority 2\.000e\+0 /) as unknown as string }]);
  });

  it('hybrid-histogram: deleted or replaced, its histogram is gone; unloaded, it stays', () => {
    const reasons = (cause: 'retired' | 'unload' | 'deleted') => {
      const p = hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 3, margin: 0, fixedKeepAliveMs: 5000 });
      // f idle 550 ms three times (bin 5), g idle 850 ms (bin 8).
      for (const t of [0, 550, 1100, 1650]) p.onAccess!(entry('f', { loadMs: 0, lastUsedAt: t }), t);
      for (const t of [0, 850, 1700, 2550]) p.onAccess!(entry('g', { loadMs: 0, lastUsedAt: t }), t);
      p.selectVictims(req([entry('f'), entry('g')], 100, 2550));
      for (const k of ['f', 'g']) {
        p.onEvict!(k, 2600);
        p.forget!(k, cause);
      }
      // Back (f takes g's old number, if numbers are reused): a number must not be read for another key.
      p.onLoad!(entry('f', { loadMs: 0, lastUsedAt: 3400 }), 3400);
      p.onLoad!(entry('g', { loadMs: 0, lastUsedAt: 3500 }), 3500);
      return p.selectVictims(req([entry('f'), entry('g')], 100, 3500)).map((v) => v.reason);
    };
    // Unloaded: f's call at 3400 is idle 1750 (bin 17; tail bin 17: kept 1800 ms, until 5200),
    // g's at 3500 idle 950 (bin 9; kept 1000 ms, until 4500).
    expect(reasons('unload')).toEqual(['keep-alive window ends soonest (in 1000 ms)', 'keep-alive window ends soonest (in 1700 ms)']);
    // Gone for good: each called once since, the fixed keep-alive (5000 ms from 3400 and 3500).
    for (const cause of ['retired', 'deleted'] as const) {
      expect(reasons(cause)).toEqual(['keep-alive window ends soonest (in 4900 ms)', 'keep-alive window ends soonest (in 5000 ms)']);
    }
  });

  it("hybrid-histogram: a function that takes a deleted one's number is pre-warmed by its own name", () => {
    const p = hybridHistogram({ binMs: 100, rangeMs: 10_000, minSamples: 3, margin: 0 });
    const no = () => false;
    // Called every 1000 ms: idle until 1000 ms after its last call, then pre-warmed.
    const cycle = (key: string, from: number) => {
      for (let t = from; t <= from + 3000; t += 1000) p.onAccess!(entry(key, { loadMs: 0, lastUsedAt: t }), t);
      p.onEvict!(key, from + 3000);
      return p.prewarm!(from + 4000, no, 100).map((v) => v.key);
    };
    expect(cycle('a', 0)).toEqual(['a']);
    p.forget!('a', 'deleted');
    expect(cycle('b', 5000)).toEqual(['b']);
  });
});
