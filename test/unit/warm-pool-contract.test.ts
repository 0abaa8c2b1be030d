import { describe, expect, it } from 'vitest';
import { BruleeError } from '../../errors';
import { createPolicy, type EntryFacts, type EvictionPolicy, type Victim } from '../../runtime/policies';
import { WarmPool, type EvictionEvent, type ModelSpec, type PrefetchEvent } from '../../runtime/warm-pool';
import { spec, deferred, recorder } from '../support/warm-pool';
import { within } from '../support/within';

// The warm pool's contract with its policy and its callers, on a clock the test sets: what the
// policy is told (facts, hooks, in order), what a lease says, what list() shows, and the exact
// errors. Every expected value is worked out by hand from the test's own steps.


function refusal(p: Promise<unknown>): Promise<[string, number, string]> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => {
      expect(e).toBeInstanceOf(BruleeError);
      const b = e as BruleeError;
      return [b.code, b.status, b.message];
    },
  );
}

const facts = (key: string, o: Partial<EntryFacts>): EntryFacts => ({ key, sizeBytes: 10, loadMs: 10, execMs: 1, popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 0, ...o });

describe('WarmPool: options', () => {
  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('refuses a budget of %s', (budgetBytes) => {
    expect(() => new WarmPool({ budgetBytes, policy: createPolicy('lru'), load: async () => 'x' })).toThrow(
      new RangeError(`WarmPool: budgetBytes must be a positive number, got ${budgetBytes}`),
    );
  });

  it('reports its budget, used bytes and policy name', async () => {
    const p = new WarmPool<string>({ budgetBytes: 1, policy: createPolicy('gdsf'), load: async () => 'x' });
    expect([p.budgetBytes, p.usedBytes, p.policyName]).toEqual([1, 0, 'gdsf']);
    (await p.acquire(spec('a', 1))).release();
    expect(p.usedBytes).toBe(1);
  });
});

