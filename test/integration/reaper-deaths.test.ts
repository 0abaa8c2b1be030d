import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { admit, ticketOf, type AdmissionRequest } from '../../queue/admission';
import { createRedis } from '../../queue/connection';
import { Dispatcher, JOB_OPTIONS } from '../../queue/dispatcher';
import { keys } from '../../queue/keys';
import { encodeLaneJob } from '../../queue/lane';
import { claimNodeId, leaveCluster, writeHeartbeat, type NodeInfo } from '../../queue/nodes';
import { settleCrashed } from '../../queue/poison';
import { decodeAnswer, readAnswer, type ReplyTo } from '../../queue/replies';
import { Reaper } from '../../queue/reaper';
import type { InvokeJob, ModelRef } from '../../queue/wire';
import { deleteKeys } from '../support/brulee';
import { cutProxy } from '../support/cut-proxy';
import { monitor, type Monitored } from '../support/monitor';
import { until } from '../support/within';

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

/** Node `id` silent for a minute: the next run declares it dead (silent). Resolves to its death as a job's record holds it (`<id>@<last beat>`). */
async function deadNode(id: string): Promise<string> {
  const [s] = await redis.time();
  const lastBeat = Number(s) * 1000 - 60_000;
  await redis.multi().zadd(k.alive, lastBeat, id).hset(k.nodeOwner, id, 'gone').hset(k.nodes, id, JSON.stringify({ ...live, id })).exec();
  return `${id}@${lastBeat}`;
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
    const death = await deadNode('d1');
    const id = randomUUID();
    const frame = encodeLaneJob(id, 'invoke', invokeJob({ id, replyTo: k.replies('gw'), answerTtlMs: 60_000 }));
    await redis.lpush(k.laneActive('d1'), frame);
    // What a reaper that died right after recording this death left: the record, the job still there.
    await redis.sadd(k.jobDeaths(id), death);
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d1'], moved: 1 });
    expect(await redis.smembers(k.jobDeaths(id))).toEqual([death]);
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
    await redis.sadd(k.jobDeaths(id), 'd0@1');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d2'], moved: 0 });
    expect([await redis.llen(k.laneActive('d2')), await redis.llen(k.lane('live'))]).toEqual([0, 0]);
    const answers = await redis.xrangeBuffer(k.replies('gw'), '-', '+');
    expect(answers).toHaveLength(1);
    const a = decodeAnswer(answers[0]![1][3]!) as { error: string };
    expect(a.error).toMatch(/^NODE_CRASHED: the node running this invocation of function 'f' \(version 3\) died 2 times \(nodes d0, d2\)/);
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
    const death = await deadNode('d3');
    // The earlier run: both deaths recorded, the job given up and answered, then that reaper died.
    await redis.sadd(k.jobDeaths(id), 'd0@1', death, '!');
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
    await redis.sadd(k.jobDeaths(a), 'd0@1');
    await redis.sadd(k.jobDeaths(b), 'd0@1');
    const r = await reaper.tick();
    expect(r).toMatchObject({ died: ['d4'], moved: 2 });
    expect([await redis.smembers(k.jobDeaths(a)), await redis.smembers(k.jobDeaths(b))]).toEqual([['d0@1'], ['d0@1']]);
    expect([await redis.llen(k.lane('live')), await redis.xlen(k.replies('gw'))]).toEqual([2, 0]);
  });

  it('a process that takes over the NODE_ID of one that stopped beating learns that death (its last beat), as the reaper does; not after a clean leave', async () => {
    const old = async (id: string) => {
      const [t] = await redis.time();
      await redis.zadd(k.alive, Number(t) * 1000 - 60_000, id);
      return Number(t) * 1000 - 60_000;
    };
    expect(await claimNodeId(redis, k, 'r1', 'a', 3000)).not.toHaveProperty('crashedLastBeatAt');
    const beat1 = await old('r1');
    expect(await claimNodeId(redis, k, 'r1', 'b', 3000)).toMatchObject({ ok: true, crashedLastBeatAt: beat1 });
    // Declared dead by the reaper first: the same death.
    await claimNodeId(redis, k, 'r2', 'a', 3000);
    const beat2 = await old('r2');
    expect((await reaper.tick())?.died).toEqual(['r2']);
    expect(await claimNodeId(redis, k, 'r2', 'b', 3000)).toMatchObject({ ok: true, crashedLastBeatAt: beat2 });
    await claimNodeId(redis, k, 'r3', 'a', 3000);
    await leaveCluster(redis, k, 'r3', 'a');
    expect(await claimNodeId(redis, k, 'r3', 'b', 3000)).not.toHaveProperty('crashedLastBeatAt');
  });

  it('a restarted node gives up the jobs its earlier process held at the limit, records that death against the others, and leaves them to run', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const [fa, fb] = [a, b].map((id) => encodeLaneJob(id, 'invoke', invokeJob({ id, replyTo: k.replies('gw'), answerTtlMs: 60_000 })));
    await redis.lpush(k.laneActive('r4'), fa!, fb!);
    await redis.sadd(k.jobDeaths(a), 'd0@1');
    const o = { redis, keys: k, log: pino({ level: 'silent' }), limit: 2 };
    await settleCrashed(o, { node: 'r4', lastBeatAt: 5 });
    // Again, as after a restart that died before it took them back: nothing counted twice.
    await settleCrashed(o, { node: 'r4', lastBeatAt: 5 });
    expect((await redis.lrangeBuffer(k.laneActive('r4'), 0, -1)).map((f) => f.equals(fb!))).toEqual([true]);
    expect(await redis.smembers(k.jobDeaths(b))).toEqual(['r4@5']);
    const answers = await redis.xrangeBuffer(k.replies('gw'), '-', '+');
    expect(answers.map(([, f]) => f[1]!.toString())).toEqual([a]);
    expect((decodeAnswer(answers[0]![1][3]!) as { error: string }).error).toMatch(/^NODE_CRASHED: .* died 2 times \(nodes d0, r4\)/);
    expect(await redis.hget(k.cluster, 'poisonJobs')).toBe('1');
  });
});

