import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError, errorToWire } from '../errors';
import { releaseWith } from './admission';
import type { Routed } from './dispatcher';
import type { Keys } from './keys';
import { decodeLaneJob } from './lane';
import { removeDeadJob } from './nodes';
import { deliver } from './replies';
import { Script } from './scripts';
import { StatsOps } from './writes';
import { JOB, type InvokeJob, type LoadJob } from './wire';

/**
 * Poison pills: a job that crashes the node running it (an input that makes onnxruntime abort, the
 * OOM killer) would crash every node it is run on again. Each death of a process that held a job
 * active is recorded against the job's id (`Keys.jobDeaths`), by the reaper when it moves the jobs
 * of a dead node (queue/reaper.ts), or by the node itself when it restarts under the same NODE_ID
 * before the reaper moved them (`settleCrashed`); once `limit` deaths are recorded, the job is not
 * run again and its caller gets NODE_CRASHED.
 */
export interface PoisonOptions {
  redis: Redis;
  keys: Keys;
  log: Logger;
  /** Deaths one job may cause before it is given up (MAX_NODE_DEATHS_PER_JOB); 0: no limit. */
  limit: number;
}

/**
 * A process that died holding jobs: its node id, and its last heartbeat (Redis time), which tells
 * one death of a node id from the next (a node restarted under the same NODE_ID that dies again).
 * The reaper and the restarted node learn the same two facts (queue/nodes.ts), so each death is
 * recorded once whichever of them comes first.
 */
export interface Crash {
  node: string;
  lastBeatAt: number;
}

/** How long a job's record of the deaths it caused is kept, ms: longer than any job waits (a deadline is at most an hour away). */
const JOB_DEATHS_TTL_MS = 24 * 3600_000;

// KEYS: the job's deaths (`Keys.jobDeaths`). ARGV: the death (`<node>@<last beat>`), the limit
// (0: none), the record's ttl ms. Records the death once (a reaper that dies half-way and runs
// again, or the reaper and the restarted node both, count nothing twice). Returns {verdict, the
// deaths}: verdict 0 the job runs again, 1 it is given up. (A record may hold '!', an earlier
// version's mark of a job given up: not a death.)
const DIED_RUNNING = new Script(`redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local deaths = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= '!' then deaths[#deaths + 1] = m end
end
local limit = tonumber(ARGV[2])
if limit == 0 or #deaths < limit then return {0, deaths} end
return {1, deaths}`);

/**
 * A job the process of `crash` was running when it died: records the death against the job and,
 * once `limit` deaths are recorded, gives it up: its caller gets NODE_CRASHED (`answerCrashed`;
 * a lane job leaves the list `from` in the script that answers it, or after it when the job was
 * answered already; a job of a BullMQ queue loses its `lock`, `Keys.jobLock`, in that script, so
 * that a process only stopped, resumed after the answer, neither answers nor counts it: the caller
 * removes it from the queue after, lock included when the job was answered already). Resolves to
 * whether it was given up; if not, it is to run again.
 */