describe('WarmPool: what the policy is told', () => {
  it('load, access and evict hooks get the entry facts at the pool clock; popularity comes from the option', async () => {
    let now = 100;
    const { policy, calls, requests } = recorder();
    const p = new WarmPool<string>({
      budgetBytes: 20,
      policy,
      now: () => now,
      popularity: (fn) => (fn === 'a' ? 0.75 : 0.25),
      load: async (s) => {
        now += 5; // the load takes 5 ms
        return s.key;
      },
    });
    const la = await p.acquire(spec('a', 10, { loadMs: 40, execMs: 3 }));
    expect([la.coldStart, la.loaded, la.loadWaitMs, la.value]).toEqual([true, true, 5, 'a']);
    la.release();
    now = 200;
    const warm = await p.acquire(spec('a', 10, { loadMs: 40, execMs: 3 }));
    expect([warm.coldStart, warm.loaded, warm.loadWaitMs]).toEqual([false, false, 0]);
    warm.release();
    now = 300;
    (await p.acquire(spec('b', 10))).release();
    now = 400;
    (await p.acquire(spec('c', 5))).release();
    expect(calls).toEqual([
      ['load', facts('a', { sizeBytes: 10, loadMs: 40, execMs: 3, popularity: 0.75, loadedAt: 105, lastUsedAt: 105, hits: 1 }), 105],
      ['access', facts('a', { sizeBytes: 10, loadMs: 40, execMs: 3, popularity: 0.75, loadedAt: 105, lastUsedAt: 200, hits: 2 }), 200],
      ['load', facts('b', { popularity: 0.25, loadedAt: 305, lastUsedAt: 305, hits: 1 }), 305],
      ['evict', 'a', 400],
      ['load', facts('c', { sizeBytes: 5, popularity: 0.25, loadedAt: 405, lastUsedAt: 405, hits: 1 }), 405],
    ]);
    // c needed 5 of the 20: 20 used + 5 - 20 = 5 bytes to free, from both idle models.
    expect(requests).toEqual([{
      now: 400,
      needBytes: 5,
      candidates: [
        facts('a', { sizeBytes: 10, loadMs: 40, execMs: 3, popularity: 0.75, loadedAt: 105, lastUsedAt: 200, hits: 2 }),
        facts('b', { popularity: 0.25, loadedAt: 305, lastUsedAt: 305, hits: 1 }),
      ],
      incoming: { ...spec('c', 5), popularity: 0.25 },
    }]);
    expect(p.list()).toEqual([
      { key: 'b', fn: 'b', sizeBytes: 10, state: 'resident', inFlight: 0, pinned: false, hits: 1, loadedAt: 305, lastUsedAt: 305 },
      { key: 'c', fn: 'c', sizeBytes: 5, state: 'resident', inFlight: 0, pinned: false, hits: 1, loadedAt: 405, lastUsedAt: 405 },
    ]);
  });

  it('evicts the victims in the order named, and stops as soon as the newcomer fits', async () => {
    const { policy } = recorder((r) => [...r.candidates].reverse().map((c) => ({ key: c.key, reason: `r-${c.key}` })));
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 30, policy, load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    (await p.acquire(spec('d', 20))).release();
    expect(evictions).toEqual([
      { key: 'c', fn: 'c', sizeBytes: 10, reason: 'r-c', cause: 'policy' },
      { key: 'b', fn: 'b', sizeBytes: 10, reason: 'r-b', cause: 'policy' },
    ]);
    expect(p.list().map((m) => m.key)).toEqual(['a', 'd']);
    expect(p.usedBytes).toBe(30);
  });

  it('a policy that names too few victims is an INTERNAL error, not a wait', async () => {
    const { policy } = recorder((r) => r.candidates.slice(0, 1).map((c) => ({ key: c.key, reason: 'only one' })));
    const p = new WarmPool<string>({ budgetBytes: 20, policy, load: async (s) => s.key });
    (await p.acquire(spec('a', 10))).release();
    (await p.acquire(spec('b', 10))).release();
    expect(await refusal(p.acquire(spec('c', 20, { fn: 'fc' })))).toEqual([
      'INTERNAL', 500, 'eviction policy recorder named too few victims to free 20 bytes for fc',
    ]);
    // What it named was evicted; the rest stays.
    expect(p.list().map((m) => m.key)).toEqual(['b']);
  });

  it('a victim the policy names twice, or that is not evictable, is skipped', async () => {
    let inUse = '';
    const { policy } = recorder(() => [{ key: inUse, reason: 'in use' }, { key: 'ghost', reason: 'not here' }, { key: 'b', reason: 'b' }, { key: 'b', reason: 'b again' }, { key: 'c', reason: 'c' }]);
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 30, policy, load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    const a = await p.acquire(spec('a', 10));
    inUse = 'a';
    (await p.acquire(spec('b', 10))).release();
    (await p.acquire(spec('c', 10))).release();
    (await p.acquire(spec('d', 20))).release();
    expect(evictions.map((e) => [e.key, e.reason])).toEqual([['b', 'b'], ['c', 'c']]);
    expect(p.has('a')).toBe(true);
    a.release();
  });

  it('retired and unloaded models are forgotten by the policy after their eviction; policy evictions are not', async () => {
    let now = 0;
    const { policy, calls } = recorder();
    const p = new WarmPool<string>({ budgetBytes: 20, policy, now: () => now, load: async (s) => s.key });
    for (const k of ['a', 'b']) (await p.acquire(spec(k, 10))).release();
    now = 7;
    expect(p.drop('a', 'retired', 'v2')).toBe(true);
    expect(p.drop('b', 'unload', 'asked')).toBe(true);
    (await p.acquire(spec('c', 10))).release();
    (await p.acquire(spec('d', 20))).release();
    expect(calls.filter((c) => (c as string[])[0] !== 'load')).toEqual([
      ['evict', 'a', 7], ['forget', 'a', 'retired'], ['evict', 'b', 7], ['forget', 'b', 'unload'], ['evict', 'c', 7],
    ]);
    // Not known, not resident: drop says false, and the policy is still told to forget it.
    expect(p.drop('never', 'unload', 'x')).toBe(false);
    expect(calls.at(-1)).toEqual(['forget', 'never', 'unload']);
  });
});

