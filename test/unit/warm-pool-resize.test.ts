import { describe, expect, it } from 'vitest';
import type { EntryFacts, EvictionPolicy } from '../../runtime/policies';
import { WarmPool, type EvictionEvent, type PrefetchEvent } from '../../runtime/warm-pool';
import { recorder, spec } from '../support/warm-pool';
import { within } from '../support/within';

// WarmPool.resize (a node measured a model holding more, or less, than its spec said) and the
// rebalancing it starts: what the policy is asked (the exact excess, the re-charged model as the
// incoming one), which victims go and when the pool stops, and when a waiting call gets in. On a
// clock the test sets; every expected value is worked out by hand from the test's own steps.

function pool(budgetBytes: number, policy: EvictionPolicy, extra: { admitTimeoutMs?: number } = {}) {
  const evictions: EvictionEvent[] = [];
  const p = new WarmPool<string>({
    budgetBytes,
    policy,
    now: () => 50,
    popularity: (fn) => (fn === 'c' ? 0.5 : 0.25),
    load: async (s) => s.key,
    onEvict: (e) => evictions.push(e),
    ...extra,
  });
  return { p, evictions };
}

const facts = (key: string, sizeBytes = 10): EntryFacts => ({ key, sizeBytes, loadMs: 10, execMs: 1, popularity: key === 'c' ? 0.5 : 0.25, loadedAt: 50, lastUsedAt: 50, hits: 1 });
const keys = (evictions: EvictionEvent[]) => evictions.map((e) => e.key);