export async function givenUp(o: PoisonOptions, crash: Crash, name: string, data: Routed<LoadJob & Partial<InvokeJob>>, from?: { list: string; frame: Buffer } | { lock: string }): Promise<boolean> {
  const { redis, keys: k, log, limit } = o;
  const id = data.reply.id;
  const [verdict, deaths] = (await DIED_RUNNING.run(redis, [k.jobDeaths(id)], [`${crash.node}@${crash.lastBeatAt}`, limit, JOB_DEATHS_TTL_MS])) as [number, string[]];
  if (verdict === 0) return false;
  // In the order they died.
  const nodes = deaths.map((m) => ({ node: m.slice(0, m.lastIndexOf('@')), at: Number(m.slice(m.lastIndexOf('@') + 1)) })).sort((a, b) => a.at - b.at).map((d) => d.node);
  const { fn, version } = data.model;
  const what = name === JOB.load ? 'load' : 'invocation';
  const e = new BruleeError(
    'NODE_CRASHED',
    `the node running this ${what} of function '${fn}' (version ${version}) died ${nodes.length} times (nodes ${nodes.join(', ')}), so it is not run again: ` +
      `the model or this input may crash the runtime or exhaust its memory (an onnxruntime abort, the OOM killer). See those nodes' logs, ` +
      `and try the input on one node before sending it again. MAX_NODE_DEATHS_PER_JOB (now ${limit}) sets how many node deaths one job may cause.`,
  );
  const also = new StatsOps();
  if (from && 'lock' in from) also.del(from.lock);
  else if (from) also.lrem(from.list, from.frame);
  if (await answerCrashed(o, data, e, also)) log.error({ job: id, fn, version, nodes, limit }, `${what} not run again: the node running it died ${nodes.length} times`);
  // Answered already (by a run, or by whoever gave it up first): it leaves the dead node's list all the same.
  else if (from && 'list' in from) await redis.lrem(from.list, 1, from.frame);
  return true;
}

/**
 * A given-up job's answer, NODE_CRASHED (`e`): unless the job was answered already, its caller
 * gets it, and with it, in the same script, its admission place and input bytes are given back,
 * poisonJobs is counted, and `also` is applied; answered already (a run, or another process that
 * gave it up: the reaper and a restarted node both may, or a retry), nothing is written. The check
 * and the answer are one step (`deliver`'s onlyFirst), so two processes never both answer it.
 * Resolves to whether it was answered here.
 */
async function answerCrashed(o: PoisonOptions, data: Pick<Routed<Partial<InvokeJob>>, 'admission' | 'inputs' | 'reply'>, e: BruleeError, also = new StatsOps(), token?: string): Promise<boolean> {
  givenBack(data, also).hincrby(o.keys.cluster, 'poisonJobs', 1);
  return deliver(o.redis, o.keys, data.reply, { error: errorToWire(e) }, also, true, token);
}

/**
 * `w` with the writes that give back what a job that will not run holds: its admission place and
 * input bytes, and its input key (they go in the script that answers it).
 */
export function givenBack(data: Pick<Routed<Partial<InvokeJob>>, 'admission' | 'inputs'>, w = new StatsOps()): StatsOps {
  if (data.admission) releaseWith(w, data.admission);
  if (data.inputs?.key !== undefined) w.del(data.inputs.key);
  return w;
}

/**
 * A node restarted under the NODE_ID of a process that died (`crash`), before the reaper moved
 * what that process held: records the death against each job it had active (its lane's active
 * list, its BullMQ queue's active jobs) and gives up those at the limit, before the node takes
 * back the rest (the lane's, queue/lane.ts; BullMQ's, as stalled jobs).
 */
export async function settleCrashed(o: PoisonOptions, crash: Crash): Promise<void> {
  const { redis, keys: k } = o;
  const list = k.laneActive(crash.node);
  for (const frame of await redis.lrangeBuffer(list, 0, -1)) {
    const job = decodeLaneJob(frame);
    await givenUp(o, crash, job.name, job.data, { list, frame });
  }
  const q = new Queue(k.nodeQueue(crash.node), { connection: redis, prefix: k.bullPrefix });
  q.on('error', () => undefined);
  try {
    for (const job of await q.getJobs(['active'])) {
      const data = job?.data as Routed<LoadJob & Partial<InvokeJob>> | undefined;
      if (!job?.id || job.name === JOB.unload || !data?.model) continue;
      if (!(await givenUp(o, crash, job.name, data, { lock: k.jobLock(crash.node, job.id) }))) continue;
      await removeDeadJob(redis, k, q, crash.node, job.id);
    }
  } finally {
    await q.close().catch(() => undefined);
  }
}

