import { describe, expect, it } from 'vitest';
import { belady } from '../../runtime/policies/belady';
import { cremebruleeOracle } from '../../runtime/policies/cremebrulee-oracle';
import { DeadlineHeap, IdCalendar, IdDeadlineHeap, IdSet, NONE } from '../../runtime/policies/heap';
import { PositionMemo } from '../../runtime/policies/memo';
import { cremebruleePlus, type CremeBruleePlusOptions } from '../../runtime/policies/cremebrulee-plus';
import { hybridHistogram } from '../../runtime/policies/hybrid-histogram';
import { random, seededRandom } from '../../runtime/policies/random';
import { byScore, lowestFirst, Selection, takeUntilFreed } from '../../runtime/policies/select';
import { createPolicy } from '../../runtime/policies';
import type { EntryFacts, EvictionPolicy, EvictionRequest, FutureFacts } from '../../runtime/policies/types';

// The parts the policies are built from (the deadline heap, the position memo, the seeded
// generator) and the simulator's oracles, on small cases whose every expected value is worked out
// by hand (or, for mulberry32, by an independent implementation: Python integers masked to 32 bits).

const entry = (key: string, o: Partial<EntryFacts> = {}): EntryFacts => ({
  key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 1, ...o,
});
const req = (candidates: EntryFacts[], needBytes: number, o: Partial<EvictionRequest> = {}): EvictionRequest => ({
  now: 1000, needBytes, candidates, incoming: { key: 'new', sizeBytes: needBytes, loadMs: 10, execMs: 1, popularity: 0 }, ...o,
});

describe('victim selection', () => {
  // Scores and last uses chosen so that every tie-break is needed: f (-Infinity) first; d, g, b tie
  // on 1: d and g used at 2 before b at 5, and d before g by key; then c (2), a (3), e (Infinity).
  const c = [
    entry('a', { lastUsedAt: 0 }), entry('b', { lastUsedAt: 5 }), entry('c', { lastUsedAt: 0 }), entry('g', { lastUsedAt: 2 }),
    entry('d', { lastUsedAt: 2 }), entry('e', { lastUsedAt: 0 }), entry('f', { lastUsedAt: 9 }),
  ];
  const score: Record<string, number> = { a: 3, b: 1, c: 2, d: 1, e: Infinity, f: -Infinity, g: 1 };
  const order = ['f', 'd', 'g', 'b', 'c', 'a', 'e'];
  const reason = (e: EntryFacts) => `score ${score[e.key]}`;

  it('byScore: ascending, ties to the least recently used, then by key', () => {
    expect(byScore(c, (e) => score[e.key]!).map((e) => e.key)).toEqual(order);
    expect(byScore([...c].reverse(), (e) => score[e.key]!).map((e) => e.key)).toEqual(order);
  });

  it('takeUntilFreed: in order until the need is covered, one reason per victim', () => {
    const asked: string[] = [];
    const ordered = byScore(c, (e) => score[e.key]!);
    expect(takeUntilFreed(ordered, 15, (e) => (asked.push(e.key), reason(e)))).toEqual([{ key: 'f', reason: 'score -Infinity' }, { key: 'd', reason: 'score 1' }]);
    expect(asked).toEqual(['f', 'd']);
    expect(takeUntilFreed(ordered, 20, reason).map((v) => v.key)).toEqual(['f', 'd']);
    expect(takeUntilFreed(ordered, 0, reason)).toEqual([]);
    expect(takeUntilFreed(ordered, 1000, reason).map((v) => v.key)).toEqual(order);
  });

  it('lowestFirst: the same victims, for every need', () => {
    for (let need = 0; need <= 80; need += 5) {
      const k = Math.min(order.length, Math.ceil(need / 10));
      expect(lowestFirst(c, need, (e) => score[e.key]!, reason).map((v) => v.key)).toEqual(order.slice(0, k));
    }
    expect(lowestFirst(c, 25, (e) => score[e.key]!, reason)).toEqual([{ key: 'f', reason: 'score -Infinity' }, { key: 'd', reason: 'score 1' }, { key: 'g', reason: 'score 1' }]);
    // Two infinities tie: the full order decides (last use, then key).
    const inf = [entry('y', { lastUsedAt: 1 }), entry('x', { lastUsedAt: 1 }), entry('z', { lastUsedAt: 0 })];
    expect(lowestFirst(inf, 30, () => Infinity, () => '').map((v) => v.key)).toEqual(['z', 'x', 'y']);
    expect(lowestFirst(inf, 30, () => -Infinity, () => '').map((v) => v.key)).toEqual(['z', 'x', 'y']);
  });

  it('more than eight victims, among more candidates than its buffers first hold, and the index of each', () => {
    // 200 candidates, candidate i scored (i × 7919) mod 200 (all different): the victims are the
    // candidates scored 0, 1, 2, ... in that order.
    const many = Array.from({ length: 200 }, (_, i) => entry(`k${i}`));
    const s = (i: number) => (i * 7919) % 200;
    const withScore = (v: number) => Array.from({ length: 200 }, (_, i) => i).find((i) => s(i) === v)!;
    const sel = new Selection();
    const buf = sel.scores(200);
    for (let i = 0; i < 200; i++) buf[i] = s(i);
    const picked: number[] = [];
    const v = sel.lowestScored(many, buf, 195, (e) => e.key, picked);
    const want = Array.from({ length: 20 }, (_, j) => withScore(j));
    expect(v.map((x) => x.key)).toEqual(want.map((i) => `k${i}`));
    expect(v.map((x) => x.reason)).toEqual(want.map((i) => `k${i}`));
    expect(picked).toEqual(want);
    // All of them: every candidate once, in score order.
    const all = new Selection().lowestFirst(many, Infinity, (e) => s(Number(e.key.slice(1))), () => '');
    expect(all.map((x) => x.key)).toEqual(Array.from({ length: 200 }, (_, j) => `k${withScore(j)}`));
    // Ties in the heap: 12 candidates on one score go by last use, then key.
    const tied = Array.from({ length: 12 }, (_, i) => entry(`t${String(i % 6)}${i < 6 ? 'b' : 'a'}`, { lastUsedAt: i % 3 }));
    const byHand = [...tied].sort((a, b) => a.lastUsedAt - b.lastUsedAt || (a.key < b.key ? -1 : 1)).map((e) => e.key);
    expect(new Selection().lowestFirst(tied, 120, () => 0, () => '').map((x) => x.key)).toEqual(byHand);
    expect(new Selection().lowestFirst(tied, 95, () => 0, () => '').map((x) => x.key)).toEqual(byHand.slice(0, 10));
    // Exactly covered after 10 victims (8 by scanning, 2 from the heap): not one more.
    expect(new Selection().lowestFirst(tied, 100, () => 0, () => '').map((x) => x.key)).toEqual(byHand.slice(0, 10));
    // Eleven, all needed: three left for the heap, which must keep its order as it pops.
    const sc = [10, 10, 4, 9, 7, 3, 6, 4, 4, 4, 3];
    const eleven = sc.map((_, i) => entry(`k${String(i).padStart(2, '0')}`));
    expect(new Selection().lowestFirst(eleven, Infinity, (e) => sc[Number(e.key.slice(1))]!, () => '').map((x) => x.key)).toEqual(
      ['k05', 'k10', 'k02', 'k07', 'k08', 'k09', 'k06', 'k04', 'k03', 'k00', 'k01'],
    );
    // Ten candidates, all needed: two left for the heap.
    const ten = Array.from({ length: 10 }, (_, i) => entry(`m${i}`));
    expect(new Selection().lowestFirst(ten, 100, (e) => -Number(e.key.slice(1)), () => '').map((x) => x.key)).toEqual(['m9', 'm8', 'm7', 'm6', 'm5', 'm4', 'm3', 'm2', 'm1', 'm0']);
    expect(new Selection().lowestFirst(ten, 1000, (e) => -Number(e.key.slice(1)), () => '')).toHaveLength(10);
  });
});

