import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel, slowModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { startProc, type Proc } from '../support/procs';
import { startS3, type TestS3 } from '../support/s3';
import { workerProcs } from '../support/worker-procs';

/*
 * A gateway whose only worker died (kill -9; a ROLE=gateway process, ROLE=worker processes, the
 * S3-compatible model store) while a load (prewarm) or an unload waited on the worker's queue. A
 * load no live node can take was left there by the reaper, and its caller waited out the function's
 * whole timeout for a 504; it is now answered 503 NO_NODE_AVAILABLE as a sync call is, and taken
 * off the dead queue (it does not run later, on a node that comes back). An unload on a dead node
 * is answered by the reaper ({dropped: 0}: nothing there to drop), also when a job no live node
 * can take is on the queue with it (the reaper stopped at that job, and the unload waited out its
 * 10 s for a 504).
 *
 * An async call (?async=true) there read 'waiting' until a node came back, its admission place and
 * input bytes held; it is now failed after the grace a restart gets, NO_NODE_AVAILABLE, its place, its
 * bytes and its input key given back, and taken off the dead queue: a node that comes back neither
 * runs nor counts it.
 */

const prefix = `nl${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
// The grace a call left on a dead node gets before it is failed (queue/dispatcher.ts ORPHAN_GRACE):
// 6 s, not the default 12 s (four dead-after times). Counted from the death (3 s of silence), it
// leaves a restart under the node's NODE_ID 9 s to start and take its call (3.5 s under tsx on a
// quiet 2-core machine); each of the three tests that wait it out waits 9 s after the kill, not 15 s.
const RESTART_GRACE_MS = 6000;
const { procs, env, worker, stop } = workerProcs(prefix, () => s3, { RESTART_GRACE_MS: String(RESTART_GRACE_MS) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redis = createRedis(inject('redisUrl'));
let w1Queue: Queue;
// 8 KiB of input: past the bytes a job carries inline, so under a key of its own.
const SIZE = 2048;
const x = { x: { type: 'float32', dims: [1, SIZE], data: new Array(SIZE).fill(0.5) } };

async function submit(): Promise<string> {
  const res = await fetch(`${gw.base}/functions/big/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

const status = async (id: string) => (await (await fetch(`${gw.base}/invocations/${id}`)).json()) as { status: string; error?: { code: string; message: string } };
const invocations = async () => ((await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { invocations: number }> }).functions.big!.invocations;
const held = async () => ({ places: await redis.zcard(k.admitted('big')), bytes: Number((await redis.get(k.queuedBytesTotal)) ?? 0) });

async function post(path: string): Promise<{ status: number; code?: string; body: unknown }> {
  const res = await fetch(`${gw.base}${path}`, { method: 'POST' });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code, body };
}

async function prewarms(): Promise<number> {
  const s = (await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { prewarms?: number; loads: number }> };
  return s.functions.m!.loads;
}

/**
 * Starts worker `id` and waits out the gateway's node list (read at most every 500 ms), so that a
 * call sent next is routed to it, not refused 503 by a gateway that does not see it yet.
 */
async function routableWorker(id: string): Promise<Proc> {
  const w = await worker(id);
  await sleep(600);
  return w;
}

/** Stops w1, sends `path` (its job waits on w1's queue: w1 cannot take it), then kills w1. */
async function killWaiting(w: Proc, path: string): Promise<ReturnType<typeof post>> {
  w.child.kill('SIGSTOP');
  const sent = post(path);
  for (let i = 0; i < 100 && (await w1Queue.getWaitingCount()) === 0; i++) await sleep(20);
  expect(await w1Queue.getWaitingCount()).toBe(1);
  w.kill9();
  await w.exited;
  return sent;
}

