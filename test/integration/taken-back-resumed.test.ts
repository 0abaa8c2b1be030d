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
// The grace a call a dead node had taken gets before it is answered 503 (queue/dispatcher.ts
// ORPHAN_GRACE): 3 s, not the default 12 s (four dead-after times). No node is restarted under its
// NODE_ID here, so nothing needs the room; each of the three tests that wait a 503 or a reaper's
// answer out waits 3 s + 3 s after the stop instead of 3 s + 12 s.
const RESTART_GRACE_MS = 3000;
const { procs, env, stop } = workerProcs(prefix, () => s3, { RESTART_GRACE_MS: String(RESTART_GRACE_MS) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const redis = createRedis(inject('redisUrl'));

async function call(): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${gw.base}/functions/m/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code };
}

/** /stats, and the /metrics of `workers` (where its calls are counted), for function `fn`. */
async function counted(fn = 'm', workers = [w1]): Promise<{ invocations: number; metrics: number; duplicateRuns: number }> {
  const s = (await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { invocations: number }>; failover: { duplicateRuns: number } };
  let metrics = 0;
  for (const w of workers) {
    for (const line of (await (await fetch(`${w.base}/metrics`)).text()).split('\n')) {
      if (line.startsWith('brulee_invocations_total{') && line.includes(`function="${fn}"`)) metrics += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return { invocations: s.functions[fn]?.invocations ?? 0, metrics, duplicateRuns: s.failover.duplicateRuns };
}

const put = (fn: string, query: string, seed: number) =>
  fetch(`${gw.base}/functions/${fn}?${query}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed }) });

/** Until w1 (resumed) answers a call again. */
async function served(): Promise<void> {
  let next = { status: 0 };
  for (let i = 0; i < 50 && next.status !== 200; i++) {
    next = await call();
    if (next.status !== 200) await sleep(200);
  }
  expect(next).toMatchObject({ status: 200 });
}

/** An async invocation's status once answered (completed or failed), or its last. */
async function settled(id: string, timeoutMs: number): Promise<{ status: string; error?: { code: string; message: string }; node?: string }> {
  let last = { status: '' } as Awaited<ReturnType<typeof settled>>;
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(200)) {
    last = (await (await fetch(`${gw.base}/invocations/${id}`)).json()) as typeof last;
    if (last.status === 'completed' || last.status === 'failed') break;
  }
  return last;
}

/** The holder: a call that holds its worker's slot for 1 s, waiting for a batch partner. */
const putHolder = async () => expect([200, 201]).toContain((await put('holder', 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000', 2)).status);

/**
 * The holder, a sync call, takes the one slot of `w` (w1 by default); then an async call of `fn`,
 * taken (active) on its queue, waits for it; then `w` is SIGSTOPped. Resolves to the holder's
 * answer (to come) and the async call's id.
 */
async function heldAsync(fn: string, w = w1): Promise<{ holder: Promise<Response>; id: string }> {
  const q = new Queue(k.nodeQueue(w.nodeId!), { connection: redis, prefix: k.bullPrefix });
  try {
    const holder = fetch(`${gw.base}/functions/holder/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
    for (let i = 0; i < 100 && (await redis.llen(k.laneActive(w.nodeId!))) === 0; i++) await sleep(10);
    const res = await fetch(`${gw.base}/functions/${fn}/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    for (let i = 0; i < 100 && (await q.getActiveCount()) === 0; i++) await sleep(10);
    w.child.kill('SIGSTOP');
    expect(await q.getActiveCount()).toBe(1);
    return { holder, id };
  } finally {
    await q.close();
  }
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
  expect((await put('holder', 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000', 2)).status).toBe(201);
  expect((await put('p', 'timeoutMs=60000', 3)).status).toBe(201);
  const w1Queue = new Queue(k.nodeQueue('w1'), { connection: redis, prefix: k.bullPrefix });
  try {
    await served();
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

/*
 * An async call's job is its node's only while the node holds its BullMQ lock: one the reaper took
 * off a node held dead (queue/reaper.ts: failed TIMEOUT with no live node to take it, or moved to a
 * live node and run there) is answered by then, and the stopped node, resumed, runs it for nothing:
 * counted neither in /stats nor in its /metrics, nor as a duplicate run, and its answer is not the
 * one the caller reads.
 */
it('an async call the reaper failed TIMEOUT while its worker was stopped is not counted when that worker resumes and answers it', async () => {
  await putHolder();
  // Its deadline (2 s) passes long before the reaper fails it (RESTART_GRACE_MS after the death, itself 3 s after the stop).
  expect((await put('late', 'timeoutMs=2000', 4)).status).toBe(201);
  await served();
  const before = await counted('late');
  const { holder, id } = await heldAsync('late');
  let told;
  try {
    expect((await holder).status).toBe(503);
    told = await settled(id, 40_000);
  } finally {
    w1.child.kill('SIGCONT');
  }
  expect(told).toMatchObject({ status: 'failed', error: { code: 'TIMEOUT' } });
  // Back, w1 takes the call (its one slot goes to its queue's jobs before a lane's) and answers it TIMEOUT, uncounted.
  await served();
  await sleep(1000);
  expect(await counted('late')).toEqual(before);
  expect(await settled(id, 1000)).toEqual(told);
}, 90_000);

it('an async call the reaper moved to a live node while its worker was stopped is counted once, as run there, when the stopped one resumes and runs it too', async () => {
  await putHolder();
  expect((await put('moved', 'timeoutMs=60000', 5)).status).toBe(201);
  await served();
  const before = { moved: await counted('moved'), holder: await counted('holder') };
  const { holder, id } = await heldAsync('moved');
  let told;
  let held;
  let w2;
  try {
    // A live node to move it to, started once the call was w1's.
    w2 = await startProc('w2', 'worker', { ...env(), NODE_ID: 'w2' });
    procs.push(w2);
    told = await settled(id, 40_000);
    // The holder too is moved to w2 (200) once it lives, unless its gateway gave it up first (503).
    held = (await holder).status;
  } finally {
    w1.child.kill('SIGCONT');
  }
  expect(told).toMatchObject({ status: 'completed', node: 'w2' });
  expect([200, 503]).toContain(held);
  // Back, w1 runs the call too: a cold start there (the model stays resident), counted as a load only.
  const loads = async () => ((await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { loads: number }> }).functions.moved!.loads;
  for (let i = 0; i < 100 && (await loads()) < 2; i++) await sleep(100);
  await sleep(500);
  let metricLoads = 0;
  for (const w of [w1, w2]) metricLoads += Number(/^brulee_model_loads_total\{function="moved"\} (\d+)/m.exec(await (await fetch(`${w.base}/metrics`)).text())?.[1] ?? 0);
  const ran = held === 200 ? 1 : 0;
  expect({ moved: await counted('moved', [w1, w2]), holder: await counted('holder', [w1, w2]), loads: await loads(), metricLoads }).toEqual({
    moved: { invocations: before.moved.invocations + 1, metrics: before.moved.metrics + 1, duplicateRuns: before.moved.duplicateRuns },
    holder: { invocations: before.holder.invocations + ran, metrics: before.holder.metrics + ran, duplicateRuns: before.moved.duplicateRuns },
    loads: 2,
    metricLoads: 2,
  });
  expect(await settled(id, 1000)).toEqual(told);
}, 120_000);

it('an async call whose worker lost its hold on it (stopped past JOB_LOCK_MS, not declared dead) is run again and answered once: counted once', async () => {
  // w3 the only worker: its hold on a job lasts 0.5 s unless renewed (every 0.25 s), and its stall check runs as often.
  await Promise.all(procs.filter((p) => p !== gw).map((p) => p.stop(10_000)));
  const w3 = await startProc('w3', 'worker', { ...env(), NODE_ID: 'w3', WORKER_CONCURRENCY: '1', JOB_LOCK_MS: '500' });
  procs.push(w3);
  await putHolder();
  expect((await put('lapsed', 'timeoutMs=60000', 6)).status).toBe(201);
  const before = await counted('lapsed', [w3]);
  const { holder, id } = await heldAsync('lapsed', w3);
  // 1.5 s: its hold lapses; w3 is silent for less than the 3 s that declare a node dead.
  await sleep(1500);
  w3.child.kill('SIGCONT');
  const told = await settled(id, 20_000);
  expect(told).toMatchObject({ status: 'completed', node: 'w3' });
  expect((await holder).status).toBe(200);
  await sleep(1000);
  // Its first run's answer, sent without the hold, was dropped; the run w3's stall check started answered it.
  const stalled = (await redis.xrange(`${k.bullPrefix}:${k.nodeQueue('w3')}:events`, '-', '+')).filter(([, f]) => f.includes('stalled') && f.includes(id));
  expect(stalled.length).toBeGreaterThan(0);
  expect(await counted('lapsed', [w3])).toEqual({ invocations: before.invocations + 1, metrics: before.metrics + 1, duplicateRuns: before.duplicateRuns });
  expect(await settled(id, 1000)).toEqual(told);
}, 90_000);
