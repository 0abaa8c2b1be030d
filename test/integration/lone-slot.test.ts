import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';

/**
 * A lone call (the only call of a ROLE=all process's gateway) runs in its own node at once (its
 * give-up signal only decides its outcome as its run ends), its admission decided after its run
 * (queue/dispatcher.ts `invokeHere`, `admitAfter`): it must never wait for a slot, or it would
 * outlive its caller's 504. It takes that path only when
 * a slot is free (`canStartAlone`), and takes the slot in the same synchronous step; with none
 * free (another gateway's call holds the node's one slot) it waits as any call of its process
 * does, with its give-up signal: dropped at its caller's timeout, never run, never counted.
 */

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
/** Another gateway: its call reaches b's node on the node's lane, and holds its one slot. */
let gw: TestBrulee;

const QUICK = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 11 });
const HOLDER = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 12 });
const IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

beforeAll(async () => {
  b = await startBrulee({ WORKER_CONCURRENCY: '1' });
  gw = await startBrulee({ ROLE: 'gateway' }, { namespace: b.namespace, dataDir: b.dataDir, nodeId: 'gw' });
  expect((await b.put('quick', QUICK, 'timeoutMs=400')).status).toBe(201);
  // A call that waits 1 s for a batch partner, holding the slot without blocking the process.
  expect((await b.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('quick', IN)).status).toBe(200);
}, 120_000);
afterAll(async () => {
  await gw?.destroy();
  await b?.destroy();
  redis.disconnect();
});

describe('a lone call with no slot free', () => {
  it("waits with its give-up signal: its caller's 504 drops it, never run, never counted", async () => {
    const stats = async () => (await b.json('GET', '/functions/quick')).body.stats;
    const before = await stats();
    const held = gw.invoke('holder', IN);
    await until('the holding call to take the slot', async () => (await redis.llen(keys(b.namespace).laneActive(b.node!.id))) === 1, 10_000);
    // b's gateway runs no other call: alone, but no slot is free.
    const quick = b.invoke('quick', IN);
    await until('the call to wait for the slot in its process', async () => b.node!.here.waiting === 1, 10_000);
    const r = await quick;
    expect([r.status, r.body.error?.code]).toEqual([504, 'TIMEOUT']);
    // Given up, it left at once: nothing of it waits for the slot.
    expect(b.node!.here).toEqual({ waiting: 0, running: 0 });
    expect((await held).status).toBe(200);
    await until('the slot to be free', async () => b.node!.canStartAlone(false), 10_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(await stats()).toMatchObject({ invocations: before.invocations, timeouts: before.timeouts, warmHits: before.warmHits });
  }, 60_000);
});