beforeAll(async () => {
  s3 = await startS3();
  w1Queue = new Queue(k.nodeQueue('w1'), { connection: redis, prefix: k.bullPrefix });
  gw = await startProc('gw', 'gateway', { ...env(), MAX_QUEUED_PER_FUNCTION: '10', MAX_QUEUED_INPUT_BYTES: '1000000' });
  procs.push(gw);
  // A timeout well past what the test waits for an answer: a 504 would mean it waited it out.
  const put = await fetch(`${gw.base}/functions/m?timeoutMs=25000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) });
  expect(put.status).toBe(201);
  const big = await fetch(`${gw.base}/functions/big?timeoutMs=25000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: SIZE, hidden: [4], outputSize: 2, seed: 2 }) });
  expect(big.status).toBe(201);
  // Its deadline passes before the reaper's grace ends (RESTART_GRACE_MS after the death: 9 s after the kill).
  const short = await fetch(`${gw.base}/functions/short?timeoutMs=4000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 3 }) });
  expect(short.status).toBe(201);
  // ~0.05 s a run here (51ca9c8); its registration profiles it (256 repeats took 160 s of a beforeAll at load 10 on 2 cores before 51ca9c8).
  const slow = await fetch(`${gw.base}/functions/slow?timeoutMs=60000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: slowModel({ rows: 2048, repeats: 64 }) });
  expect(slow.status).toBe(201);
}, 180_000);

afterAll(async () => {
  await w1Queue?.close();
  redis.disconnect();
  await stop();
});

