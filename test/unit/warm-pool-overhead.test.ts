import { describe, expect, it } from 'vitest';
import { chargesHeld, ProcessOverhead } from '../../runtime/footprint';
import { WarmPool, type EvictionEvent } from '../../runtime/warm-pool';
import { deferred, recorder, spec } from '../support/warm-pool';

// Issue 12 §4: what a worker process holds beyond its warm pool's charges (WarmPool.setOverhead,
// measured by runtime/footprint.ts's ProcessOverhead). Idle models make room for it at admissions;
// only a load waits for it, and only with overheadWaitMs set, for that long at most. Every expected
// value is worked out by hand from the test's own steps.

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

describe('WarmPool.runBytes and tensorBytes: the charges chargesHeld counts', () => {
  it("a model counts once a call's lease on it has ended (not while it loads or runs, nor after a prewarm), at its charge as resized, and no longer once evicted", async () => {
    const { p } = pool(100);
    const a = await p.acquire(spec('a', 10));
    expect(p.runBytes).toBe(0);
    a.release();
    expect(p.runBytes).toBe(10);
    expect(await p.prewarm(spec('b', 20))).toBe(true);
    expect(p.runBytes).toBe(10);
    const b = await p.acquire(spec('b', 20));
    expect(p.runBytes).toBe(10); // in flight: its first run is under way
    b.release();
    expect(p.runBytes).toBe(30);
    p.resize('b', 25);
    expect(p.runBytes).toBe(35);
    p.drop('a', 'unload', 'test');
    expect(p.runBytes).toBe(25);
    expect(p.usedBytes).toBe(25);
  });

  it("a call's tensor bytes count from its admission until freed, as set changes them, without its growth reserve", async () => {
    const { p } = pool(100);
    const l = await p.acquire(spec('a', 10), undefined, { bytes: 6, growth: 4 });
    expect(p.tensorBytes).toBe(6);
    expect(p.callBytes).toBe(10);
    l.reservation.set(9);
    expect(p.tensorBytes).toBe(9);
    l.release(); // the growth reserve goes with the lease, the tensors stay
    expect(p.callBytes).toBe(9);
    expect(p.tensorBytes).toBe(9);
    l.reservation.free();
    expect(p.tensorBytes).toBe(0);
  });

  it('chargesHeld counts of the tensors what the buffers show, never below 0 nor past the bytes reserved', () => {
    const pool = { runBytes: 100, disposingBytes: 7, tensorBytes: 20 };
    expect(chargesHeld(pool, 5)).toBe(112);
    expect(chargesHeld(pool, 50)).toBe(127);
    expect(chargesHeld(pool, -30)).toBe(107);
  });
});

describe('ProcessOverhead', () => {
  function sampler() {
    const st = { rss: 100, charged: 0, started: false, settled: true, now: 0 };
    const set: number[] = [];
    const o = new ProcessOverhead({ rss: () => st.rss, charged: () => st.charged, started: () => st.started, settled: () => st.settled, set: (n) => set.push(n), now: () => st.now, riseMs: 1000 });
    return { st, set, o };
  }

  it('is the RSS less what the pool charges, above the same at rest (the latest sample before any charge, then the lowest while settled)', () => {
    const { st, set, o } = sampler();
    expect(o.sample()).toBe(0);
    st.rss = 105; // still at rest: idle follows it
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(105);
    st.started = true;
    st.rss = 150;
    st.charged = 30; // 120 uncharged: 15 above idle
    expect(o.sample()).toBe(15);
    st.rss = 120; // 90 uncharged, below idle, settled: the new idle
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(90);
    st.rss = 140;
    st.charged = 20; // 120 uncharged: 30 above idle (no time has passed: idle has not risen)
    expect(o.sample()).toBe(30);
    expect(set).toEqual([0, 0, 15, 0, 30]);
  });

  it('a sample while the pool is not settled never moves idle, however low', () => {
    const { st, o } = sampler();
    o.sample();
    st.started = true;
    st.settled = false;
    st.charged = 40; // 60 uncharged: a charge whose memory does not exist yet
    st.now = 500;
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(100);
    st.rss = 180; // 140 uncharged: 40 above idle, counted, and idle stays
    st.now = 1000;
    expect(o.sample()).toBe(40);
    expect(o.idleBytes).toBe(100);
  });

  it('after a settled dip, idle rises back toward the uncharged RSS by the time since the last sample over riseMs, never above rest', () => {
    const { st, o } = sampler();
    o.sample(); // rest: 100
    st.started = true;
    st.charged = 40; // a model charged 40 that holds 0 here: a dip to 60, while settled
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(60);
    st.charged = 0; // it went: 100 uncharged, 40 above idle
    st.now = 250; // a quarter of riseMs: idle closes a quarter of the gap (60 -> 70)
    expect(o.sample()).toBe(30);
    expect(o.idleBytes).toBe(70);
    st.settled = false;
    st.now = 500; // not settled: idle stays
    expect(o.sample()).toBe(30);
    expect(o.idleBytes).toBe(70);
    st.settled = true;
    st.rss = 200; // 200 uncharged: idle rises toward rest (100), not past it
    st.now = 1000; // half riseMs since the last sample: half the gap (70 -> 85)
    expect(o.sample()).toBe(115);
    expect(o.idleBytes).toBe(85);
    st.now = 5000; // more than riseMs: all the way
    expect(o.sample()).toBe(100);
    expect(o.idleBytes).toBe(100);
  });
});

