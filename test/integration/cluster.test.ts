import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../config';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { refreshPopularity } from '../../runtime/popularity';
import { mlpModel } from '../../models/generate';
import { deleteKeys, startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';

const redis = createRedis(inject('redisUrl'));
const started: TestBrulee[] = [];
afterAll(async () => {
  for (const b of started.reverse()) await b.destroy();
  redis.disconnect();
});

const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const model = (seed: number) => mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed });

describe('a gateway and two runtime nodes on one Redis', () => {
  it('routes to the node where the model is warm, and a new model to the node with free room', async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    const shared = { namespace: gw.namespace, dataDir: gw.dataDir };
    const big = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '100MB' }, { ...shared, nodeId: 'big' });
    const small = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '30MB' }, { ...shared, nodeId: 'small' });
    started.push(big, small);
    expect(gw.node).toBeUndefined();

    expect((await gw.put('a', model(1), 'memoryBytes=20MB')).status).toBe(201);
    const first = await gw.invoke('a', x);
    expect(first.body).toMatchObject({ coldStart: true });
    const home = first.body.node;
    for (let i = 0; i < 5; i++) {
      const r = await gw.invoke('a', x);
      expect(r.body).toMatchObject({ coldStart: false, node: home });
    }
    // b needs 20 MB: only "big" still has that much free, whichever node holds a.
    await gw.put('b', model(2), 'memoryBytes=20MB');
    const rb = await gw.invoke('b', x);
    expect(rb.body.node).toBe('big');
    const stats = (await gw.json('GET', '/stats')).body;
    expect(stats.nodes.map((n: { id: string }) => n.id).sort()).toEqual(['big', 'small']);
    expect(stats.functions.a).toMatchObject({ invocations: 6, loads: 1, coldStarts: 1, warmHits: 5 });
    // A model bigger than every node is refused at registration.
    const huge = await gw.put('huge', model(3), 'memoryBytes=200MB');
    expect(huge.status).toBe(422);
    expect(huge.body.error.code).toBe('MODEL_TOO_LARGE');
  });

  it('a gateway that has a function in its copy serves the version another gateway registered next', async () => {
    // Two gateways on one Redis: B keeps an in-memory copy of each function it has served; A's
    // re-registration and deletion reach B on the control channel (FunctionRegistry.watch).
    const a = await startBrulee();
    started.push(a);
    const b = await startBrulee({ ROLE: 'gateway' }, { namespace: a.namespace, dataDir: a.dataDir });
    started.push(b);
    const direct = async (seed: number) => Array.from((await runDirect(model(seed), { x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4), [1, 4]) })).y!.data as Float32Array);

    expect((await a.put('shared', model(11))).status).toBe(201);
    const v1 = await b.invoke('shared', x);
    expect(v1.body).toMatchObject({ version: 1 });
    expect(v1.body.outputs.y.data).toEqual(await direct(11));

    expect((await a.put('shared', model(12))).body).toMatchObject({ name: 'shared', version: 2 });
    // B heard it once its next call runs version 2 (pub/sub is not instant: bounded, then asserted).
    let v2 = await b.invoke('shared', x);
    for (let i = 0; i < 100 && v2.body.version !== 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      v2 = await b.invoke('shared', x);
    }
    expect(v2.body).toMatchObject({ version: 2 });
    expect(v2.body.outputs.y.data).toEqual(await direct(12));
    expect(v2.body.outputs.y.data).not.toEqual(await direct(11));

    expect((await a.json('DELETE', '/functions/shared')).status).toBe(200);
    let gone = await b.invoke('shared', x);
    for (let i = 0; i < 100 && gone.status !== 404; i++) {
      await new Promise((r) => setTimeout(r, 50));
      gone = await b.invoke('shared', x);
    }
    expect(gone.status).toBe(404);
  });

  it('a gateway with no live node answers 503 NO_NODE_AVAILABLE', async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    expect((await gw.put('lonely', model(4))).status).toBe(201);
    const r = await gw.invoke('lonely', x);
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('NO_NODE_AVAILABLE');
  });
});

describe('node ids are unique while they live', () => {
  it('a second process with the NODE_ID of a live node refuses to start, saying what to do; the default ids differ', async () => {
    const first = await startBrulee({ ROLE: 'worker', HEARTBEAT_MS: '200' });
    started.push(first);
    const t0 = Date.now();
    const second = startBrulee({ ROLE: 'worker', HEARTBEAT_MS: '200' }, { namespace: first.namespace, dataDir: first.dataDir, nodeId: first.node!.id });
    await expect(second).rejects.toThrow(new RegExp(`NODE_ID "${first.node!.id}" is held by another live process .*give every process its own NODE_ID, or leave NODE_ID unset`));
    // It waited out at most 3 beats for a holder that might have died.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    const a = loadConfig({}).nodeId;
    const b = loadConfig({}).nodeId;
    expect(a).not.toBe(b);
    expect(a).toMatch(/-[0-9a-f]{6}$/);
    // The first node is still the only one, and still serves.
    expect((await first.json('GET', '/stats')).body.nodes.map((n: { id: string }) => n.id)).toEqual([first.node!.id]);
  });

  it('a node that stopped (its process closed cleanly) frees its id at once', async () => {
    const a = await startBrulee({ ROLE: 'worker' });
    const id = a.node!.id;
    await a.close();
    const b = await startBrulee({ ROLE: 'worker' }, { namespace: a.namespace, dataDir: a.dataDir, nodeId: id });
    started.push(b);
    expect(b.node!.id).toBe(id);
  });
});

describe('popularity cron', () => {
  it('runs once per cluster: of two replicas refreshing at the same moment, one does the work', async () => {
    const ns = `pop${Date.now()}`;
    const k = keys(ns);
    await redis.sadd(k.functions, 'f');
    await redis.hincrby(k.popularityCounts, 'f', 3);
    await redis.hincrby(k.popularityCounts, 'deleted', 5); // counted just before its deletion
    const [r1, r2] = await Promise.all([refreshPopularity(redis, k, 1000, 600_000), refreshPopularity(redis, k, 1000, 600_000)]);
    expect([r1, r2].filter((r) => r !== undefined)).toEqual([{ f: 1 }]);
    expect(await redis.hgetall(k.popularity)).toEqual({ f: '1' });
    expect(await redis.exists(k.popularityCounts)).toBe(0);
    await deleteKeys(ns);
  });

  it('fires on its schedule and the node picks up the new shares', async () => {
    const b = await startBrulee({ POPULARITY_CRON: '* * * * * *' });
    started.push(b);
    await b.put('p', model(5));
    await b.put('q', model(6));
    for (let i = 0; i < 3; i++) await b.invoke('p', x);
    await b.invoke('q', x);
    let share: Record<string, { popularity: number }> = {};
    for (let i = 0; i < 40 && !((share.p?.popularity ?? 0) > 0 && (share.q?.popularity ?? 0) > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
      share = (await b.json('GET', '/stats')).body.functions;
    }
    // A tick may fall between the calls, so only the order and the sum are certain.
    expect(share.p!.popularity).toBeGreaterThan(share.q!.popularity);
    expect(share.q!.popularity).toBeGreaterThan(0);
    expect(share.p!.popularity + share.q!.popularity).toBeCloseTo(1, 9);
    for (let i = 0; i < 20 && b.node!.popularityOf('p') === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(b.node!.popularityOf('p')).toBeGreaterThan(b.node!.popularityOf('q'));
  });
});