describe("the reaper's count of the jobs it moves", () => {
  it('counts a move no later than the live node can take the job: in the lane move\'s script, before a queued job is added', async () => {
    // A live node with the model at hand (resident, or pre-parked: runtime/prepark.ts) answers a
    // moved call in a few ms; counted after the move, a caller that read /stats on its answer
    // saw no reroute (poison.test.ts 'async, one death', under load). The order is Redis's own
    // (MONITOR: commands as they run, a script's with source 'lua').
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d6');
    const [a, b] = [randomUUID(), randomUUID()];
    await redis.lpush(k.laneActive('d6'), encodeLaneJob(a, 'invoke', invokeJob({ id: a, replyTo: k.replies('gw'), answerTtlMs: 60_000 })));
    const q = new Queue(k.nodeQueue('d6'), { connection: redis, prefix: k.bullPrefix });
    queues.push(q);
    await q.add('invoke', invokeJob({ id: b, answerTtlMs: 60_000 }), { ...JOB_OPTIONS, jobId: b });
    const ran: Array<{ cmd: string; lua: boolean }> = [];
    const monitor = await redis.monitor();
    try {
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        const cmd = args.join(' ');
        if (cmd.includes(`${ns}:`)) ran.push({ cmd: cmd.toLowerCase(), lua: source === 'lua' });
      });
      expect(await reaper.tick()).toMatchObject({ died: ['d6'], moved: 2 });
      const counted = (i: number) => ran[i]?.cmd.startsWith(`hincrby ${k.cluster} jobsrerouted`.toLowerCase()) === true;
      await until('the moves seen', () => ran.filter((_, i) => counted(i)).length === 2, 5000);
      // The lane job: counted in the script that pushes it onto the live lane.
      const pushed = ran.findIndex((r) => r.cmd.startsWith(`rpush ${k.lane('live')}`.toLowerCase()));
      expect(pushed).toBeGreaterThanOrEqual(0);
      expect(ran[pushed + 1]).toMatchObject({ lua: true });
      expect(counted(pushed + 1)).toBe(true);
      // The queued job: counted before BullMQ's add writes it into the live node's queue.
      const added = ran.findIndex((r) => r.cmd.includes(`${k.bullPrefix}:${k.nodeQueue('live')}:${b}`.toLowerCase()));
      expect(added).toBeGreaterThan(pushed);
      expect(ran.slice(pushed + 2, added).some((_, i) => counted(pushed + 2 + i))).toBe(true);
    } finally {
      monitor.disconnect();
    }
    expect(await redis.hget(k.cluster, 'jobsRerouted')).toBe('2');
    expect(await redis.hget(k.jobsMoved, 'd6')).toBe('2');
    expect(await redis.llen(k.lane('live'))).toBe(1);
  });

  it('a reaper that dies between its count of a queued job and its add: the next run adds it, and it is counted once', async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d7');
    const id = randomUUID();
    const q = new Queue(k.nodeQueue('d7'), { connection: redis, prefix: k.bullPrefix });
    queues.push(q);
    await q.add('invoke', invokeJob({ id, answerTtlMs: 60_000 }), { ...JOB_OPTIONS, jobId: id });
    // A reaper whose Redis commands stop just before BullMQ's add (its script writes the live
    // queue's wait list): as Redis sees it, a reaper that died there.
    const liveWait = `${k.bullPrefix}:${k.nodeQueue('live')}:wait`;
    const proxy = await cutProxy(redisUrl, (args) => (args.includes(liveWait) ? 'before' : undefined));
    const conn = createRedis(proxy.url);
    const dying = new Reaper({ redis: conn, keys: k, dispatcher, log: pino({ level: 'silent' }), deadAfterMs: 3000 });
    const run = dying.tick();
    run.catch(() => undefined);
    await proxy.cut;
    conn.disconnect();
    proxy.close();
    await run.catch(() => undefined);
    expect(await q.getJobState(id)).toBe('waiting');
    // The next run (the dead one's lock released, as by its expiry) finishes the move.
    await redis.del(k.reaperLock);
    expect(await reaper.tick()).toMatchObject({ moved: 1 });
    const lq = new Queue(k.nodeQueue('live'), { connection: redis, prefix: k.bullPrefix });
    queues.push(lq);
    expect(await lq.getJobState(id)).toBe('waiting');
    expect([await redis.hget(k.cluster, 'jobsRerouted'), await redis.hget(k.jobsMoved, 'd7')]).toEqual(['1', '1']);
  });
});

