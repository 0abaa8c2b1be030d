import { randomUUID } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError, errorToWire, isBruleeError } from '../errors';
import { JOB_OPTIONS, modelKey, ORPHAN_GRACE, type Dispatcher, type Routed } from './dispatcher';
import type { Keys } from './keys';
import { deadNodes, declareDead, HEARTBEAT_MS, MISSED_BEATS, removeDeadJob } from './nodes';
import { decodeLaneJob, moveJob } from './lane';
import { givenBack, givenUp, type Crash } from './poison';
import { deliver, hasAnswer } from './replies';
import { chooseNode, type NodeView } from './routing';
import { Script } from './scripts';
import { StatsOps } from './writes';
import { JOB, type InvokeJob, type LoadJob } from './wire';

export interface ReaperOptions {
  redis: Redis;
  keys: Keys;
  /** Routing's view of the live nodes (queue depths from Redis). */
  dispatcher: Dispatcher;
  log: Logger;
  /** How often every process tries to run the reaper (one of them does, under a Redis lock), ms. @default HEARTBEAT_MS */
  everyMs?: number;
  /** A node silent this long (Redis time) is declared dead, ms. @default HEARTBEAT_MS × MISSED_BEATS */
  deadAfterMs?: number;
  /**
   * An async call left on a dead node's queue that no live node can take is failed
   * NO_NODE_AVAILABLE this long after the node was declared dead (room for a node restarted under
   * its NODE_ID to run it), ms (`RESTART_GRACE_MS`). @default ORPHAN_GRACE × deadAfterMs
   */
  restartGraceMs?: number;
  /** A dead node whose queue has stayed empty this long is forgotten (and its queue's keys deleted), ms. @default 10 min */
  forgetAfterMs?: number;
  /** Jobs moved per dead node per run (the rest go on the next run). @default 1000 */
  batch?: number;
  /**
   * Nodes that may die while running one job: once that many have, the job is not run again and
   * its caller gets NODE_CRASHED, so one input that crashes the runtime (an onnxruntime abort, the
   * OOM killer) cannot take down node after node. 0: no limit. @default 2
   */
  maxDeathsPerJob?: number;
}

/** How long the ids of the jobs counted as moved off a dead node are kept after its last move, ms (it is forgotten sooner, once its queue is empty). */
const JOBS_MOVED_IDS_MS = 24 * 3600_000;

/** Job states that still need a node. */
const PENDING = ['active', 'waiting', 'prioritized', 'delayed'] as const;

// KEYS: the dead node's counted moves (`Keys.jobsMovedIds`), the cluster counters, the dead nodes'
// move counts, the reaper's lock, the job's BullMQ lock on the dead node's queue (`Keys.jobLock`).
// ARGV: the move (`Reaper.countMove`), the dead node, 1 (count) or -1 (take back), the lock's ms.
// A queued job moved off a dead node is counted before BullMQ's add (its own script) writes it
// where a live node can take it; a reaper that dies between the two, or whose add fails and whose
// take-back is lost, leaves the job where it was and its id here: the next run's count of it
// counts nothing, and its add finishes the move. Counting it also takes the job from the dead
// node (1 only), here, before the add: its BullMQ lock, if it has one, no longer holds the dead
// worker's token (StatsOps.locked: a node only stopped, resumed at any time after this, neither
// answers nor counts it), yet stays, with its expiry, until `removeDeadJob` (so that the
// resumed node's stall check does not put the job back on its queue in the meantime). Returns
// whether it counted.
const COUNT_MOVE = new Script(`local changed
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[5], 'moved', 'XX', 'KEEPTTL')
  changed = redis.call('SADD', KEYS[1], ARGV[1])
else changed = redis.call('SREM', KEYS[1], ARGV[1]) end
if changed == 1 then
  redis.call('HINCRBY', KEYS[2], 'jobsRerouted', ARGV[3])
  redis.call('HINCRBY', KEYS[3], ARGV[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ${JOBS_MOVED_IDS_MS})
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return changed`);

/** Releases the lock early (only if still ours), keeping it just long enough to space runs `everyMs` apart. */
const RELEASE = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`);

/**
 * Why an async call on dead node `deadId`'s queue, which no live node can take (routing's
 * `refusal`), is failed at `now` (Redis time): that refusal, or, once its deadline has passed, a
 * TIMEOUT, as its caller's deadline is what ended it (a node that took it now would skip it so).
 */
function unreachable(data: Routed<InvokeJob>, deadId: string, refusal: BruleeError, now: number): BruleeError {
  if (now <= data.deadline) return refusal;
  return new BruleeError('TIMEOUT', `the invocation of ${data.model.fn} reached its deadline (the function's timeoutMs) on the queue of node ${deadId}, which died, with no live node to take it (${refusal.message}); start a node, or raise the function's timeoutMs past a node's restart`);
}