describe('omitReasons (the simulator hint, 5534fe3): the same victims, each with an empty reason', () => {
  it('Selection: reason is never called, by the scans or the heap, and victims say nothing', () => {
    const sel = new Selection();
    expect(sel.reasons).toBe(true);
    sel.omitReasons();
    expect(sel.reasons).toBe(false);
    const asked: string[] = [];
    const ten = Array.from({ length: 10 }, (_, i) => entry(`m${i}`));
    const v = sel.lowestFirst(ten, 100, (e) => -Number(e.key.slice(1)), (e) => (asked.push(e.key), 'said'));
    expect(v).toEqual(['m9', 'm8', 'm7', 'm6', 'm5', 'm4', 'm3', 'm2', 'm1', 'm0'].map((key) => ({ key, reason: '' })));
    expect(asked).toEqual([]);
    // Another selection still gives its reasons.
    expect(new Selection().lowestFirst(ten, 10, (e) => -Number(e.key.slice(1)), () => 'said')).toEqual([{ key: 'm9', reason: 'said' }]);
  });

  it.each(['belady', 'cremebrulee-oracle', 'cremebrulee', 'gdsf', 'lfu', 'lru', 'ttl'])('%s: the hint turns its reasons off, victims unchanged', (name) => {
    const make = (): EvictionPolicy => (name === 'belady' ? belady() : name === 'cremebrulee-oracle' ? cremebruleeOracle() : createPolicy(name as never));
    const future: FutureFacts = { nextUse: (key, now) => now + key.charCodeAt(0), usesWithin: (key) => (key === 'a' ? 0 : 2) };
    const c = [entry('a', { lastUsedAt: 3, hits: 4, popularity: 0.5 }), entry('b', { lastUsedAt: 1, hits: 1, popularity: 0.1 }), entry('c', { lastUsedAt: 2, hits: 2, popularity: 0.2 })];
    const r = req(c, 15, { future });
    const said = make().selectVictims(r);
    expect(said).toHaveLength(2);
    for (const v of said) expect(v.reason).not.toBe('');
    const quiet = make() as EvictionPolicy & { omitReasons: () => void };
    quiet.omitReasons();
    expect(quiet.selectVictims(r)).toEqual(said.map((v) => ({ key: v.key, reason: '' })));
  });
});

