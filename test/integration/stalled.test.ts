import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { Queue, Worker } from 'bullmq';
import { createRedis } from '../../queue/connection';
import { JOB_OPTIONS } from '../../queue/dispatcher';
import { keys } from '../../queue/keys';
import { stalledOut, stallLimit } from '../../queue/poison';
import { deliver, readAnswer } from '../../queue/replies';
import { JOB } from '../../queue/wire';
import pino from 'pino';
import { register, stats } from '../support/failover-drill';
import { floats } from '../support/models';
import { startS3Process } from '../support/s3';
import { startProc, stopAll, type Proc } from '../support/procs';
import { deleteKeys } from '../support/brulee';
import { cutProxy, type CutProxy } from '../support/cut-proxy';

/*
 * Jobs BullMQ gives up as stalled: a node's BullMQ worker fails a job whose node lost its hold on
 * it (its lock lapsed) more than maxStalledCount times, without running it, and drops it; before,
 * nobody answered it (an async status read 'waiting' until the id expired, a load's caller hung to
 * its timeout, its admission place was held to its deadline, an hour for an async call).
 *
 * Real processes: a gateway, a worker `px` with JOB_LOCK_MS=1000 (its hold on a job, and its stall
 * check, every second) and MAX_NODE_DEATHS_PER_JOB=1 (a job is given up the first time its node
 * loses it), and an S3 model store in a process of its own, SIGSTOPped once the model is
 * registered: the worker's fetch of the model waits, so the call stays active, and no run of it can
 * answer first. The worker is SIGSTOPped for 2.5 s (its lock lapses; its heartbeats, every 2 s, are
 * not missed long enough to be declared dead) and SIGCONTinued: its own stall check finds the job.
 */

const prefix = `stalled${process.pid}`;
const k = keys(prefix);
const redis = createRedis(inject('redisUrl'));
const s3Dir = mkdtempSync(join(tmpdir(), 'brulee-stalled-s3-'));
let s3: ChildProcess;
let s3Env: Record<string, string>;
let gw: Proc;
let px: Proc;
/** Every worker process started (restarts included), stopped at the end. */
const procs: Proc[] = [];

const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, HEARTBEAT_MS: '2000', POPULARITY_CRON: '0 0 1 1 *', ...s3Env });
/**
 * Workers that are never SIGSTOPped (`lapse`) beat every second: a process restarted under the id
 * of one killed takes the id over once its predecessor has been silent 3 of its own beats (3 s, not
 * 6 s; runtime/node.ts claimId), and one started beside a node held up declares it dead (its reaper)
 * after 3 s. A stopped worker keeps 2 s beats, so that its 2.5 s stop is not a death.
 */
const QUICK = { HEARTBEAT_MS: '1000' };
const until = async <T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> => {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
};
const queue = (node: string) => `${k.bullPrefix}:${k.nodeQueue(node)}`;
/** Stops px long enough for its hold on its jobs (1 s, renewed every 0.5 s) to lapse. */
const lapse = async (p = px) => {
  p.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 2500));
  p.child.kill('SIGCONT');
};
/** An async invocation's status once done, or undefined after `timeoutMs` (its last status). */
async function settled(id: string, timeoutMs: number): Promise<any> {
  let last: any;
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    last = (await (await fetch(`${gw.base}/invocations/${id}`)).json()) as any;
    if (last.status === 'completed' || last.status === 'failed') return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}
async function poisonCounts(): Promise<{ stats: number; metrics: number }> {
  const s = await stats(gw.base);
  const text = await (await fetch(`${gw.base}/metrics`)).text();
  return { stats: s.failover.poisonJobs, metrics: Number(/^brulee_poison_jobs_total (\d+)$/m.exec(text)?.[1]) };
}

beforeAll(async () => {
  ({ child: s3, env: s3Env } = await startS3Process(s3Dir));
  // MAX_NODE_DEATHS_PER_JOB is the cluster's: the reaper runs in the gateway and applies its own, so
  // the gateway's is the restart test's 4 too (a worker restarted slowly, under load, is declared dead
  // and its deaths are counted by the reaper; at the default 2 it gave the call up at the 3rd).
  gw = await startProc('gw', 'gateway', { ...env(), MAX_NODE_DEATHS_PER_JOB: '4' });
  px = await startProc('px', 'worker', { ...env(), NODE_ID: 'px', JOB_LOCK_MS: '1000', MAX_NODE_DEATHS_PER_JOB: '1', MEMORY_BUDGET: '256MiB' });
  await register(gw.base, [{ fn: 'held', bytes: mlpModel({ inputSize: 2048, hidden: [16], outputSize: 2, seed: 5 }) }], '?timeoutMs=60000');
  await register(gw.base, [{ fn: 'held-load', bytes: mlpModel({ inputSize: 16, hidden: [16], outputSize: 2, seed: 6 }) }], '?timeoutMs=60000');
  // From here on, px's fetch of a model waits.
  s3.kill('SIGSTOP');
}, 120_000);

