import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';
import type { Dispatcher } from '../../queue/dispatcher';
import { modelRefOf, type FunctionRegistry } from '../../functions/registry';

const all: TestBrulee[] = [];
const redis = createRedis(inject('redisUrl'));
afterAll(async () => {
  for (const b of all) await b.destroy();
  redis.disconnect();
});

const model = (seed: number) => mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed });
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const seriesOf = async (b: TestBrulee, fn: string) => (await (await b.req('/metrics')).text()).split('\n').filter((l) => l.includes(`function="${fn}"`));

it("a call in flight at its function's deletion puts back neither its /metrics series nor its counts, and a name registered again starts at zero", async () => {
  const b = await startBrulee();
  all.push(b);
  // Its calls wait up to 1 s in the batcher for a second row: the deletion comes while one waits.
  expect((await b.put('inflight', model(7), 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('inflight', x)).status).toBe(200);
  const held = b.invoke('inflight', x);
  // Waited for (inside its 1 s wait in the batcher), not a fixed 200 ms: a slower or loaded machine
  // may take longer to get it there.
  await until('the call to wait in the batcher', () => b.node!.pool.list().find((m) => m.fn === 'inflight')?.inFlight === 1, 800);
  expect((await b.json('DELETE', '/functions/inflight')).status).toBe(200);
  expect((await held).status).toBe(200);
  // Its counts went on the process's Redis connection before its answer: a read after it sees them.
  expect((await b.json('GET', '/stats')).status).toBe(200);
  // Its model was evicted (as `deleted`) when the held call ended; nothing of the function is left.
  expect(b.node!.pool.list()).toEqual([]);
  expect(await seriesOf(b, 'inflight')).toEqual([]);
  expect(await redis.keys(`${b.namespace}:*inflight*`)).toEqual([]);
  expect(await redis.hget(`${b.namespace}:pop:counts`, 'inflight')).toBeNull();
  // Registered again, it starts from zero (it showed invocations: 1, loads 1 in /metrics).
  expect((await b.put('inflight', model(7), 'timeoutMs=60000')).status).toBe(201);
  expect((await b.json('GET', '/functions/inflight')).body.stats).toMatchObject({ invocations: 0, loads: 0, coldStarts: 0, warmHits: 0, executions: 0 });
  const lines = await seriesOf(b, 'inflight');
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.filter((l) => /_(total|count)\{/.test(l) && !/ 0$/.test(l))).toEqual([]);
  // A deletion's eviction is not counted (its series would go in the same job): no series for it.
  expect(lines.filter((l) => l.includes('cause="deleted"'))).toEqual([]);
  expect(lines.filter((l) => l.includes('cause="unload"'))).not.toEqual([]);
});

it("a worker process drops a deleted function's bytes from its own model cache, and keeps those another function has", async () => {
  const g = await startBrulee({ ROLE: 'gateway' });
  all.push(g);
  const dir = mkdtempSync(join(tmpdir(), 'brulee-test-w-'));
  const w = await startBrulee({ ROLE: 'worker', MODEL_STORE: pathToFileURL(join(g.dataDir, 'models')).href }, { namespace: g.namespace, dataDir: dir, nodeId: 'w1' });
  all.push(w);
  const cached = () => readdirSync(join(dir, 'model-cache')).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
  // `shared` and `twin` have the same bytes (content-addressed: one file); `own` has its own.
  for (const [name, seed] of [['shared', 9], ['twin', 9], ['own', 10]] as const) {
    expect((await g.put(name, model(seed))).status).toBe(201);
    const r = await g.invoke(name, x);
    expect(r.status).toBe(200);
    expect(r.body.node).toBe('w1');
  }
  const before = cached();
  expect(before.length).toBeGreaterThanOrEqual(2);
  const shasOf = async (name: string) => ((await g.json('GET', `/functions/${name}`)).body.versions as Array<{ sha256: string; artifactSha256?: string }>).flatMap((v) => [v.sha256, ...(v.artifactSha256 ? [v.artifactSha256] : [])]);
  const ownShas = await shasOf('own');
  const twinShas = await shasOf('twin');
  // The same source bytes (one file); their artifacts may differ (each registration derives its own).
  expect(twinShas[0]).toBe((await shasOf('shared'))[0]);
  const gone = [...ownShas, ...(await shasOf('shared')).filter((s) => !twinShas.includes(s))];
  expect(before.filter((s) => ownShas.includes(s))).not.toEqual([]);
  expect(ownShas.some((s) => before.includes(s))).toBe(true);
  expect((await g.json('DELETE', '/functions/own')).status).toBe(200);
  expect((await g.json('DELETE', '/functions/shared')).status).toBe(200);
  // The deletion waits for the nodes' unload jobs: the worker's cache is already without `own`'s bytes.
  const after = cached();
  expect(after.filter((s) => gone.includes(s))).toEqual([]);
  expect(after).toEqual(before.filter((s) => !gone.includes(s)));
  expect(after.filter((s) => twinShas.includes(s))).not.toEqual([]);
  // `twin` still runs from the worker's cache: no fetch.
  const r = await g.invoke('twin', x);
  expect(r.status).toBe(200);
});

it('a name registered again while a deleted model of it is still held here (a long call) counts in /metrics, and keeps its series when the old model goes', async () => {
  const b = await startBrulee();
  all.push(b);
  const pool = b.node!.pool;
  // The spec the node asks its pool for: a lease of it below stands for a call that runs for
  // seconds, as an inference can (a call held in the batcher waits at most its maxDelayMs).
  let spec: Parameters<typeof pool.acquire>[0] | undefined;
  const acquire = pool.acquire.bind(pool);
  pool.acquire = (s, ...rest) => {
    spec ??= s;
    return acquire(s, ...rest);
  };
  expect((await b.put('again', model(7), 'timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('again', x)).status).toBe(200);
  const lease = await acquire(spec!);
  expect((await b.json('DELETE', '/functions/again')).status).toBe(200);
  // Registered again (other bytes) and called while the old model is still held here.
  expect((await b.put('again', model(8), 'timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('again', x)).status).toBe(200);
  lease.release();
  lease.reservation.free();
  for (let i = 0; i < 3; i++) expect((await b.invoke('again', x)).status).toBe(200);
  // Every call of the new registration is counted, here as in Redis; the old model is gone.
  expect((await b.json('GET', '/functions/again')).body.stats.invocations).toBe(4);
  expect(pool.list().filter((m) => m.fn === 'again').map((m) => m.key)).not.toContain(spec!.key);
  const ok = (await seriesOf(b, 'again')).filter((l) => l.startsWith('brulee_invocations_total') && l.includes('outcome="ok"'));
  expect(ok.map((l) => Number(l.split(' ').pop()))).toEqual([4]);
});

it("a deletion's job that reaches a node after the name was registered again leaves the new registration's models, bytes and series alone", async () => {
  const b = await startBrulee();
  all.push(b);
  const shasOf = async (name: string) => ((await b.json('GET', `/functions/${name}`)).body.versions as Array<{ sha256: string; artifactSha256?: string }>).flatMap((v) => [v.sha256, ...(v.artifactSha256 ? [v.artifactSha256] : [])]);
  expect((await b.put('late', model(7))).status).toBe(201);
  const shas = await shasOf('late');
  expect((await b.json('DELETE', '/functions/late')).status).toBe(200);
  // Registered again with the same bytes, and warm here.
  expect((await b.put('late', model(7))).status).toBe(201);
  expect((await b.invoke('late', x)).status).toBe(200);
  // The first deletion's job, run by this node only now (its sender gave up waiting after 10 s).
  const { dispatcher } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher } }).o;
  expect(await dispatcher.unload({ fn: 'late', cause: 'deleted', reason: 'function deleted', sha256s: shas }, 10_000)).toBe(0);
  expect(b.node!.pool.list().map((m) => m.fn)).toContain('late');
  expect((await seriesOf(b, 'late')).filter((l) => l.startsWith('brulee_invocations_total') && / 1$/.test(l))).toHaveLength(1);
  // Its bytes are still in the store: unloaded, it loads again.
  expect((await b.json('POST', '/v2/repository/models/late/unload')).status).toBe(200);
  const again = await b.invoke('late', x);
  expect(again.status).toBe(200);
  expect(again.body.coldStart).toBe(true);
});

it("a retirement's job that reaches a node after the version it retires became current again (the same bytes, a newer version) leaves its model alone", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('back', model(7))).status).toBe(201);
  expect((await b.invoke('back', x)).status).toBe(200);
  const [held] = b.node!.pool.list();
  // Version 2 (other bytes), then version 3 (version 1's bytes again), registered while this node
  // had not run version 2's retirement yet (its sender gave up waiting after 10 s).
  expect((await registry.register('back', model(8), {})).fn.version).toBe(2);
  expect((await registry.register('back', model(7), {})).fn.version).toBe(3);
  // Version 2's job before any call of version 3 reached the model (it still has version 1): the registry says it is current.
  expect(await dispatcher.unload({ fn: 'back', belowVersion: 2, cause: 'retired', reason: 'replaced by version 2' }, 10_000)).toBe(0);
  const again = await b.invoke('back', x);
  expect(again.status).toBe(200);
  expect(again.body.coldStart).toBe(false);
  // And after one did (the model has version 3 now).
  expect(await dispatcher.unload({ fn: 'back', belowVersion: 2, cause: 'retired', reason: 'replaced by version 2' }, 10_000)).toBe(0);
  expect(b.node!.pool.list().map((m) => m.key)).toEqual([held!.key]);
  const warm = await b.invoke('back', x);
  expect(warm.status).toBe(200);
  expect(warm.body.coldStart).toBe(false);
  // Replaced, it still goes: version 4's job (other bytes) retires it.
  expect((await registry.register('back', model(9), {})).fn.version).toBe(4);
  expect(await dispatcher.unload({ fn: 'back', belowVersion: 4, cause: 'retired', reason: 'replaced by version 4' }, 10_000)).toBe(1);
  expect(b.node!.pool.list()).toEqual([]);
});

it("a deletion's job that reaches a node after the name was registered again with other bytes drops the old registration's model, and only that", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('old', model(7))).status).toBe(201);
  expect((await b.invoke('old', x)).status).toBe(200);
  const [gone] = b.node!.pool.list();
  // Deleted (its job not run here yet: its sender gave up waiting), registered again with other bytes, and called.
  const { removed } = await registry.delete('old');
  expect((await b.put('old', model(8))).body.version).toBe(1);
  expect((await b.invoke('old', x)).status).toBe(200);
  const keys = () => b.node!.pool.list().map((m) => m.key).sort();
  const current = keys().find((k) => k !== gone!.key)!;
  expect(keys()).toEqual([gone!.key, current].sort());
  // The deletion's job, only now: the old model goes; the new registration's stays warm, its series counted.
  expect(await dispatcher.unload({ fn: 'old', cause: 'deleted', reason: 'function deleted', sha256s: removed }, 10_000)).toBe(1);
  expect(keys()).toEqual([current]);
  // (The new registration's first call here restarted the series: the old one's call is not in them.)
  const ok = async () => Number((await seriesOf(b, 'old')).find((l) => l.startsWith('brulee_invocations_total') && l.includes('outcome="ok"'))?.split(' ').pop());
  const before = await ok();
  const warm = await b.invoke('old', x);
  expect(warm.status).toBe(200);
  expect(warm.body.coldStart).toBe(false);
  expect(await ok()).toBe(before + 1);
});