export interface ReapResult {
  /** Nodes this run declared dead. */
  died: string[];
  /** Jobs this run moved to live nodes. */
  moved: number;
}

/**
 * Failover, once per cluster: every gateway and node runs `tick` every beat, and the one that
 * takes the Redis lock (as the popularity cron does) does the work:
 *
 * 1. Declares dead the nodes whose last heartbeat (Redis time) is `MISSED_BEATS` beats old.
 * 2. Moves every job still on the lane or queue of a dead node (or of one that left) to a live node, chosen
 *    by routing as for a new call: the waiting ones, and the one it was running, which runs again
 *    (at-least-once; its answer goes out once, see `queue/replies.ts`). A job keeps its id and its
 *    reply address, so its caller gets the answer on the same request or invocation id. Moved jobs
 *    go to the front of their new queue: they have waited longest.
 * 3. Except a job that `maxDeathsPerJob` nodes died while running: it is given up, and its caller
 *    gets NODE_CRASHED (queue/poison.ts).
 *
 * Each step is idempotent, so a reaper that dies half-way leaves nothing lost and counts nothing
 * twice: a job is added to its new queue (same id: a second add is a no-op) before it is removed
 * from the old one, its move is counted once however often it is tried (`COUNT_MOVE`), and the
 * dead node's queue is looked at again on every run, which also catches jobs that a gateway with a
 * stale node list added after the death.
 */
export class Reaper {
  private readonly o: Required<ReaperOptions>;
  private readonly queues = new Map<string, Queue>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly token = randomUUID();

