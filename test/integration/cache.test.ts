import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { refreshPopularity } from '../../runtime/popularity';
import { mlpForBytes, mlpModel, slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { asFloat32, directJson, ort, runMs } from '../support/models';

const redis = createRedis(inject('redisUrl'));
afterAll(() => redis.disconnect());

let b: TestBrulee | undefined;
afterEach(async () => {
  await b?.destroy();
  b = undefined;
});

const MB = 1_000_000;
const x4 = { x: { type: 'float32', dims: [1, 64], data: new Array(64).fill(0.5) } };

async function refresh(t: TestBrulee) {
  const share = await refreshPopularity(redis, keys(t.namespace), Date.now(), 300_000);
  expect(share).toBeDefined();
  await t.node!.reloadPopularity();
  return share!;
}

/**
 * A (popular, expensive to load) and B (rarely used, cheap to load) are resident; C needs room
 * for one. Every model is charged 10 MB (memoryBytes) so only popularity and load cost differ.
 * B was used last, so LRU evicts A; CremeBrulee keeps A and evicts B.
 */
async function evictionScenario(policy: string) {
  b = await startBrulee({ MEMORY_BUDGET: '25MB', EVICTION_POLICY: policy });
  const expensive = await b.put('popular-expensive', mlpForBytes(30 * MB, 1), `memoryBytes=${10 * MB}`);
  const cheap = await b.put('rare-cheap', mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed: 2 }), `memoryBytes=${10 * MB}`);
  await b.put('newcomer', mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed: 3 }), `memoryBytes=${10 * MB}`);
  expect(expensive.body.profile.loadMs).toBeGreaterThan(cheap.body.profile.loadMs * 3);
  for (let i = 0; i < 10; i++) expect((await b.invoke('popular-expensive', x4)).status).toBe(200);
  expect((await b.invoke('rare-cheap', x4)).status).toBe(200);
  const share = await refresh(b);
  expect(share['popular-expensive']).toBeCloseTo(10 / 11, 5);
  expect(share['rare-cheap']).toBeCloseTo(1 / 11, 5);
  const r = await b.invoke('newcomer', x4);
  expect(r.status).toBe(200);
  expect(r.body.coldStart).toBe(true);
  const stats = (await b.json('GET', '/stats')).body;
  expect(stats.nodes[0].usedBytes).toBeLessThanOrEqual(25 * MB);
  expect(stats.recentEvictions).toHaveLength(1);
  return { evicted: stats.recentEvictions[0], resident: b.node!.pool.list().map((m) => m.fn).sort(), stats };
}

