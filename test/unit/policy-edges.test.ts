import { describe, expect, it } from 'vitest';
import { createPolicy, RUNTIME_POLICIES, utility, type EntryFacts, type EvictionRequest } from '../../runtime/policies';
import { gdsf } from '../../runtime/policies/gdsf';
import { lfu } from '../../runtime/policies/lfu';
import { lru } from '../../runtime/policies/lru';
import { ttl } from '../../runtime/policies/ttl';
import { cremebrulee } from '../../runtime/policies/cremebrulee';

// The simple policies' choices at their edges, and the reasons they give (an operator reads them
// in /stats), every number worked out by hand.

const entry = (key: string, o: Partial<EntryFacts> = {}): EntryFacts => ({
  key, sizeBytes: 100, loadMs: 10, execMs: 1, popularity: 0.5, loadedAt: 0, lastUsedAt: 0, hits: 1, ...o,
});
const req = (candidates: EntryFacts[], needBytes: number, now = 0): EvictionRequest => ({
  now, needBytes, candidates, incoming: { key: 'new', sizeBytes: needBytes, loadMs: 10, execMs: 1, popularity: 0 },
});

describe('createPolicy', () => {
  it('builds each runtime policy under its own name', () => {
    expect(RUNTIME_POLICIES.map((n) => createPolicy(n).name)).toEqual(['cremebrulee', 'cremebrulee-plus', 'lru', 'lfu', 'gdsf', 'ttl', 'random', 'hybrid-histogram']);
  });

  it('passes ttlMs to ttl and seed to random', () => {
    const idle = [entry('a', { lastUsedAt: 0 })];
    expect(createPolicy('ttl', { ttlMs: 50 }).expired!(idle, 50)).toEqual([{ key: 'a', reason: 'keep-alive of 50 ms expired' }]);
    expect(createPolicy('ttl').expired!(idle, 599_999)).toEqual([]);
    expect(createPolicy('ttl').expired!(idle, 600_000)).toEqual([{ key: 'a', reason: 'keep-alive of 600000 ms expired' }]);
    // hybrid-histogram takes ttlMs as its fixed keep-alive (for functions with too few samples).
    const h = (o: { ttlMs?: number }) => {
      const p = createPolicy('hybrid-histogram', o);
      p.onLoad!(idle[0]!, 0);
      return p.expired!(idle, 50).map((v) => v.key);
    };
    expect([h({ ttlMs: 50 }), h({})]).toEqual([['a'], []]);
    const many = Array.from({ length: 20 }, (_, i) => entry(`m${String(i).padStart(2, '0')}`));
    const pick = (seed?: number) => createPolicy('random', seed === undefined ? {} : { seed }).selectVictims(req(many, 1))[0]!.key;
    expect(pick()).toBe(pick(1));
    expect([pick(1), pick(2), pick(3)].filter((k, i, a) => a.indexOf(k) === i).length).toBeGreaterThan(1);
  });
});

describe('cremebrulee', () => {
  it('charges at least one byte: a model under one byte is not worth more for it', () => {
    expect(utility({ popularity: 0.5, loadMs: 4, sizeBytes: 0.5 })).toBe(2);
    expect(utility({ popularity: 0.5, loadMs: 4, sizeBytes: 2 })).toBe(1);
  });

  it('reason: utility, popularity, load and size of the victim', () => {
    const v = cremebrulee().selectVictims(req([entry('a', { popularity: 0.5, loadMs: 10, sizeBytes: 100 }), entry('b', { popularity: 0.1, loadMs: 20, sizeBytes: 1000 })], 1));
    // a: 0.5 × 10 / 100 = 0.05; b: 0.1 × 20 / 1000 = 0.002.
    expect(v).toEqual([{ key: 'b', reason: 'utility 2.000e-3 lowest (popularity 0.1000, load 20.0 ms, 1000 B)' }]);
  });
});

describe('lru', () => {
  it('evicts the oldest last use, and says how long it was idle', () => {
    const c = [entry('new', { lastUsedAt: 400 }), entry('old', { lastUsedAt: 100.4 }), entry('mid', { lastUsedAt: 250 })];
    expect(lru().selectVictims(req(c, 1, 1000))).toEqual([{ key: 'old', reason: 'least recently used (idle 900 ms)' }]);
    expect(lru().selectVictims(req(c, 150, 1000))).toEqual([
      { key: 'old', reason: 'least recently used (idle 900 ms)' },
      { key: 'mid', reason: 'least recently used (idle 750 ms)' },
    ]);
  });
});

describe('lfu', () => {
  it('evicts the least popular; a tie in popularity goes to fewer hits; hits never outweigh popularity', () => {
    const tie = [entry('more', { popularity: 0.2, hits: 5 }), entry('fewer', { popularity: 0.2, hits: 3 })];
    expect(lfu().selectVictims(req(tie, 1))).toEqual([{ key: 'fewer', reason: 'least frequently used (popularity 0.2000, 3 hits)' }]);
    const busyButRare = [entry('popular', { popularity: 0.2, hits: 1 }), entry('rare', { popularity: 0.1, hits: 1000 })];
    expect(lfu().selectVictims(req(busyButRare, 1)).map((v) => v.key)).toEqual(['rare']);
  });
});

