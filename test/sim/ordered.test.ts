import { describe, expect, it } from 'vitest';
import { belady } from '../../runtime/policies/belady';
import { cremebruleeOracle } from '../../runtime/policies/cremebrulee-oracle';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import { gdsf } from '../../runtime/policies/gdsf';
import { CREMEBRULEE_PLUS_TUNED } from '../../runtime/policies/index';
import { lru } from '../../runtime/policies/lru';
import { OrderedHeap, OrderedList } from '../../runtime/policies/ordered';
import { LoadedFacts } from '../../runtime/policies/plus-select';
import { seededRandom } from '../../runtime/policies/random';
import { byScore, takeUntilFreed } from '../../runtime/policies/select';
import type { EntryFacts, EvictionPolicy } from '../../runtime/policies/types';
import { simulate } from '../../sim/engine';
import type { SimHints } from '../../sim/hints';
import { modelsOf, randomTrace, traceOf } from './helpers';

type Entry = { -readonly [K in keyof EntryFacts]: EntryFacts[K] };

// The orders `lru` and `gdsf` keep at their hooks for the simulator's `selectAmongLoaded` must give
// `Selection.lowestScored`'s victims to the last tie (score, then last use, then key): few distinct
// scores, last uses and sizes here, so ties at every level are common.
describe('OrderedList and OrderedHeap give the victims of a full sort', () => {
  for (const [name, make, grows] of [['OrderedList', () => new OrderedList(), true], ['OrderedHeap', () => new OrderedHeap(), false]] as const) for (const numbered of [false, true]) {
    it(`${name}${numbered ? ' by model number' : ''}: random loads, uses and evictions, ties everywhere`, () => {
      const r = seededRandom(name.length);
      for (let round = 0; round < 200; round++) {
        const o = make();
        if (numbered) o.useNumbers();
        const loaded = new Map<string, { e: Entry; s: number }>();
        let t = 0;
        for (let step = 0; step < 200; step++) {
          const key = `k${Math.floor(r() * 30)}`;
          const x = r();
          if (x < 0.2) {
            if (numbered && x < 0.1) o.removeNumber(Number(key.slice(1)));
            else o.remove(key);
            loaded.delete(key);
          } else if (x < 0.25) {
            o.forget(key);
            loaded.delete(key);
          } else {
            if (r() < 0.5) t += Math.floor(r() * 3);
            const e: Entry = { key, sizeBytes: 1 + Math.floor(r() * 4), loadMs: 1, execMs: 1, popularity: 0, loadedAt: t, lastUsedAt: t, hits: 1 };
            if (numbered) Object.assign(e, { idx: Number(key.slice(1)) }); // (the model's number)
            // The list's scores only grow (lru: the last use); the heap's go either way.
            const s = grows ? t : Math.floor(r() * 4) - 1;
            o.set(e, s);
            loaded.set(key, { e, s });
          }
          if (step % 5 === 0) {
            const need = Math.floor(r() * 12) - 1;
            const reason = (e: EntryFacts) => `${e.key}@${e.lastUsedAt}`;
            const cands = [...loaded.values()].map((v) => v.e);
            const want = takeUntilFreed(byScore(cands, (e) => loaded.get(e.key)!.s), need, reason).map((v) => (numbered ? { ...v, idx: Number(v.key.slice(1)) } : v));
            expect(o.lowest(need, reason)).toEqual(want);
            expect(o.lowest(need, null).map((v) => v.key)).toEqual(want.map((v) => v.key));
          }
        }
      }
    });
  }
});