it("a call of a version whose bytes an older version had retires the other versions held here, not the model it runs on", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('same', model(7))).status).toBe(201);
  const v1 = await registry.get('same');
  expect((await registry.register('same', model(8), {})).fn.version).toBe(2);
  expect((await b.invoke('same', x)).status).toBe(200);
  // A late job of version 1 (a load) brings its model here beside version 2's.
  expect((await dispatcher.load(modelRefOf(v1), 10_000)).loaded).toBe(true);
  const key1 = b.node!.pool.list().find((m) => m.key.endsWith(v1.sha256.slice(0, 16)))!.key;
  expect(b.node!.pool.list()).toHaveLength(2);
  // Version 3: version 1's bytes again. Its call retires version 2, and runs warm on version 1's model, which stays.
  expect((await registry.register('same', model(7), {})).fn.version).toBe(3);
  const first = await b.invoke('same', x);
  expect(first.status).toBe(200);
  expect(first.body.coldStart).toBe(false);
  expect(b.node!.pool.list().map((m) => m.key)).toEqual([key1]);
  const second = await b.invoke('same', x);
  expect(second.body.coldStart).toBe(false);
});

it("a late call of an older version (a stale gateway's) leaves alone the model of the current version that has its older bytes", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('stale', model(7))).status).toBe(201);
  expect((await b.invoke('stale', x)).status).toBe(200);
  const [held] = b.node!.pool.list();
  // Version 2 (other bytes), then version 3 (version 1's bytes again), their retirements not run
  // here (their sender gave up waiting); version 3 is called, warm on the model loaded for version 1.
  const v2 = (await registry.register('stale', model(8), {})).fn;
  expect(v2.version).toBe(2);
  expect((await registry.register('stale', model(7), {})).fn.version).toBe(3);
  expect((await b.invoke('stale', x)).body.coldStart).toBe(false);
  // A call of version 2 routed before version 3 was registered (another gateway's cached record) runs only now.
  const late = await dispatcher.invoke({ model: modelRefOf(v2), inputs: { x: { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } }, acceptedAt: Date.now() }, 10_000);
  expect(late.coldStart).toBe(true);
  // Version 3's model (version 1's bytes) stays: its next call is warm.
  expect(b.node!.pool.list().map((m) => m.key)).toContain(held!.key);
  const warm = await b.invoke('stale', x);
  expect(warm.status).toBe(200);
  expect(warm.body.coldStart).toBe(false);
  // Version 3's call retired version 2's model (older).
  expect(b.node!.pool.list().map((m) => m.key)).toEqual([held!.key]);
});

