import { Queue } from 'bullmq';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { startProc, type Proc } from '../support/procs';
import { startS3, type TestS3 } from '../support/s3';
import { workerProcs } from '../support/worker-procs';

/*
 * A sync call the gateway answered 503 NO_NODE_AVAILABLE and took back from its node's active list
 * (queue/dispatcher.ts orphans: the node silent past the dead-after time, plus its grace) must not
 * be counted when that node was only stopped (a long pause, a partition) and comes back holding it:
 * its caller had its 503, so neither /stats nor /metrics counts it as a call that ran. Nor a load
 * (prewarm) taken back so (queue/dispatcher.ts takeBackJob): the model it loaded stays, its load is
 * counted, and the prewarm its caller was told failed is not.
 */

const prefix = `tbr${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
let w1: Proc;
const { procs, env, stop } = workerProcs(prefix, () => s3);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const redis = createRedis(inject('redisUrl'));

async function call(): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${gw.base}/functions/m/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code };
}

/** /stats, and the worker's /metrics (where its calls are counted). */
async function counted(): Promise<{ invocations: number; metrics: number; duplicateRuns: number }> {
  const s = (await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { invocations: number }>; failover: { duplicateRuns: number } };
  let metrics = 0;
  for (const line of (await (await fetch(`${w1.base}/metrics`)).text()).split('\n')) {
    if (line.startsWith('brulee_invocations_total{') && line.includes('function="m"')) metrics += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { invocations: s.functions.m!.invocations, metrics, duplicateRuns: s.failover.duplicateRuns };
}

beforeAll(async () => {
  s3 = await startS3();
  // One slot: a call waiting for a batch partner holds it, and a load waits for it, taken (active) on the node's queue.
  [gw, w1] = await Promise.all([startProc('gw', 'gateway', env()), startProc('w1', 'worker', { ...env(), NODE_ID: 'w1', WORKER_CONCURRENCY: '1' })]);
  procs.push(gw, w1);
  const put = await fetch(`${gw.base}/functions/m?timeoutMs=60000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) });
  expect(put.status).toBe(201);
}, 120_000);

afterAll(async () => {
  redis.disconnect();
  await stop();
});

it('a call answered 503 and taken back from a stopped worker that then resumes is not counted as run', async () => {
  expect(await call()).toMatchObject({ status: 200 });
  const before = await counted();
  expect(before).toMatchObject({ invocations: 1, metrics: 1 });
  // Stopped while idle: its blocking BLMOVE, served by Redis, still takes the call into its active list.
  w1.child.kill('SIGSTOP');
  const taken = call();
  for (let i = 0; i < 100 && (await redis.llen(k.laneActive('w1'))) === 0; i++) await sleep(20);
  expect(await redis.llen(k.laneActive('w1'))).toBe(1);
  expect(await taken).toMatchObject({ status: 503, code: 'NO_NODE_AVAILABLE' });
  w1.child.kill('SIGCONT');
  // Back: it beats again and serves calls.
  let next = { status: 0 };
  for (let i = 0; i < 50 && next.status !== 200; i++) {
    await sleep(200);
    next = await call();
  }
  expect(next).toMatchObject({ status: 200 });
  await sleep(1000);
  // Two calls answered 200: the 503 one is not among what was counted.
  expect(await counted()).toEqual({ invocations: 2, metrics: 2, duplicateRuns: before.duplicateRuns });
}, 60_000);

it('a load answered 503 and taken back from a stopped worker that then resumes is not counted as a prewarm: its load is, once', async () => {
  const put = (fn: string, query: string, seed: number) =>
    fetch(`${gw.base}/functions/${fn}?${query}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed }) });
  expect((await put('holder', 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000', 2)).status).toBe(201);
  expect((await put('p', 'timeoutMs=60000', 3)).status).toBe(201);
  const w1Queue = new Queue(k.nodeQueue('w1'), { connection: redis, prefix: k.bullPrefix });
  try {
    let next = { status: 0 };
    for (let i = 0; i < 50 && next.status !== 200; i++) {
      next = await call();
      if (next.status !== 200) await sleep(200);
    }
    expect(next).toMatchObject({ status: 200 });
    // The holder takes the slot (1 s waiting for a batch partner); the load, taken, waits for it.
    const holder = fetch(`${gw.base}/functions/holder/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
    for (let i = 0; i < 100 && (await redis.llen(k.laneActive('w1'))) === 0; i++) await sleep(10);
    const load = fetch(`${gw.base}/v2/repository/models/p/load`, { method: 'POST' });
    for (let i = 0; i < 100 && (await w1Queue.getActiveCount()) === 0; i++) await sleep(10);
    w1.child.kill('SIGSTOP');
    expect(await w1Queue.getActiveCount()).toBe(1);
    const r = await load;
    expect(r.status).toBe(503);
    expect((await holder).status).toBe(503);
    w1.child.kill('SIGCONT');
    // Back, it runs the load (the model stays resident): counted once as a load, not as a prewarm.
    const fnStats = async () => ((await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { loads: number; prewarms: number }> }).functions.p!;
    for (let i = 0; i < 100 && (await fnStats()).loads === 0; i++) await sleep(100);
    await sleep(500);
    const text = await (await fetch(`${w1.base}/metrics`)).text();
    const metric = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect({ stats: await fnStats(), metrics: { loads: metric(/^brulee_model_loads_total\{function="p"\} (\d+)/m), prewarms: metric(/^brulee_prewarms_total\{function="p",by="api"\} (\d+)/m) } }).toEqual({
      stats: expect.objectContaining({ loads: 1, prewarms: 0 }),
      metrics: { loads: 1, prewarms: 0 },
    });
  } finally {
    await w1Queue.close();
  }
}, 90_000);