describe('selectAmongLoaded answers as selectVictims does over the loaded models', () => {
  for (const [name, make] of [['lru', lru], ['gdsf', gdsf]] as const) for (const numbered of [false, true]) {
    it(`${name}${numbered ? ' by model number' : ''}, hooks in random order with tied last uses and priorities`, () => {
      const r = seededRandom(name.length + 10);
      for (let round = 0; round < 100; round++) {
        const p = make() as EvictionPolicy & SimHints;
        if (numbered) expect(p.numberModels!(Array.from({ length: 25 }, (_, i) => `m${i}`))).toBe(true);
        const loaded = new Map<string, Entry>();
        let now = 0;
        for (let step = 0; step < 300; step++) {
          if (r() < 0.3) now += 1;
          const key = `m${Math.floor(r() * 25)}`;
          const e = loaded.get(key);
          if (e && r() < 0.25) {
            if (numbered) p.onEvictNumber!(Number(key.slice(1)), now);
            else p.onEvict!(key, now);
            loaded.delete(key);
          } else if (e) {
            e.hits++;
            e.lastUsedAt = now;
            p.onAccess!(e, now);
          } else {
            // Sizes and load times from a short list, so gdsf's priorities tie too.
            const f: Entry = { key, sizeBytes: [1, 2, 4][Math.floor(r() * 3)]!, loadMs: [2, 4][Math.floor(r() * 2)]!, execMs: 1, popularity: 0, loadedAt: now, lastUsedAt: now, hits: r() < 0.3 ? 0 : 1 };
            if (numbered) Object.assign(f, { idx: Number(key.slice(1)) }); // (the model's number)
            loaded.set(key, f);
            p.onLoad!(f, now);
          }
          if (step % 3 === 0 && loaded.size > 0) {
            const req = { now, needBytes: Math.floor(r() * 10), candidates: [...loaded.values()].sort(() => r() - 0.5), incoming: loaded.values().next().value! };
            const among = p.selectAmongLoaded!(req);
            // (By number, each victim carries its model's number too.)
            expect(among).toEqual(p.selectVictims(req).map((v) => (numbered ? { ...v, idx: Number(v.key.slice(1)) } : v)));
          }
        }
      }
    });
  }
});

describe('cremebrulee-plus: selectAmongLoaded answers as selectVictims does over the loaded models', () => {
  // 30 and 150 functions (answered from the buckets `LoadedFacts` keeps, plus-select.ts).
  const settings = [
    ['tuned', () => cremebruleePlus(CREMEBRULEE_PLUS_TUNED), 30],
    ['defaults', () => cremebruleePlus(), 30],
    ['no trimming, one sighting by popularity', () => cremebruleePlus({ trimVictims: false, oneSighting: 'popularity' }), 30],
    ['tuned, 150 functions', () => cremebruleePlus(CREMEBRULEE_PLUS_TUNED), 150],
    ['defaults, 150 functions', () => cremebruleePlus(), 150],
  ] as const;
  for (const [name, make, fns] of settings) {
    it(`${name}: hooks in random order, tied scores and last uses, many victims, forgotten functions`, () => {
      const r = seededRandom(name.length + 20);
      for (let round = 0; round < 60; round++) {
        const p = make() as EvictionPolicy & SimHints;
        p.omitReasons!();
        const loaded = new Map<string, Entry>();
        let now = 0;
        for (let step = 0; step < 400; step++) {
          if (r() < 0.4) now += Math.floor(r() * 3) * 500;
          const key = `m${Math.floor(r() * fns)}`;
          const e = loaded.get(key);
          const x = r();
          if (e && x < 0.2) {
            p.onEvict!(key, now);
            loaded.delete(key);
          } else if (e && x < 0.23) {
            p.onEvict!(key, now);
            p.forget!(key);
            loaded.delete(key);
          } else if (e) {
            e.hits++;
            e.lastUsedAt = now;
            e.popularity = r() < 0.5 ? 0 : 0.25;
            p.onAccess!(e, now);
          } else {
            // Few sizes and load times, whole-second clocks: equal utilities and last uses are common.
            const f: Entry = { key, sizeBytes: [1, 2, 4][Math.floor(r() * 3)]!, loadMs: [500, 1000][Math.floor(r() * 2)]!, execMs: 1, popularity: r() < 0.5 ? 0 : 0.5, loadedAt: now, lastUsedAt: now, hits: r() < 0.2 ? 0 : 1 };
            loaded.set(key, f);
            p.onLoad!(f, now);
          }
          if (step % 7 === 0) p.prewarm?.(now, (k) => loaded.has(k), Math.floor(r() * 6));
          if (step % 3 === 0 && loaded.size > 0) {
            // Up to every loaded model's bytes (more than 8 victims now and then).
            const req = { now, needBytes: Math.floor(r() * r() * 40), candidates: [...loaded.values()].sort(() => r() - 0.5), incoming: loaded.values().next().value! };
            expect(p.selectAmongLoaded!(req)).toEqual(p.selectVictims(req));
          }
        }
      }
    });
  }
});