/**
 * How many times a node's BullMQ queue may lose a job (BullMQ's stall count, `stalledCounter`)
 * before its node gives it up, from MAX_NODE_DEATHS_PER_JOB (`limit`): once it lost it `limit`
 * times, whether its node died (counted by `givenUp`) or its hold on the job lapsed (a BullMQ
 * stall: an event loop blocked past JOB_LOCK_MS, or a restart under the same NODE_ID, whose death
 * `settleCrashed` counts first, so that no job is given up here before its deaths are counted);
 * 0: never.
 */
export function stallLimit(limit: number): number {
  return limit === 0 ? Number.MAX_SAFE_INTEGER : limit - 1;
}

/**
 * Whether a node gives `job` up (`stalledOut`) rather than run it: its queue lost it more than
 * `stallLimit` times. Never an unload: it runs no model, so it cannot be what crashed or blocked
 * its node, and runs again however often it was lost (as the reaper answers one and a restarted
 * node's `settleCrashed` passes it by, uncounted).
 */
export function lostTooOften(job: StalledJob, limit: number): boolean {
  return job.name !== JOB.unload && job.stalledCounter > stallLimit(limit);
}

/** A job of a node's BullMQ queue as its worker hands it over. */
export interface StalledJob {
  /** Its BullMQ job id (its call's id). */
  id?: string;
  name: string;
  data: Routed<Partial<LoadJob & InvokeJob & { fn: string }>>;
  /** Times its node lost it (BullMQ's stall count). */
  stalledCounter: number;
}

/**
 * A job `node`'s queue lost too often (`lostTooOften`), answered instead of run: unless a run that
 * the lapse did not stop answered it first, its caller gets NODE_CRASHED, and its admission place
 * and input bytes are given back and it is counted in poisonJobs, in the script that answers it
 * (once). The node's worker calls it as the job's processor, so the job leaves its queue (BullMQ
 * completes it) only once it is answered: a node that dies in between leaves it there, and whoever
 * takes it next finds it answered. (BullMQ's own give-up, `maxStalledCount`, fails and drops the
 * job before its 'failed' event lets anyone answer it: a death in between lost the answer.)
 * `lock`: the token by which `node` holds the job (`Keys.jobLock`): as any answer of the node's
 * to a job of its queue, the give-up goes only while the node still holds it (`StatsOps.locked`).
 * One taken from it meanwhile (the node stopped long enough to be declared dead: queue/reaper.ts
 * moved it to a live node that runs it, or answered it; queue/dispatcher.ts takeBackJob answered
 * a load's caller) is no longer its to give up: a node resumed after that gives nothing up, where
 * it failed NODE_CRASHED a call that then ran, counted, elsewhere (a duplicate run).
 * Resolves to whether it was answered here.
 */
export async function stalledOut(o: PoisonOptions, node: string, job: StalledJob, token?: string, lock?: string): Promise<boolean> {
  const { log, limit } = o;
  const { data } = job;
  const fn = data.model?.fn ?? data.fn ?? '?';
  const what = job.name === JOB.load ? 'load' : 'invocation';
  const of = data.model ? `function '${fn}' (version ${data.model.version})` : `function '${fn}'`;
  const times = `${job.stalledCounter} time${job.stalledCounter === 1 ? '' : 's'}`;
  const e = new BruleeError(
    'NODE_CRASHED',
    `node ${node} lost this ${what} of ${of} ${times} (its process stopped, died or restarted under the same NODE_ID, ` +
      `or its event loop was blocked for longer than JOB_LOCK_MS), so it is not run again: the model or this input may crash the runtime, exhaust its memory ` +
      `or hold its event loop. See node ${node}'s logs, and try the input on one node before sending it again. MAX_NODE_DEATHS_PER_JOB (now ${limit}) sets how many times one job may lose its node.`,
  );
  const held = new StatsOps();
  if (lock !== undefined && job.id !== undefined) held.locked(o.keys.jobLock(node, job.id), lock);
  const first = await answerCrashed(o, data, e, held, token);
  if (first) log.error({ job: data.reply.id, fn, node, times: job.stalledCounter, limit }, `${what} not run again: its node lost it ${times}`);
  return first;
}