describe('the only worker died with a load or an unload on its queue', () => {
  it('a load is answered 503 NO_NODE_AVAILABLE, not 504 at its timeout, and never runs later', async () => {
    const w = await routableWorker('w1');
    const r = await killWaiting(w, '/v2/repository/models/m/load');
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ error: expect.stringMatching(/^no runtime node is alive/) });
    // Taken off the dead queue: a node that comes back (or the reaper) finds nothing to load.
    expect(await w1Queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed')).toEqual({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
    const loadsBefore = await prewarms();
    await worker('w1');
    await sleep(3000); // a few reaper runs, and the restarted node's first takes
    expect(await prewarms()).toBe(loadsBefore);
    expect(await post('/v2/repository/models/m/load')).toMatchObject({ status: 200 });
  }, 60_000);

  it('an unload is answered by the reaper, {dropped: 0}, not 504 at its timeout, also behind a call no live node can take', async () => {
    const last = procs.filter((p) => p.nodeId === 'w1').at(-1)!;
    const w = last.child.exitCode === null && last.child.signalCode === null ? last : await routableWorker('w1');
    w.child.kill('SIGSTOP');
    const unload = post('/v2/repository/models/m/unload');
    for (let i = 0; i < 100 && (await w1Queue.getWaitingCount()) === 0; i++) await sleep(20);
    // An async call after it, on the same queue: the reaper looks at the newest first.
    const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    const submitted = await fetch(`${gw.base}/functions/m/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
    expect(submitted.status).toBe(202);
    expect(await w1Queue.getWaitingCount()).toBe(2);
    w.kill9();
    await w.exited;
    expect((await unload).status).toBe(200);
  }, 60_000);
});

describe('the only worker died with an async call on its queue', () => {
  it("the call is failed NO_NODE_AVAILABLE after the grace (not 'waiting' until a node is back), its place and bytes given back, and never runs later", async () => {
    const w = await routableWorker('w1');
    const done = await submit();
    for (let i = 0; i < 100 && (await status(done)).status !== 'completed'; i++) await sleep(50);
    expect((await status(done)).status).toBe('completed');
    w.child.kill('SIGSTOP');
    const id = await submit();
    expect(await w1Queue.getWaitingCount()).toBe(1);
    expect(await held()).toEqual({ places: 1, bytes: SIZE * 4 });
    w.kill9();
    await w.exited;
    // Declared dead after 3 s, then the grace (RESTART_GRACE_MS, 6 s): still there for a restart
    // under its id at 5 s; the reaper runs every beat.
    await sleep(5000);
    expect(await status(id)).toMatchObject({ status: 'waiting' });
    expect(await w1Queue.getWaitingCount()).toBe(1);
    let s = await status(id);
    for (let i = 0; i < 200 && s.status === 'waiting'; i++) {
      await sleep(100);
      s = await status(id);
    }
    expect(s).toMatchObject({ status: 'failed', error: { code: 'NO_NODE_AVAILABLE' } });
    expect(s.error!.message).toMatch(/no runtime node is alive/);
    expect(await held()).toEqual({ places: 0, bytes: 0 });
    expect(await redis.exists(k.inputs(id))).toBe(0);
    expect(await w1Queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed')).toEqual({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
    // A node back under the same id finds nothing of it: only the first call was ever counted.
    await worker('w1');
    await sleep(3000);
    expect(await invocations()).toBe(1);
    expect((await status(id)).status).toBe('failed');
  }, 60_000);

  it("one whose deadline passed before the grace ended is failed TIMEOUT (its caller's deadline ended it), saying what to do, not NO_NODE_AVAILABLE", async () => {
    const last = procs.filter((p) => p.nodeId === 'w1').at(-1);
    const w = last && last.child.exitCode === null && last.child.signalCode === null ? last : await routableWorker('w1');
    w.child.kill('SIGSTOP');
    const res = await fetch(`${gw.base}/functions/short/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(await w1Queue.getWaitingCount()).toBe(1);
    w.kill9();
    await w.exited;
    let s = await status(id);
    for (let i = 0; i < 250 && s.status === 'waiting'; i++) {
      await sleep(100);
      s = await status(id);
    }
    expect(s).toMatchObject({ status: 'failed', error: { code: 'TIMEOUT' } });
    expect(s.error!.message).toMatch(/^the invocation of short reached its deadline \(the function's timeoutMs\) on the queue of node w1, which died, with no live node to take it \(no runtime node is alive.*\); start a node, or raise the function's timeoutMs past a node's restart$/);
    expect(await held()).toEqual({ places: 0, bytes: 0 });
    expect(await w1Queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed')).toEqual({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
  }, 60_000);

  it('a node restarted under its NODE_ID within the grace runs a waiting call: completed, counted once', async () => {
    const last = procs.filter((p) => p.nodeId === 'w1').at(-1)!;
    const w = last.child.exitCode === null && last.child.signalCode === null ? last : await routableWorker('w1');
    const before = await invocations();
    w.child.kill('SIGSTOP');
    const id = await submit();
    expect(await w1Queue.getWaitingCount()).toBe(1);
    w.kill9();
    await w.exited;
    await worker('w1');
    let s = await status(id);
    for (let i = 0; i < 200 && s.status !== 'completed' && s.status !== 'failed'; i++) {
      await sleep(100);
      s = await status(id);
    }
    expect(s.status).toBe('completed');
    expect(await invocations()).toBe(before + 1);
    expect(await held()).toEqual({ places: 0, bytes: 0 });
  }, 60_000);

  it('one the dead node had taken is failed only after the grace a sync call gets (room for a restart under its NODE_ID), then the same way', async () => {
    const last = procs.filter((p) => p.nodeId === 'w1').at(-1)!;
    const w = last.child.exitCode === null && last.child.signalCode === null ? last : await routableWorker('w1');
    // ~0.05 s of MatMuls, after a cold load: taken by w1, which is stopped while it loads or runs it.
    const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } } });
    const res = await fetch(`${gw.base}/functions/slow/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    for (let i = 0; i < 200 && (await w1Queue.getActiveCount()) === 0; i++) await sleep(10);
    w.child.kill('SIGSTOP');
    expect(await w1Queue.getActiveCount()).toBe(1);
    w.kill9();
    await w.exited;
    // Declared dead after 3 s; the grace is RESTART_GRACE_MS more (6 s): still held for a restart at 5 s.
    await sleep(5000);
    expect((await status(id)).status).not.toBe('failed');
    let st = await status(id);
    for (let i = 0; i < 200 && st.status !== 'failed'; i++) {
      await sleep(100);
      st = await status(id);
    }
    expect(st).toMatchObject({ status: 'failed', error: { code: 'NO_NODE_AVAILABLE' } });
    expect(await w1Queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed')).toEqual({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
  }, 90_000);
});