// cremebrulee-plus's loaded functions (runtime/policies/plus-select.ts): `lowest` keeps them in
// buckets by the bits of a lower bound of their score, valid until a time (their fixed score until
// they go idle, then their score a step further into the idle spell), and scores only the lowest
// buckets. It must give the victims of a full sort by (score, last use, key) of the plain formula,
// whatever the hooks did in between (several changed between two requests, calls after long idle
// spells); `wide`: load times and sizes over many octaves (scores at powers of two, at bucket
// edges, and 0), and idle spells of up to 10^8 ms (a bound stepped many times).
describe('LoadedFacts: lowest gives the victims of a full sort', () => {
  /** The plain formula and order, from the facts as the hooks left them. */
  const plain = (f: LoadedFacts, now: number, useOnce: boolean, once: number, need: number): string[] => {
    const rows: { key: string; s: number; l: number; size: number }[] = [];
    for (let p = 0; p < f.n; p++) {
      const id = f.ids[p]!;
      const g = f.gap[id]!;
      const last = Number.isNaN(f.last[id]!) ? f.lastUsedAt[id]! : f.last[id]!;
      const rate = Number.isNaN(g) ? (useOnce ? once : f.popularity[id]! * 1e-6) : 1 / Math.max(g, now - last, 1);
      rows.push({ key: f.keys[id]!, s: (rate * f.loadMs[id]!) / Math.max(1, f.sizeBytes[id]!), l: f.lastUsedAt[id]!, size: f.sizeBytes[id]! });
    }
    rows.sort((a, b) => a.s - b.s || a.l - b.l || (a.key < b.key ? -1 : 1));
    const out: string[] = [];
    let freed = 0;
    for (const r of rows) {
      if (freed >= need) break;
      out.push(r.key);
      freed += r.size;
    }
    return out;
  };
  for (const [fns, wide] of [[12, false], [40, false], [150, false], [40, true], [150, true]] as const) {
    it(`${fns} functions${wide ? ', wide values' : ''}: random loads, calls, evictions and forgetting; idle and not, ties, many victims`, () => {
      const r = seededRandom(fns + (wide ? 1000 : 0));
      for (let round = 0; round < 40; round++) {
        const f = new LoadedFacts();
        for (let id = 0; id < fns; id++) {
          f.ensure(id, `f${String((id * 7919) % fns).padStart(3, '0')}`);
          f.gap[id] = NaN;
          f.last[id] = NaN;
          f.fix(id);
        }
        let now = 0;
        for (let step = 0; step < 600; step++) {
          // Whole seconds mostly (ties), now and then a jump past most gaps.
          now += r() < 0.05 ? (wide ? [20_000, 1e6, 1e8][Math.floor(r() * 3)]! : 20_000) : Math.floor(r() * 3) * 500;
          const id = Math.floor(r() * fns);
          const x = r();
          if (f.at[id]! >= 0 && x < 0.25) f.delete(id);
          else if (x < 0.28) {
            // Forgotten: no gap, no last call.
            f.delete(id);
            f.gap[id] = NaN;
            f.last[id] = NaN;
            f.fix(id);
          } else {
            // A call (or a load): gap and last call as the policy's `seen` leaves them, then its `note`.
            if (r() < 0.8) {
              const l = f.last[id]!;
              if (!Number.isNaN(l)) f.gap[id] = Number.isNaN(f.gap[id]!) ? Math.max(1, now - l) : f.gap[id]! + 0.3 * (Math.max(1, now - l) - f.gap[id]!);
              f.last[id] = now;
            }
            f.lastUsedAt[id] = r() < 0.1 ? now - 500 : now;
            f.loadMs[id] = wide ? [0, 1, 3, 500, 1024, 2000, 2 ** 20][Math.floor(r() * 7)]! : [500, 1000, 2000][Math.floor(r() * 3)]!;
            f.sizeBytes[id] = wide ? [1, 2, 3, 4, 1024, 2 ** 30][Math.floor(r() * 6)]! : [1, 2, 4][Math.floor(r() * 3)]!;
            f.popularity[id] = r() < 0.5 ? 0 : 0.5;
            f.fix(id);
            f.add(id);
          }
          if (step % 3 === 0 && f.n > 0) {
            // Now and then just past a loaded function's gap (or at it): it has just gone idle.
            if (r() < 0.3) {
              const id = f.ids[Math.floor(r() * f.n)]!;
              const l = Number.isNaN(f.last[id]!) ? f.lastUsedAt[id]! : f.last[id]!;
              if (!Number.isNaN(f.gap[id]!)) now = Math.max(now, l + f.maxGap[id]! + [0, 1e-3, 1, 100][Math.floor(r() * 4)]!);
            }
            const need = Math.floor(r() * r() * 3 * f.n);
            const useOnce = r() < 0.7;
            const once = useOnce ? 1 / Math.max(1, now) : 0;
            const want = plain(f, now, useOnce, once, need);
            const viaOrder = f.lowest(now, useOnce, once, need)!.map((v) => v.key);
            expect(viaOrder).toEqual(want);
            expect([...f.sizes.subarray(0, want.length)]).toEqual(want.map((k) => f.sizeBytes[f.keys.indexOf(k)]!));
          }
        }
      }
    });
  }
});

