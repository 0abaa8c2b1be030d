import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { admit, queuedBytes, release, releaseWith } from '../../queue/admission';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { modelKey } from '../../queue/dispatcher';
import { modelRefOf } from '../../functions/registry';
import { StatsOps } from '../../queue/writes';
import { mlpModel, slowModel } from '../../models/generate';
import { ort, runDirect, runMs } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';
import { monitor, type Monitored } from '../support/monitor';

/**
 * Admission by a function's queue depth (issue 12 §1): with MAX_QUEUED_PER_FUNCTION=5 and a node
 * that runs one call at a time, a burst of 20 calls of a slow function is 5 accepted (each answered,
 * right) and 15 refused with 429 QUEUE_FULL and Retry-After, while another function keeps being
 * served; the count comes back to zero on every path (answered, timed out, async), so the next
 * burst is admitted the same way.
 */
const LIMIT = 5;
/**
 * ~0.33 s of MatMuls on one thread of this session's machine (2048 × 256 × 256 × 256
 * multiply-adds), ~0.17 s twice as quick. A burst's first call runs at once, alone, with its
 * admission decided after its run: the run must outlast the admission of the whole burst, or that
 * call is admitted too (6 answered). 64 repeats ran in 71 ms here.
 */
const SLOW = slowModel({ rows: 2048, repeats: 256 });
/** A burst's whole admission (a few ms) fits in a run this long many times over. */
const BURST_RUN_MS = 100;
/**
 * The timeout of calls that time out waiting behind the holder (its 1 s wait for a batch partner):
 * all of a burst are admitted or refused before the first of them gives its place back at its
 * deadline, also on a machine twice as slow (30 ms was a few burst admissions' time), and all time
 * out well before the holder's 1 s is up.
 */
