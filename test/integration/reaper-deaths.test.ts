import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { admit, ticketOf, type AdmissionRequest } from '../../queue/admission';
import { createRedis } from '../../queue/connection';
import { Dispatcher, JOB_OPTIONS } from '../../queue/dispatcher';
import { keys } from '../../queue/keys';
import { encodeLaneJob } from '../../queue/lane';
import { leaveCluster, writeHeartbeat, type NodeInfo } from '../../queue/nodes';
import { decodeAnswer, type ReplyTo } from '../../queue/replies';
import { Reaper } from '../../queue/reaper';
import type { InvokeJob, ModelRef } from '../../queue/wire';
import { deleteKeys } from '../support/brulee';

/*
 * The reaper's count of the nodes that died running a job, against a real Redis, with a dead node
 * made by hand (a heartbeat a minute old) and one live node: what a reaper that died half-way
 * leaves behind is picked up without counting or answering anything twice.
 */

const ns = `rd${process.pid}`;
const k = keys(ns);
const redisUrl = inject('redisUrl');
const redis = createRedis(redisUrl);
let dispatcher: Dispatcher;
let reaper: Reaper;
const queues: Queue[] = [];

const model: ModelRef = { fn: 'f', sha256: 'a'.repeat(64), version: 3, sizeBytes: 1000, loadMs: 10, execMs: 1, pinned: false };
const live: NodeInfo = { id: 'live', policy: 'lru', budgetBytes: 1e9, usedBytes: 0, concurrency: 1, resident: [], loads: 0, evictions: 0, startedAt: 0, heartbeatAt: 0 };

/** Node `id` silent for a minute: the next run declares it dead (silent). */
async function deadNode(id: string): Promise<void> {
  const [s] = await redis.time();
  await redis.multi().zadd(k.alive, Number(s) * 1000 - 60_000, id).hset(k.nodeOwner, id, 'gone').hset(k.nodes, id, JSON.stringify({ ...live, id })).exec();
}

function invokeJob(reply: ReplyTo, extra: Partial<InvokeJob> = {}): InvokeJob & { reply: ReplyTo } {
  return { model, inputs: { tensors: {} }, acceptedAt: 0, deadline: Date.now() + 60_000, ...extra, reply };
}

beforeAll(async () => {
  dispatcher = new Dispatcher({ redisUrl, redis, keys: k });
  reaper = new Reaper({ redis, keys: k, dispatcher, log: pino({ level: 'silent' }), deadAfterMs: 3000 });
});

afterEach(async () => {
  await Promise.all(queues.splice(0).map((q) => q.close()));
  await deleteKeys(ns);
});

afterAll(async () => {
  await reaper.close();
  await dispatcher.close();
  redis.disconnect();
});