describe('DeadlineHeap', () => {
  it('is empty at first: no size, no earliest time', () => {
    const h = new DeadlineHeap();
    expect([h.size, h.peekTime()]).toEqual([0, Infinity]);
    expect(NONE).toEqual([]);
    expect(Object.isFrozen(NONE)).toBe(true);
  });

  it('pops in time order whatever the push order, with each time its own key', () => {
    // 31 distinct times pushed in a scrambled order (i × 17 mod 31), popped one by one.
    const h = new DeadlineHeap();
    for (let i = 0; i < 31; i++) {
      const t = (i * 17) % 31;
      h.push(t, `k${t}`);
    }
    expect(h.size).toBe(31);
    const out: [number, string][] = [];
    while (h.size > 0) {
      out.push([h.peekTime(), h.peekKey()]);
      h.pop();
    }
    expect(out).toEqual(Array.from({ length: 31 }, (_, t) => [t, `k${t}`]));
    expect(h.peekTime()).toBe(Infinity);
  });

  it('pushes and pops interleaved; a time pushed twice surfaces twice', () => {
    const h = new DeadlineHeap();
    h.push(50, 'a');
    h.push(20, 'b');
    h.push(40, 'c');
    expect([h.peekTime(), h.peekKey()]).toEqual([20, 'b']);
    h.pop();
    h.push(10, 'd');
    h.push(40, 'e');
    h.push(45, 'f');
    const out: [number, string][] = [];
    while (h.size > 0) {
      out.push([h.peekTime(), h.peekKey()]);
      h.pop();
    }
    expect(out.map(([t]) => t)).toEqual([10, 40, 40, 45, 50]);
    expect(out.filter(([t]) => t !== 40)).toEqual([[10, 'd'], [45, 'f'], [50, 'a']]);
    expect(out.filter(([t]) => t === 40).map(([, k]) => k).sort()).toEqual(['c', 'e']);
  });

  it('the last pop leaves it empty', () => {
    const h = new DeadlineHeap();
    h.push(5, 'x');
    h.pop();
    expect([h.size, h.peekTime()]).toEqual([0, Infinity]);
  });
});

/** Every (time, id) pair of a deadline queue, in the order it pops them (it is left empty). */
const drain = (h: Pick<IdDeadlineHeap, 'size' | 'peekTime' | 'peekId' | 'pop'>) => {
  const out: [number, number][] = [];
  while (h.size > 0) {
    out.push([h.peekTime(), h.peekId()]);
    h.pop();
  }
  return out;
};
/** A seeded draw in [0, n): a linear congruential generator, so a failing sequence repeats. */
const lcg = (seed: number) => {
  let x = seed;
  return (n: number) => (x = (x * 1103515245 + 12345) % 2 ** 31) % n;
};

describe('IdDeadlineHeap', () => {

  it('pops in time order whatever the push order, past its first 64 slots', () => {
    // 131 distinct times pushed in a scrambled order (i × 37 mod 131), id = time + 1000.
    const h = new IdDeadlineHeap();
    expect([h.size, h.peekTime()]).toEqual([0, Infinity]);
    for (let i = 0; i < 131; i++) {
      const t = (i * 37) % 131;
      h.push(t, t + 1000);
    }
    expect(h.size).toBe(131);
    expect(drain(h)).toEqual(Array.from({ length: 131 }, (_, t) => [t, t + 1000]));
    expect([h.size, h.peekTime()]).toEqual([0, Infinity]);
    h.pop(); // on empty: stays empty
    expect([h.size, h.peekTime()]).toEqual([0, Infinity]);
    h.push(7, 3);
    expect([h.size, h.peekTime(), h.peekId()]).toEqual([1, 7, 3]);
  });

  it('pushes and pops interleaved; a time pushed twice surfaces twice', () => {
    const h = new IdDeadlineHeap();
    h.push(50, 1);
    h.push(20, 2);
    h.push(40, 3);
    h.pop();
    h.push(10, 4);
    h.push(40, 5);
    h.push(45, 6);
    const out = drain(h);
    expect(out.map(([t]) => t)).toEqual([10, 40, 40, 45, 50]);
    expect(out.filter(([t]) => t !== 40)).toEqual([[10, 4], [45, 6], [50, 1]]);
    expect(out.filter(([t]) => t === 40).map(([, k]) => k).sort()).toEqual([3, 5]);
  });

  it('agrees with a sorted list through random pushes, pops and keepOnly, Infinity times included', () => {
    // (The slot past the last pair holds +Infinity: a pair at Infinity, growth past 64 and 128
    // slots, a heap emptied and refilled, and keepOnly shrinking it must not confuse the children.)
    const rnd = lcg(7);
    const h = new IdDeadlineHeap();
    let ref: [number, number][] = [];
    const min = () => ref.reduce((m, p) => (p[0] < m ? p[0] : m), Infinity);
    for (let step = 0; step < 6000; step++) {
      const r = rnd(100);
      if (r < 55) {
        const t = rnd(50) === 0 ? Infinity : rnd(300);
        h.push(t, step);
        ref.push([t, step]);
      } else if (r < 95) {
        expect(h.peekTime()).toBe(min());
        if (ref.length > 0) {
          const id = h.peekId();
          const at = ref.findIndex(([t, k]) => k === id && t === h.peekTime());
          expect(at).toBeGreaterThanOrEqual(0);
          ref.splice(at, 1);
        }
        h.pop();
      } else {
        const odd = (_t: number, id: number) => id % 2 === 1;
        h.keepOnly(odd);
        ref = ref.filter(([t, k]) => odd(t, k));
      }
      expect(h.size).toBe(ref.length);
    }
    expect(drain(h).map(([t]) => t)).toEqual(ref.map(([t]) => t).sort((a, b) => a - b));
    expect(h.peekTime()).toBe(Infinity);
  });
});