describe('gdsf', () => {
  it('priority from its hooks, the clock raised to each victim, and a reason with both', () => {
    const p = gdsf();
    const a = entry('a', { hits: 1, loadMs: 10, sizeBytes: 5 }); // 0 + 1 × 10 / 5 = 2
    const b = entry('b', { hits: 1, loadMs: 30, sizeBytes: 5 }); // 0 + 1 × 30 / 5 = 6
    p.onLoad!(a, 0);
    p.onLoad!(b, 0);
    expect(p.selectVictims(req([b, a], 1))).toEqual([{ key: 'a', reason: 'lowest GDSF priority 2.000e+0 (clock 0.000e+0, 1 hits)' }]);
    p.onEvict!('a', 0);
    expect(p.selectVictims(req([b], 1))).toEqual([{ key: 'b', reason: 'lowest GDSF priority 6.000e+0 (clock 2.000e+0, 1 hits)' }]);
    // A model loaded now starts from the clock: 2 + 1 × 10 / 5 = 4 < 6.
    const c = entry('c', { hits: 1, loadMs: 10, sizeBytes: 5 });
    p.onLoad!(c, 0);
    expect(p.selectVictims(req([b, c], 1))).toEqual([{ key: 'c', reason: 'lowest GDSF priority 4.000e+0 (clock 2.000e+0, 1 hits)' }]);
    // An access refreshes the priority with the hits: 2 + 3 × 10 / 5 = 8 > 6.
    p.onAccess!({ ...c, hits: 3 }, 0);
    expect(p.selectVictims(req([b, c], 1)).map((v) => v.key)).toEqual(['b']);
    // Evicting b (6) raises the clock to 6; evicting then a model of lower priority leaves it there.
    p.onEvict!('b', 0);
    p.onEvict!('nobody', 0);
    const d = entry('d', { hits: 1, loadMs: 5, sizeBytes: 5 }); // 6 + 1 = 7
    p.onLoad!(d, 0);
    expect(p.selectVictims(req([d], 1))).toEqual([{ key: 'd', reason: 'lowest GDSF priority 7.000e+0 (clock 6.000e+0, 1 hits)' }]);
  });

  it('evicting a model whose priority is below the clock leaves the clock where it is', () => {
    const p = gdsf();
    const x = entry('x', { hits: 1, loadMs: 10, sizeBytes: 5 }); // 2
    const y = entry('y', { hits: 1, loadMs: 30, sizeBytes: 5 }); // 6
    p.onLoad!(x, 0);
    p.onLoad!(y, 0);
    p.onEvict!('y', 0); // clock 6
    p.onEvict!('x', 0); // 2 < 6: the clock stays at 6
    const z = entry('z', { hits: 1, loadMs: 5, sizeBytes: 5 }); // 6 + 1 = 7
    p.onLoad!(z, 0);
    expect(p.selectVictims(req([z], 1))).toEqual([{ key: 'z', reason: 'lowest GDSF priority 7.000e+0 (clock 6.000e+0, 1 hits)' }]);
  });

  it('a candidate it was never told about is scored from its facts at the current clock', () => {
    const p = gdsf();
    const a = entry('a', { hits: 2, loadMs: 10, sizeBytes: 0 }); // 0 + 2 × 10 / max(1, 0) = 20
    const b = entry('b', { hits: 1, loadMs: 10, sizeBytes: 1 }); // 10
    expect(p.selectVictims(req([a, b], 1))).toEqual([{ key: 'b', reason: 'lowest GDSF priority 1.000e+1 (clock 0.000e+0, 1 hits)' }]);
    // After its eviction it is scored afresh too (its old priority is gone).
    p.onLoad!(a, 0);
    p.onEvict!('a', 0);
    expect(p.selectVictims(req([a, b], 1))).toEqual([{ key: 'b', reason: 'lowest GDSF priority 3.000e+1 (clock 2.000e+1, 1 hits)' }]);
  });
});

describe('ttl', () => {
  it.each([0, -5, Number.NaN])('refuses a keep-alive of %s', (ms) => {
    expect(() => ttl(ms)).toThrow(new RangeError(`ttl: ttlMs must be > 0, got ${ms}`));
  });

  it('expires a model idle for exactly the keep-alive, not one idle a millisecond less', () => {
    const p = ttl(1000);
    const c = [entry('a', { lastUsedAt: 0 }), entry('b', { lastUsedAt: 1 })];
    expect(p.expired!(c, 1000)).toEqual([{ key: 'a', reason: 'keep-alive of 1000 ms expired' }]);
    expect(p.expired!(c, 999)).toEqual([]);
  });

  it('under pressure: the least recently used, with how long it was idle of the keep-alive', () => {
    const c = [entry('a', { lastUsedAt: 700 }), entry('b', { lastUsedAt: 300 })];
    expect(ttl(1000).selectVictims(req(c, 1, 600.4))).toEqual([{ key: 'b', reason: 'under pressure, closest to keep-alive expiry (idle 300 ms of 1000)' }]);
  });
});
