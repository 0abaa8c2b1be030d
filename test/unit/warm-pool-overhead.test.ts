import { describe, expect, it } from 'vitest';
import { ProcessOverhead } from '../../runtime/footprint';
import { WarmPool, type EvictionEvent } from '../../runtime/warm-pool';
import { deferred, recorder, spec } from '../support/warm-pool';

// Issue 12 §4: what a worker process holds beyond its warm pool's charges (WarmPool.setOverhead,
// measured by runtime/footprint.ts's ProcessOverhead). Idle models make room for it at admissions;
// nothing ever waits for it. Every expected value is worked out by hand from the test's own steps.

function pool(budgetBytes: number, dispose?: () => Promise<void>) {
  const { policy, requests } = recorder();
  const evictions: EvictionEvent[] = [];
  const p = new WarmPool<string>({ budgetBytes, policy, now: () => 50, load: async (s) => s.key, onEvict: (e) => evictions.push(e), ...(dispose ? { dispose } : {}) });
  return { p, evictions, requests };
}
const keys = (evictions: EvictionEvent[]) => evictions.map((e) => e.key);

describe('WarmPool.setOverhead', () => {
  it('an admission evicts idle models until used bytes plus the overhead fit the budget, asking the policy for exactly that', async () => {
    const { p, evictions, requests } = pool(40);
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    p.setOverhead(15);
    expect(p.overheadBytes).toBe(15);
    expect(evictions).toEqual([]); // setting it evicts nothing: admissions do
    (await p.acquire(spec('d', 10))).release();
    // 30 used + 10 for d + 15 overhead = 55: 15 over, so a and b go (20 freed), not c.
    expect(requests.map((r) => r.needBytes)).toEqual([15]);
    expect(keys(evictions)).toEqual(['a', 'b']);
    expect(p.usedBytes).toBe(20);
    expect(p.list().map((m) => m.key)).toEqual(['c', 'd']);
  });

  it('without it the same admission evicts nothing', async () => {
    const { p, evictions } = pool(40);
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    (await p.acquire(spec('d', 10))).release();
    expect(evictions).toEqual([]);
    expect(p.usedBytes).toBe(40);
  });

  it('never makes a call wait: with models in flight and an overhead past the budget, a model and its call still get what the budget leaves them', async () => {
    const { p, evictions } = pool(40);
    p.setOverhead(100);
    const a = await p.acquire(spec('a', 20));
    const b = await p.acquire(spec('b', 10), undefined, { bytes: 10 });
    expect(p.usedBytes).toBe(40);
    expect(evictions).toEqual([]);
    a.release();
    b.release();
    b.reservation.free();
    // Idle now: the next admission evicts both for the overhead, and still gets in.
    (await p.acquire(spec('c', 30))).release();
    expect(keys(evictions)).toEqual(['a', 'b']);
    expect(p.usedBytes).toBe(30);
  });

  it('a negative overhead counts as none', async () => {
    const { p, evictions } = pool(20);
    p.setOverhead(-5);
    expect(p.overheadBytes).toBe(0);
    for (const k of ['a', 'b']) (await p.acquire(spec(k, 10))).release();
    expect(evictions).toEqual([]);
  });

  it("an evicted model's bytes count as disposing until its disposal ends", async () => {
    const gate = deferred<void>();
    const { p } = pool(20, () => gate.promise);
    for (const k of ['a', 'b']) (await p.acquire(spec(k, 10))).release();
    const c = p.acquire(spec('c', 10)); // a goes for it, and c's load waits for a's disposal
    expect(p.disposingBytes).toBe(10);
    gate.resolve();
    (await c).release();
    expect(p.disposingBytes).toBe(0);
    expect(p.usedBytes).toBe(20);
  });
});

describe('ProcessOverhead', () => {
  it('is the RSS less what the pool charges, above the same at rest (the latest sample before any charge, then the lowest)', () => {
    let rss = 100;
    let charged = 0;
    let started = false;
    const set: number[] = [];
    const o = new ProcessOverhead({ rss: () => rss, charged: () => charged, started: () => started, set: (n) => set.push(n) });
    expect(o.sample()).toBe(0);
    rss = 105; // still at rest: idle follows it
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(105);
    started = true;
    rss = 150;
    charged = 30; // 120 uncharged: 15 above idle
    expect(o.sample()).toBe(15);
    rss = 120; // 90 uncharged, below idle: the new idle
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(90);
    rss = 140;
    charged = 20; // 120 uncharged: 30 above idle
    expect(o.sample()).toBe(30);
    expect(set).toEqual([0, 0, 15, 0, 30]);
  });
});

describe('WarmPool.setOverhead: what it may not do', () => {
  it('evicts for the overhead only idle models the policy names: an unknown key and a model in use are passed over', async () => {
    // The policy names zz (no model), busy (in use), then the candidates (a, b).
    const { policy, requests } = recorder((r) => [{ key: 'zz', reason: 'x' }, { key: 'busy', reason: 'x' }, ...r.candidates.map((c) => ({ key: c.key, reason: 'x' }))]);
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 40, policy, now: () => 50, load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    for (const k of ['a', 'b']) (await p.acquire(spec(k, 10))).release();
    const busy = await p.acquire(spec('busy', 10));
    p.setOverhead(15);
    (await p.acquire(spec('d', 10))).release();
    // 30 used + 10 for d + 15 overhead = 55: 15 to free among a and b (busy is in use): both go.
    expect(requests.map((r) => [r.needBytes, r.candidates.map((c) => c.key)])).toEqual([[15, ['a', 'b']]]);
    expect(keys(evictions)).toEqual(['a', 'b']);
    expect(p.list().map((m) => m.key).sort()).toEqual(['busy', 'd']);
    expect(p.usedBytes).toBe(20);
    busy.release();
  });

  it('pre-warming sees the free bytes less the overhead, and starts no load that would not fit beside it', async () => {
    const free: Array<number | undefined> = [];
    const { policy } = recorder();
    policy.prewarm = (_now, isResident, freeBytes) => {
      free.push(freeBytes);
      return isResident('w') ? [] : [{ key: 'w', reason: 'wanted' }];
    };
    const p = new WarmPool<string>({ budgetBytes: 40, policy, now: () => 50, load: async (s) => s.key });
    (await p.acquire(spec('w', 10))).release();
    (await p.acquire(spec('a', 20))).release();
    (await p.acquire(spec('b', 20))).release(); // evicts w, the policy's first candidate (w stays known)
    p.drop('b', 'unload', 'test');
    expect(p.list().map((m) => m.key)).toEqual(['a']);
    // 20 used: 20 free, 5 of them beside an overhead of 15; w (10 bytes, held before) does not fit in 5.
    p.setOverhead(15);
    expect(p.prefetch()).toBe(0);
    expect(free).toEqual([5]);
    // With no overhead the same call pre-warms it.
    p.setOverhead(0);
    expect(p.prefetch()).toBe(1);
    expect(free).toEqual([5, 20]);
  });
});