describe('IdCalendar', () => {
  // Against a list: the earliest time at each peek (an id among the pairs at that time), through
  // pushes ahead of a clock that moves on, some behind it (kept in the first bucket), some past
  // the ring's end (16384 buckets: the far heap, brought in as the ring reaches them), ±Infinity,
  // emptied and refilled, keepOnly.
  const check = (width: number, span: number, seed: number) => {
    const rnd = lcg(seed);
    const q = new IdCalendar(width);
    let ref: [number, number][] = [];
    let now = 1e9 + rnd(1000);
    const min = () => ref.reduce((m, p) => (p[0] < m ? p[0] : m), Infinity);
    for (let step = 0; step < 20000; step++) {
      const r = rnd(100);
      if (r < 50) {
        const kind = rnd(40);
        const t = kind === 0 ? Infinity : kind === 1 ? -Infinity : kind < 5 ? now - rnd(span) : kind < 8 ? now + rnd(40 * span) : now + rnd(span);
        q.push(t, step);
        ref.push([t, step]);
      } else if (r < 97) {
        expect(q.peekTime()).toBe(min());
        if (ref.length > 0) {
          const at = ref.findIndex(([t, k]) => k === q.peekId() && t === q.peekTime());
          expect(at).toBeGreaterThanOrEqual(0);
          if (Number.isFinite(ref[at]![0])) now = Math.max(now, ref[at]![0]);
          ref.splice(at, 1);
        }
        q.pop();
      } else if (r < 99) {
        const keep = (_t: number, id: number) => id % 3 !== 0;
        q.keepOnly(keep);
        ref = ref.filter(([t, k]) => keep(t, k));
      } else now += rnd(5 * span);
      expect(q.size).toBe(ref.length);
    }
    expect(drain(q).map(([t]) => t)).toEqual(ref.map(([t]) => t).sort((a, b) => a - b));
    expect(q.peekTime()).toBe(Infinity);
    q.pop(); // on empty: stays empty
    expect([q.size, q.peekTime()]).toEqual([0, Infinity]);
    q.push(7.5, 3);
    expect([q.size, q.peekTime(), q.peekId()]).toEqual([1, 7.5, 3]);
  };

  it('pops earliest first, as a sorted list does, at bucket widths from fine to coarse', () => {
    check(1, 30000, 7); // spans wider than the ring: the far heap in use
    check(1758, 2e7, 11); // hybrid-histogram's default (4 h / 8192)
    check(1e6, 3e5, 13); // many pairs a bucket
  });

  it('refuses a width that is not positive and finite', () => {
    expect(() => new IdCalendar(0)).toThrow(RangeError);
    expect(() => new IdCalendar(Infinity)).toThrow(RangeError);
  });
});

describe('IdSet', () => {
  const members = (s: IdSet) => [...s.items.subarray(0, s.size)].sort((a, b) => a - b);

  it('adds once, tells membership, deletes, past its first 16 ids and slots', () => {
    const s = new IdSet();
    expect([s.size, s.has(0), s.has(100)]).toEqual([0, false, false]);
    for (let id = 0; id < 40; id += 2) s.add(id); // 20 members, ids up to 38
    s.add(0); // again (the first member): no change
    s.add(4); // again: no change
    s.add(100);
    expect(s.size).toBe(21);
    expect(members(s)).toEqual([...Array.from({ length: 20 }, (_, i) => 2 * i), 100]);
    expect(Array.from({ length: 40 }, (_, id) => s.has(id))).toEqual(Array.from({ length: 40 }, (_, id) => id % 2 === 0));
    expect([s.has(100), s.has(101), s.has(1000)]).toEqual([true, false, false]);
    s.add(1000); // far past what it holds
    expect([s.has(1000), s.size]).toEqual([true, 22]);
    s.delete(1000);
    s.delete(3); // not a member: no change
    s.delete(0);
    s.delete(100);
    s.delete(100);
    expect(s.size).toBe(19);
    expect(members(s)).toEqual(Array.from({ length: 19 }, (_, i) => 2 * i + 2));
    expect([s.has(0), s.has(100), s.has(2)]).toEqual([false, false, true]);
    s.add(0);
    expect([s.has(0), s.size]).toEqual([true, 20]);
    // A first id past the first 16.
    const t = new IdSet();
    t.add(16);
    expect([t.has(16), t.size]).toEqual([true, 1]);
  });

  it('deleting while iterating backwards visits every member once', () => {
    const s = new IdSet();
    for (const id of [5, 9, 2, 7, 11]) s.add(id);
    const seen: number[] = [];
    for (let j = s.size - 1; j >= 0; j--) {
      const id = s.items[j]!;
      seen.push(id);
      if (id % 2 === 1) s.delete(id);
    }
    expect(seen.sort((a, b) => a - b)).toEqual([2, 5, 7, 9, 11]);
    expect(members(s)).toEqual([2]);
    expect([s.has(5), s.has(2)]).toEqual([false, true]);
  });
});

describe('PositionMemo', () => {
  it('looks a key up once per position while the position holds it, again when another key is there', () => {
    const state = new Map([['a', { n: 1 }], ['b', { n: 2 }]]);
    const asked: string[] = [];
    const memo = new PositionMemo((key: string) => (asked.push(key), state.get(key)));
    expect([memo.at(0, 'a'), memo.at(0, 'a'), memo.at(1, 'b'), memo.at(1, 'b')]).toEqual([{ n: 1 }, { n: 1 }, { n: 2 }, { n: 2 }]);
    expect(asked).toEqual(['a', 'b']);
    expect(memo.at(0, 'b')).toBe(state.get('b'));
    expect(memo.at(0, 'b')).toBe(state.get('b'));
    expect(asked).toEqual(['a', 'b', 'b']);
  });

  it('does not remember a key without state: once it has some, the memo finds it', () => {
    const state = new Map<string, { n: number }>();
    const asked: string[] = [];
    const memo = new PositionMemo((key: string) => (asked.push(key), state.get(key)));
    expect(memo.at(0, 'a')).toBeUndefined();
    state.set('a', { n: 7 });
    expect(memo.at(0, 'a')).toEqual({ n: 7 });
    expect(memo.at(0, 'a')).toEqual({ n: 7 });
    expect(asked).toEqual(['a', 'a']);
  });
});