afterAll(async () => {
  s3?.kill('SIGKILL');
  await stopAll([gw, px, ...procs].filter(Boolean));
  redis.disconnect();
  await deleteKeys(prefix);
  rmSync(s3Dir, { recursive: true, force: true });
});

describe('a job BullMQ gives up as stalled (real worker process, SIGSTOP past its lock)', () => {
  it('async: its status is failed with NODE_CRASHED (not waiting), counted once in /stats and /metrics, its place and input bytes given back', async () => {
    // 8 KiB of inputs: stored under a key of their own (past INLINE_BYTES), which goes with the answer.
    const res = await fetch(`${gw.base}/functions/held/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 2048], data: floats(2048, 1) } } }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await until('px took the call', async () => ((await redis.lpos(`${queue('px')}:active`, id)) === null ? undefined : true), 20_000);
    expect([await redis.zcard(k.admitted('held')), await redis.exists(k.inputs(id))]).toEqual([1, 1]);
    await lapse();
    const s = await settled(id, 20_000);
    console.log(`[stalled] async: ${JSON.stringify(s)}`);
    expect(s?.status).toBe('failed');
    expect(s.error.code).toBe('NODE_CRASHED');
    expect(s.error.message).toContain("node px lost this invocation of function 'held' (version 1) 1 time");
    expect(s.error.message).toContain('JOB_LOCK_MS');
    expect(s.error.message).toContain('MAX_NODE_DEATHS_PER_JOB (now 1)');
    expect(await poisonCounts()).toEqual({ stats: 1, metrics: 1 });
    // Its place among the function's calls and its input bytes given back, its input key gone; off px's queue.
    expect([await redis.zcard(k.admitted('held')), Number((await redis.get(k.queuedBytesTotal)) ?? 0), await redis.exists(k.inputs(id))]).toEqual([0, 0, 0]);
    expect(await redis.lpos(`${queue('px')}:active`, id)).toBeNull();
    expect(await redis.exists(`${queue('px')}:${id}`)).toBe(0);
  }, 60_000);

  it('a load (its caller waits on its reply): the caller gets 500 NODE_CRASHED at once, not at its timeout', async () => {
    const before = await poisonCounts();
    const t0 = Date.now();
    const call = fetch(`${gw.base}/v2/repository/models/held-load/load`, { method: 'POST', signal: AbortSignal.timeout(55_000) });
    call.catch(() => undefined);
    // The first test's call left px's queue: the job active there now is the load.
    await until('px took the load', async () => ((await redis.llen(`${queue('px')}:active`)) > 0 ? true : undefined), 20_000);
    await lapse();
    const r = await call;
    const body = (await r.json()) as any;
    console.log(`[stalled] load: ${JSON.stringify({ status: r.status, ms: Date.now() - t0, body })}`);
    // A /v2 error is its message (KServe's form).
    expect(r.status).toBe(500);
    expect(body.error).toContain("node px lost this load of function 'held-load' (version 1) 1 time");
    expect(Date.now() - t0).toBeLessThan(40_000);
    expect(await poisonCounts()).toEqual({ stats: before.stats + 1, metrics: before.metrics + 1 });
  }, 60_000);
});

describe('an unload its node lost (MAX_NODE_DEATHS_PER_JOB=1)', () => {
  it('is run again, not given up: answered with what it dropped, nothing counted in poisonJobs', async () => {
    const before = await poisonCounts();
    const id = randomUUID();
    const q = new Queue(k.nodeQueue('px'), { connection: redis, prefix: k.bullPrefix });
    // While px is stopped, a worker of the test takes the unload off px's queue and dies holding it
    // (closed without finishing: the job stays active, its 1 s lock lapsing).
    px.child.kill('SIGSTOP');
    try {
      await q.add(JOB.unload, { fn: 'held', cause: 'unload', reason: 'stalled.test', reply: { id, answerTtlMs: 60_000 } }, { ...JOB_OPTIONS, jobId: id });
      let took!: () => void;
      const taken = new Promise<void>((r) => (took = r));
      const conn = createRedis(inject('redisUrl'));
      const w = new Worker(k.nodeQueue('px'), () => (took(), new Promise(() => undefined)), { connection: conn, prefix: k.bullPrefix, lockDuration: 1000 });
      await taken;
      await w.close(true);
      conn.disconnect();
    } finally {
      px.child.kill('SIGCONT');
      await q.close();
    }
    // px's stall check finds it lost (stalled once: its limit), and px takes it again.
    const answer = await until('the unload answered', () => readAnswer(redis, k, id), 20_000);
    console.log(`[stalled] unload: ${JSON.stringify(answer)}`);
    expect(answer).toMatchObject({ ok: { dropped: expect.any(Number) } });
    expect(await poisonCounts()).toEqual(before);
  }, 60_000);
});

describe('a node restarted under the same NODE_ID (compose, a StatefulSet) with MAX_NODE_DEATHS_PER_JOB=4', () => {
  it('BullMQ does not give the call up before its deaths are counted: the 4th death gives it up, answered NODE_CRASHED naming them', async () => {
    // px (limit 1) leaves cleanly, its stopped fetches let go first; the store is stopped again once this test's model is in it.
    s3.kill('SIGCONT');
    await px.stop(20_000);
    await register(gw.base, [{ fn: 'restarted', bytes: mlpModel({ inputSize: 16, hidden: [16], outputSize: 2, seed: 7 }) }], '?timeoutMs=60000');
    s3.kill('SIGSTOP');
    const before = await poisonCounts();
    const start = () => startProc('py', 'worker', { ...env(), ...QUICK, NODE_ID: 'py', JOB_LOCK_MS: '1000', MAX_NODE_DEATHS_PER_JOB: '4', MEMORY_BUDGET: '256MiB' });
    let py = await start();
    procs.push(py);
    const res = await fetch(`${gw.base}/functions/restarted/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 16], data: floats(16, 2) } } }) });
    const { id } = (await res.json()) as { id: string };
    const job = `${queue('py')}:${id}`;
    for (let death = 1; death <= 4; death++) {
      // Taken (again: after each restart, py's stall check finds its predecessor's hold lapsed and
      // runs it again), or given up (answered: not killed then).
      const seen = await until(
        `py took the call for the ${death}th time`,
        async () => {
          const stc = await redis.hget(job, 'stc');
          if (await redis.exists(k.result(id))) return 'given up';
          return Number(stc ?? 0) === death - 1 && (await redis.lpos(`${queue('py')}:active`, id)) !== null ? 'taken' : undefined;
        },
        20_000,
      );
      if (seen === 'given up') break;
      py.kill9();
      await py.exited;
      py = await start();
      procs.push(py);
    }
    const s = await settled(id, 20_000);
    console.log(`[stalled] restarts: ${JSON.stringify(s)}`);
    expect(s?.status).toBe('failed');
    expect(s.error.code).toBe('NODE_CRASHED');
    expect(s.error.message).toContain("this invocation of function 'restarted' (version 1) died 4 times (nodes py, py, py, py)");
    expect(await poisonCounts()).toEqual({ stats: before.stats + 1, metrics: before.metrics + 1 });
    expect(await redis.exists(job)).toBe(0);
  }, 150_000);
});