describe('ProcessOverhead beside a real pool', () => {
  /**
   * A pool whose process holds `base` bytes plus the models actually loaded: a model's memory
   * exists once its (gated) load ends, while the pool charges it from its admission on.
   */
  function process_(base: number, disposal?: ReturnType<typeof deferred<void>>) {
    const { policy } = recorder();
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    const loaded = new Map<string, number>();
    const p = new WarmPool<string>({
      budgetBytes: 100,
      policy,
      now: () => 50,
      load: async (s) => {
        await gates.get(s.key)?.promise;
        loaded.set(s.key, s.sizeBytes);
        return s.key;
      },
      // Its memory goes as its disposal starts; the disposal ends when the test lets it.
      dispose: async (key) => {
        loaded.delete(key);
        await disposal?.promise;
      },
    });
    const rss = () => base + [...loaded.values()].reduce((a, b) => a + b, 0);
    // As a node samples it (no JS buffers here: the calls' tensors never exist).
    const o = new ProcessOverhead({ rss, charged: () => chargesHeld(p, 0), started: () => p.peakUsedBytes > 0, settled: () => p.settled, set: (n) => p.setOverhead(n) });
    return { p, o, gates };
  }

  it("an overhead the process holds is seen while a load is under way, and makes room at the next admission: a charge not yet held does not hide it", async () => {
    // As a mapped model's (runtime/mapped.ts): its memory exists once a call has run it, not at its load.
    const { policy } = recorder();
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    const touched = new Set<string>();
    const evicted: string[] = [];
    const p = new WarmPool<string>({ budgetBytes: 100, policy, now: () => 50, load: async (s) => (await gates.get(s.key)?.promise, s.key), onEvict: (e) => evicted.push(e.key) });
    const st = { kept: 0 };
    const rss = () => 1000 + st.kept + [...touched].length * 30;
    const o = new ProcessOverhead({ rss, charged: () => chargesHeld(p, 0), started: () => p.peakUsedBytes > 0, settled: () => p.settled, set: (n) => p.setOverhead(n) });
    expect(o.sample()).toBe(0);
    const a = await p.acquire(spec('a', 30));
    expect(p.runBytes).toBe(0); // loaded, not yet run
    expect(o.sample()).toBe(0);
    touched.add('a');
    a.release();
    expect(p.runBytes).toBe(30);
    expect(o.sample()).toBe(0);
    st.kept = 20; // malloc keeps 20 bytes of what a's run freed
    const gate = deferred<void>();
    gates.set('b', gate);
    const b = p.acquire(spec('b', 30));
    // b is charged (used 60) and holds nothing yet; RSS 1050 less a's 30: 20 over idle.
    expect(o.sample()).toBe(20);
    // c: 60 used + 30 + 20 overhead passes 100 by 10, so idle a goes (b is loading, not evictable).
    const c = await p.acquire(spec('c', 30));
    expect(evicted).toEqual(['a']);
    c.release();
    gate.resolve();
    (await b).release();
    expect(p.usedBytes).toBe(60);
  });

  it("a load charged before its memory exists leaves no overhead once it is done: the dip seen during it is not the idle figure", async () => {
    const { p, o, gates } = process_(1000);
    expect(o.sample()).toBe(0);
    const gate = deferred<void>();
    gates.set('a', gate);
    const a = p.acquire(spec('a', 30));
    // a is charged (30) but holds nothing yet: RSS less charges is 970, 30 below idle.
    expect(p.settled).toBe(false);
    expect(o.sample()).toBe(0);
    expect(o.sample()).toBe(0);
    gate.resolve();
    (await a).release();
    expect(p.settled).toBe(true);
    // 1030 RSS less 30 charged: idle again, no overhead.
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(1000);
    expect(p.overheadBytes).toBe(0);
  });

  it("a call's bytes reserved before its tensors exist leave no overhead once it is done", async () => {
    const { p, o } = process_(1000);
    o.sample();
    (await p.acquire(spec('a', 30))).release();
    expect(o.sample()).toBe(0);
    const call = await p.acquire(spec('a', 30), undefined, { bytes: 20 });
    // 20 charged for the call's tensors, none there yet: 950 uncharged.
    expect(p.settled).toBe(false);
    expect(o.sample()).toBe(0);
    call.release();
    expect(p.settled).toBe(false); // its tensors' bytes are still reserved
    call.reservation.free();
    expect(p.settled).toBe(true);
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(1000);
  });

  it("a pre-warmed model whose load held its memory (not a mapped artifact: heldAtLoad) is no overhead, though no call has run it; a mapped one's untouched pages are not counted", async () => {
    // As an original ONNX file's load: its weights are copied into memory as it loads.
    const { policy } = recorder();
    const loaded = new Map<string, number>();
    const evicted: string[] = [];
    const p = new WarmPool<string>({
      budgetBytes: 100,
      policy,
      now: () => 50,
      load: async (s) => (s.key.startsWith('mapped') || loaded.set(s.key, s.sizeBytes), s.key),
      heldAtLoad: (s) => !s.key.startsWith('mapped'),
      onEvict: (e) => evicted.push(e.key),
    });
    const rss = () => 1000 + [...loaded.values()].reduce((a, b) => a + b, 0);
    const o = new ProcessOverhead({ rss, charged: () => chargesHeld(p, 0), started: () => p.peakUsedBytes > 0, settled: () => p.settled, set: (n) => p.setOverhead(n) });
    expect(o.sample()).toBe(0);
    expect(await p.prewarm(spec('a', 40))).toBe(true);
    expect(await p.prewarm(spec('mapped-b', 30))).toBe(true);
    expect(p.runBytes).toBe(40);
    // RSS 1040 less a's 40 held: idle, no overhead (it read 40, a's memory counted twice).
    expect(o.sample()).toBe(0);
    // So c (30) fits beside both: 40 + 30 + 30 = 100, nothing evicted.
    (await p.acquire(spec('c', 30))).release();
    expect(evicted).toEqual([]);
  });

  it('a disposal under way (its memory gone, its bytes still charged) leaves no overhead once it ends', async () => {
    const gate = deferred<void>();
    const { p, o } = process_(1000, gate);
    o.sample();
    (await p.acquire(spec('a', 30))).release();
    p.drop('a', 'unload', 'test');
    // a's 30 bytes still count as disposing, its memory is gone: 970 uncharged.
    expect(p.disposingBytes).toBe(30);
    expect(p.settled).toBe(false);
    expect(o.sample()).toBe(0);
    gate.resolve();
    await p.clear();
    expect(p.settled).toBe(true);
    expect(o.sample()).toBe(0);
    expect(o.idleBytes).toBe(1000);
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

describe('WarmPool overheadWaitMs: a load waits for the overhead, bounded', () => {
  /** A pool on the real clock whose loads wait up to `overheadWaitMs` for the overhead. */
  function waiting(budgetBytes: number, overheadWaitMs: number, onOverheadWait?: () => void) {
    const { policy } = recorder();
    const evictions: EvictionEvent[] = [];
    const p = new WarmPool<string>({ budgetBytes, policy, overheadWaitMs, load: async (s) => s.key, onEvict: (e) => evictions.push(e), ...(onOverheadWait ? { onOverheadWait } : {}) });
    return { p, evictions };
  }
  const settle = () => new Promise((r) => setTimeout(r, 30));

  it("a call whose deadline passes while its load waits for the overhead is refused CACHE_BUSY and loads nothing (its caller has had the deadline's answer)", async () => {
    const loads: string[] = [];
    const p = new WarmPool<string>({ budgetBytes: 100, policy: recorder().policy, overheadWaitMs: 5000, load: async (s) => (loads.push(s.key), s.key) });
    const busy = await p.acquire(spec('busy', 50)); // in flight all along: no room is made for the overhead
    p.setOverhead(30); // 50 + 30 + x's 30 > 100: x waits
    const err = await p.acquire(spec('x', 30), Date.now() + 100).then(
      () => undefined,
      (e: unknown) => e,
    );
    busy.release();
    expect(err).toMatchObject({ code: 'CACHE_BUSY' });
    expect(loads).toEqual(['busy']);
  });

  it('a second call for a model whose load waits for the overhead takes that load when it starts, not at the end of its own wait', async () => {
    const p = new WarmPool<string>({ budgetBytes: 100, policy: recorder().policy, overheadWaitMs: 300, load: async (s) => s.key });
    const busy = await p.acquire(spec('busy', 50));
    p.setOverhead(30);
    const first = p.acquire(spec('x', 30)); // waits 300 ms, then loads beside the overhead
    await new Promise((r) => setTimeout(r, 200));
    let second: string | undefined;
    const secondDone = p.acquire(spec('x', 30)).then((l) => (second = l.value)); // its own wait would end 200 ms after the first's
    const a = await first;
    // The load has started (and here ended): the second caller shares it within a few turns.
    await new Promise((r) => setTimeout(r, 50));
    expect(second).toBe('x');
    a.release();
    await secondDone;
    busy.release();
    expect(p.list().filter((m) => m.key === 'x').length).toBe(1);
  });

  it('with a model in flight and no room beside it for the overhead, a load waits for that call to end, then evicts the idle model for the overhead and loads', async () => {
    const { p, evictions } = waiting(40, 5000);
    const a = await p.acquire(spec('a', 20));
    p.setOverhead(15);
    let loaded = false;
    const b = p.acquire(spec('b', 10)).then((l) => ((loaded = true), l));
    await settle();
    // 20 in flight + 10 + 15 overhead = 45 > 40: b waits (it would fit without the overhead).
    expect(loaded).toBe(false);
    expect(p.usedBytes).toBe(20);
    a.release();
    (await b).release();
    expect(keys(evictions)).toEqual(['a']);
    expect(p.list().map((m) => m.key)).toEqual(['b']);
    expect(p.overheadWaits).toMatchObject({ loads: 1, timedOut: 0, noRoom: 0 });
    expect(p.overheadWaits.ms).toBeGreaterThanOrEqual(20);
  });

  it('without it (overheadWaitMs 0, the default) the same load goes ahead at once beside the model in flight', async () => {
    const { p, evictions } = waiting(40, 0);
    const a = await p.acquire(spec('a', 20));
    p.setOverhead(15);
    (await p.acquire(spec('b', 10))).release();
    expect(p.usedBytes).toBe(30);
    expect(evictions).toEqual([]);
    a.release();
    expect(p.overheadWaits.loads).toBe(0);
  });

  it('onOverheadWait is called as the wait starts, and an overhead it lowers lets the load go at once; a lowered overhead also wakes a load already waiting', async () => {
    let asked = 0;
    const { p } = waiting(40, 5000, () => {
      asked++;
      if (asked === 1) p.setOverhead(5);
    });
    const a = await p.acquire(spec('a', 20));
    p.setOverhead(15);
    (await p.acquire(spec('b', 10))).release(); // 20 + 10 + 5 fit
    expect(asked).toBe(1);
    p.setOverhead(15);
    let loaded = false;
    const c = p.acquire(spec('c', 5)).then((l) => ((loaded = true), l));
    await settle();
    // 20 + 10 (b, idle: evicted for it) + 5 + 15 = 40: fits once b is gone, so c is in, without a wait.
    expect(loaded).toBe(true);
    expect(asked).toBe(1);
    (await c).release();
    p.setOverhead(30);
    const d = p.acquire(spec('d', 10)).then((l) => ((loaded = true), l));
    loaded = false;
    await settle();
    expect(loaded).toBe(false); // 20 (a, in flight) + 10 + 30 > 40
    expect(asked).toBe(2);
    const t1 = Date.now();
    p.setOverhead(10); // 20 + 10 + 10 = 40: woken at once, not at the end of its wait
    (await d).release();
    expect(Date.now() - t1).toBeLessThan(1000);
    a.release();
    expect(p.overheadWaits).toMatchObject({ loads: 2, timedOut: 0, noRoom: 0 });
  });

  it('past overheadWaitMs the load goes ahead with the overhead still there (counted timedOut)', async () => {
    const { p } = waiting(40, 60);
    const a = await p.acquire(spec('a', 20));
    p.setOverhead(15);
    const t0 = Date.now();
    (await p.acquire(spec('b', 10))).release();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
    expect(p.usedBytes).toBe(30);
    expect(p.overheadWaits).toMatchObject({ loads: 1, timedOut: 1, noRoom: 0 });
    a.release();
  });

  it('an overhead that leaves no room even with every unpinned model gone is not waited for (counted noRoom), and a call on a resident model never waits', async () => {
    const { p } = waiting(40, 5000);
    const a = await p.acquire(spec('a', 20));
    p.setOverhead(35);
    const t0 = Date.now();
    (await p.acquire(spec('b', 10))).release(); // 10 + 35 > 40 whatever goes
    const c = await p.acquire(spec('a', 20), undefined, { bytes: 5 }); // a is resident
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(p.overheadWaits).toMatchObject({ loads: 1, timedOut: 0, noRoom: 1 });
    c.release();
    c.reservation.free();
    a.release();
  });
});

describe('WarmPool reclaim (a node\'s parked sessions, runtime/parked.ts)', () => {
  it('an admission takes the overhead from what the owner lets go of first, evicts idle models only for the rest, and loads once that is free', async () => {
    const { policy, requests } = recorder();
    const evictions: EvictionEvent[] = [];
    const asked: number[] = [];
    let aside = 10;
    const freed = deferred<void>();
    const loads: string[] = [];
    const p = new WarmPool<string>({
      budgetBytes: 40,
      policy,
      now: () => 50,
      load: async (s) => (loads.push(s.key), s.key),
      onEvict: (e) => evictions.push(e),
      reclaim: (bytes) => {
        asked.push(bytes);
        const give = Math.min(bytes, aside);
        aside -= give;
        return { bytes: give, done: freed.promise };
      },
    });
    for (const k of ['a', 'b', 'c']) (await p.acquire(spec(k, 10))).release();
    p.setOverhead(15);
    const d = p.acquire(spec('d', 10));
    // 30 used + 10 for d + 15 overhead: 15 over; 10 of it let go, so only a goes (10 bytes), not a and b.
    expect(asked).toEqual([15]);
    expect(requests.map((r) => r.needBytes)).toEqual([5]);
    expect(keys(evictions)).toEqual(['a']);
    expect(p.overheadBytes).toBe(5);
    await new Promise((r) => setTimeout(r, 10));
    expect(loads).toEqual(['a', 'b', 'c']); // d waits for what was let go of to be free
    freed.resolve();
    (await d).release();
    expect(loads).toEqual(['a', 'b', 'c', 'd']);
    expect(p.list().map((m) => m.key)).toEqual(['b', 'c', 'd']);
  });
});