describe('WarmPool: errors say what to do', () => {
  it('a model bigger than the whole budget', async () => {
    const loads: string[] = [];
    const p = new WarmPool<string>({ budgetBytes: 100, policy: createPolicy('lru'), load: async (s) => (loads.push(s.key), s.key) });
    expect(await refusal(p.acquire(spec('k', 101, { fn: 'huge' })))).toEqual([
      'MODEL_TOO_LARGE', 422,
      "model huge needs 101 bytes resident, more than this node's whole budget of 100 bytes; raise MEMORY_BUDGET or register a smaller model",
    ]);
    await expect(p.prewarm(spec('k', 101))).rejects.toMatchObject({ code: 'MODEL_TOO_LARGE' });
    expect(loads).toEqual([]);
  }, 10_000);

  it('exactly the budget fits', async () => {
    const p = new WarmPool<string>({ budgetBytes: 100, policy: createPolicy('lru'), load: async (s) => s.key });
    const l = await p.acquire(spec('k', 100));
    expect(p.usedBytes).toBe(100);
    l.release();
  });

  it('pinned models leave no room: refused at once, not at the deadline', async () => {
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key, admitTimeoutMs: 1e9 });
    (await p.acquire(spec('p', 15, { pinned: true }))).release();
    expect(await refusal(p.acquire(spec('n', 10, { fn: 'newcomer' })))).toEqual([
      'CACHE_BUSY', 503,
      'no room for newcomer (10 bytes): pinned models hold 15 of 20 bytes and nothing else can be evicted; unpin or unload one, or raise MEMORY_BUDGET',
    ]);
    // Exactly the unpinned room is enough.
    (await p.acquire(spec('fits', 5))).release();
    // Unpinning by a later call with pinned: false frees it for eviction.
    (await p.acquire(spec('p', 15, { pinned: false }))).release();
    (await p.acquire(spec('n', 10, { fn: 'newcomer' }))).release();
    expect(p.has('p')).toBe(false);
  });

  it('a pinned model on its way out does not count as pinned', async () => {
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key, admitTimeoutMs: 1e9 });
    const held = await p.acquire(spec('p', 15, { pinned: true }));
    p.drop('p', 'unload', 'asked');
    const n = p.acquire(spec('n', 10));
    held.release();
    (await n).release();
    expect(p.list().map((m) => m.key)).toEqual(['n']);
  });

  it('in-flight models hold the room past the deadline given', async () => {
    let now = 1000;
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), now: () => now, load: async (s) => s.key });
    const a = await p.acquire(spec('a', 15));
    // A deadline already past: no wait at all.
    expect(await refusal(p.acquire(spec('b', 10, { fn: 'late' }), 1000))).toEqual([
      'CACHE_BUSY', 503, 'no room for late (10 bytes): in-flight or pinned models hold 15 of 20 bytes; retry later',
    ]);
    // A deadline 1 ms away waits for a release, then gives up when the clock passes it.
    const waiting = refusal(p.acquire(spec('b', 10, { fn: 'late' }), 1001));
    await new Promise((r) => setTimeout(r, 30));
    now = 1001;
    const other = await p.acquire(spec('c', 5)); // fits: 15 + 5; it wakes no waiter by itself
    other.release(); // a release wakes the waiter, which finds the clock at its deadline
    // c stays resident (idle, 5 bytes): 20 of 20 are held, and evicting c alone would not free 10.
    expect(await waiting).toEqual(['CACHE_BUSY', 503, 'no room for late (10 bytes): in-flight or pinned models hold 20 of 20 bytes; retry later']);
    expect(p.has('c')).toBe(true);
    a.release();
  });

  it('waits while what could be evicted is less than what is needed, evicting nothing meanwhile', async () => {
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key, onEvict: (e) => evictions.push(e), admitTimeoutMs: 1e9 });
    const a = await p.acquire(spec('a', 12));
    (await p.acquire(spec('b', 8))).release();
    let got = false;
    const c = p.acquire(spec('c', 15)).then((l) => ((got = true), l));
    await new Promise((r) => setTimeout(r, 20));
    expect([got, evictions.length, p.has('b')]).toEqual([false, 0, true]);
    a.release();
    (await c).release();
    expect(evictions.map((e) => e.key).sort()).toEqual(['a', 'b']);
  });
});