describe('WarmPool.resize', () => {
  it('a model that grows past the budget: the policy is asked for exactly the excess, and victims go in its order until the pool fits, not one more', async () => {
    const { policy, requests } = recorder();
    const { p, evictions } = pool(40, policy);
    for (const k of ['a', 'b', 'c', 'd']) (await p.acquire(spec(k, 10))).release();
    p.resize('c', 30); // 60 used: 20 over
    expect(requests).toEqual([{ now: 50, needBytes: 20, candidates: [facts('a'), facts('b'), facts('c', 30), facts('d')], incoming: { ...spec('c', 30), popularity: 0.5 } }]);
    // a (50 used), then b (40: exactly the budget, so c and d stay).
    expect(evictions).toEqual([
      { key: 'a', fn: 'a', sizeBytes: 10, reason: 'chose a', cause: 'policy' },
      { key: 'b', fn: 'b', sizeBytes: 10, reason: 'chose b', cause: 'policy' },
    ]);
    expect(p.usedBytes).toBe(40);
    expect(p.list().map((m) => [m.key, m.sizeBytes])).toEqual([['c', 30], ['d', 10]]);
  });

  it('to at most the budget, or to the same size, or of a model not held: no request, no eviction', async () => {
    const { policy, requests } = recorder();
    const { p, evictions } = pool(30, policy);
    for (const k of ['a', 'b']) (await p.acquire(spec(k, 10))).release();
    p.resize('a', 20); // exactly the budget
    p.resize('b', 10); // the same size
    p.resize('zz', 5); // never held
    expect(p.usedBytes).toBe(30);
    expect(p.list().map((m) => [m.key, m.sizeBytes])).toEqual([['a', 20], ['b', 10]]);
    expect(requests).toEqual([]);
    expect(evictions).toEqual([]);
  });

  it('over the budget with nothing idle: the policy is not asked, no call gets in; a shrink lets the waiting call in without a release', async () => {
    const { policy, requests } = recorder();
    const { p, evictions } = pool(30, policy, { admitTimeoutMs: 60_000 });
    const a = await p.acquire(spec('a', 20));
    const b = await p.acquire(spec('b', 10));
    p.resize('a', 25); // 35 used, a and b in flight: nothing can go
    expect(p.usedBytes).toBe(35);
    let admitted = false;
    const c = p.acquire(spec('c', 10)).then((l) => ((admitted = true), l));
    await new Promise((r) => setTimeout(r, 5));
    expect(admitted).toBe(false);
    expect(requests).toEqual([]);
    p.resize('a', 10);
    expect(p.usedBytes).toBe(20);
    const lc = await within(1000, 'the call waiting for the room a shrink freed', c);
    expect(p.usedBytes).toBe(30);
    expect([requests, evictions]).toEqual([[], []]);
    for (const l of [a, b, lc]) l.release();
  });

  it('over the budget with models in flight: what is idle goes now, skipping what the policy names but cannot go; each release evicts at once', async () => {
    // The policy names the in-flight a and a model it does not hold before the candidates.
    const { policy, requests } = recorder((r) => [{ key: 'a', reason: 'in flight' }, { key: 'ghost', reason: 'not held' }, ...r.candidates.map((c) => ({ key: c.key, reason: `chose ${c.key}` }))]);
    const { p, evictions } = pool(30, policy);
    const a = await p.acquire(spec('a', 10));
    const b = await p.acquire(spec('b', 10));
    (await p.acquire(spec('c', 10))).release();
    p.resize('a', 25); // 45 used: c goes (35), still 5 over with a and b in flight
    expect(keys(evictions)).toEqual(['c']);
    expect(p.usedBytes).toBe(35);
    expect(p.has('a')).toBe(true);
    b.release(); // b is idle now: evicted by the release itself, no admission needed
    expect(keys(evictions)).toEqual(['c', 'b']);
    expect(p.usedBytes).toBe(25);
    expect(requests.map((r) => [r.needBytes, r.candidates.map((c) => c.key), r.incoming.key])).toEqual([
      [15, ['c'], 'a'],
      [5, ['b'], 'b'],
    ]);
    a.release(); // under the budget: nothing more to ask
    expect(requests).toHaveLength(2);
    expect(p.list().map((m) => [m.key, m.sizeBytes, m.inFlight])).toEqual([['a', 25, 0]]);
  });

  it('still over when an admission comes: the pool first sheds the excess, then makes room for the newcomer', async () => {
    let refuse = true; // the policy names nothing at first, so the resize leaves the pool over
    const { policy, requests } = recorder((r) => (refuse ? [] : r.candidates.map((c) => ({ key: c.key, reason: `chose ${c.key}` }))));
    const { p, evictions } = pool(30, policy, { admitTimeoutMs: 60_000 });
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    p.resize('c', 20); // 40 used, 10 over
    expect([p.usedBytes, evictions.length]).toEqual([40, 0]);
    refuse = false;
    // d (5): the excess first (a goes: exactly the budget), then d's own 5 bytes (b goes).
    const d = await within(1000, 'the admission over the budget', p.acquire(spec('d', 5)));
    expect(requests.map((r) => [r.needBytes, r.candidates.map((c) => [c.key, c.sizeBytes]), r.incoming.key])).toEqual([
      [10, [['a', 10], ['b', 10], ['c', 20]], 'c'],
      [10, [['a', 10], ['b', 10], ['c', 20]], 'd'],
      [5, [['b', 10], ['c', 20]], 'd'],
    ]);
    expect(keys(evictions)).toEqual(['a', 'b']);
    expect(p.usedBytes).toBe(25);
    d.release();
  });

  it('a model not held is re-charged for its next admission; one never held is not remembered', async () => {
    let wanted: string[] = [];
    const { policy } = recorder();
    policy.prewarm = () => wanted.map((key) => ({ key, reason: 'wanted' }));
    const prefetched: PrefetchEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 20, policy, now: () => 50, load: async (s) => s.key, onPrefetch: (e) => prefetched.push(e) });
    (await p.acquire(spec('a', 10))).release();
    (await p.acquire(spec('b', 20))).release(); // a is evicted, still known
    expect(p.drop('b', 'unload', 'asked')).toBe(true);
    p.resize('a', 15);
    p.resize('zz', 5);
    wanted = ['zz', 'a'];
    expect(p.prefetch()).toBe(1);
    await new Promise((r) => setTimeout(r, 0));
    expect(prefetched).toEqual([{ key: 'a', fn: 'a', sizeBytes: 15, reason: 'wanted', outcome: 'loaded' }]);
    expect(p.usedBytes).toBe(15);
    expect(p.holdsOther('a', 'x')).toBe(true);
  });
});