describe('random', () => {
  it('mulberry32: the values of an independent implementation', () => {
    const g = seededRandom(1);
    expect([g(), g(), g(), g()]).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522, 0.9810509674716741]);
    const h = seededRandom(42);
    expect([h(), h()]).toEqual([0.6011037519201636, 0.44829055899754167]);
  });

  it('shuffles the candidates in key order, whatever order they come in, and takes them until enough is freed', () => {
    // Key order a b c d; seed 1's first three draws 0.627, 0.0027, 0.527 swap positions
    // 3↔floor(0.627×4)=2, 2↔floor(0.0027×3)=0, 1↔floor(0.527×2)=1: d b a c. 20 bytes: d, then b.
    const c = ['c', 'a', 'd', 'b'].map((k) => entry(k));
    expect(random().selectVictims(req(c, 20))).toEqual([{ key: 'd', reason: 'chosen at random' }, { key: 'b', reason: 'chosen at random' }]);
    expect(random(1).selectVictims(req([...c].reverse(), 20)).map((v) => v.key)).toEqual(['d', 'b']);
    expect(random().selectVictims(req(c, 0))).toEqual([]);
    // 11 bytes: d (10 freed), then b.
    expect(random().selectVictims(req(c, 11)).map((v) => v.key)).toEqual(['d', 'b']);
  });

  it('one policy over calls whose candidates change: each call draws on from the last, in key order of that call\'s candidates', () => {
    // Expected victims from an independent model (Python): sort the keys, Fisher-Yates with the
    // seed-1 stream continued across calls, take until freed.
    const p = random();
    const keys = (ks: string[], need: number) => p.selectVictims(req(ks.map((k) => entry(k)), need)).map((v) => v.key);
    expect(keys(['a', 'b'], 0)).toEqual([]); // draws once all the same
    expect(keys(['c', 'a', 'd', 'b'], 1000)).toEqual(['d', 'c', 'b', 'a']);
    expect(keys(['d', 'c', 'b', 'a'], 1000)).toEqual(['c', 'b', 'a', 'd']); // the same keys, moved
    expect(keys(['b', 'e', 'a'], 1000)).toEqual(['b', 'a', 'e']); // c and d gone, e new
    expect(keys(['e', 'b'], 15)).toEqual(['b', 'e']);
  });

  it('more keys than its bit words first hold: 40 keys, then 128, all taken in the shuffled order', () => {
    const p = random();
    const k = (i: number) => `k${String(i).padStart(3, '0')}`;
    expect(p.selectVictims(req(Array.from({ length: 40 }, (_, i) => entry(k(i))), 0))).toEqual([]);
    const all = p.selectVictims(req(Array.from({ length: 128 }, (_, i) => entry(k(127 - i))), Infinity)).map((v) => v.key);
    // The first twelve from the independent model (seed 1, the 40-key call's 39 draws first).
    expect(all.slice(0, 12)).toEqual(['k109', 'k046', 'k060', 'k055', 'k003', 'k072', 'k115', 'k088', 'k029', 'k062', 'k018', 'k124']);
    expect([...all].sort()).toEqual(Array.from({ length: 128 }, (_, i) => k(i)));
  });
});

describe('belady', () => {
  const future = (next: Record<string, number>): FutureFacts => ({ nextUse: (key) => next[key] ?? Infinity });

  it('evicts the farthest next use first, and says when that is', () => {
    expect(belady().name).toBe('belady');
    const c = [entry('a', { lastUsedAt: 1 }), entry('b', { lastUsedAt: 2 }), entry('c', { lastUsedAt: 3 })];
    const f = future({ a: 1100.4, c: 1050 });
    expect(belady().selectVictims(req(c, 20, { future: f }))).toEqual([
      { key: 'b', reason: 'next use farthest away (never)' },
      { key: 'a', reason: 'next use farthest away (at 1100 ms)' },
    ]);
  });

  it('without future facts it refuses: it is a simulator-only oracle', () => {
    expect(() => belady().selectVictims(req([entry('a')], 1))).toThrow(new Error('belady needs future facts (EvictionRequest.future): it is a simulator-only oracle'));
  });
});