describe('WarmPool: loads', () => {
  it('a call that joins a load waits for it: a cold start that did not load, with its own wait', async () => {
    let now = 0;
    const gate = deferred<string>();
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), now: () => now, load: () => gate.promise });
    const first = p.acquire(spec('a', 10));
    now = 3;
    const second = p.acquire(spec('a', 10));
    expect(p.list()).toEqual([{ key: 'a', fn: 'a', sizeBytes: 10, state: 'loading', inFlight: 2, pinned: false, hits: 0, loadedAt: 0, lastUsedAt: 0 }]);
    expect(p.has('a')).toBe(false);
    now = 10;
    gate.resolve('A');
    const [l1, l2] = await Promise.all([first, second]);
    expect([l1.coldStart, l1.loaded, l1.loadWaitMs]).toEqual([true, true, 10]);
    expect([l2.coldStart, l2.loaded, l2.loadWaitMs]).toEqual([true, false, 7]);
    expect(p.list()[0]).toMatchObject({ state: 'resident', inFlight: 2, hits: 2 });
    l1.release();
    l1.release(); // twice is once
    expect(p.list()[0]!.inFlight).toBe(1);
    l2.release();
    expect(p.list()[0]!.inFlight).toBe(0);
  });

  it('a failed load fails every call that joined it, frees its room and tells no policy hook', async () => {
    const gate = deferred<string>();
    const { policy, calls } = recorder();
    let loads = 0;
    const p = new WarmPool<string>({ budgetBytes: 20, policy, load: () => (loads++, gate.promise) });
    const a = p.acquire(spec('a', 10));
    const b = p.acquire(spec('a', 10));
    gate.reject(new Error('bad bytes'));
    await expect(a).rejects.toThrow('bad bytes');
    await expect(b).rejects.toThrow('bad bytes');
    expect([p.usedBytes, p.list(), calls]).toEqual([0, [], []]);
    expect(loads).toBe(1); // the call that joined does not try again
  });

  it('a model dropped while it loads is forgotten when the load fails', async () => {
    const gate = deferred<string>();
    const { policy, calls } = recorder();
    const p = new WarmPool<string>({ budgetBytes: 20, policy, load: () => gate.promise });
    const a = p.acquire(spec('a', 10));
    expect(p.drop('a', 'unload', 'deleted')).toBe(true);
    gate.reject(new Error('x'));
    await expect(a).rejects.toThrow('x');
    expect(calls).toEqual([['forget', 'a', 'unload']]);
  });

  it('a model dropped while it loads serves its call, then goes', async () => {
    const gate = deferred<string>();
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: () => gate.promise, onEvict: (e) => evictions.push(e) });
    const a = p.acquire(spec('a', 10));
    p.drop('a', 'retired', 'version 2');
    gate.resolve('A');
    const l = await a;
    expect(l.value).toBe('A');
    expect(p.usedBytes).toBe(10);
    l.release();
    expect([p.usedBytes, evictions]).toEqual([0, [{ key: 'a', fn: 'a', sizeBytes: 10, reason: 'version 2', cause: 'retired' }]]);
  });

  it('dispose runs for each evicted value; a failing dispose still frees the bytes', async () => {
    const disposed: string[] = [];
    const p = new WarmPool<string>({
      budgetBytes: 10,
      policy: createPolicy('lru'),
      load: async (s) => `v-${s.key}`,
      dispose: (v, key) => {
        disposed.push(`${v}@${key}`);
        throw new Error('release failed');
      },
    });
    (await p.acquire(spec('a', 10))).release();
    (await p.acquire(spec('b', 10))).release();
    expect(p.usedBytes).toBe(10);
    await new Promise((r) => setTimeout(r, 0));
    expect(disposed).toEqual(['v-a@a']);
    await p.clear();
    expect(disposed).toEqual(['v-a@a', 'v-b@b']);
  });

  it('clear disposes everything, waits for loads, and reports no eviction', async () => {
    const gate = deferred<string>();
    const disposed: string[] = [];
    const evictions: EvictionEvent[] = [];
    let n = 0;
    const p = new WarmPool<string>({
      budgetBytes: 30,
      policy: createPolicy('lru'),
      load: (s) => (s.key === 'slow' ? gate.promise : Promise.resolve(`v${++n}`)),
      dispose: async (v) => {
        await new Promise((r) => setTimeout(r, 5));
        disposed.push(v);
      },
      onEvict: (e) => evictions.push(e),
    });
    (await p.acquire(spec('a', 10))).release();
    const slow = p.acquire(spec('slow', 10));
    const cleared = p.clear();
    gate.resolve('vs');
    await cleared;
    expect([p.usedBytes, p.list(), disposed.sort(), evictions]).toEqual([0, [], ['v1', 'vs'], []]);
    (await slow).release();
  });
});

