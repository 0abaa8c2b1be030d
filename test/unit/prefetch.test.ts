import { describe, expect, it } from 'vitest';
import { createPolicy } from '../../runtime/policies';
import { cremebruleePlus } from '../../runtime/policies/cremebrulee-plus';
import type { EvictionPolicy } from '../../runtime/policies/types';
import { WarmPool, type EvictionEvent, type ModelSpec, type PrefetchEvent } from '../../runtime/warm-pool';
import { spec } from '../support/warm-pool';


/** A pool on a hand-moved clock that records loads, evictions and finished prefetches. */
function pool(budgetBytes: number, policy: EvictionPolicy, load?: (s: ModelSpec) => Promise<string>) {
  const clock = { now: 0 };
  const loads: string[] = [];
  const evictions: EvictionEvent[] = [];
  const prefetched: PrefetchEvent[] = [];
  let settle: () => void = () => undefined;
  const p = new WarmPool<string>({
    budgetBytes,
    policy,
    now: () => clock.now,
    load:
      load ??
      (async (s) => {
        loads.push(s.key);
        return `session:${s.key}`;
      }),
    onEvict: (e) => evictions.push(e),
    onPrefetch: (e) => {
      prefetched.push(e);
      settle();
    },
  });
  /** Runs one periodic check (expiry, then pre-warming) and waits for the loads it started. */
  const check = async () => {
    p.sweep();
    const n = p.prefetch();
    const done = prefetched.length + n;
    while (prefetched.length < done) await new Promise<void>((r) => (settle = r));
    return n;
  };
  const call = async (key: string, sizeBytes: number, extra: Partial<ModelSpec> = {}) => {
    const lease = await p.acquire(spec(key, sizeBytes, extra));
    lease.release();
    return lease;
  };
  return { p, clock, loads, evictions, prefetched, check, call };
}

/** A policy that evicts least recently used and always asks for `want` to be pre-warmed. */
function wanting(want: string[]): EvictionPolicy {
  const lru = createPolicy('lru');
  return { ...lru, name: 'wanting', selectVictims: (r) => lru.selectVictims(r), prewarm: (_now, isResident) => want.filter((k) => !isResident(k)).map((key) => ({ key, reason: 'wanted' })) };
}