describe('cremebrulee-oracle', () => {
  it('no use inside the horizon goes first (farthest next use first), then the lowest future utility', () => {
    const uses: Record<string, number> = { x: 2, y: 1, s: 3 };
    const asked: unknown[] = [];
    const future: FutureFacts = {
      nextUse: (key, now) => (key === 'z' ? now + 500 : key === 'w' ? Infinity : now + 1),
      usesWithin: (key, now, horizon) => (asked.push([key, now, horizon]), uses[key] ?? 0),
    };
    const c = [
      entry('x', { loadMs: 10, sizeBytes: 10 }), // 2 × 10 / 10 = 2
      entry('y', { loadMs: 30, sizeBytes: 10 }), // 1 × 30 / 10 = 3
      entry('z'), // no use within: -(1500 - 1000) = -500
      entry('w'), // never used again: -Infinity
      entry('s', { loadMs: 0.5, sizeBytes: 0.5 }), // 3 × 0.5 / max(1, 0.5) = 1.5
    ];
    const v = cremebruleeOracle(2000).selectVictims(req(c, 50, { future }));
    expect(v).toEqual([
      { key: 'w', reason: 'no use in the next 2000 ms' },
      { key: 'z', reason: 'no use in the next 2000 ms' },
      { key: 's', reason: 'future utility 1.500e+0 lowest' },
      { key: 'x', reason: 'future utility 2.000e+0 lowest' },
      { key: 'y', reason: 'future utility 3.000e+0 lowest' },
    ]);
    expect(asked[0]).toEqual(['x', 1000, 2000]);
    expect(cremebruleeOracle().name).toBe('cremebrulee-oracle');
    // A use inside the horizon of a model that costs nothing to load: utility 0, not "no use".
    expect(cremebruleeOracle(2000).selectVictims(req([entry('x', { loadMs: 0 })], 1, { future }))).toEqual([{ key: 'x', reason: 'future utility 0.000e+0 lowest' }]);
    // The default horizon is ten minutes.
    expect(cremebruleeOracle().selectVictims(req([entry('w')], 1, { future }))).toEqual([{ key: 'w', reason: 'no use in the next 600000 ms' }]);
  });

  it('one policy over requests: each is scored by its own time and future facts (the score is made once, bd43725)', () => {
    const asked: unknown[] = [];
    // Next uses at fixed times; x is used within the horizon of the second request only.
    const at = (next: Record<string, number>, within: Record<string, number>): FutureFacts => ({
      nextUse: (key) => next[key]!,
      usesWithin: (key, now, horizon) => (asked.push([key, now, horizon]), within[key] ?? 0),
    });
    const p = cremebruleeOracle(1000);
    const c = [entry('a'), entry('b'), entry('x', { loadMs: 20, sizeBytes: 10 })];
    // now 1000: a in 2000 ms, b in 5000, x in 9000: all past the horizon, farthest first.
    expect(p.selectVictims(req(c, 30, { now: 1000, future: at({ a: 3000, b: 6000, x: 10_000 }, {}) })).map((v) => v.key)).toEqual(['x', 'b', 'a']);
    expect(asked.slice(0, 3)).toEqual([['a', 1000, 1000], ['b', 1000, 1000], ['x', 1000, 1000]]);
    asked.length = 0;
    // now 8000, other facts: b in 100 ms, a in 12000; x used twice within (utility 2 × 20 / 10 = 4).
    const v = p.selectVictims(req(c, 30, { now: 8000, future: at({ a: 20_000, b: 8100, x: 9000 }, { x: 2 }) }));
    expect(v).toEqual([
      { key: 'a', reason: 'no use in the next 1000 ms' },
      { key: 'b', reason: 'no use in the next 1000 ms' },
      { key: 'x', reason: 'future utility 4.000e+0 lowest' },
    ]);
    expect(asked.slice(0, 3)).toEqual([['a', 8000, 1000], ['b', 8000, 1000], ['x', 8000, 1000]]);
  });

  it('refuses a horizon that is not positive, and a request without usesWithin', () => {
    for (const h of [0, -1, Number.NaN]) {
      expect(() => cremebruleeOracle(h)).toThrow(new RangeError(`cremebrulee-oracle: horizonMs must be > 0, got ${h}`));
    }
    const msg = 'cremebrulee-oracle needs future facts with usesWithin: it is a simulator-only oracle';
    expect(() => cremebruleeOracle().selectVictims(req([entry('a')], 1))).toThrow(new Error(msg));
    expect(() => cremebruleeOracle().selectVictims(req([entry('a')], 1, { future: { nextUse: () => 0 } }))).toThrow(new Error(msg));
  });
});