describe('WarmPool: dropping by function', () => {
  it('drops every model of a function, or only versions below one, and counts what it dropped', async () => {
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 100, policy: createPolicy('lru'), load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    for (const [key, version] of [['f1', 1], ['f2', 2], ['f3', 3]] as const) (await p.acquire(spec(key, 10, { fn: 'f', version }))).release();
    (await p.acquire(spec('g1', 10, { fn: 'g', version: 1 }))).release();
    (await p.acquire(spec('f0', 10, { fn: 'f' }))).release(); // no version: counts as 0
    expect(p.dropFunction('f', { belowVersion: 3, cause: 'retired', reason: 'v3' })).toBe(3);
    expect(evictions.map((e) => [e.key, e.cause, e.reason])).toEqual([['f1', 'retired', 'v3'], ['f2', 'retired', 'v3'], ['f0', 'retired', 'v3']]);
    expect(p.list().map((m) => m.key)).toEqual(['f3', 'g1']);
    expect(p.dropFunction('f', { cause: 'unload', reason: 'deleted' })).toBe(1);
    expect(p.dropFunction('f', { cause: 'unload', reason: 'deleted' })).toBe(0);
    expect(p.list().map((m) => m.key)).toEqual(['g1']);
  });

  it('holdsOther: another model of the function, resident or remembered', async () => {
    const p = new WarmPool<string>({ budgetBytes: 10, policy: createPolicy('lru'), load: async (s) => s.key });
    expect(p.holdsOther('f', 'f1')).toBe(false);
    (await p.acquire(spec('f1', 10, { fn: 'f' }))).release();
    expect([p.holdsOther('f', 'f1'), p.holdsOther('f', 'f2'), p.holdsOther('g', 'f2')]).toEqual([false, true, false]);
    (await p.acquire(spec('g1', 10, { fn: 'g' }))).release(); // evicts f1, which is still remembered
    expect([p.has('f1'), p.holdsOther('f', 'f2'), p.holdsOther('g', 'g1')]).toEqual([false, true, false]);
    p.drop('f1', 'unload', 'deleted');
    expect(p.holdsOther('f', 'f2')).toBe(false);
  });

  it('a drop of a model not held evicts nothing and tells onDropNotHeld, with its cause', async () => {
    const notHeld: Array<[string, string]> = [];
    const evictions: string[] = [];
    const p = new WarmPool<string>({ budgetBytes: 10, policy: createPolicy('lru'), load: async (s) => s.key, onEvict: (e) => evictions.push(e.key), onDropNotHeld: (key, cause) => notHeld.push([key, cause]) });
    (await p.acquire(spec('f1', 10, { fn: 'f', version: 1 }))).release();
    (await p.acquire(spec('g1', 10, { fn: 'g' }))).release(); // evicts f1, still remembered
    expect(p.dropFunction('f', { belowVersion: 2, cause: 'retired', reason: 'v2' })).toBe(0);
    expect(p.drop('never', 'deleted', 'deleted')).toBe(false);
    expect(p.dropFunction('g', { cause: 'deleted', reason: 'deleted' })).toBe(1);
    expect(notHeld).toEqual([['f1', 'retired'], ['never', 'deleted']]);
    expect(evictions).toEqual(['f1', 'g1']);
  });

  it('holdsOther sees a model that is loading', async () => {
    const gate = deferred<string>();
    const p = new WarmPool<string>({ budgetBytes: 10, policy: createPolicy('lru'), load: () => gate.promise });
    const l = p.acquire(spec('f1', 10, { fn: 'f' }));
    expect(p.holdsOther('f', 'f2')).toBe(true);
    gate.resolve('x');
    (await l).release();
  });
});