describe('WarmPool.prefetch (the policy pre-warms into free memory)', () => {
  it('cremebrulee-plus reloads an evicted model once memory is free; the next call is warm', async () => {
    const t = pool(100, cremebruleePlus({ prefetch: true, prefetchEveryMs: 0 }));
    // a and b are each called every 10 s; c arrives and pushes out the one of least utility.
    for (let i = 0; i < 3; i++) {
      t.clock.now = i * 10_000;
      await t.call('a', 40);
      t.clock.now += 1;
      await t.call('b', 40);
    }
    t.clock.now = 25_000;
    await t.call('c', 50);
    expect(t.evictions.map((e) => e.key)).toEqual(['a']);
    // No free room for a (40 > 10 free): nothing is loaded, nothing is evicted for it.
    expect(await t.check()).toBe(0);
    // c is deleted: 60 bytes come free, and a, the best model not loaded, comes back.
    t.p.dropFunction('c', { cause: 'unload', reason: 'function deleted' });
    t.clock.now = 26_000;
    expect(await t.check()).toBe(1);
    expect(t.prefetched).toEqual([{ key: 'a', fn: 'a', sizeBytes: 40, reason: expect.stringContaining('prefetch'), outcome: 'loaded' }]);
    expect(t.loads).toEqual(['a', 'b', 'c', 'a']);
    expect(t.p.usedBytes).toBe(80);
    t.clock.now = 30_000;
    const lease = await t.call('a', 40);
    expect(lease.coldStart).toBe(false);
    // b is unloaded on request: 60 bytes are free, room for b (40) or c (50), but c was deleted
    // and b unloaded, so neither comes back ahead of demand.
    t.p.dropFunction('b', { cause: 'unload', reason: 'unloaded on request' });
    t.clock.now = 60_000;
    expect(t.p.budgetBytes - t.p.usedBytes).toBe(60);
    expect(await t.check()).toBe(0);
    expect(t.loads).toEqual(['a', 'b', 'c', 'a']);
  });

  it('never evicts for a prefetch, and loads only models the pool has held', async () => {
    const t = pool(100, wanting(['x', 'a']));
    await t.call('a', 60);
    await t.call('b', 40);
    await t.call('x', 50); // evicts a (least recently used)
    expect(t.evictions.map((e) => e.key)).toEqual(['a']);
    // a is wanted and known, but 10 bytes are free: no load, and nothing is evicted to make room.
    expect(await t.check()).toBe(0);
    expect(t.evictions).toHaveLength(1);
    expect(t.p.usedBytes).toBe(90);
    // A model the pool never loaded (no spec, no bytes) is not loadable, even with room.
    const u = pool(100, wanting(['never-seen']));
    expect(await u.check()).toBe(0);
    expect(u.loads).toEqual([]);
  });

  it('a retired version is forgotten: the policy is told, and the pool never prefetches it', async () => {
    const forgotten: string[] = [];
    const base = wanting(['f@1']);
    const t = pool(100, { ...base, forget: (k) => void forgotten.push(k) });
    await t.call('f@1', 30, { fn: 'f', version: 1 });
    await t.call('g', 80); // evicts f@1
    t.p.dropFunction('f', { belowVersion: 2, cause: 'retired', reason: 'replaced by version 2' });
    expect(forgotten).toEqual(['f@1']);
    t.p.dropFunction('g', { cause: 'unload', reason: 'unloaded on request' });
    expect(forgotten).toEqual(['f@1', 'g']);
    expect(await t.check()).toBe(0);
    expect(t.loads).toEqual(['f@1', 'g']);
  });

  it('cremebrulee-plus forgets a replaced version, so it does not stand in the way of what can be prefetched', async () => {
    const t = pool(100, cremebruleePlus({ prefetch: true, prefetchEveryMs: 0 }));
    // f@1 is called three times as often as g, so it is the better of the two to have back.
    for (let i = 0; i < 6; i++) {
      t.clock.now = i * 1000;
      await t.call('f@1', 30, { fn: 'f', version: 1 });
      if (i % 3 === 0) await t.call('g', 30);
    }
    t.clock.now = 10_000;
    await t.call('big', 100); // evicts both
    t.p.dropFunction('f', { belowVersion: 2, cause: 'retired', reason: 'replaced by version 2' });
    t.p.dropFunction('big', { cause: 'unload', reason: 'function deleted' });
    t.clock.now = 11_000;
    expect(await t.check()).toBe(1);
    expect(t.prefetched.map((e) => e.key)).toEqual(['g']);
  });

  it('a prefetch that fails is forgotten by the policy too, so the next best model still comes back', async () => {
    let fail = false;
    const t = pool(100, cremebruleePlus({ prefetch: true, prefetchEveryMs: 0 }), async (s) => {
      if (fail && s.key === 'a') throw new Error('bytes gone');
      return `session:${s.key}`;
    });
    for (let i = 0; i < 6; i++) {
      t.clock.now = i * 1000;
      await t.call('a', 30); // a is called most: it is the one plus wants back first
      if (i % 3 === 0) await t.call('b', 30);
    }
    t.clock.now = 10_000;
    await t.call('big', 100);
    t.p.dropFunction('big', { cause: 'unload', reason: 'function deleted' });
    fail = true;
    t.clock.now = 11_000;
    expect(await t.check()).toBe(1);
    expect(t.prefetched.map((e) => [e.key, e.outcome])).toEqual([['a', 'failed']]);
    t.clock.now = 12_000;
    expect(await t.check()).toBe(1);
    expect(t.prefetched.map((e) => [e.key, e.outcome])).toEqual([['a', 'failed'], ['b', 'loaded']]);
    expect(t.p.has('b')).toBe(true);
  });

  it('a model deleted while it is being prefetched is reported as dropped, leaves at once, and is not named again', async () => {
    let slow = false;
    let open: (() => void) | undefined;
    const t = pool(100, cremebruleePlus({ prefetch: true, prefetchEveryMs: 0 }), (s) =>
      slow ? new Promise((r) => (open = () => r(`session:${s.key}`))) : Promise.resolve(`session:${s.key}`),
    );
    for (let i = 0; i < 3; i++) {
      t.clock.now = i * 1000;
      await t.call('a', 40);
    }
    t.clock.now = 5000;
    await t.call('big', 100); // evicts a
    t.p.dropFunction('big', { cause: 'unload', reason: 'function deleted' });
    slow = true;
    t.clock.now = 6000;
    expect(t.p.prefetch()).toBe(1); // a starts loading in the background
    t.p.dropFunction('a', { cause: 'unload', reason: 'function deleted' });
    open!();
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
    expect(t.prefetched.map((e) => [e.key, e.outcome])).toEqual([['a', 'dropped']]);
    expect(t.p.has('a')).toBe(false);
    expect(t.p.usedBytes).toBe(0);
    t.clock.now = 10_000;
    expect(t.p.prefetch()).toBe(0);
  });

  it('does not prefetch while a call waits for memory that in-flight models hold', async () => {
    const t = pool(100, wanting(['a']));
    await t.call('a', 30);
    await t.call('b', 50);
    const y = await t.p.acquire(spec('y', 60)); // evicts a and b; in flight
    const z = t.p.acquire(spec('z', 100)); // must wait for y
    await new Promise((r) => setTimeout(r, 0));
    expect(t.p.usedBytes).toBe(60);
    expect(t.p.prefetch()).toBe(0); // 40 bytes are free and a (30) fits, but z comes first
    y.release();
    (await z).release();
    expect(t.loads).toEqual(['a', 'b', 'y', 'z']);
  });

  it('prefetches a model with the options it was last used with (same bytes, options changed)', async () => {
    const t = pool(100, wanting(['a']));
    (await t.p.acquire(spec('a', 40, { pinned: true }))).release();
    (await t.p.acquire(spec('a', 40, { pinned: false }))).release(); // registered again, unpinned
    await t.call('x', 100); // a is no longer pinned, so it can go
    t.p.dropFunction('x', { cause: 'unload', reason: 'deleted' });
    expect(await t.check()).toBe(1);
    expect(t.p.list().find((m) => m.key === 'a')?.pinned).toBe(false);
    await t.call('c', 100); // and it can go again
    expect(t.p.has('a')).toBe(false);
  });

  it('a prefetch that fails is reported, frees its room, and the model is not tried again until used', async () => {
    let fail = false;
    const loads: string[] = [];
    const t = pool(100, wanting(['a']), async (s) => {
      loads.push(s.key);
      if (fail) throw new Error('bytes gone');
      return `session:${s.key}`;
    });
    await t.call('a', 60);
    t.p.drop('a', 'unload', 'test');
    // drop forgot it; use it again so the pool knows it, then push it out.
    await t.call('a', 60);
    await t.call('b', 60);
    t.p.dropFunction('b', { cause: 'unload', reason: 'deleted' });
    fail = true;
    expect(await t.check()).toBe(1);
    expect(t.prefetched[0]!).toMatchObject({ key: 'a', outcome: 'failed', error: expect.any(Error) });
    expect(t.p.usedBytes).toBe(0);
    expect(await t.check()).toBe(0);
    expect(loads).toEqual(['a', 'a', 'b', 'a']);
  });

  it('hybrid-histogram forgets a deleted function: no pre-warm window for it any more', async () => {
    const runs = await Promise.all(
      [false, true].map(async (deleted) => {
        const policy = createPolicy('hybrid-histogram');
        const t = pool(1000, policy);
        for (let i = 0; i < 13; i++) {
          t.clock.now = i * 600_000;
          await t.call('timer', 100);
        }
        // Idle: dropped until its pre-warm window, 9 minutes after the last call.
        t.clock.now += 60_000;
        await t.check();
        expect(t.p.has('timer')).toBe(false);
        if (deleted) t.p.dropFunction('timer', { cause: 'unload', reason: 'function deleted' });
        return policy.prewarm!(t.clock.now + 500_000, () => false, 1000).map((v) => v.key);
      }),
    );
    expect(runs).toEqual([['timer'], []]);
  });

  it('hybrid-histogram runs in the runtime: a model called every 10 minutes is unloaded while idle and pre-warmed in time', async () => {
    const t = pool(1000, createPolicy('hybrid-histogram'));
    const period = 600_000;
    const cold: boolean[] = [];
    let loadsBefore = 0;
    for (let i = 0; i < 16; i++) {
      // The node's periodic check runs every second; here every 30 s is enough to see the windows.
      for (let s = (i - 1) * period + 30_000; i > 0 && s < i * period; s += 30_000) {
        t.clock.now = s;
        await t.check();
      }
      if (i === 12) loadsBefore = t.loads.length;
      t.clock.now = i * period;
      cold.push((await t.call('timer', 100)).coldStart);
    }
    // Until the histogram holds 10 idle times, a fixed 10-minute keep-alive: the model stays
    // (expiry is at exactly the next call's time, so some of those calls are warm, some not).
    // Once it is representative, it is dropped after each call and pre-warmed at 9 minutes: warm.
    expect(cold.slice(12)).toEqual([false, false, false, false]);
    expect(t.evictions.filter((e) => e.cause === 'expired').length).toBeGreaterThanOrEqual(4);
    // Each of those cycles is one unload and one pre-warm load: the load count shows it.
    expect(t.loads.length - loadsBefore).toBe(3);
    expect(t.prefetched.length).toBeGreaterThanOrEqual(4);
  });
});