describe('hybrid-histogram, by hand', () => {
  // 1-second bins over 10 s; trusted after 3 idle times; keep-alive 5 s where not representative.
  const make = () => hybridHistogram({ binMs: 1000, rangeMs: 10_000, minSamples: 3, fixedKeepAliveMs: 5000 });
  const at = (key: string, lastUsedAt: number) => entry(key, { lastUsedAt });

  it('a representative histogram sets the windows; victims by the end of their keep-alive; expiry and pre-warm follow', () => {
    const p = make();
    // f: called every 2.5 s: idle times 2500 x 3, all in bin 2. CV of the bins (0,0,3,0,...): 3 >= 2.
    for (const t of [0, 2500, 5000, 7500]) p.onAccess!(at('f', t), t);
    // Head (5th percentile) bin 2: pre-warm 7500 + 2000 x 0.9 = 9300; tail (99th) bin 2: keep until
    // 7500 + 3000 x 1.1 = 10800.
    p.onAccess!(at('g', 7000), 7000); // once: the fixed keep-alive, until 12000
    const c = [at('f', 7500), at('g', 7000), at('h', 3000)]; // h never seen: its last use, 3000
    expect(p.selectVictims(req(c, 30, { now: 8000 }))).toEqual([
      { key: 'h', reason: 'keep-alive window ends soonest (in -5000 ms)' },
      { key: 'f', reason: 'keep-alive window ends soonest (in 2800 ms)' },
      { key: 'g', reason: 'keep-alive window ends soonest (in 4000 ms)' },
    ]);
    expect(p.selectVictims(req(c, 1, { now: 8000 })).map((v) => v.key)).toEqual(['h']);
    expect(p.expired!(c, 8000)).toEqual([{ key: 'f', reason: 'idle until the pre-warm window at 9300 ms' }]);
    expect(p.expired!(c, 10_799)).toEqual([]);
    expect(p.expired!(c, 10_800)).toEqual([{ key: 'f', reason: 'keep-alive window ended' }]);
    expect(p.expired!(c, 12_000).map((v) => v.key)).toEqual(['f', 'g']);
    // f evicted in its idle window: named for pre-warming once the window starts, and not before.
    p.onEvict!('f', 8000);
    expect(p.prewarm!(9299, () => false, 100)).toEqual([]);
    expect(p.prewarm!(9300, () => false, 100)).toEqual([{ key: 'f', reason: 'pre-warm window reached' }]);
  });

  it('not representative: too few idle times, or bins too even, keep the fixed keep-alive', () => {
    const p = make();
    // e: idle times 500, 1500, 2500, 3500: one in each of bins 0-3: CV of (1,1,1,1,0,...) = 1.22 < 2.
    for (const t of [0, 500, 2000, 4500, 8000]) p.onAccess!(at('e', t), t);
    // d: two idle times only.
    for (const t of [0, 2500, 5000]) p.onAccess!(at('d', t), t);
    expect(p.selectVictims(req([at('e', 8000), at('d', 5000)], 20, { now: 9000 }))).toEqual([
      { key: 'd', reason: 'keep-alive window ends soonest (in 1000 ms)' },
      { key: 'e', reason: 'keep-alive window ends soonest (in 4000 ms)' },
    ]);
    expect(p.expired!([at('e', 8000), at('d', 5000)], 9000)).toEqual([]);
    expect(p.expired!([at('e', 8000), at('d', 5000)], 10_000)).toEqual([{ key: 'd', reason: 'keep-alive window ended' }]);
  });

  it('percentiles: the head from the lowest bins, the tail down from the highest; out-of-range idle times count toward the tail', () => {
    const times = (last: number) => [...Array.from({ length: 10 }, (_, i) => i * 1500), last];
    // p: nine idle times of 1500 (bin 1), then one of 5500 (bin 5): CV of the bins is 2.7.
    // Head (5 %): bin 1, 1000 ms; tail (80 %: 8 of 10): down from bin 5, the 8th falls in bin 1: 2000 ms.
    const p = hybridHistogram({ binMs: 1000, rangeMs: 10_000, margin: 0, tailPct: 80, fixedKeepAliveMs: 5000 });
    for (const t of times(19_000)) p.onAccess!(at('p', t), t);
    // q: the same nine, then one of 12000 (out of the range): the 99th percentile (10 of 10) is past
    // the 9 in range, so the tail is the last bin: 10 × 1000 ms.
    const q = hybridHistogram({ binMs: 1000, rangeMs: 10_000, margin: 0, fixedKeepAliveMs: 5000 });
    for (const t of times(25_500)) q.onAccess!(at('q', t), t);
    expect(p.selectVictims(req([at('p', 19_000)], 1, { now: 19_000 }))).toEqual([{ key: 'p', reason: 'keep-alive window ends soonest (in 2000 ms)' }]);
    expect(p.expired!([at('p', 19_000)], 19_999)).toEqual([{ key: 'p', reason: 'idle until the pre-warm window at 20000 ms' }]);
    expect(p.expired!([at('p', 19_000)], 20_000)).toEqual([]);
    expect(q.selectVictims(req([at('q', 25_500)], 1, { now: 25_500 }))).toEqual([{ key: 'q', reason: 'keep-alive window ends soonest (in 10000 ms)' }]);
    expect(q.expired!([at('q', 25_500)], 26_000)).toEqual([{ key: 'q', reason: 'idle until the pre-warm window at 26500 ms' }]);
    // At 90 % (9 of 10) the tail is still bin 1, which holds exactly the 9th: the one above it is not needed.
    const p90 = hybridHistogram({ binMs: 1000, rangeMs: 10_000, margin: 0, tailPct: 90, fixedKeepAliveMs: 5000 });
    for (const t of times(19_000)) p90.onAccess!(at('p', t), t);
    expect(p90.selectVictims(req([at('p', 19_000)], 1, { now: 19_000 }))[0]!.reason).toBe('keep-alive window ends soonest (in 2000 ms)');
    // Before its tenth idle time p was not trusted: the fixed keep-alive from its last call.
    const early = hybridHistogram({ binMs: 1000, rangeMs: 10_000, margin: 0, tailPct: 80, fixedKeepAliveMs: 5000 });
    for (const t of times(19_000).slice(0, 10)) early.onAccess!(at('p', t), t);
    expect(early.selectVictims(req([at('p', 13_500)], 1, { now: 13_500 }))[0]!.reason).toBe('keep-alive window ends soonest (in 5000 ms)');
  });

  it('refuses a bin wider than the range, or not positive', () => {
    const msg = 'hybrid-histogram: need binMs > 0 and rangeMs >= binMs';
    expect(() => hybridHistogram({ binMs: 0 })).toThrow(new RangeError(msg));
    expect(() => hybridHistogram({ binMs: 2000, rangeMs: 1000 })).toThrow(new RangeError(msg));
    expect(hybridHistogram({ binMs: 1000, rangeMs: 1000 }).name).toBe('hybrid-histogram');
  });
});

