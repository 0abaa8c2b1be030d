import { Queue } from 'bullmq';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { cutProxy, type CutProxy } from '../support/cut-proxy';
import { startProc, type Proc } from '../support/procs';
import { startS3, type TestS3 } from '../support/s3';
import { workerProcs } from '../support/worker-procs';

/*
 * A gateway answers the sync calls and loads that wait on a dead node no live node can take over
 * (queue/dispatcher.ts orphans, once per node-list refresh): each is taken back from the dead node,
 * then answered 503. One take-back that threw (a Redis command refused or lost) ended the whole
 * pass, so every call watched after it waited for the next pass, and while that one kept failing
 * (until its own caller's timeout), they waited out their whole timeout for a 504.
 *
 * Real processes: a gateway whose Redis connections go through a proxy that, once armed, fails
 * every command on the dead worker's BullMQ queue (the load's take-back reads its state there),
 * and a worker killed -9 with a load on its queue (watched first) and sync calls on its lane
 * (taken back from the lane, not its queue).
 */

const prefix = `orph${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
let proxy: CutProxy;
let armed = false;
const { procs, env, stop } = workerProcs(prefix, () => s3);
const redis = createRedis(inject('redisUrl'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Keys of worker w1's BullMQ queue. */
const w1Queue = `${k.bullPrefix}:${k.nodeQueue('w1')}:`;
// Dead after 6 s of silence (3 beats): room to queue the calls on the killed worker first.
const HEARTBEAT = { HEARTBEAT_MS: '2000' };
const TIMEOUT_MS = 25_000;

async function post(path: string, body?: unknown): Promise<{ status: number; code?: string; ms: number }> {
  const t0 = Date.now();
  const res = await fetch(`${gw.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const b = (await res.json()) as { error?: { code: string } | string };
  return { status: res.status, code: typeof b.error === 'object' ? b.error.code : b.error, ms: Date.now() - t0 };
}

beforeAll(async () => {
  s3 = await startS3();
  proxy = await cutProxy(inject('redisUrl'), (args) => (armed && args.some((a) => a.startsWith(w1Queue)) ? 'fail' : undefined));
  gw = await startProc('gw', 'gateway', { ...env(), ...HEARTBEAT, REDIS_URL: proxy.url });
  procs.push(gw);
  for (const [fn, seed] of [['a', 1], ['m', 2]] as const) {
    const put = await fetch(`${gw.base}/functions/${fn}?timeoutMs=${TIMEOUT_MS}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed }) });
    expect(put.status).toBe(201);
  }
}, 180_000);

afterAll(async () => {
  proxy?.close();
  redis.disconnect();
  await stop();
});

it('one watched call whose take-back fails does not hold back the others: they are answered 503 at once, none left on the dead lane, none counted', async () => {
  const w1 = await startProc('w1', 'worker', { ...env(), ...HEARTBEAT, NODE_ID: 'w1' });
  procs.push(w1);
  // Routable from the gateway's node list (read at most every 500 ms).
  await sleep(600);
  const q = new Queue(k.nodeQueue('w1'), { connection: redis, prefix: k.bullPrefix });
  const counts = async () => {
    const s = (await (await fetch(`${gw.base}/stats`)).json()) as { functions: Record<string, { invocations: number; loads: number }> };
    return { invocations: s.functions.m!.invocations, loads: s.functions.a!.loads };
  };
  const before = await counts();
  try {
    w1.kill9();
    await w1.exited;
    // Watched first: the load, on w1's queue.
    const load = post('/v2/repository/models/a/load');
    for (let i = 0; i < 100 && (await q.getWaitingCount()) === 0; i++) await sleep(20);
    expect(await q.getWaitingCount()).toBe(1);
    armed = true;
    const N = 3;
    const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    const calls = Array.from({ length: N }, () => post('/functions/m/invoke', { inputs: x }));
    for (let i = 0; i < 100 && (await redis.llen(k.lane('w1'))) < N; i++) await sleep(20);
    expect(await redis.llen(k.lane('w1'))).toBe(N);
    const answered = await Promise.all(calls);
    console.log(`[orphans-pass] calls: ${JSON.stringify(answered)}, failed commands: ${proxy.failed}`);
    // Each answered 503 within a pass or two of the death (6 s), not 504 at its 25 s timeout.
    expect(answered.map((r) => [r.status, r.code])).toEqual(Array.from({ length: N }, () => [503, 'NO_NODE_AVAILABLE']));
    for (const r of answered) expect(r.ms).toBeLessThan(TIMEOUT_MS / 2);
    // The load's take-back did fail meanwhile: it is still waiting.
    expect(proxy.failed).toBeGreaterThan(0);
    expect(await q.getWaitingCount()).toBe(1);
    expect(await redis.llen(k.lane('w1'))).toBe(0);
    // Its take-back goes through once Redis takes its commands again: answered 503 too, off w1's queue.
    armed = false;
    const l = await load;
    expect([l.status, l.ms < TIMEOUT_MS]).toEqual([503, true]);
    expect(await q.getJobCounts('waiting', 'active', 'prioritized', 'delayed')).toEqual({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
    expect(await counts()).toEqual(before);
  } finally {
    armed = false;
    await q.close();
  }
}, 90_000);