describe('a node that dies, or is held up, in the middle of giving a job up (its Redis commands cut right after one, then kill -9; or held)', () => {
  let proxy: CutProxy | undefined;
  /** Where the cut goes, for the call `id` once it is known. */
  let cutAfter: (args: string[]) => boolean = () => false;
  /** Where its commands are held (until `proxy.release()`). */
  let holdAt: (args: string[]) => boolean = () => false;
  afterEach(() => proxy?.close());

  /** Worker `node` (MAX_NODE_DEATHS_PER_JOB=1) through a proxy that cuts it off after `cutAfter`'s command (or holds it at `holdAt`'s), and an async call it holds. */
  async function callGivenUp(node: string, fn: string, seed: number): Promise<{ id: string; worker: Proc }> {
    s3.kill('SIGCONT');
    // The only worker: the call goes to it (the others leave cleanly, their stopped fetches let go first).
    await Promise.all([px, ...procs].map((p) => p.stop(20_000)));
    await register(gw.base, [{ fn, bytes: mlpModel({ inputSize: 16, hidden: [16], outputSize: 2, seed }) }], '?timeoutMs=60000');
    s3.kill('SIGSTOP');
    proxy = await cutProxy(inject('redisUrl'), (args) => (cutAfter(args) ? 'after' : holdAt(args) ? 'hold' : undefined));
    const worker = await startProc(node, 'worker', { ...env(), REDIS_URL: proxy.url, NODE_ID: node, JOB_LOCK_MS: '1000', MAX_NODE_DEATHS_PER_JOB: '1', MEMORY_BUDGET: '256MiB' });
    procs.push(worker);
    const res = await fetch(`${gw.base}/functions/${fn}/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 16], data: floats(16, 3) } } }) });
    const { id } = (await res.json()) as { id: string };
    await until(`${node} took the call`, async () => ((await redis.lpos(`${queue(node)}:active`, id)) === null ? undefined : true), 20_000);
    return { id, worker };
  }

  it('dead right after the job left its queue (BullMQ finished it): its caller has its NODE_CRASHED all the same, counted once', async () => {
    const before = await poisonCounts();
    let jobKey = '';
    // The command that takes the job off its queue: BullMQ's moveToFinished (its job key, and its target).
    cutAfter = (args) => args.includes(jobKey) && (args.includes('failed') || args.includes('completed'));
    const call = callGivenUp('pz', 'cut-finished', 8);
    void call.then(({ id }) => (jobKey = `${queue('pz')}:${id}`), () => undefined);
    const { id, worker } = await call;
    await lapse(worker);
    await Promise.race([proxy!.cut, new Promise((_, reject) => setTimeout(() => reject(new Error(`pz never finished the job:\n${worker.output()}`)), 20_000))]);
    worker.kill9();
    await worker.exited;
    // Nothing of it is left on the queue: nobody else would answer it.
    expect(await redis.exists(jobKey)).toBe(0);
    const s = await settled(id, 15_000);
    console.log(`[stalled] dead after finishing: ${JSON.stringify(s)}`);
    expect(s?.status).toBe('failed');
    expect(s.error.message).toContain("node pz lost this invocation of function 'cut-finished' (version 1) 1 time");
    expect(await poisonCounts()).toEqual({ stats: before.stats + 1, metrics: before.metrics + 1 });
  }, 90_000);

  it('dead right after its answer, the job still on its queue: the node restarted under its NODE_ID gives it up again without a second answer or count', async () => {
    const before = { ...(await poisonCounts()), duplicateRuns: (await stats(gw.base)).failover.duplicateRuns };
    let result = '';
    // The script that answers it (its result key; not a read of it).
    cutAfter = (args) => /^eval/i.test(args[0] ?? '') && args.includes(result);
    const call = callGivenUp('pa', 'cut-answered', 9);
    void call.then(({ id }) => (result = k.result(id)), () => undefined);
    const { id, worker } = await call;
    await lapse(worker);
    await Promise.race([proxy!.cut, new Promise((_, reject) => setTimeout(() => reject(new Error(`pa never answered the job:\n${worker.output()}`)), 20_000))]);
    worker.kill9();
    await worker.exited;
    const jobKey = `${queue('pa')}:${id}`;
    expect(await redis.exists(jobKey)).toBe(1);
    // Its successor counts the death, finds the job at the limit, and gives it up: answered already.
    procs.push(await startProc('pa', 'worker', { ...env(), ...QUICK, NODE_ID: 'pa', JOB_LOCK_MS: '1000', MAX_NODE_DEATHS_PER_JOB: '1', MEMORY_BUDGET: '256MiB' }));
    await until('the job left its queue', async () => ((await redis.exists(jobKey)) === 0 ? true : undefined), 20_000);
    const s = await settled(id, 5000);
    console.log(`[stalled] dead after answering: ${JSON.stringify(s)}`);
    expect(s?.status).toBe('failed');
    expect(s.error.message).toContain("node pa lost this invocation of function 'cut-answered' (version 1) 1 time");
    expect({ ...(await poisonCounts()), duplicateRuns: (await stats(gw.base)).failover.duplicateRuns }).toEqual({ stats: before.stats + 1, metrics: before.metrics + 1, duplicateRuns: before.duplicateRuns });
  }, 90_000);

  it('held up between taking the job again and giving it up, until declared dead and its job moved to a live node: it gives nothing up there (its lock token no longer holds), the job is answered once, by the live node', async () => {
    const counts = async () => ({ ...(await poisonCounts()), duplicateRuns: (await stats(gw.base)).failover.duplicateRuns });
    const before = await counts();
    let result = '';
    cutAfter = () => false;
    // Taking the job again (its node lost it once: its limit), pb first asks whether it has an
    // answer (queue/replies.ts hasAnswer: EXISTS of its result): held there, with every later
    // command of that connection, its heartbeats too, while its BullMQ worker's connection goes on.
    holdAt = (args) => /^exists$/i.test(args[0] ?? '') && result !== '' && args[1] === result;
    const call = callGivenUp('pb', 'held-up', 10);
    void call.then(({ id }) => (result = k.result(id)), () => undefined);
    const { id, worker } = await call;
    await lapse(worker);
    await Promise.race([proxy!.held, new Promise((_, reject) => setTimeout(() => reject(new Error(`pb never took the job again:\n${worker.output()}`)), 20_000))]);
    // A live node: once pb is declared dead (silent 3 s by pc's reaper, 6 s by the gateway's), the reaper records that death (1 of the
    // gateway's 4), takes the job's lock from pb and moves the job there. Its fetch of the model
    // waits (the store is stopped), so it cannot answer before pb goes on.
    const pc = await startProc('pc', 'worker', { ...env(), ...QUICK, NODE_ID: 'pc', MEMORY_BUDGET: '256MiB' });
    procs.push(pc);
    await until('the reaper to move the job to pc', async () => ((await redis.lpos(`${queue('pc')}:active`, id)) !== null && (await redis.exists(`${queue('pb')}:${id}`, k.jobLock('pb', id))) === 0 ? true : undefined), 40_000);
    // pb goes on: no answer yet, and its node lost the job once (its limit), so it would give it up, but only while its lock holds its token.
    proxy!.release();
    await new Promise((r) => setTimeout(r, 2000));
    expect(await redis.exists(k.result(id))).toBe(0);
    s3.kill('SIGCONT');
    const s = await settled(id, 30_000);
    console.log(`[stalled] held up: ${JSON.stringify(s)}`);
    expect(s).toMatchObject({ status: 'completed', node: 'pc' });
    // pb's first run, its fetch let go, ends too, without its hold: dropped, uncounted.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await counts()).toEqual(before);
    expect((await stats(gw.base)).functions['held-up']?.invocations).toBe(1);
  }, 120_000);
});

describe('stalledOut against a real Redis: once, and never over a run that answered first', () => {
  const o = () => ({ redis, keys: k, log: pino({ level: 'silent' }), limit: 2 });
  const job = (id: string) => ({ name: 'invoke', data: { model: { fn: 'f', version: 2 } as never, reply: { id, answerTtlMs: 60_000 } }, stalledCounter: 2 });
  const counts = async () => {
    const h = await redis.hgetall(k.cluster);
    return { poisonJobs: Number(h.poisonJobs ?? 0), duplicateRuns: Number(h.duplicateRuns ?? 0) };
  };

  it('a job given up twice (a retry after a lost reply) is answered and counted once', async () => {
    const before = await counts();
    const id = randomUUID();
    expect(await stalledOut(o(), 'n1', job(id))).toBe(true);
    expect(await stalledOut(o(), 'n1', job(id))).toBe(false);
    expect(await counts()).toEqual({ ...before, poisonJobs: before.poisonJobs + 1 });
    expect(await readAnswer(redis, k, id)).toMatchObject({ error: expect.stringContaining('NODE_CRASHED') });
  });

  it('a job a run answered first keeps that answer: nothing counted, not even as a duplicate run', async () => {
    const before = await counts();
    const id = randomUUID();
    await deliver(redis, k, { id, answerTtlMs: 60_000 }, { ok: { done: true } });
    expect(await stalledOut(o(), 'n1', job(id))).toBe(false);
    expect(await counts()).toEqual(before);
    expect(await readAnswer(redis, k, id)).toMatchObject({ ok: { done: true } });
  });

  it('a job its node no longer holds (its lock taken: the reaper moved or answered it while the node was held dead) is not given up by it; held, it is', async () => {
    const before = await counts();
    const id = randomUUID();
    const lost = { ...job(id), id };
    // The reaper took it while n1 was stopped (queue/reaper.ts COUNT_MOVE): n1, resumed, gives nothing up.
    await redis.set(k.jobLock('n1', id), 'moved', 'PX', 60_000);
    expect(await stalledOut(o(), 'n1', lost, undefined, 'n1-token')).toBe(false);
    expect(await counts()).toEqual(before);
    expect(await readAnswer(redis, k, id)).toBeUndefined();
    await redis.set(k.jobLock('n1', id), 'n1-token', 'PX', 60_000);
    expect(await stalledOut(o(), 'n1', lost, undefined, 'n1-token')).toBe(true);
    expect(await counts()).toEqual({ ...before, poisonJobs: before.poisonJobs + 1 });
    expect(await readAnswer(redis, k, id)).toMatchObject({ error: expect.stringContaining('NODE_CRASHED') });
  });

  it('a node gives a job up once its queue lost it MAX_NODE_DEATHS_PER_JOB times (stalled more than limit - 1); 0: never', () => {
    expect([stallLimit(1), stallLimit(2), stallLimit(4), stallLimit(0)]).toEqual([0, 1, 3, Number.MAX_SAFE_INTEGER]);
  });
});