  constructor(opts: ReaperOptions) {
    const deadAfterMs = opts.deadAfterMs ?? HEARTBEAT_MS * MISSED_BEATS;
    this.o = { everyMs: HEARTBEAT_MS, deadAfterMs, restartGraceMs: ORPHAN_GRACE * deadAfterMs, forgetAfterMs: 600_000, batch: 1000, maxDeathsPerJob: 2, ...opts };
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.tick()
        .catch((e: unknown) => this.o.log.warn({ err: e }, 'reaper run failed'))
        .finally(() => (this.running = undefined));
    }, this.o.everyMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    const qs = [...this.queues.values()];
    this.queues.clear();
    await Promise.allSettled(qs.map((q) => q.close()));
  }

  /** One run, if this process takes the lock; undefined when another holds it. */
  async tick(): Promise<ReapResult | undefined> {
    const { redis, keys: k } = this.o;
    // Held for at most `deadAfterMs` (renewed while jobs move): a reaper that dies holding it
    // delays failover by that much, no more.
    if (!(await redis.set(k.reaperLock, this.token, 'PX', this.lockMs, 'NX'))) return undefined;
    try {
      const died = await declareDead(redis, k, this.o.deadAfterMs);
      for (const id of died) this.o.log.warn({ node: id, silentMs: this.o.deadAfterMs }, 'node declared dead: moving its jobs to live nodes');
      let moved = 0;
      const now = Number((await redis.time())[0]) * 1000;
      for (const d of await deadNodes(redis, k)) {
        const q = this.queue(d.id);
        const [counts, lane, active] = await Promise.all([q.getJobCounts(...PENDING), redis.llen(k.lane(d.id)), redis.llen(k.laneActive(d.id))]);
        const left = PENDING.reduce((s, st) => s + (counts[st] ?? 0), 0) + lane + active;
        if (left === 0) {
          if (now - d.at > this.o.forgetAfterMs) await this.forget(d.id, q);
          continue;
        }
        // A node that left cleanly did not crash: what it was running is not held against its jobs.
        moved += await this.moveAll(d.id, d.at, q, d.reason === 'silent' ? { node: d.id, lastBeatAt: d.lastBeatAt } : undefined, now);
      }
      return { died, moved };
    } finally {
      await RELEASE.run(redis, [k.reaperLock], [this.token, Math.max(1, Math.floor(this.o.everyMs * 0.8))]).catch(() => undefined);
    }
  }

  private get lockMs(): number {
    return Math.max(1000, this.o.deadAfterMs);
  }

  private async moveAll(deadId: string, diedAt: number, from: Queue, crash: Crash | undefined, now: number): Promise<number> {
    const { redis, keys: k, log } = this.o;
    // Oldest first; added in reverse with lifo, so the oldest ends up at the very front.
    const jobs = (await from.getJobs([...PENDING], 0, this.o.batch - 1, true)).filter((j): j is Job => !!j?.id);
    jobs.sort((a, b) => a.timestamp - b.timestamp);
    const views: NodeView[] = (await this.o.dispatcher.nodes(true)).filter((n) => n.id !== deadId).map((n) => ({
      id: n.id,
      budgetBytes: n.budgetBytes,
      usedBytes: n.usedBytes,
      resident: n.resident.map((r) => r.key),
      queued: n.queued,
      parallel: Math.min(n.concurrency, n.cpus ?? 1),
    }));
    let moved = await this.moveLane(deadId, views, crash);
    for (const job of jobs.reverse()) {
      const id = job.id!;
      const data = job.data as Routed<Partial<LoadJob>>;
      const state = await job.getState().catch(() => 'unknown');
      if (await hasAnswer(redis, k, data.reply)) {
        // Answered by the dead node, which died before BullMQ finished it: nothing to move, nor to
        // run again (a second run's answer is dropped, its counts are not; a given-up job would run).
        await removeDeadJob(redis, k, from, deadId, id);
        log.info({ job: id, from: deadId, state }, 'job answered before its node died: not moved');
        continue;
      } else if (job.name === JOB.unload || !data.model) {
        // Nothing to unload on a dead node: answered at once, and counted in the script that answers
        // it, once (a reaper that died before taking it off the queue finds it answered). Its lock
        // goes in that script too: the dead node, if only stopped, answers nothing once resumed.
        const count = new StatsOps();
        count.hincrby(k.cluster, 'jobsRerouted', 1);
        count.hincrby(k.jobsMoved, deadId, 1);
        count.del(k.jobLock(deadId, id));
        await deliver(redis, k, data.reply, { ok: { dropped: 0 } }, count, true);
        await redis.pexpire(k.reaperLock, this.lockMs);
      } else if (crash && state === 'active' && (await givenUp(this.poison, crash, job.name, data as Routed<LoadJob & Partial<InvokeJob>>, { lock: k.jobLock(deadId, id) }))) {
        await removeDeadJob(redis, k, from, deadId, id);
        continue;
      } else {
        let target: NodeView;
        try {
          target = chooseNode(views, modelKey(data.model), data.model.sizeBytes);
        } catch (e) {
          if (!isBruleeError(e)) throw e;
          // No live node can take it. An async call is failed with routing's refusal (TIMEOUT once its
          // deadline has passed: `unreachable`), as its gateway answers a sync call (queue/dispatcher.ts orphans), `restartGraceMs` (`ORPHAN_GRACE` dead-after times) after
          // the death, taken or waiting: no caller holds a connection open for it, and a node
          // restarted under its NODE_ID in that time takes it (a crash-looping container's restart,
          // a single worker's rolling update) and runs it. Its place and input bytes go back in the
          // answer's script; it is not counted (it never ran), and leaves the dead queue. Anything
          // else (a load: its caller's gateway answers it) is left where it is until a node can take
          // it; the jobs after it are still looked at (an unload there is answered at once). Its
          // lock goes in that script too: the dead node, if only stopped, resumed after the answer
          // neither answers nor counts it (StatsOps.locked), not even before `removeDeadJob`.
          if (job.name !== JOB.invoke || data.reply.replyTo || now - diedAt < this.o.restartGraceMs) continue;
          const back = givenBack(data as Routed<InvokeJob>);
          back.del(k.jobLock(deadId, id));
          await deliver(redis, k, data.reply, { error: errorToWire(unreachable(data as Routed<InvokeJob>, deadId, e, now)) }, back, true);
          await removeDeadJob(redis, k, from, deadId, id);
          log.info({ job: id, from: deadId, state }, 'async call on a dead node failed: no live node can take it');
          continue;
        }
        target.queued++;
        // Counted before the live node can take it: a node with the model at hand (resident, or
        // parked: runtime/prepark.ts) answered it before a count made after the move, and whoever
        // read /stats on its answer saw no reroute. Once per job (`COUNT_MOVE`); taken back if the
        // add fails (the next run moves it). The dead node no longer holds it from then on
        // (`COUNT_MOVE`): resumed, it could otherwise answer it, counted, before `removeDeadJob`.
        await this.countMove(deadId, id, diedAt);
        try {
          await this.queue(target.id).add(job.name, data, { ...JOB_OPTIONS, jobId: id, lifo: true });
        } catch (e) {
          await this.countMove(deadId, id, diedAt, -1).catch(() => undefined);
          throw e;
        }
        // An async call's status is read from the queue it sits on.
        if (!data.reply.replyTo) await redis.set(k.invocation(id), target.id, 'KEEPTTL', 'XX');
        log.info({ job: id, from: deadId, to: target.id, state }, 'job moved off a dead node');
      }
      // Off the dead node's queue (moved, or an unload answered), its lock with it.
      await removeDeadJob(redis, k, from, deadId, id);
      moved++;
    }
    return moved;
  }

  /**
   * Moves the sync invocations of a dead node's lane (queue/lane.ts) to live nodes' lanes: the
   * waiting ones, then those it had taken (they run again), each to the end its new node takes
   * from next, so the one it was running goes first and the rest keep their order. Each move is
   * one script (LREM from the dead list, RPUSH to the live lane): a job is never in two lanes.
   */
  private async moveLane(deadId: string, views: NodeView[], crash: Crash | undefined): Promise<number> {
    const { redis, keys: k, log } = this.o;
    let moved = 0;
    for (const list of [k.lane(deadId), k.laneActive(deadId)]) {
      // Head to tail is newest to oldest; each is pushed to the taking end in turn, so the oldest ends up taken first.
      for (const frame of await redis.lrangeBuffer(list, -this.o.batch, -1)) {
        const job = decodeLaneJob(frame);
        // Leaves the dead node's list in the script that answers it.
        if (crash && list === k.laneActive(deadId) && (await givenUp(this.poison, crash, job.name, job.data, { list, frame }))) continue;
        let target: NodeView;
        try {
          target = chooseNode(views, modelKey(job.data.model), job.data.model.sizeBytes);
        } catch (e) {
          // No live node can take it: left where it is until one can (its caller's deadline still runs).
          if (isBruleeError(e)) return moved;
          throw e;
        }
        // Counted in the move's script: before the live node can take it and answer it.
        if (!(await moveJob(redis, list, k.lane(target.id), frame, { cluster: k.cluster, moved: k.jobsMoved, node: deadId }))) continue;
        target.queued++;
        log.info({ job: job.id, from: deadId, to: target.id, state: list === k.lane(deadId) ? 'waiting' : 'active' }, 'job moved off a dead node');
        await redis.pexpire(k.reaperLock, this.lockMs);
        moved++;
      }
    }
    return moved;
  }

  private get poison() {
    return { redis: this.o.redis, keys: this.o.keys, log: this.o.log, limit: this.o.maxDeathsPerJob };
  }

  /**
   * Counts the move of queued job `id` off `deadId` once per death (`diedAt`, the time it was
   * declared dead, as a node id may die, rejoin and die again; `by` -1: takes back the count of a
   * move that failed) and, counting it, takes the job's BullMQ lock from the dead worker
   * (`COUNT_MOVE`); keeps the reaper's lock while jobs move.
   */
  private async countMove(deadId: string, id: string, diedAt: number, by = 1): Promise<void> {
    const { redis, keys: k } = this.o;
    await COUNT_MOVE.run(redis, [k.jobsMovedIds(deadId), k.cluster, k.jobsMoved, k.reaperLock, k.jobLock(deadId, id)], [`${id}@${diedAt}`, deadId, by, this.lockMs]);
  }

  private async forget(id: string, q: Queue): Promise<void> {
    const { redis, keys: k } = this.o;
    await q.obliterate({ force: true }).catch(() => undefined);
    await redis.multi().hdel(k.deadNodes, id).hdel(k.jobsMoved, id).del(k.lane(id), k.laneActive(id), k.jobsMovedIds(id)).exec();
    this.queues.delete(id);
    await q.close().catch(() => undefined);
  }

  private queue(nodeId: string): Queue {
    let q = this.queues.get(nodeId);
    if (!q) {
      q = new Queue(this.o.keys.nodeQueue(nodeId), { connection: this.o.redis, prefix: this.o.keys.bullPrefix, streams: { events: { maxLen: 100 } } });
      q.on('error', () => undefined);
      this.queues.set(nodeId, q);
    }
    return q;
  }
}