/*
 * A job of a dead node's BullMQ queue, taken (its lock the dead worker's), that the reaper answers
 * or moves is no longer that node's from the very step that does it: a node only stopped, resumed
 * at any time after it, answers nothing (StatsOps.locked: its lock no longer holds its token). Its
 * answer's script deletes the lock; a move's count takes it from the worker before BullMQ's add.
 * What Redis ran is read with MONITOR: a script's commands come with source 'lua', one after the
 * other, nothing of another client's between them.
 */
describe('a job the reaper takes off a dead node is no longer that node\'s from the step that answers or moves it', () => {
  /** Job `data` on node `node`'s queue, taken by a worker that then dies holding it: resolves to its lock's key, holding that worker's token. */
  async function takenOn<T extends { reply: ReplyTo }>(node: string, name: string, data: T): Promise<string> {
    const q = new Queue(k.nodeQueue(node), { connection: redis, prefix: k.bullPrefix });
    queues.push(q);
    await q.add(name, data, { ...JOB_OPTIONS, jobId: data.reply.id });
    let took!: () => void;
    const taken = new Promise<void>((r) => (took = r));
    const conn = createRedis(redisUrl);
    const w = new Worker(k.nodeQueue(node), () => (took(), new Promise(() => undefined)), { connection: conn, prefix: k.bullPrefix });
    await taken;
    await w.close(true);
    conn.disconnect();
    const lock = k.jobLock(node, data.reply.id);
    expect(await q.getJobState(data.reply.id)).toBe('active');
    expect(await redis.get(lock)).toMatch(/./);
    return lock;
  }

  /**
   * Runs the reaper once under MONITOR; resolves to the steps Redis ran on this test's keys, in
   * order: each a client's command alone, or all the commands of one script (space-joined, lower case).
   */
  async function stepsOfTick(): Promise<string[][]> {
    const seen: Monitored[] = [];
    const mon = await monitor(redisUrl, (c) => seen.push(c));
    try {
      await reaper.tick();
      // Seen once all the run's commands are: Redis ran them before it.
      const end = `${ns}:end:${randomUUID()}`;
      await redis.exists(end);
      await until('the end of the run seen', () => seen.some((c) => c.args[1] === end), 5000);
    } finally {
      mon.stop();
    }
    const steps: string[][] = [];
    let script: string[] | undefined;
    for (const c of seen) {
      const cmd = c.args.join(' ').toLowerCase();
      if (c.source === 'lua') (script ??= (steps.push([]), steps[steps.length - 1]!)).push(cmd);
      else {
        script = undefined;
        steps.push([cmd]);
      }
    }
    return steps.filter((st) => st.some((cmd) => cmd.includes(`${ns}:`.toLowerCase())));
  }

  /** Runs the reaper once: the one step that ran `answer` (a prefix of the words of the answer's write) deleted `lock` too, which is gone after. */
  async function lockGoesWith(answer: string, lock: string): Promise<void> {
    const found = (await stepsOfTick()).filter((st) => st.some((c) => c.startsWith(answer.toLowerCase())));
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(`del ${lock}`.toLowerCase());
    expect(await redis.exists(lock)).toBe(0);
  }

  it('given up (NODE_CRASHED): its lock is deleted in the script that answers it', async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d8');
    const id = randomUUID();
    const lock = await takenOn('d8', 'invoke', invokeJob({ id, answerTtlMs: 60_000 }));
    // One node died running it already: d8's death gives it up.
    await redis.sadd(k.jobDeaths(id), 'd0@1');
    await lockGoesWith(`set ${k.result(id)}`, lock);
    expect(await readAnswer(redis, k, id)).toMatchObject({ error: expect.stringMatching(/^NODE_CRASHED/) });
  });

  it('failed TIMEOUT (no live node, its deadline past): its lock is deleted in the script that answers it', async () => {
    // Dead a minute ago, past ORPHAN_GRACE dead-after times; no live node.
    const [t] = await redis.time();
    const now = Number(t) * 1000;
    await redis.hset(k.deadNodes, 'd9', JSON.stringify({ id: 'd9', reason: 'silent', lastBeatAt: now - 65_000, at: now - 60_000 }));
    const id = randomUUID();
    const lock = await takenOn('d9', 'invoke', invokeJob({ id, answerTtlMs: 60_000 }, { deadline: now - 30_000 }));
    await lockGoesWith(`set ${k.result(id)}`, lock);
    expect(await readAnswer(redis, k, id)).toMatchObject({ error: expect.stringMatching(/^TIMEOUT/) });
  });

  it('an unload (answered at once): its lock is deleted in the script that answers it', async () => {
    await deadNode('d10');
    const id = randomUUID();
    const lock = await takenOn('d10', 'unload', { fn: 'f', cause: 'unload', reply: { id, replyTo: k.replies('gw'), answerTtlMs: 60_000 } });
    await lockGoesWith(`xadd ${k.replies('gw')}`, lock);
  });

  it('moved to a live node: its lock no longer holds the dead worker\'s token before BullMQ\'s add puts it on the live queue', async () => {
    await writeHeartbeat(redis, k, live, 't');
    await deadNode('d11');
    const id = randomUUID();
    const lock = await takenOn('d11', 'invoke', invokeJob({ id, answerTtlMs: 60_000 }));
    const token = await redis.get(lock);
    const steps = await stepsOfTick();
    const revoked = steps.findIndex((st) => st.length > 1 && st.some((c) => c.startsWith(`set ${lock} moved xx keepttl`.toLowerCase())));
    const added = steps.findIndex((st) => st.some((c) => c.includes(`${k.bullPrefix}:${k.nodeQueue('live')}:${id}`.toLowerCase())));
    expect(revoked).toBeGreaterThanOrEqual(0);
    expect(added).toBeGreaterThan(revoked);
    // In the move's count, the script that goes first.
    expect(steps[revoked]!.some((c) => c.startsWith(`hincrby ${k.cluster} jobsrerouted 1`.toLowerCase()))).toBe(true);
    expect(token).not.toBe('moved');
    expect(await redis.exists(lock)).toBe(0);
    const lq = new Queue(k.nodeQueue('live'), { connection: redis, prefix: k.bullPrefix });
    queues.push(lq);
    expect(await lq.getJobState(id)).toBe('waiting');
  });
});