describe('warm pool under a budget', () => {
  it('CremeBrulee evicts the rarely used, cheap-to-reload model before the popular, expensive one', async () => {
    const { evicted, resident, stats } = await evictionScenario('cremebrulee');
    expect(evicted).toMatchObject({ fn: 'rare-cheap', cause: 'policy' });
    expect(evicted.reason).toMatch(/utility/);
    expect(resident).toEqual(['newcomer', 'popular-expensive']);
    expect(stats.functions['rare-cheap']).toMatchObject({ evictions: 1, resident: false });
    expect(stats.functions['popular-expensive']).toMatchObject({ evictions: 0, resident: true, invocations: 10, loads: 1 });
    expect(stats.functions['popular-expensive'].popularity).toBeCloseTo(10 / 11, 5);
  });

  it('CremeBrulee evicts the popular model that is cheap to reload, not the rarely used one that is costly (popularity alone picks the other)', async () => {
    b = await startBrulee({ MEMORY_BUDGET: '25MB', EVICTION_POLICY: 'cremebrulee' });
    const costly = await b.put('rare-costly', mlpForBytes(30 * MB, 7), `memoryBytes=${10 * MB}`);
    const cheap = await b.put('popular-cheap', mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed: 8 }), `memoryBytes=${10 * MB}`);
    await b.put('newcomer', mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed: 9 }), `memoryBytes=${10 * MB}`);
    // rare-costly gets 2 calls, popular-cheap n > 2: popularity alone evicts rare-costly. n is
    // chosen from the measured load times (a mapped artifact loads a 30 MB model fast), so that
    // the load cost outweighs the popularity ratio n/2 at least twice over.
    const ratio = costly.body.profile.loadMs / cheap.body.profile.loadMs;
    expect(ratio, 'the 30 MB model must load over 3x slower than the tiny one for this test to mean anything').toBeGreaterThan(3);
    const n = Math.max(3, Math.floor(ratio));
    for (let i = 0; i < 2; i++) expect((await b.invoke('rare-costly', x4)).status).toBe(200);
    for (let i = 0; i < n; i++) expect((await b.invoke('popular-cheap', x4)).status).toBe(200);
    const share = await refresh(b);
    expect(share['popular-cheap']).toBeCloseTo(n / (n + 2), 5);
    expect(share['rare-costly']).toBeCloseTo(2 / (n + 2), 5);
    expect((await b.invoke('newcomer', x4)).status).toBe(200);
    const stats = (await b.json('GET', '/stats')).body;
    expect(stats.recentEvictions).toHaveLength(1);
    expect(stats.recentEvictions[0]).toMatchObject({ fn: 'popular-cheap', cause: 'policy' });
    const pop = (n / (n + 2)).toFixed(4).replace('.', '\\.');
    expect(stats.recentEvictions[0].reason).toMatch(new RegExp(`^utility \\S+ lowest \\(popularity ${pop}, load \\d+\\.\\d ms, 10000000 B\\)$`));
    expect(b.node!.pool.list().map((m) => m.fn).sort()).toEqual(['newcomer', 'rare-costly']);
  }, 180_000); // registers and profiles a 30 MB model: slow on a shared machine

  it('LRU, on the same sequence, evicts the popular, expensive model instead', async () => {
    const { evicted, resident } = await evictionScenario('lru');
    expect(evicted).toMatchObject({ fn: 'popular-expensive', cause: 'policy' });
    expect(resident).toEqual(['newcomer', 'rare-cheap']);
  });

  it('never evicts a pinned model', async () => {
    b = await startBrulee({ MEMORY_BUDGET: '25MB', EVICTION_POLICY: 'lru' });
    const small = (seed: number) => mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed });
    await b.put('pinned', small(10), `memoryBytes=${10 * MB}&pinned=true`);
    await b.put('other', small(11), `memoryBytes=${10 * MB}`);
    await b.put('third', small(12), `memoryBytes=${10 * MB}`);
    await b.invoke('pinned', x4); // least recently used, but pinned
    await b.invoke('other', x4);
    await b.invoke('third', x4);
    const resident = b.node!.pool.list().map((m) => m.fn).sort();
    expect(resident).toEqual(['pinned', 'third']);
  });

  it('cremebrulee-plus prefetches into freed memory: after a deletion, the evicted model is back before its next call', async () => {
    b = await startBrulee({ MEMORY_BUDGET: '25MB', EVICTION_POLICY: 'cremebrulee-plus' });
    const small = (seed: number) => mlpModel({ inputSize: 64, hidden: [8], outputSize: 16, seed });
    for (const [i, name] of ['first', 'second', 'doomed'].entries()) await b.put(name, small(20 + i), `memoryBytes=${10 * MB}`);
    for (let i = 0; i < 3; i++) {
      for (const name of ['first', 'second']) expect((await b.invoke(name, x4)).status).toBe(200);
    }
    expect((await b.invoke('doomed', x4)).status).toBe(200);
    const evictions = (await b.json('GET', '/stats')).body.recentEvictions;
    expect(evictions).toHaveLength(1);
    const evicted: string = evictions[0].fn;
    expect(['first', 'second']).toContain(evicted);
    // Deleting a function frees its 10 MB; the node's periodic check (every second; the policy
    // prefetches at most every 5 s) loads the evicted model back into it.
    expect((await b.json('DELETE', '/functions/doomed')).status).toBe(200);
    const resident = () => b!.node!.pool.list().some((m) => m.fn === evicted && m.state === 'resident');
    for (let t = 0; t < 100 && !resident(); t++) await new Promise((r) => setTimeout(r, 100));
    expect(resident()).toBe(true);
    const r = await b.invoke(evicted, x4);
    expect(r.body.coldStart).toBe(false);
    expect(asFloat32(r.body.outputs)).toEqual(await directJson(small(evicted === 'first' ? 20 : 21), x4));
    const fn = (await b.json('GET', '/stats')).body.functions[evicted];
    expect(fn).toMatchObject({ invocations: 4, loads: 2, prewarms: 1, coldStarts: 1, warmHits: 3, evictions: 1 });
    const metrics = await (await b.req('/metrics')).text();
    expect(metrics).toContain(`brulee_prewarms_total{function="${evicted}",by="policy"} 1`);
    // Unloading the other one on request frees 15 MB in all: room for it and for the deleted
    // function, which were both known. Neither comes back ahead of demand, over more than one
    // prefetch period.
    const other = evicted === 'first' ? 'second' : 'first';
    expect((await b.json('POST', `/v2/repository/models/${other}/unload`)).status).toBe(200);
    expect(b.node!.pool.budgetBytes - b.node!.pool.usedBytes).toBe(15 * MB);
    await new Promise((r) => setTimeout(r, 6000));
    expect(b.node!.pool.list().map((m) => m.fn)).toEqual([evicted]);
  });

  it('50 concurrent invocations of an unloaded model cause exactly one load; stats and metrics match what was sent', async () => {
    b = await startBrulee();
    const bytes = mlpForBytes(5 * MB, 4);
    await b.put('burst', bytes);
    const results = await Promise.all(Array.from({ length: 50 }, () => b!.invoke('burst', x4)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const want = await directJson(bytes, x4);
    for (const r of results) expect(asFloat32(r.body.outputs)).toEqual(want);
    const cold = results.filter((r) => r.body.coldStart).length;
    expect(cold).toBeGreaterThanOrEqual(1);

    const fn = (await b.json('GET', '/stats')).body.functions.burst;
    expect(fn).toMatchObject({ invocations: 50, loads: 1, coldStarts: cold, warmHits: 50 - cold, failures: 0 });
    expect(fn.execMs.samples).toBe(50);
    expect(fn.loadMs.samples).toBe(1);

    const metrics = await (await b.req('/metrics')).text();
    const metric = (line: string) => Number(metrics.split('\n').find((l) => l.startsWith(line))?.split(' ').pop());
    expect(metric('brulee_model_loads_total{function="burst"}')).toBe(1);
    expect(metric('brulee_invocations_total{function="burst",outcome="ok"}')).toBe(50);
    expect(metric('brulee_cold_starts_total{function="burst"}')).toBe(cold);
    expect(metric('brulee_warm_hits_total{function="burst"}')).toBe(50 - cold);
    expect(metric('brulee_exec_seconds_count{function="burst"}')).toBe(50);
    expect(metric('brulee_model_load_seconds_count{function="burst"}')).toBe(1);
    expect(metric(`brulee_cache_budget_bytes{node="${b.node!.id}"}`)).toBe(2 * 1024 ** 3);
    expect(metric(`brulee_cache_used_bytes{node="${b.node!.id}"}`)).toBe(b.node!.pool.usedBytes);
    expect(metric('brulee_queue_depth{state="waiting"}')).toBe(0);
  });

  it('an explicit unload keeps what the node measured of the model: its reload runs unmeasured, beside other calls; other session options are measured again', async () => {
    b = await startBrulee();
    const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 5 });
    await b.put('kept', bytes);
    const want = await directJson(bytes, x4);
    const inBytes = 64 * 4;
    // Its first load and first three runs are measured (runtime/footprint.ts).
    for (let i = 0; i < 3; i++) expect(asFloat32((await b.invoke('kept', x4)).body.outputs)).toEqual(want);
    const fp = b.node!.footprints;
    const key = b.node!.pool.list().find((m) => m.fn === 'kept')!.key;
    const measured = fp.measured(key);
    expect(fp.measures(key, inBytes)).toBe(false);
    const unload = async () => {
      expect((await b!.json('POST', '/v2/repository/models/kept/unload')).status).toBe(200);
      expect(b!.node!.pool.has(key)).toBe(false);
    };
    await unload();
    expect([fp.measured(key), fp.measures(key, inBytes)]).toEqual([measured, false]);
    const r = await b.invoke('kept', x4);
    expect([r.status, r.body.coldStart]).toEqual([200, true]);
    expect(asFloat32(r.body.outputs)).toEqual(want);
    expect([fp.measured(key), fp.measures(key, inBytes)]).toEqual([measured, false]);
    // The same bytes under other session options (the same key): its next load is measured again.
    expect((await b.put('kept', bytes, 'arena=false')).status).toBe(200);
    await unload();
    const again = await b.invoke('kept', x4);
    expect([again.status, again.body.coldStart]).toEqual([200, true]);
    expect(asFloat32(again.body.outputs)).toEqual(want);
    expect(fp.measures(key, inBytes)).toBe(true);
    const stats = (await b.json('GET', '/stats')).body.functions.kept;
    expect(stats).toMatchObject({ invocations: 5, loads: 3, coldStarts: 3, warmHits: 2 });
  });

  it('refuses a model larger than every node budget at registration, with a clear error', async () => {
    b = await startBrulee({ MEMORY_BUDGET: '1MB' });
    const r = await b.put('huge', mlpForBytes(3 * MB, 5));
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe('MODEL_TOO_LARGE');
    expect(r.body.error.message).toMatch(/MEMORY_BUDGET/);
    expect((await b.json('GET', '/functions/huge')).status).toBe(404);
    expect((await b.json('GET', '/healthz')).status).toBe(200);
  });

  it('answers 504 when an invocation outlives the function timeout', async () => {
    // Its run alone takes ~37 ms on one thread here (8 192 rows through 128 MatMuls of 64x64):
    // past a 1 ms timeout on a machine many times quicker. (1 024 rows through 8 took 0.3 ms: the
    // call ended 4 ms past its deadline here, its cold start and the trip doing most of it.) A 30 MB
    // model (3 s more to generate and register) outlives 1 ms no better.
    const slow = slowModel({ rows: 8192, width: 64, repeats: 128 });
    expect(await runMs(slow, { x: new ort.Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) }), 'the slow model is too quick on this machine: raise its repeats').toBeGreaterThan(10);
    b = await startBrulee();
    await b.put('slow', slow, 'timeoutMs=1');
    const r = await b.invoke('slow', x4);
    expect(r.status).toBe(504);
    expect(r.body.error.code).toBe('TIMEOUT');
  });
});
