import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { deleteKeys } from '../support/brulee';
import { register, stats } from '../support/failover-drill';
import { startProc, stopAll, type Proc } from '../support/procs';
import { startS3Process } from '../support/s3';
import { until } from '../support/within';

/*
 * A node restarted under the NODE_ID of a process that died (kill -9) before the reaper moved what
 * it held counts that death against each job the dead process had taken (queue/poison.ts
 * settleCrashed, at the node's start) and gives up those at MAX_NODE_DEATHS_PER_JOB. A job still
 * queued there (on its BullMQ queue or its lane, not taken: no process ran it) must count no death,
 * and be run and answered once, by the restarted node.
 *
 * Real processes: a gateway whose reaper waits 15 s (HEARTBEAT_MS=5000), so that the restarted
 * node's settleCrashed, not the reaper, meets the jobs; a worker pq with one slot,
 * MAX_NODE_DEATHS_PER_JOB=1 and HEARTBEAT_MS=500 (restarted, it takes its id back 1.5 s after its
 * predecessor's last beat); and an S3 model store in a process of its own, SIGSTOPped once the
 * model is registered: pq's fetch of the model waits, so the first call stays taken (active) and
 * holds the slot, and the others wait behind it: an async call on its BullMQ queue, a sync call in
 * its lane's active list (taken by the lane's blocking wait, waiting for the slot: taken, so its
 * death is counted as well), and one still in its lane.
 */

const prefix = `sq${process.pid}`;
const k = keys(prefix);
const redis = createRedis(inject('redisUrl'));
const s3Dir = mkdtempSync(join(tmpdir(), 'brulee-settle-s3-'));
let s3: ChildProcess;
let s3Env: Record<string, string>;
let gw: Proc;
const procs: Proc[] = [];
const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, POPULARITY_CRON: '0 0 1 1 *', ...s3Env });
const worker = async () => {
  const w = await startProc('pq', 'worker', { ...env(), NODE_ID: 'pq', HEARTBEAT_MS: '500', WORKER_CONCURRENCY: '1', MAX_NODE_DEATHS_PER_JOB: '1', MEMORY_BUDGET: '256MiB' });
  procs.push(w);
  return w;
};
const x = { x: { type: 'float32', dims: [1, 16], data: new Array(16).fill(0.25) } };

async function submit(): Promise<string> {
  const res = await fetch(`${gw.base}/functions/q/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function settled(id: string, timeoutMs: number): Promise<any> {
  let last: any;
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    last = await (await fetch(`${gw.base}/invocations/${id}`)).json();
    if (last.status === 'completed' || last.status === 'failed') break;
  }
  return last;
}

async function counts(): Promise<Record<string, number>> {
  const s = await stats(gw.base);
  const { poisonJobs, nodeDeaths, duplicateRuns, jobsRerouted } = s.failover;
  return { poisonJobs, nodeDeaths, duplicateRuns, jobsRerouted, invocations: s.functions.q?.invocations ?? 0, places: await redis.zcard(k.admitted('q')) };
}

beforeAll(async () => {
  ({ child: s3, env: s3Env } = await startS3Process(s3Dir));
  gw = await startProc('gw', 'gateway', { ...env(), HEARTBEAT_MS: '5000', MAX_QUEUED_PER_FUNCTION: '10' });
  await register(gw.base, [{ fn: 'q', bytes: mlpModel({ inputSize: 16, hidden: [16], outputSize: 2, seed: 21 }) }], '?timeoutMs=60000');
}, 120_000);

afterAll(async () => {
  s3?.kill('SIGKILL');
  await stopAll([gw, ...procs].filter(Boolean));
  redis.disconnect();
  await deleteKeys(prefix);
  rmSync(s3Dir, { recursive: true, force: true });
});

it('a restarted node gives up the jobs its predecessor had taken (their death counted) and runs the ones still queued once, counting no death against them', async () => {
  let pq = await worker();
  // Routable from the gateway's node list (read at most every 500 ms).
  await new Promise((r) => setTimeout(r, 600));
  // From here on, pq's fetch of the model waits.
  s3.kill('SIGSTOP');
  const q = new Queue(k.nodeQueue('pq'), { connection: redis, prefix: k.bullPrefix });
  try {
    const taken = await submit();
    await until('pq to take the first call', async () => (await q.getJobState(taken)) === 'active', 20_000);
    const queued = await submit();
    // Two sync calls on pq's lane: its lane's blocking wait, which holds no slot, takes the first
    // (into its active list, where it waits for the slot); the second stays queued.
    const call = () => fetch(`${gw.base}/functions/q/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
    const syncTaken = call();
    await until('pq to take the first sync call', async () => (await redis.llen(k.laneActive('pq'))) === 1, 20_000);
    const sync = call();
    await until('the second async call and the second sync call to queue', async () => (await q.getJobState(queued)) === 'waiting' && (await redis.llen(k.lane('pq'))) === 1, 20_000);
    expect([await q.getJobState(taken), await redis.llen(k.laneActive('pq'))]).toEqual(['active', 1]);
    const before = await counts();
    expect(before.places).toBe(4);

    pq.kill9();
    await pq.exited;
    pq = await worker();
    // Its start counted the death against the call its predecessor had taken, and gave that up (limit 1).
    const t = await settled(taken, 10_000);
    console.log(`[settle-queued] taken: ${JSON.stringify(t)}`);
    expect(t).toMatchObject({ status: 'failed', error: { code: 'NODE_CRASHED' } });
    expect(t.error.message).toContain('died 1 times (nodes pq)');
    expect(await redis.scard(k.jobDeaths(taken))).toBe(1);
    // So was the sync call it had taken (waiting for the slot there).
    const st = await syncTaken;
    expect([st.status, ((await st.json()) as { error?: { code: string } }).error?.code]).toEqual([500, 'NODE_CRASHED']);
    // No death counted against the queued ones: still to run (the model's fetch waits).
    expect(await redis.exists(k.jobDeaths(queued))).toBe(0);
    expect((await settled(queued, 500)).status).not.toBe('failed');

    s3.kill('SIGCONT');
    const r = await sync;
    const body = (await r.json()) as any;
    const s = await settled(queued, 30_000);
    console.log(`[settle-queued] queued: ${JSON.stringify({ status: s.status, node: s.node })}, sync: ${JSON.stringify({ status: r.status, node: body.node, error: body.error })}`);
    expect(s).toMatchObject({ status: 'completed', node: 'pq' });
    expect([r.status, body.node]).toEqual([200, 'pq']);
    expect(await redis.exists(k.jobDeaths(queued))).toBe(0);
    // Two runs counted (the queued calls), two given up (the taken ones); pq never declared dead
    // (its restart met its jobs, not the reaper); nothing run twice; every place given back.
    await new Promise((res) => setTimeout(res, 500));
    expect(await counts()).toEqual({ ...before, poisonJobs: before.poisonJobs! + 2, invocations: before.invocations! + 2, places: 0 });
  } finally {
    s3.kill('SIGCONT');
    await q.close();
  }
}, 120_000);