const QUEUED_TIMEOUT_MS = 300;
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };
const QUICK = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 6 });
const QUICK_IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const HOLDER = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 7 });
let b: TestBrulee;
let want: number[];
beforeAll(async () => {
  // Room for 10 KiB of inputs: more than the depth tests below ever queue (5 x 1 KiB of slow, 3 x 16 B of quick).
  b = await startBrulee({ MAX_QUEUED_PER_FUNCTION: String(LIMIT), MAX_QUEUED_INPUT_BYTES: '10KiB', WORKER_CONCURRENCY: '1', TRACE_RECORD: '1' });
  expect((await b.put('slow', SLOW)).status).toBe(201);
  expect((await b.put('quick', QUICK)).status).toBe(201);
  const direct = await runDirect(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) });
  want = Array.from(direct.y!.data as Float32Array);
  expect(await runMs(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) }), 'the slow model is too quick on this machine: raise its repeats').toBeGreaterThan(BURST_RUN_MS);
}, 60_000);
afterAll(() => b?.destroy());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const invoke = (fn: string, inputs: unknown, query = '') =>
  b.req(`/functions/${fn}/invoke${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs }) });

async function burst(n: number) {
  const rs = await Promise.all(Array.from({ length: n }, () => invoke('slow', SLOW_IN)));
  return Promise.all(rs.map(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as any })));
}

describe('admission by a function queue depth', () => {
  it('a burst of 20 is exactly 5 accepted and answered right, 15 refused 429 QUEUE_FULL with Retry-After; another function is served meanwhile; then the count is 0 again', async () => {
    for (let round = 0; round < 2; round++) {
      const slow = burst(20);
      // While slow is full, quick is admitted and answered (its own count).
      const quick = await Promise.all(Array.from({ length: 3 }, () => b.invoke('quick', QUICK_IN)));
      const rs = await slow;
      expect(quick.map((r) => r.status)).toEqual([200, 200, 200]);
      const ok = rs.filter((r) => r.status === 200);
      const refused = rs.filter((r) => r.status === 429);
      expect([ok.length, refused.length]).toEqual([LIMIT, 20 - LIMIT]);
      for (const r of ok) expect(r.body.outputs.y.data).toEqual(want);
      for (const r of refused) {
        expect(r.retryAfter).toBe('1');
        expect(r.body.error.code).toBe('QUEUE_FULL');
        expect(r.body.error.message).toMatch(/^function "slow" already has 5 invocations waiting or running, its limit \(MAX_QUEUED_PER_FUNCTION=5\)/);
      }
      // Each answer gave its place back before it was sent.
      expect(await b.dataPlane.queued('slow')).toBe(0);
      expect(await b.dataPlane.queued('quick')).toBe(0);
    }
    // The recorded trace (TRACE_RECORD) holds the calls admitted, not the refused ones: a replay
    // must not see load that never reached a node.
    const recorded = async () => {
      const rows = readFileSync(join(b.dataDir, 'traces', 'invocations.csv'), 'utf8').trim().split('\n').slice(1);
      return { slow: rows.filter((r) => r.endsWith(',slow')).length, quick: rows.filter((r) => r.endsWith(',quick')).length };
    };
    await until('the trace file to hold 16 rows', async () => { const r = await recorded(); return r.slow + r.quick >= 16; }, 5000);
    expect(await recorded()).toEqual({ slow: 2 * LIMIT, quick: 6 });
    // A refused call is never queued (admitted and queued in one script): the node ran exactly the
    // admitted ones, and nothing is left waiting.
    await sleep(300);
    const slowStats = (await b.json('GET', '/functions/slow')).body.stats;
    expect(slowStats.invocations).toBe(2 * LIMIT);
    expect((await b.json('GET', '/stats')).body.queue).toMatchObject({ waiting: 0, active: 0 });
  }, 120_000);

  it('calls that time out at the gateway give their places back', async () => {
    expect((await b.put('slow', SLOW, `timeoutMs=${QUEUED_TIMEOUT_MS}`)).status).toBe(200);
    // The node's one slot is held (a call waiting 1 s for a batch partner, without blocking the
    // process as a slow run would): the burst's calls are all admitted or refused before any runs.
    expect((await b.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBeLessThan(300);
    const holding = b.invoke('holder', QUICK_IN);
    try {
      await until('the holding call to run', async () => b.node!.here.running === 1);
      const rs = await burst(8);
      const statuses = rs.map((r) => r.status).sort();
      expect(statuses).toEqual([...Array(8 - LIMIT).fill(429), ...Array(LIMIT).fill(504)]);
      await until('the timed-out places to be given back', async () => (await b.dataPlane.queued('slow')) === 0, 5000);
      expect((await holding).status).toBe(200);
    } finally {
      expect((await b.put('slow', SLOW, 'timeoutMs=30000')).status).toBe(200);
    }
  }, 60_000);

  it('async calls hold their places until answered: of 8 at once, 5 are accepted and 3 refused, and after the answers there is room again', async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, () => invoke('slow', SLOW_IN, '?async=true')));
    expect(rs.map((r) => r.status).sort()).toEqual([202, 202, 202, 202, 202, 429, 429, 429]);
    const ids = await Promise.all(rs.filter((r) => r.status === 202).map(async (r) => ((await r.json()) as { id: string }).id));
    for (const id of ids) {
      await until(`async ${id} to complete`, async () => (await b.json('GET', `/invocations/${id}`)).body.status === 'completed', 60_000);
      expect((await b.json('GET', `/invocations/${id}`)).body.outputs.y.data).toEqual(want);
    }
    expect(await b.dataPlane.queued('slow')).toBe(0);
    expect((await invoke('slow', SLOW_IN, '?async=true')).status).toBe(202);
  }, 120_000);
});

/**
 * Admission by the input bytes waiting in Redis (MAX_QUEUED_INPUT_BYTES, all functions together):
 * with room for two calls of 4 KiB inputs, a burst of 6 is 2 answered and 4 refused 503
 * OVERLOADED; the count of bytes is exactly 0 again after the answers (given back in the node's
 * answer script), after a gateway timeout (given back by the gateway), after async answers, and
 * past a call's deadline (given back by the next admission).
 */
describe('admission by queued input bytes', () => {
  // 4 KiB of inputs per call ([1, 1024] float32), slow enough that a burst finds the first ones
  // queued: ~0.3 s on one thread here (4 repeats ran in 40 ms, 20 ms twice as quick).
  const WIDE = slowModel({ rows: 1024, width: 1024, repeats: 32, seed: 2 });
  const WIDE_IN = { x: { type: 'float32', dims: [1, 1024], data: Array.from({ length: 1024 }, (_, i) => (i % 17) / 17) } };
  let wideWant: Float32Array;
  beforeAll(async () => {
    expect((await b.put('wide', WIDE)).status).toBe(201);
    const x = { x: new ort.Tensor('float32', Float32Array.from(WIDE_IN.x.data), [1, 1024]) };
    wideWant = (await runDirect(WIDE, x)).y!.data as Float32Array;
    expect(await runMs(WIDE, x), 'the wide model is too quick on this machine: raise its repeats').toBeGreaterThan(BURST_RUN_MS);
  }, 60_000);
  const wideBurst = async (n: number, query = '') => {
    const rs = await Promise.all(Array.from({ length: n }, () => invoke('wide', WIDE_IN, query)));
    return Promise.all(rs.map(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as any })));
  };
  const refusedRight = (r: { status: number; retryAfter: string | null; body: any }) => {
    expect([r.status, r.retryAfter, r.body.error.code]).toEqual([503, '1', 'OVERLOADED']);
    expect(r.body.error.message).toMatch(/^the queues already hold (4096|8192) bytes of inputs waiting to run, and this call's 4096 more would pass the limit of 10240 \(MAX_QUEUED_INPUT_BYTES\)/);
  };

  it('a burst of 6 calls of 4 KiB is 2 answered right and 4 refused, twice; the bytes count is 0 after the answers', async () => {
    for (let round = 0; round < 2; round++) {
      const rs = await wideBurst(6);
      const ok = rs.filter((r) => r.status === 200);
      expect([ok.length, rs.length - ok.length]).toEqual([2, 4]);
      for (const r of ok) expect(Float32Array.from(r.body.outputs.y.data)).toEqual(wideWant);
      for (const r of rs.filter((x) => x.status !== 200)) refusedRight(r);
      expect(await b.dataPlane.queuedInputBytes()).toBe(0);
    }
  }, 120_000);

  it('calls that time out at the gateway give their bytes back', async () => {
    expect((await b.put('wide', WIDE, `timeoutMs=${QUEUED_TIMEOUT_MS}`)).status).toBe(200);
    // As for the depth: the node's one slot is held, so the burst is admitted or refused before any runs.
    expect((await b.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBeLessThan(300);
    const holding = b.invoke('holder', QUICK_IN);
    try {
      await until('the holding call to run', async () => b.node!.here.running === 1);
      const rs = await wideBurst(4);
      expect(rs.map((r) => r.status).sort()).toEqual([503, 503, 504, 504]);
      await until('the timed-out bytes to be given back', async () => (await b.dataPlane.queuedInputBytes()) === 0, 5000);
      expect((await holding).status).toBe(200);
    } finally {
      expect((await b.put('wide', WIDE, 'timeoutMs=30000')).status).toBe(200);
    }
  }, 60_000);

  it('async calls hold their bytes until answered: of 4 at once, 2 are accepted and 2 refused; then the count is 0', async () => {
    const rs = await wideBurst(4, '?async=true');
    expect(rs.map((r) => r.status).sort()).toEqual([202, 202, 503, 503]);
    for (const r of rs.filter((x) => x.status === 503)) refusedRight(r);
    for (const { body } of rs.filter((r) => r.status === 202)) {
      await until(`async ${body.id} to complete`, async () => (await b.json('GET', `/invocations/${body.id}`)).body.status === 'completed', 60_000);
    }
    expect(await b.dataPlane.queuedInputBytes()).toBe(0);
  }, 120_000);
});

/** Invokes `fn` on `c` (QUICK_IN) under MONITOR: its answer, and the commands run on its depth set meanwhile. */
async function invokeWatched(c: TestBrulee, redis: ReturnType<typeof createRedis>, fn: string) {
  const set = keys(c.namespace).admitted(fn);
  const seen: Monitored[] = [];
  const mon = await monitor(inject('redisUrl'), (m) => seen.push(m));
  try {
    const r = await c.invoke(fn, QUICK_IN);
    // Its echo marks the end of what MONITOR has to show.
    const end = `${set}:end`;
    await redis.set(end, '1');
    await until('MONITOR shows the marker', () => seen.some((m) => m.args[0] === 'set' && m.args[1] === end), 5000);
    return { r, onSet: seen.filter((m) => m.args[1] === set).map((m) => m.args[0]!.toLowerCase()) };
  } finally {
    mon.stop();
  }
}

describe('admission of a call run in the process that admits it (ROLE=all)', () => {
  let c: TestBrulee;
  const redis = createRedis(inject('redisUrl'));
  beforeAll(async () => {
    c = await startBrulee({ MAX_QUEUED_PER_FUNCTION: '2', WORKER_CONCURRENCY: '2' });
    expect((await c.put('quick', QUICK)).status).toBe(201);
    expect((await c.invoke('quick', QUICK_IN)).status).toBe(200); // warm
  }, 60_000);
  afterAll(async () => {
    await c?.destroy();
    redis.disconnect();
  });
  /** The node's /metrics of `fn`: invocations answered, loads, cold starts, warm hits. */
  const fnMetrics = async (fn: string) => {
    const text = await (await c.req('/metrics')).text();
    const m = (re: string) => Number(new RegExp(`^${re} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const f = `function="${fn}"`;
    return { ok: m(`brulee_invocations_total\\{${f},outcome="ok"\\}`), loads: m(`brulee_model_loads_total\\{${f}\\}`), cold: m(`brulee_cold_starts_total\\{${f}\\}`), warm: m(`brulee_warm_hits_total\\{${f}\\}`) };
  };
  const metric = async (name: string) => {
    const text = await (await c.req('/metrics')).text();
    return Number(new RegExp(`^${name}\\{function="quick"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  };

  it('a call that ran while its admission was decided, and was refused, is a 429 and counted nowhere: not in /stats, not in /metrics', async () => {
    const k = keys(c.namespace);
    // The warm-up call's place is back (read through the node's process, which sends the counts it
    // holds after an answer first: queue/held-writes.ts; this test's own connection is another client).
    expect(await c.dataPlane.queued('quick')).toBe(0);
    // The function's two places are taken (by calls elsewhere in the cluster, as it were) while
    // this node has both slots free: the call starts at once, beside its admission.
    const held = await Promise.all(['a', 'b'].map((member) => admit(redis, { keys: { depth: k.admitted('quick'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member, limits: { depth: 2, bytes: 0 }, bytes: 0, holdMs: 60_000 })));
    expect(held.map((h) => h.admitted)).toEqual([true, true]);
    expect(c.node!.canRunNow(modelKey(modelRefOf(await c.dataPlane.get('quick'))), false)).toBe(true);
    const before = { stats: (await c.json('GET', '/functions/quick')).body.stats, ok: await metric('brulee_invocations_total'), warm: await metric('brulee_warm_hits_total') };
    const r = await c.invoke('quick', QUICK_IN);
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe('QUEUE_FULL');
    const after = { stats: (await c.json('GET', '/functions/quick')).body.stats, ok: await metric('brulee_invocations_total'), warm: await metric('brulee_warm_hits_total') };
    expect(after).toEqual(before);
    expect(await c.dataPlane.queued('quick')).toBe(2);
    for (const h of held) if (h.admitted) await release(redis, h.ticket);
    // Admitted again, it runs and counts once, everywhere.
    const ok = await c.invoke('quick', QUICK_IN);
    expect(ok.status).toBe(200);
    const last = { stats: (await c.json('GET', '/functions/quick')).body.stats, ok: await metric('brulee_invocations_total'), warm: await metric('brulee_warm_hits_total') };
    expect([last.stats.invocations - before.stats.invocations, last.stats.warmHits - before.stats.warmHits, last.ok - before.ok, last.warm - before.warm]).toEqual([1, 1, 1, 1]);
    expect(await c.dataPlane.queued('quick')).toBe(0);
  });

  it('a lone call of a model not resident, whose load evicts nothing, is admitted after its load and run in the one script that counts it: no place taken, outputs onnxruntime\'s, counted once everywhere', async () => {
    const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 11 });
    expect((await c.put('lonecold', bytes)).status).toBe(201);
    const key = modelKey(modelRefOf(await c.dataPlane.get('lonecold')));
    expect(c.node!.pool.has(key)).toBe(false);
    const loads = c.node!.info().loads;
    const { r, onSet } = await invokeWatched(c, redis, 'lonecold');
    expect(r.status).toBe(200);
    expect(r.body.coldStart).toBe(true);
    const direct = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
    expect(r.body.outputs.y.data).toEqual(Array.from(direct.y!.data as Float32Array));
    // Admitted by the script that counted it (its depth set cleaned and counted there), never given a place.
    expect(onSet).toContain('zcard');
    expect(onSet).not.toContain('zadd');
    expect((await c.json('GET', '/functions/lonecold')).body.stats).toMatchObject({ invocations: 1, loads: 1, coldStarts: 1, warmHits: 0 });
    expect(await fnMetrics('lonecold')).toEqual({ ok: 1, loads: 1, cold: 1, warm: 0 });
    expect(c.node!.info().loads).toBe(loads + 1);
    expect(await c.dataPlane.queued('lonecold')).toBe(0);
  });

  it('a refused lone call of a model not resident leaves no trace of its load (taken back): 429, nothing resident, nothing counted', async () => {
    expect((await c.put('cold', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 9 }))).status).toBe(201);
    const k = keys(c.namespace);
    const held = await Promise.all(['a', 'b'].map((member) => admit(redis, { keys: { depth: k.admitted('cold'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member, limits: { depth: 2, bytes: 0 }, bytes: 0, holdMs: 60_000 })));
    const key = modelKey(modelRefOf(await c.dataPlane.get('cold')));
    expect(c.node!.pool.list().map((m) => m.key)).not.toContain(key);
    const loads = c.node!.info().loads;
    const r = await c.invoke('cold', QUICK_IN);
    expect(r.status).toBe(429);
    expect(c.node!.pool.list().map((m) => m.key)).not.toContain(key);
    expect(c.node!.info().loads).toBe(loads);
    expect((await c.json('GET', '/functions/cold')).body.stats).toMatchObject({ invocations: 0, loads: 0, coldStarts: 0 });
    expect(await fnMetrics('cold')).toEqual({ ok: 0, loads: 0, cold: 0, warm: 0 });
    for (const h of held) if (h.admitted) await release(redis, h.ticket);
  });

  it('a refused lone cold call whose load another call used meanwhile: the load stays, counted once (apart), the other call counted once, the refused one nowhere', async () => {
    // ~0.33 s here (SLOW's work): A's run must outlast B's admission and the two places below.
    const bytes = slowModel({ rows: 2048, repeats: 256, seed: 31 });
    expect((await c.put('shared', bytes)).status).toBe(201);
    const k = keys(c.namespace);
    const key = modelKey(modelRefOf(await c.dataPlane.get('shared')));
    const loads = c.node!.info().loads;
    // A: alone, so it runs (and loads) before its admission is decided.
    const a = c.invoke('shared', SLOW_IN);
    let aDone = false;
    void a.then(() => (aDone = true));
    while (!c.node!.pool.list().some((m) => m.key === key)) await new Promise((r) => setImmediate(r));
    // B: not alone, so admitted first (a place), then it waits for A's load (4 runs of 4 at load 9-11)
    // or, were it slower, takes the model A loaded: counted the same either way.
    const b = c.invoke('shared', SLOW_IN);
    await until('B holds a place', async () => (await c.dataPlane.queued('shared')) === 1);
    // The function is full before A is decided (A's run is long): A is refused after its run.
    const held = await Promise.all(['x', 'y'].map((member) => admit(redis, { keys: { depth: k.admitted('shared'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member, limits: { depth: 10, bytes: 0 }, bytes: 0, holdMs: 60_000 })));
    expect(aDone, "A's run ended before the function was full: a quicker machine than this test's model allows").toBe(false);
    const [ra, rb] = await Promise.all([a, b]);
    expect([ra.status, rb.status]).toEqual([429, 200]);
    expect(ra.body.error.code).toBe('QUEUE_FULL');
    const direct = await runDirect(bytes, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) });
    expect(rb.body.outputs.y.data).toEqual(Array.from(direct.y!.data as Float32Array));
    const cold = rb.body.coldStart ? 1 : 0;
    // B used the model: it stays, and its load (A's) is counted once, as B's cold start or warm hit is.
    expect(c.node!.pool.has(key)).toBe(true);
    await until('counted', async () => (await c.json('GET', '/functions/shared')).body.stats.loads === 1);
    expect((await c.json('GET', '/functions/shared')).body.stats).toMatchObject({ invocations: 1, loads: 1, coldStarts: cold, warmHits: 1 - cold, failures: 0 });
    expect(await fnMetrics('shared')).toEqual({ ok: 1, loads: 1, cold, warm: 1 - cold });
    expect(c.node!.info().loads).toBe(loads + 1);
    expect(await c.dataPlane.queued('shared')).toBe(2);
    for (const h of held) if (h.admitted) await release(redis, h.ticket);
  }, 60_000);
});

describe('a lone call whose load would evict (ROLE=all)', () => {
  let c: TestBrulee;
  const redis = createRedis(inject('redisUrl'));
  const MiB = 1024 * 1024;
  beforeAll(async () => {
    c = await startBrulee({ MAX_QUEUED_PER_FUNCTION: '2', WORKER_CONCURRENCY: '2', MEMORY_BUDGET: '1GiB' });
    // Charged 600 MiB each (as given): one of them fits in the budget, not both.
    for (const [fn, seed] of [['big1', 21], ['big2', 22]] as const) expect((await c.put(fn, mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed }), `memoryBytes=${600 * MiB}`)).status).toBe(201);
    expect((await c.invoke('big1', QUICK_IN)).status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await c?.destroy();
    redis.disconnect();
  });

  it('is admitted before its load: refused, it evicts nothing and loads nothing; admitted, it takes a place, evicts, and answers right', async () => {
    const k = keys(c.namespace);
    const key = async (fn: string) => modelKey(modelRefOf(await c.dataPlane.get(fn)));
    const [k1, k2] = [await key('big1'), await key('big2')];
    expect([c.node!.pool.has(k1), c.node!.pool.has(k2)]).toEqual([true, false]);
    const held = await Promise.all(['a', 'b'].map((member) => admit(redis, { keys: { depth: k.admitted('big2'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member, limits: { depth: 2, bytes: 0 }, bytes: 0, holdMs: 60_000 })));
    const loads = c.node!.info().loads;
    const r = await c.invoke('big2', QUICK_IN);
    expect(r.status).toBe(429);
    expect([c.node!.pool.has(k1), c.node!.pool.has(k2)]).toEqual([true, false]);
    expect(c.node!.info().loads).toBe(loads);
    expect((await c.json('GET', '/functions/big1')).body.stats).toMatchObject({ evictions: 0 });
    expect((await c.json('GET', '/functions/big2')).body.stats).toMatchObject({ invocations: 0, loads: 0 });
    for (const h of held) if (h.admitted) await release(redis, h.ticket);
    const { r: ok, onSet } = await invokeWatched(c, redis, 'big2');
    expect(ok.status).toBe(200);
    const direct = await runDirect(mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 22 }), { x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
    expect(ok.body.outputs.y.data).toEqual(Array.from(direct.y!.data as Float32Array));
    expect(onSet).toContain('zadd');
    expect([c.node!.pool.has(k1), c.node!.pool.has(k2)]).toEqual([false, true]);
    expect((await c.json('GET', '/functions/big2')).body.stats).toMatchObject({ invocations: 1, loads: 1, coldStarts: 1 });
    expect(await c.dataPlane.queued('big2')).toBe(0);
  });
});

describe('queue/admission.ts, directly', () => {
  const redis = createRedis(inject('redisUrl'));
  afterAll(() => redis.disconnect());
  const keys = { depth: `admission-test:${process.pid}:fn`, bytes: `admission-test:${process.pid}:bytes`, bytesTotal: `admission-test:${process.pid}:total` };

  it('counts bytes exactly: admitted up to the limit, refused past it, given back once by any path, and at the deadline', async () => {
    const limits = { depth: 0, bytes: 1000 };
    const a = await admit(redis, { keys, member: 'a', limits, bytes: 600, holdMs: 60_000 });
    const big = await admit(redis, { keys, member: 'big', limits, bytes: 500, holdMs: 60_000 });
    const b2 = await admit(redis, { keys, member: 'b', limits, bytes: 400, holdMs: 60_000 });
    expect([a.admitted, big, b2.admitted]).toEqual([true, { admitted: false, full: 'bytes', queuedBytes: 600 }, true]);
    expect(await queuedBytes(redis, keys)).toBe(1000);
    if (!a.admitted || !b2.admitted) throw new Error('unreachable');
    // Given back twice (the gateway, then the node's answer script): counted once.
    await release(redis, a.ticket);
    await release(redis, a.ticket);
    expect(await queuedBytes(redis, keys)).toBe(400);
    const ops = new StatsOps();
    releaseWith(ops, b2.ticket);
    expect(ops.args).toEqual(['GIVEBACK', 1, 'b:400', 2]);
    await release(redis, b2.ticket);
    expect(await queuedBytes(redis, keys)).toBe(0);
    // A call alone in the queue is admitted whatever its size.
    const huge = await admit(redis, { keys, member: 'huge', limits, bytes: 5000, holdMs: 1 });
    expect(huge.admitted).toBe(true);
    expect(await queuedBytes(redis, keys)).toBe(5000);
    await new Promise((r) => setTimeout(r, 20));
    // Past its deadline it no longer counts: the next admission gives its bytes back.
    expect((await admit(redis, { keys, member: 'c', limits, bytes: 700, holdMs: 60_000 })).admitted).toBe(true);
    expect(await queuedBytes(redis, keys)).toBe(700);
    if (huge.admitted) await release(redis, huge.ticket);
    expect(await queuedBytes(redis, keys)).toBe(700);
    await redis.del(keys.depth, keys.bytes, keys.bytesTotal);
  });
});
