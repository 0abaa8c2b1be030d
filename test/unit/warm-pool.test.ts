import { describe, expect, it } from 'vitest';
import { createPolicy, type RuntimePolicyName } from '../../runtime/policies';
import { WarmPool, type EvictionEvent, type ModelSpec } from '../../runtime/warm-pool';
import { seededRandom } from '../../runtime/policies/random';
import { within } from '../support/within';
import { spec, deferred } from '../support/warm-pool';



function pool(budgetBytes: number, policy: RuntimePolicyName = 'lru', extra: { admitTimeoutMs?: number } = {}) {
  let now = 0;
  const loads: string[] = [];
  const disposed: string[] = [];
  const evictions: EvictionEvent[] = [];
  const p = new WarmPool<string>({
    budgetBytes,
    policy: createPolicy(policy),
    now: () => ++now,
    load: async (s) => {
      loads.push(s.key);
      return `session:${s.key}`;
    },
    dispose: (_v, key) => void disposed.push(key),
    onEvict: (e) => evictions.push(e),
    ...extra,
  });
  return { p, loads, disposed, evictions };
}

describe('WarmPool', () => {
  it('concurrent cold requests share one load; later ones are warm', async () => {
    const gate = deferred<string>();
    let loads = 0;
    const p = new WarmPool<string>({ budgetBytes: 100, policy: createPolicy('lru'), load: () => (loads++, gate.promise) });
    const leases = Array.from({ length: 50 }, () => p.acquire(spec('a', 10)));
    gate.resolve('A');
    const got = await Promise.all(leases);
    expect(loads).toBe(1);
    expect(got.filter((l) => l.loaded)).toHaveLength(1);
    expect(got.every((l) => l.coldStart && l.value === 'A')).toBe(true);
    got.forEach((l) => l.release());
    const warm = await p.acquire(spec('a', 10));
    expect(warm.coldStart).toBe(false);
    warm.release();
  });

  it('evicts by the policy only what is needed, and disposes what it evicts', async () => {
    const { p, disposed, evictions } = pool(30);
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    (await p.acquire(spec('d', 10))).release();
    expect(evictions.map((e) => e.key)).toEqual(['a']);
    expect(disposed).toEqual(['a']);
    expect(p.usedBytes).toBe(30);
    (await p.acquire(spec('big', 20))).release();
    expect(evictions.map((e) => e.key)).toEqual(['a', 'b', 'c']);
  });

  it('never evicts a model with an invocation in flight: a newcomer waits for the release', async () => {
    const { p } = pool(20, 'lru');
    const a = await p.acquire(spec('a', 10));
    const b = await p.acquire(spec('b', 10));
    let admitted = false;
    const c = p.acquire(spec('c', 10)).then((l) => ((admitted = true), l));
    await new Promise((r) => setTimeout(r, 20));
    expect(admitted).toBe(false);
    expect(p.usedBytes).toBe(20);
    b.release();
    // Admission re-checks for room on every release; without it, c would wait for admitTimeoutMs (30 s).
    const lc = await within(2000, 'the newcomer was not admitted after the release freed room', c);
    expect(p.has('a')).toBe(true);
    expect(p.has('b')).toBe(false);
    lc.release();
    a.release();
  });

  it('gives up with CACHE_BUSY when in-flight models hold the memory too long', async () => {
    const { p } = pool(10, 'lru', { admitTimeoutMs: 30 });
    const a = await p.acquire(spec('a', 10));
    await expect(p.acquire(spec('b', 10))).rejects.toMatchObject({ code: 'CACHE_BUSY' });
    a.release();
  });

  it('refuses a model bigger than the budget, without loading it', async () => {
    const { p, loads } = pool(10);
    await expect(p.acquire(spec('huge', 11))).rejects.toMatchObject({ code: 'MODEL_TOO_LARGE' });
    expect(loads).toEqual([]);
  });

  it('never evicts a pinned model', async () => {
    const { p } = pool(20, 'lru');
    (await p.acquire(spec('pinned', 10, { pinned: true }))).release();
    (await p.acquire(spec('b', 10))).release();
    (await p.acquire(spec('c', 10))).release();
    expect(p.has('pinned')).toBe(true);
    expect(p.has('b')).toBe(false);
  });

  it('a failed load frees its reservation and the next request loads again', async () => {
    let fail = true;
    const p = new WarmPool<string>({
      budgetBytes: 10,
      policy: createPolicy('lru'),
      load: async () => {
        if (fail) throw new Error('disk on fire');
        return 'ok';
      },
    });
    await expect(p.acquire(spec('a', 10))).rejects.toThrow('disk on fire');
    expect(p.usedBytes).toBe(0);
    fail = false;
    const l = await p.acquire(spec('a', 10));
    expect(l.value).toBe('ok');
    l.release();
  });

  it('a dropped model in use goes when its last invocation ends', async () => {
    const { p, evictions } = pool(100);
    const l = await p.acquire(spec('a', 10));
    await p.drop('a', 'retired', 'replaced by version 2');
    expect(p.usedBytes).toBe(10);
    l.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(p.usedBytes).toBe(0);
    expect(evictions).toEqual([{ key: 'a', fn: 'a', sizeBytes: 10, reason: 'replaced by version 2', cause: 'retired' }]);
  });

  it('ttl: sweep drops models idle past their keep-alive', async () => {
    let now = 0;
    const p = new WarmPool<string>({ budgetBytes: 100, policy: createPolicy('ttl', { ttlMs: 1000 }), now: () => now, load: async () => 'x' });
    (await p.acquire(spec('old', 10))).release();
    now = 600;
    (await p.acquire(spec('new', 10))).release();
    now = 1200;
    expect(await p.sweep()).toBe(1);
    expect(p.has('old')).toBe(false);
    expect(p.has('new')).toBe(true);
  });

  it.each(['cremebrulee', 'cremebrulee-plus', 'hybrid-histogram', 'lru', 'lfu', 'gdsf', 'ttl', 'random'] as const)('%s: used bytes never exceed the budget under random concurrent traffic (prefetches included)', async (policy) => {
    const rnd = seededRandom(42);
    const budget = 100;
    let maxUsed = 0;
    const p = new WarmPool<string>({
      budgetBytes: budget,
      policy: createPolicy(policy, { ttlMs: 5 }),
      popularity: (fn) => (fn.charCodeAt(1) % 7) / 7,
      // A clock 1000x fast: the prefetching policies' periods (seconds) pass within the test.
      now: () => Math.floor(performance.now() * 1000),
      admitTimeoutMs: 1e9,
      load: async (s) => {
        // Room is reserved before the load starts: the moment used bytes peak.
        maxUsed = Math.max(maxUsed, p.usedBytes);
        await new Promise((r) => setTimeout(r, rnd() * 3));
        return s.key;
      },
    });
    const work = Array.from({ length: 300 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, rnd() * 20));
      const k = `m${Math.floor(rnd() * 12)}`;
      const l = await p.acquire(spec(k, 10 + (k.charCodeAt(1) % 4) * 10));
      maxUsed = Math.max(maxUsed, p.usedBytes);
      expect(l.value).toBe(k);
      await new Promise((r) => setTimeout(r, rnd() * 4));
      l.release();
      if (i % 25 === 0) await p.sweep();
      // The two policies that prefetch load models ahead of demand: into free memory only.
      if (i % 5 === 0) prefetched += p.prefetch();
    });
    let prefetched = 0;
    await Promise.all(work);
    // Prefetches still loading when the calls ended.
    await new Promise((r) => setTimeout(r, 20));
    expect(maxUsed).toBeLessThanOrEqual(budget);
    expect(p.list().reduce((s, m) => s + m.sizeBytes, 0)).toBe(p.usedBytes);
    // Policies without a prewarm hook never prefetch. (Under this traffic the memory is always
    // full, so the two that prefetch start none either; test/unit/prefetch.test.ts covers that path.)
    if (policy !== 'cremebrulee-plus' && policy !== 'hybrid-histogram') expect(prefetched).toBe(0);
  });
});