describe('the oracles and cremebrulee-plus decide as they do without the simulator\'s hints (model numbers; belady\'s order kept at its hooks)', () => {
  // Calls in whole seconds, so next uses and last uses tie; every model's last call ends with
  // next uses of Infinity (ties broken by last use, then key); 3 slots mix requests with models in
  // flight (selectVictims) and without (selectAmongLoaded). The simulator refreshes the candidates'
  // popularity before each request (sim/engine.ts makeRoom): cremebrulee-plus rating a function
  // with no learned gap by it (`oneSighting: 'popularity'`) must decide as without the hints too.
  const settings = [
    ['belady', belady],
    ['cremebrulee-oracle', () => cremebruleeOracle(60_000)],
    ['cremebrulee-plus tuned', () => cremebruleePlus(CREMEBRULEE_PLUS_TUNED)],
    ['cremebrulee-plus, one sighting by popularity', () => cremebruleePlus({ trimVictims: false, oneSighting: 'popularity' })],
  ] as const;
  for (const [name, make] of settings) {
    for (const slots of [1, 3]) {
      it(`${name}, ${slots} slot(s), 6 traces, 3 budgets`, () => {
        let asked = 0;
        for (const seed of [1, 2, 3, 4, 5, 6]) {
          const src = randomTrace(seed, 3000, 40);
          const t = traceOf(Array.from(src.times, (x, i) => [1000 * Math.floor(x / 1000), src.functions[src.fns[i]!]!] as const));
          const models = modelsOf(t, Object.fromEntries(t.functions.map((f, i) => [f, { sizeBytes: 1 + (i % 4), loadMs: 500 + 700 * (i % 3), execMs: 200 + (i % 5) * 400 }])));
          for (const budgetBytes of [5, 12, 30]) {
            const run = (hints: boolean) => {
              const p = make() as EvictionPolicy & SimHints;
              const q = Object.create(p) as EvictionPolicy & SimHints;
              const among = p.selectAmongLoaded?.bind(p);
              q.selectAmongLoaded = hints && among ? (req) => (asked++, among(req)) : undefined;
              if (!hints) Object.assign(q, { numberModels: undefined, onEvictNumber: undefined });
              const ev: string[] = [];
              const { wallMs: _w, ...r } = simulate(t, models, q, { budgetBytes, slots, future: true, onEvict: (k, now) => ev.push(`${k}@${now}`) });
              return { r, ev };
            };
            const fast = run(true);
            const slow = run(false);
            expect(fast.ev.length).toBeGreaterThan(100);
            expect(fast.ev).toEqual(slow.ev);
            expect(fast.r).toEqual(slow.r);
          }
        }
        expect(asked).toBeGreaterThan(1000);
      });
    }
  }
});