it("a late call of an older version leaves alone a model the load API (pre-warm) of the current version reached, which has its older bytes", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('prewarmed', model(7))).status).toBe(201);
  expect((await b.invoke('prewarmed', x)).status).toBe(200);
  const [held] = b.node!.pool.list();
  // Version 2 (other bytes), then version 3 (version 1's bytes again), their retirements not run here.
  const v2 = (await registry.register('prewarmed', model(8), {})).fn;
  const v3 = (await registry.register('prewarmed', model(7), {})).fn;
  expect(v3.version).toBe(3);
  // Version 3 loaded through the load API: already here (version 1's model).
  expect((await dispatcher.load(modelRefOf(v3), 10_000)).loaded).toBe(false);
  // A call of version 2 routed before version 3 was registered runs only now.
  const late = await dispatcher.invoke({ model: modelRefOf(v2), inputs: { x: { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } }, acceptedAt: Date.now() }, 10_000);
  expect(late.coldStart).toBe(true);
  expect(b.node!.pool.list().map((m) => m.key)).toContain(held!.key);
  const warm = await b.invoke('prewarmed', x);
  expect(warm.status).toBe(200);
  expect(warm.body.coldStart).toBe(false);
});

it("a late call of an older version that reaches a node before any call or load of the current version leaves alone the model that has the current version's bytes", async () => {
  const b = await startBrulee();
  all.push(b);
  const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
  expect((await b.put('early', model(7))).status).toBe(201);
  expect((await b.invoke('early', x)).status).toBe(200);
  const [held] = b.node!.pool.list();
  // Version 2 (other bytes), then version 3 (version 1's bytes again), their retirements not run
  // here (their sender gave up waiting); nothing of version 3 has reached this node: its model still has version 1.
  const v2 = (await registry.register('early', model(8), {})).fn;
  expect((await registry.register('early', model(7), {})).fn.version).toBe(3);
  // A call of version 2 routed before version 3 was registered (another gateway's cached record) runs now.
  const late = await dispatcher.invoke({ model: modelRefOf(v2), inputs: { x: { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } }, acceptedAt: Date.now() }, 10_000);
  expect(late.coldStart).toBe(true);
  // Version 3's model (version 1's bytes) stays: its first call is warm, and retires version 2's model.
  expect(b.node!.pool.list().map((m) => m.key)).toContain(held!.key);
  const warm = await b.invoke('early', x);
  expect(warm.status).toBe(200);
  expect(warm.body.coldStart).toBe(false);
  expect(b.node!.pool.list().map((m) => m.key)).toEqual([held!.key]);
});