describe('WarmPool.resize (a node measured a model holding more than registration said)', () => {
  it('re-charges a resident model and evicts the policy victims that no longer fit', async () => {
    const { p, evictions } = pool(30);
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    p.resize('c', 20);
    expect(p.usedBytes).toBe(30);
    expect(evictions.map((e) => e.key)).toEqual(['a']);
    expect(p.list().find((m) => m.key === 'c')?.sizeBytes).toBe(20);
    // The next admission of a new model is charged against the new figure.
    (await p.acquire(spec('d', 10))).release();
    expect(p.usedBytes).toBeLessThanOrEqual(30);
  });

  it('over the budget with only in-flight models: no admission until a release brings it back under', async () => {
    const { p } = pool(30, 'lru', { admitTimeoutMs: 5000 });
    const a = await p.acquire(spec('a', 10));
    const b = await p.acquire(spec('b', 10));
    p.resize('a', 25); // a and b both in flight: nothing can go
    expect(p.usedBytes).toBe(35);
    let admitted = false;
    const c = p.acquire(spec('c', 5)).then((l) => ((admitted = true), l));
    await new Promise((r) => setTimeout(r, 20));
    expect(admitted).toBe(false);
    b.release(); // b can go now: the pool evicts it, then admits c
    const lc = await within(2000, 'admission after the release', c);
    expect(p.usedBytes).toBeLessThanOrEqual(30);
    expect(p.list().map((m) => m.key).sort()).toEqual(['a', 'c']);
    lc.release();
    a.release();
  });
});

describe('WarmPool.withdraw (a refused call takes back its load: runtime/node.ts invokeHere)', () => {
  it('takes back only the load its caller made: once that model was dropped and loaded again by another call, the new one stays', async () => {
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<{ key: string }>({ budgetBytes: 100, policy: createPolicy('lru'), now: () => 5, load: async (s) => ({ key: s.key }), onEvict: (e) => evictions.push(e) });
    // The refused call's load; the model is unloaded while it runs, so it goes when the call ends.
    const refused = await p.acquire(spec('m', 40));
    expect(refused.loaded).toBe(true);
    expect(p.drop('m', 'unload', 'asked')).toBe(true);
    refused.release();
    expect(p.has('m')).toBe(false);
    // Another call loads it again (its own load, counted by it), and ends, before the refusal is known.
    const other = await p.acquire(spec('m', 40));
    expect(other.loaded).toBe(true);
    other.release();
    expect(p.withdraw('m', refused.value)).toBe(false);
    expect(p.has('m')).toBe(true);
    expect(p.usedBytes).toBe(40);
    expect(evictions.map((e) => e.cause)).toEqual(['unload']);
    // The other call's own load, had it been refused, is taken back.
    expect(p.withdraw('m', other.value)).toBe(true);
    expect([p.has('m'), p.usedBytes]).toEqual([false, 0]);
  });
});
