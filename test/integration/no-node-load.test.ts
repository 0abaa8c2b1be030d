import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { deleteKeys } from '../support/brulee';
import { startProc, stopAll, type Proc } from '../support/procs';
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
 */

const prefix = `nl${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
const { procs, env, worker } = workerProcs(prefix, () => s3);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redis = createRedis(inject('redisUrl'));
let w1Queue: Queue;

async function post(path: string): Promise<{ status: number; code?: string; body: unknown }> {
  const res = await fetch(`${gw.base}${path}`, { method: 'POST' });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code, body };
}

async function prewarms(): Promise<number> {
  const s = (await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { prewarms?: number; loads: number }> };
  return s.functions.m!.loads;
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
  [gw] = await Promise.all([startProc('gw', 'gateway', env())]);
  procs.push(gw);
  // A timeout well past what the test waits for an answer: a 504 would mean it waited it out.
  const put = await fetch(`${gw.base}/functions/m?timeoutMs=25000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) });
  expect(put.status).toBe(201);
}, 120_000);

afterAll(async () => {
  await w1Queue?.close();
  redis.disconnect();
  await stopAll(procs);
  await s3?.stop();
  await deleteKeys(prefix);
});

describe('the only worker died with a load or an unload on its queue', () => {
  it('a load is answered 503 NO_NODE_AVAILABLE, not 504 at its timeout, and never runs later', async () => {
    const w = await worker('w1');
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
    const w = last.child.exitCode === null && last.child.signalCode === null ? last : await worker('w1');
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