for (const [what, seed] of [['other bytes', 8], ['the same bytes', 7]] as const) {
  it(`a node that runs a deletion's job only after the name was registered again (${what}) and called shows in /metrics the new registration's calls, as /stats does`, async () => {
    const b = await startBrulee();
    all.push(b);
    const { dispatcher, registry } = (b.dataPlane as unknown as { o: { dispatcher: Dispatcher; registry: FunctionRegistry } }).o;
    const counts = async () => {
      const lines = await seriesOf(b, 'mixed');
      const n = (name: string) => Number(lines.find((l) => l.startsWith(`${name}{`) && !l.includes('outcome="error"'))?.split(' ').pop() ?? NaN);
      const s = (await b.json('GET', '/functions/mixed')).body.stats as { invocations: number; loads: number; coldStarts: number; warmHits: number };
      return { metrics: [n('brulee_invocations_total'), n('brulee_model_loads_total'), n('brulee_cold_starts_total'), n('brulee_warm_hits_total')], stats: [s.invocations, s.loads, s.coldStarts, s.warmHits] };
    };
    expect((await b.put('mixed', model(7))).status).toBe(201);
    for (let i = 0; i < 2; i++) expect((await b.invoke('mixed', x)).status).toBe(200);
    const old = await registry.get('mixed');
    // Deleted (its job not run here yet: its sender gave up waiting), registered again, and called.
    const { removed } = await registry.delete('mixed');
    expect((await b.put('mixed', model(seed))).status).toBe(201);
    for (let i = 0; i < 3; i++) expect((await b.invoke('mixed', x)).status).toBe(200);
    // With the same bytes, a call of the old registration (a stale gateway's record) after them:
    // counted here as in Redis (the name is registered), without restarting the series.
    if (seed === 7) {
      const late = await dispatcher.invoke({ model: modelRefOf(old), inputs: { x: { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } }, acceptedAt: Date.now() }, 10_000);
      expect(late.coldStart).toBe(false);
    }
    expect(await dispatcher.unload({ fn: 'mixed', cause: 'deleted', reason: 'function deleted', sha256s: removed }, 10_000)).toBeLessThanOrEqual(1);
    expect((await b.invoke('mixed', x)).status).toBe(200);
    // The calls since the new registration, here as in Redis: with other bytes one load (a cold
    // start) and three warm hits; with the same bytes, five warm hits on the model kept.
    const c = await counts();
    expect(c.stats).toEqual(seed === 7 ? [5, 0, 0, 5] : [4, 1, 1, 3]);
    expect(c.metrics).toEqual(c.stats);
  });
}