describe('cremebrulee-plus, by hand', () => {
  const seen = (p: EvictionPolicy, key: string, times: number[]) => {
    for (const t of times) p.onAccess!(entry(key, { lastUsedAt: t }), t);
  };

  it('refuses alpha outside (0, 1] and a popularity weight outside [0, 1]', () => {
    for (const alpha of [0, 1.5, Number.NaN]) expect(() => cremebruleePlus({ alpha })).toThrow(new RangeError(`cremebrulee-plus: alpha must be in (0, 1], got ${alpha}`));
    for (const popularityWeight of [-0.1, 1.1, Number.NaN]) {
      expect(() => cremebruleePlus({ popularityWeight })).toThrow(new RangeError(`cremebrulee-plus: popularityWeight must be in [0, 1], got ${popularityWeight}`));
    }
    expect([cremebruleePlus({ alpha: 1 }).name, cremebruleePlus({ popularityWeight: 0 }).name, cremebruleePlus({ popularityWeight: 1 }).name]).toEqual(['cremebrulee-plus', 'cremebrulee-plus', 'cremebrulee-plus']);
  });

  it('rate 1 / max(gap, idle); one sighting: one call in the time watched; the lowest utility goes first, with its gap and idle time', () => {
    const p = cremebruleePlus();
    seen(p, 'f', [1000, 3000, 4000]); // gaps 2000, then 1000: 2000 + 0.3 × (1000 − 2000) = 1700
    seen(p, 'g', [2000]);
    const c = [entry('f', { lastUsedAt: 4000, sizeBytes: 20 }), entry('g', { lastUsedAt: 2000 }), entry('h', { lastUsedAt: 500 })];
    // At 5000: f 1/1700 × 10/20 = 2.941e-4; g and h (g seen once, h never) one call in 5000 − 1000:
    // 2.5e-4 (h used longer ago).
    expect(p.selectVictims(req(c, 40, { now: 5000 }))).toEqual([
      { key: 'h', reason: 'utility 2.500e-4 lowest (gap NaN ms, idle 4500 ms)' },
      { key: 'g', reason: 'utility 2.500e-4 lowest (gap NaN ms, idle 3000 ms)' },
      { key: 'f', reason: 'utility 2.941e-4 lowest (gap 1700 ms, idle 1000 ms)' },
    ]);
    // At 10000 f has been idle longer than its gap: 1/6000 × 10/20 = 8.333e-5, now below g and h
    // (1/9000 × 10/10 = 1.111e-4).
    expect(p.selectVictims(req(c, 40, { now: 10_000 })).map((v) => v.reason)).toEqual([
      'utility 8.333e-5 lowest (gap 1700 ms, idle 6000 ms)',
      'utility 1.111e-4 lowest (gap NaN ms, idle 9500 ms)',
      'utility 1.111e-4 lowest (gap NaN ms, idle 8000 ms)',
    ]);
  });

  it('one sighting as CremeBrulee: popularity × 1e-6', () => {
    const p = cremebruleePlus({ oneSighting: 'popularity' });
    const c = [entry('a', { popularity: 0.5 }), entry('b', { popularity: 0.25 })];
    expect(p.selectVictims(req(c, 10, { now: 5000 }))).toEqual([{ key: 'b', reason: 'utility 2.500e-7 lowest (gap NaN ms, idle 5000 ms)' }]);
  });

  it('keeps the victims a later, larger one made unneeded (trimVictims), unless told not to', () => {
    // Never seen: one call in 4000 ms each, so utility = loadMs / size / 4000: a 2.5e-5, b 5e-5, c 6.25e-5, d 2.5e-3.
    const c = [entry('a', { loadMs: 1, sizeBytes: 10 }), entry('b', { loadMs: 2, sizeBytes: 10 }), entry('c', { loadMs: 10, sizeBytes: 40 }), entry('d', { loadMs: 100, sizeBytes: 10 })];
    const run = (o: CremeBruleePlusOptions) => {
      const p = cremebruleePlus(o);
      seen(p, 'x', [1000]);
      return p.selectVictims(req(c, 50, { now: 5000 })).map((v) => v.key);
    };
    // a, b, c free 60; without b, exactly the 50 needed; without a as well, 40 < 50.
    expect(run({})).toEqual(['a', 'c']);
    expect(run({ trimVictims: false })).toEqual(['a', 'b', 'c']);
  });

  it('prefetch: the best utility not loaded that fits, at most every 5 s, and nothing where free memory is not told', () => {
    const p = cremebruleePlus({ prefetch: true });
    seen(p, 'f', [1000, 3000]); // gap 2000
    p.onAccess!(entry('k', { sizeBytes: 50, lastUsedAt: 1000 }), 1000);
    p.onAccess!(entry('k', { sizeBytes: 50, lastUsedAt: 2000 }), 2000); // gap 1000
    p.onEvict!('f', 3500);
    p.onEvict!('k', 3500);
    const no = () => false;
    // At 4000: f 1/2000 × 10/10 = 5e-4; k 1/max(1000, 2000) × 10/50 = 1e-4.
    expect(p.prewarm!(4000, no, 100)).toEqual([{ key: 'f', reason: 'prefetch: utility 5.000e-4, among the highest of what is not loaded' }]);
    expect(p.prewarm!(8999, no, 100)).toEqual([]);
    expect(p.prewarm!(9000, no, 9)).toEqual([]); // nothing fits
    expect(p.prewarm!(14_000, no, 20)).toEqual([{ key: 'f', reason: 'prefetch: utility 9.091e-5, among the highest of what is not loaded' }]);
    expect(p.prewarm!(19_000, (key) => key === 'f', 100)).toEqual([]);
    expect(p.prewarm!(30_000, no, undefined)).toEqual([]);
  });

  it('prefetch of several: best first, what fits', () => {
    const p = cremebruleePlus({ prefetch: true, prefetchCount: 2 });
    seen(p, 'f', [1000, 3000]);
    p.onAccess!(entry('k', { sizeBytes: 50, lastUsedAt: 1000 }), 1000);
    p.onAccess!(entry('k', { sizeBytes: 50, lastUsedAt: 2000 }), 2000);
    p.onEvict!('f', 3500);
    p.onEvict!('k', 3500);
    expect(p.prewarm!(4000, () => false, 100).map((v) => v.key)).toEqual(['f', 'k']);
    expect(p.prewarm!(9000, () => false, 20).map((v) => v.key)).toEqual(['f']);
  });
});