describe('WarmPool: prewarm, sweep and prefetch without a policy hook', () => {
  it('prewarm loads a model with no hit, and does nothing for a model already there', async () => {
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key });
    expect(await p.prewarm(spec('a', 10))).toBe(true);
    expect(p.list()[0]).toMatchObject({ key: 'a', hits: 0, inFlight: 0, state: 'resident' });
    expect(await p.prewarm(spec('a', 10))).toBe(false);
    const l = await p.acquire(spec('a', 10));
    expect([l.coldStart, p.list()[0]!.hits]).toEqual([false, 1]);
    l.release();
  });

  it('a policy without expiry or pre-warming: sweep and prefetch do nothing', async () => {
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key });
    (await p.acquire(spec('a', 10))).release();
    expect([p.sweep(), p.prefetch(), p.has('a')]).toEqual([0, 0, true]);
  });

  it('sweep drops only idle, unpinned models the policy names', async () => {
    let now = 0;
    const expired = (es: readonly EntryFacts[]) => es.map((e) => ({ key: e.key, reason: `idle ${e.key}` }));
    const policy: EvictionPolicy = { ...createPolicy('lru'), name: 'all-expire', expired };
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 30, policy, now: () => now, load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    (await p.acquire(spec('idle', 10))).release();
    (await p.acquire(spec('pinned', 10, { pinned: true }))).release();
    const busy = await p.acquire(spec('busy', 10));
    now = 5;
    expect(p.sweep()).toBe(1);
    expect(evictions).toEqual([{ key: 'idle', fn: 'idle', sizeBytes: 10, reason: 'idle idle', cause: 'expired' }]);
    busy.release();
  });

  it('prefetch loads what the policy names, if known and if it fits, and reports each end', async () => {
    const wanted: string[][] = [];
    const free: Array<number | undefined> = [];
    let names: Victim[] = [];
    const policy: EvictionPolicy = {
      ...createPolicy('lru'),
      name: 'names',
      prewarm: (_now, isResident, freeBytes) => {
        wanted.push(['a', 'b', 'c', 'z'].filter(isResident));
        free.push(freeBytes);
        return names;
      },
    };
    const events: PrefetchEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 30, policy, load: async (s) => s.key, onPrefetch: (e) => events.push(e) });
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    (await p.acquire(spec('big', 20))).release(); // evicts a and b (lru)
    expect(p.list().map((m) => m.key)).toEqual(['c', 'big']);
    names = [{ key: 'z', reason: 'never held' }, { key: 'c', reason: 'resident' }, { key: 'a', reason: 'wanted a' }];
    expect(p.prefetch()).toBe(0); // full: a does not fit
    (await p.acquire(spec('tiny', 0))).release();
    p.drop('big', 'unload', 'asked');
    names = [{ key: 'z', reason: 'never held' }, { key: 'c', reason: 'resident' }, { key: 'a', reason: 'wanted a' }, { key: 'b', reason: 'wanted b' }, { key: 'a', reason: 'twice' }];
    expect(p.prefetch()).toBe(2);
    await new Promise((r) => setTimeout(r, 0));
    expect(events).toEqual([
      { key: 'a', fn: 'a', sizeBytes: 10, reason: 'wanted a', outcome: 'loaded' },
      { key: 'b', fn: 'b', sizeBytes: 10, reason: 'wanted b', outcome: 'loaded' },
    ]);
    expect(wanted).toEqual([['c'], ['c']]);
    expect(free).toEqual([0, 20]);
    expect(p.list().map((m) => [m.key, m.hits])).toEqual([['c', 1], ['tiny', 1], ['a', 0], ['b', 0]]);
    expect(p.usedBytes).toBe(30);
  });
});

