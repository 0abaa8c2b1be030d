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
 * its caller had its 503, so neither /stats nor /metrics counts it as a call that ran.
 */

const prefix = `tbr${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
let w1: Proc;
const { procs, env, worker, stop } = workerProcs(prefix, () => s3);
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
  [gw, w1] = await Promise.all([startProc('gw', 'gateway', env()), worker('w1')]);
  procs.push(gw);
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