describe("the reaper's count of node deaths per job", () => {
  it('a death recorded by a reaper that died before moving the job is counted once: the job moves', async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d1');
    const id = randomUUID();
    const frame = encodeLaneJob(id, 'invoke', invokeJob({ id, replyTo: k.replies('gw'), answerTtlMs: 60_000 }));
    await redis.lpush(k.laneActive('d1'), frame);
    // What a reaper that died right after recording this death left: the record, the job still there.
    await redis.sadd(k.jobDeaths(id), 'd1');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d1'], moved: 1 });
    expect(await redis.smembers(k.jobDeaths(id))).toEqual(['d1']);
    expect([await redis.llen(k.laneActive('d1')), await redis.llen(k.lane('live')), await redis.xlen(k.replies('gw'))]).toEqual([0, 1, 0]);
    expect(await redis.hget(k.cluster, 'poisonJobs')).toBeNull();
  });

  it("a lane job whose second node died is answered NODE_CRASHED, with its place and inputs given back, in one script; it is counted once", async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d2');
    const id = randomUUID();
    const admission: AdmissionRequest = { keys: { depth: k.admitted('f'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member: id, limits: { depth: 10, bytes: 1e6 }, bytes: 100, holdMs: 60_000 };
    expect((await admit(redis, admission)).admitted).toBe(true);
    await redis.set(k.inputs(id), 'x');
    const frame = encodeLaneJob(id, 'invoke', invokeJob({ id, replyTo: k.replies('gw'), answerTtlMs: 60_000 }, { admission: ticketOf(admission), inputs: { tensors: {}, key: k.inputs(id) } }));
    await redis.lpush(k.laneActive('d2'), frame);
    // It ran on d0 before, which died too.
    await redis.sadd(k.jobDeaths(id), 'd0');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d2'], moved: 0 });
    expect([await redis.llen(k.laneActive('d2')), await redis.llen(k.lane('live'))]).toEqual([0, 0]);
    const answers = await redis.xrangeBuffer(k.replies('gw'), '-', '+');
    expect(answers).toHaveLength(1);
    const a = decodeAnswer(answers[0]![1][3]!) as { error: string };
    expect(a.error).toMatch(/^NODE_CRASHED: 2 nodes died while running this invocation of function 'f' \(version 3; nodes d0, d2\)/);
    expect([await redis.zcard(k.admitted('f')), await redis.zcard(k.queuedBytes), await redis.get(k.queuedBytesTotal), await redis.exists(k.inputs(id))]).toEqual([0, 0, '0', 0]);
    expect(await redis.hget(k.cluster, 'poisonJobs')).toBe('1');
    // A later run (the lock released early, as by another process) finds nothing more to do.
    await redis.del(k.reaperLock);
    expect(await reaper.tick()).toMatchObject({ died: [], moved: 0 });
    expect([await redis.xlen(k.replies('gw')), await redis.hget(k.cluster, 'poisonJobs')]).toEqual([1, '1']);
  });

  it('an async job given up by a reaper that died before taking it off the dead queue is not answered or counted again', async () => {
    await writeHeartbeat(redis, k, live, 't');
    const id = randomUUID();
    const q = new Queue(k.nodeQueue('d3'), { connection: redis, prefix: k.bullPrefix });
    queues.push(q);
    await q.add('invoke', invokeJob({ id, answerTtlMs: 60_000 }), { ...JOB_OPTIONS, jobId: id });
    // d3 takes it and dies holding it (a worker closed without finishing its job: it stays active).
    let took!: () => void;
    const taken = new Promise<void>((r) => (took = r));
    const conn = createRedis(redisUrl);
    const w = new Worker(k.nodeQueue('d3'), () => (took(), new Promise(() => undefined)), { connection: conn, prefix: k.bullPrefix });
    await taken;
    await w.close(true);
    conn.disconnect();
    expect(await q.getJobState(id)).toBe('active');
    await deadNode('d3');
    // The earlier run: both deaths recorded, the job given up and answered, then that reaper died.
    await redis.sadd(k.jobDeaths(id), 'd0', 'd3', '!');
    await redis.hset(k.cluster, 'poisonJobs', 1);
    await redis.set(k.result(id), 'the first answer');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d3'], moved: 0 });
    expect(await q.getJob(id)).toBeUndefined();
    expect([await redis.get(k.result(id)), await redis.hget(k.cluster, 'poisonJobs'), await redis.hget(k.cluster, 'duplicateRuns')]).toEqual(['the first answer', '1', null]);
  });

  it('counts no death against a job that was only waiting on a dead node, nor one running on a node that left cleanly: both move', async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d4');
    await writeHeartbeat(redis, k, { ...live, id: 'l1' }, 'tl');
    await leaveCluster(redis, k, 'l1', 'tl');
    const [a, b] = [randomUUID(), randomUUID()];
    await redis.lpush(k.lane('d4'), encodeLaneJob(a, 'invoke', invokeJob({ id: a, replyTo: k.replies('gw'), answerTtlMs: 60_000 })));
    await redis.lpush(k.laneActive('l1'), encodeLaneJob(b, 'invoke', invokeJob({ id: b, replyTo: k.replies('gw'), answerTtlMs: 60_000 })));
    // Each ran on a node that died before: one more death would give it up.
    await redis.sadd(k.jobDeaths(a), 'd0');
    await redis.sadd(k.jobDeaths(b), 'd0');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d4'], moved: 2 });
    expect([await redis.smembers(k.jobDeaths(a)), await redis.smembers(k.jobDeaths(b))]).toEqual([['d0'], ['d0']]);
    expect([await redis.llen(k.lane('live')), await redis.xlen(k.replies('gw'))]).toEqual([2, 0]);
  });
});