describe('WarmPool: edges found by mutation testing', () => {
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('without the popularity option every model has popularity 0', async () => {
    const { policy, requests } = recorder();
    const p = new WarmPool<string>({ budgetBytes: 10, policy, now: () => 0, load: async (s) => s.key });
    (await p.acquire(spec('a', 10))).release();
    (await p.acquire(spec('b', 10))).release();
    expect([requests[0]!.candidates[0]!.popularity, requests[0]!.incoming.popularity]).toEqual([0, 0]);
  });

  it('a model dropped while in flight, and used again before it goes, is not remembered', async () => {
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: async (s) => s.key });
    const a1 = await p.acquire(spec('a', 10, { fn: 'f' }));
    expect(p.drop('a', 'retired', 'version 2')).toBe(true);
    expect(p.has('a')).toBe(true); // still serving
    const a2 = await p.acquire(spec('a', 10, { fn: 'f' }));
    a1.release();
    a2.release();
    expect([p.has('a'), p.holdsOther('f', 'other')]).toEqual([false, false]);
  });

  it('a model dropped while it loads is not remembered after its load', async () => {
    const gate = deferred<string>();
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: () => gate.promise });
    const a = p.acquire(spec('a', 10, { fn: 'f' }));
    p.drop('a', 'unload', 'deleted');
    gate.resolve('A');
    (await a).release();
    expect([p.has('a'), p.holdsOther('f', 'other')]).toEqual([false, false]);
  });

  it('a policy without forget: a model dropped while it loads fails with its load error', async () => {
    const gate = deferred<string>();
    const policy: EvictionPolicy = { name: 'bare', selectVictims: () => [] };
    const p = new WarmPool<string>({ budgetBytes: 20, policy, load: () => gate.promise });
    const a = p.acquire(spec('a', 10));
    p.drop('a', 'unload', 'deleted');
    const boom = new Error('bad bytes');
    gate.reject(boom);
    await expect(a).rejects.toBe(boom);
    expect(p.usedBytes).toBe(0);
  });

  it('sweep skips what the policy names but cannot go (in flight, not held)', async () => {
    const { policy } = recorder();
    policy.expired = () => [{ key: 'a', reason: 'idle' }, { key: 'ghost', reason: 'idle' }, { key: 'b', reason: 'idle' }];
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes: 20, policy, load: async (s) => s.key, onEvict: (e) => evictions.push(e) });
    const a = await p.acquire(spec('a', 10));
    (await p.acquire(spec('b', 10))).release();
    expect(p.sweep()).toBe(1);
    expect(evictions).toEqual([{ key: 'b', fn: 'b', sizeBytes: 10, reason: 'idle', cause: 'expired' }]);
    a.release();
  });

  it('two calls waiting for memory for one model share its load', async () => {
    const loads: string[] = [];
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), admitTimeoutMs: 60_000, load: async (s) => (loads.push(s.key), s.key) });
    const a = await p.acquire(spec('a', 20));
    const b1 = p.acquire(spec('b', 20));
    const b2 = p.acquire(spec('b', 20));
    await tick();
    a.release();
    const [l1, l2] = await within(1000, 'the two calls for b', Promise.all([b1, b2]));
    expect(loads).toEqual(['a', 'b']);
    expect([l1.loaded, l2.loaded, l2.coldStart, p.usedBytes]).toEqual([true, false, true, 20]);
    l1.release();
    l2.release();
  });

  it('a load starts once what evictions freed is disposed, and at once when nothing is being disposed', async () => {
    const disposal = deferred<void>();
    const steps: string[] = [];
    const p = new WarmPool<string>({
      budgetBytes: 10,
      policy: createPolicy('lru'),
      load: async (s) => (steps.push(`load ${s.key}`), s.key),
      dispose: (_v, key) => (steps.push(`dispose ${key}`), key === 'a' ? disposal.promise : undefined),
    });
    (await p.acquire(spec('a', 10))).release();
    const b = p.acquire(spec('b', 10));
    await tick();
    expect(steps).toEqual(['load a', 'dispose a']); // b waits for a's memory
    disposal.resolve();
    (await b).release();
    expect(steps).toEqual(['load a', 'dispose a', 'load b']);
    expect(p.drop('b', 'unload', 'asked')).toBe(true);
    await tick(); // b's dispose has settled
    const c = p.acquire(spec('c', 10));
    expect(steps.at(-1)).toBe('load c'); // started before acquire first awaited
    (await c).release();
  });

  it('clear while a load fails leaves nothing counted', async () => {
    const gate = deferred<string>();
    const p = new WarmPool<string>({ budgetBytes: 20, policy: createPolicy('lru'), load: () => gate.promise });
    const a = p.acquire(spec('a', 10));
    const cleared = p.clear();
    gate.reject(new Error('bad bytes'));
    await expect(a).rejects.toThrow('bad bytes');
    await cleared;
    expect([p.usedBytes, p.list()]).toEqual([0, []]);
  });

  it('prefetch: events carry an error only when the load failed, the load\'s own; a pool without onPrefetch prefetches all the same', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const boom = new Error('bad bytes');
      let fails = false;
      let fail: unknown;
      const run = async (onPrefetch?: (e: PrefetchEvent) => void) => {
        const { policy } = recorder();
        policy.prewarm = () => [{ key: 'a', reason: 'wanted' }];
        let loadsOfA = 0;
        // The prefetch (a's second load) fails with `fail` when `fails`.
        const load = async (s: ModelSpec) => (s.key === 'a' && ++loadsOfA === 2 && fails ? Promise.reject(fail) : s.key);
        const p = new WarmPool<string>({ budgetBytes: 10, policy, load, ...(onPrefetch ? { onPrefetch } : {}) });
        (await p.acquire(spec('a', 10))).release();
        (await p.acquire(spec('b', 10))).release(); // a evicted, still known
        expect(p.drop('b', 'unload', 'asked')).toBe(true);
        expect(p.prefetch()).toBe(1);
        await tick();
        return p;
      };
      const events: PrefetchEvent[] = [];
      expect((await run((e) => events.push(e))).has('a')).toBe(true);
      expect((await run()).has('a')).toBe(true);
      fails = true;
      fail = boom;
      await run((e) => events.push(e));
      await run();
      fail = undefined;
      await run((e) => events.push(e));
      expect(events.map((e) => Object.keys(e))).toEqual([
        ['key', 'fn', 'sizeBytes', 'reason', 'outcome'],
        ['key', 'fn', 'sizeBytes', 'reason', 'outcome', 'error'],
        ['key', 'fn', 'sizeBytes', 'reason', 'outcome', 'error'],
      ]);
      expect(events.map((e) => e.outcome)).toEqual(['loaded', 'failed', 'failed']);
      expect(events[1]!.error).toBe(boom);
      expect(events[2]!.error).toEqual(new Error('load failed'));
      await tick();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
