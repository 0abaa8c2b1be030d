import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Queue, QueueEvents, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { BruleeError, errorFromWire } from '../errors';
import { createRedis } from './connection';
import { outputsOf } from './results';
import type { Keys } from './keys';
import { liveNodes, type NodeInfo } from './nodes';
import { chooseNode } from './routing';
import { JOB, type InvokeJob, type InvokeResult, type LoadJob, type ModelRef, type UnloadJob } from './wire';

export interface DispatcherOptions {
  redisUrl: string;
  /** Request/response Redis connection (shared with the rest of the gateway). */
  redis: Redis;
  keys: Keys;
  /** How long a node list is reused before it is read again, ms. @default 500 */
  nodesRefreshMs?: number;
  /** How long an async invocation's result is kept, s. @default 3600 */
  asyncResultTtlS?: number;
}

export interface QueueDepth {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
  prioritized: number;
}

export type InvocationStatus =
  | { id: string; status: 'waiting' | 'active' | 'delayed' }
  | { id: string; status: 'completed'; result: InvokeResult; fn: string; version: number }
  | { id: string; status: 'failed'; error: BruleeError };

const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'] as const;

/**
 * One attempt: a job that failed would fail again, and its caller has its answer. A job whose node
 * died mid-run is not lost: BullMQ's stalled-job check puts it back (`maxStalledCount` on the worker).
 */
const JOB_OPTIONS: JobsOptions = { removeOnComplete: true, removeOnFail: true, attempts: 1 };

/** Events kept in a node queue's event stream (BullMQ's default is 10 000). */
const EVENTS_KEPT = 2000;

/** An invocation as the gateway hands it over; the dispatcher sets its deadline. */
export type InvokeRequest = Omit<InvokeJob, 'deadline' | 'resultTtlS'>;

/**
 * The gateway's side of the queue: routes an invocation to a node, enqueues it on that node's
 * BullMQ queue, and awaits the result through QueueEvents. One Queue + QueueEvents per node.
 */
export class Dispatcher {
  private readonly queues = new Map<string, { queue: Queue; eventsRedis: Redis; ready: Promise<QueueEvents> }>();
  private readonly inFlight = new Map<string, number>();
  private nodesCache: { at: number; nodes: NodeInfo[] } | undefined;
  private readonly opts: Required<DispatcherOptions>;
  private closed = false;

  constructor(opts: DispatcherOptions) {
    this.opts = { nodesRefreshMs: 500, asyncResultTtlS: 3600, ...opts };
  }

  /** Live nodes (cached for `nodesRefreshMs`). */
  async nodes(fresh = false): Promise<NodeInfo[]> {
    const now = Date.now();
    if (fresh || !this.nodesCache || now - this.nodesCache.at > this.opts.nodesRefreshMs) {
      this.nodesCache = { at: now, nodes: await liveNodes(this.opts.redis, this.opts.keys, now) };
      this.forgetDeadQueues(new Set(this.nodesCache.nodes.map((n) => n.id)));
    }
    return this.nodesCache.nodes;
  }

  /** Picks a node for `model` (warm first, else the cheapest cold start). */
  async route(model: ModelRef): Promise<string> {
    const nodes = await this.nodes();
    const key = modelKey(model);
    return chooseNode(
      nodes.map((n) => ({
        id: n.id,
        budgetBytes: n.budgetBytes,
        usedBytes: n.usedBytes,
        resident: n.resident.map((r) => r.key),
        queued: this.inFlight.get(n.id) ?? 0,
      })),
      key,
      model.sizeBytes,
    ).id;
  }

  /** Enqueues an invocation and waits for its result; 504 past `timeoutMs`. */
  async invoke(req: InvokeRequest, timeoutMs: number): Promise<InvokeResult> {
    const nodeId = await this.route(req.model);
    const job: InvokeJob = { ...req, deadline: Date.now() + timeoutMs, resultTtlS: Math.ceil(timeoutMs / 1000) + 60 };
    const r = await this.run<InvokeResult>(nodeId, JOB.invoke, job, job.deadline, `invocation of ${req.model.fn}`);
    return { ...r, outputs: await outputsOf(this.opts.redis, r, true) };
  }

  /** Enqueues an invocation without waiting; the id reads it back with `status`. */
  async submit(req: InvokeRequest): Promise<string> {
    const nodeId = await this.route(req.model);
    const id = randomUUID();
    const ttl = this.opts.asyncResultTtlS;
    const job: InvokeJob = { ...req, deadline: Date.now() + ttl * 1000, resultTtlS: ttl };
    const { queue } = await this.queueFor(nodeId);
    await this.opts.redis.set(this.opts.keys.invocation(id), nodeId, 'EX', ttl);
    await queue.add(JOB.invoke, job, { ...JOB_OPTIONS, jobId: id, removeOnComplete: { age: ttl }, removeOnFail: { age: ttl } });
    return id;
  }

  async status(id: string): Promise<InvocationStatus> {
    const nodeId = /^[0-9a-f-]{36}$/.test(id) ? await this.opts.redis.get(this.opts.keys.invocation(id)) : null;
    if (!nodeId) throw new BruleeError('INVOCATION_NOT_FOUND', `no invocation ${id}: ids come from POST /functions/{name}/invoke?async=true and are kept for ${this.opts.asyncResultTtlS} s`);
    const { queue } = await this.queueFor(nodeId);
    const job: Job | undefined = await queue.getJob(id);
    if (!job) throw new BruleeError('INVOCATION_NOT_FOUND', `invocation ${id} is no longer kept`);
    const state = await job.getState();
    if (state === 'completed') {
      const r = job.returnvalue as InvokeResult;
      const { model } = job.data as InvokeJob;
      return { id, status: 'completed', result: { ...r, outputs: await outputsOf(this.opts.redis, r, false) }, fn: model.fn, version: model.version };
    }
    if (state === 'failed') return { id, status: 'failed', error: errorFromWire(job.failedReason) };
    return { id, status: state === 'delayed' ? 'delayed' : state === 'active' ? 'active' : 'waiting' };
  }

  /** Loads a model on the node that routing picks (prewarm). Resolves to that node's id. */
  async load(model: ModelRef, timeoutMs: number): Promise<{ node: string; loaded: boolean }> {
    const nodeId = await this.route(model);
    const r = await this.run<{ loaded: boolean }>(nodeId, JOB.load, { model } satisfies LoadJob, Date.now() + timeoutMs, `load of ${model.fn}`);
    return { node: nodeId, loaded: r.loaded };
  }

  /** Unloads `fn` (all versions, or those below `job.belowVersion`) on every live node. Resolves to the number of models dropped. */
  async unload(job: UnloadJob, timeoutMs: number): Promise<number> {
    const nodes = await this.nodes(true);
    const counts = await Promise.all(
      nodes.map((n) => this.run<{ dropped: number }>(n.id, JOB.unload, job, Date.now() + timeoutMs, `unload of ${job.fn}`)),
    );
    return counts.reduce((s, c) => s + c.dropped, 0);
  }

  /** Job counts by state, summed over every node queue that has a live node. */
  async depth(): Promise<{ total: QueueDepth; byNode: Record<string, QueueDepth> }> {
    const nodes = await this.nodes(true);
    const byNode: Record<string, QueueDepth> = {};
    const total: QueueDepth = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0, prioritized: 0 };
    for (const n of nodes) {
      const { queue } = await this.queueFor(n.id);
      const c = await queue.getJobCounts(...STATES);
      const d = Object.fromEntries(STATES.map((s) => [s, c[s] ?? 0])) as unknown as QueueDepth;
      byNode[n.id] = d;
      for (const s of STATES) total[s] += d[s];
    }
    return { total, byNode };
  }

  /** Calls this gateway is still waiting on (invocations, loads, unloads). */
  get pending(): number {
    let n = 0;
    for (const v of this.inFlight.values()) n += v;
    return n;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.queues.values()];
    this.queues.clear();
    await Promise.allSettled(all.flatMap((q) => [q.ready.then((e) => e.close()), q.queue.close()]));
    // QueueEvents does not close a connection it was handed.
    for (const q of all) q.eventsRedis.disconnect();
  }

  /**
   * Adds a job and awaits its end, until `deadline` (epoch ms) at the latest, whatever the wait is
   * spent on (connecting the node's queue, adding the job, the job itself). The job id is chosen
   * here so the listeners are in place before the job exists: no event can be missed, and no
   * round trip is needed to check whether it finished before we listened (as
   * `Job.waitUntilFinished` does).
   */
  private async run<R>(nodeId: string, name: string, data: unknown, deadline: number, what: string): Promise<R> {
    const jobId = randomUUID();
    const timeoutMs = Math.max(0, deadline - Date.now());
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new BruleeError('TIMEOUT', `${what} did not finish within ${timeoutMs} ms (node ${nodeId}); raise the function's timeoutMs or add nodes`));
      }, timeoutMs);
    });
    timeout.catch(() => undefined);
    let stopListening = () => {};
    this.inFlight.set(nodeId, (this.inFlight.get(nodeId) ?? 0) + 1);
    try {
      const { queue, events: typed } = await Promise.race([this.queueFor(nodeId), timeout]);
      // QueueEvents emits `completed:<jobId>` / `failed:<jobId>`, which its typings do not list.
      const events = typed as unknown as EventEmitter;
      const finished = new Promise<R>((resolve, reject) => {
        const onCompleted = (args: { returnvalue: unknown }) => resolve(args.returnvalue as R);
        const onFailed = (args: { failedReason: string }) => reject(errorFromWire(args.failedReason));
        events.on(`completed:${jobId}`, onCompleted);
        events.on(`failed:${jobId}`, onFailed);
        stopListening = () => {
          events.off(`completed:${jobId}`, onCompleted);
          events.off(`failed:${jobId}`, onFailed);
        };
      });
      try {
        await Promise.race([queue.add(name, data, { ...JOB_OPTIONS, jobId }), timeout]);
        return await Promise.race([finished, timeout]);
      } finally {
        // A job nobody waits for any more is taken back if no node has started it (a node also
        // skips an invocation it reaches past its deadline).
        if (timedOut) queue.remove(jobId).catch(() => undefined);
      }
    } finally {
      clearTimeout(timer);
      stopListening();
      this.inFlight.set(nodeId, (this.inFlight.get(nodeId) ?? 1) - 1);
    }
  }

  /** Closes the queue connections of nodes that are gone (and that nobody here waits on). */
  private forgetDeadQueues(live: Set<string>): void {
    for (const [id, q] of this.queues) {
      if (live.has(id) || (this.inFlight.get(id) ?? 0) > 0) continue;
      this.queues.delete(id);
      this.inFlight.delete(id);
      void Promise.allSettled([q.ready.then((e) => e.close()), q.queue.close()]).then(() => q.eventsRedis.disconnect());
    }
  }

  private async queueFor(nodeId: string) {
    if (this.closed) throw new BruleeError('NO_NODE_AVAILABLE', 'the gateway is shutting down');
    let q = this.queues.get(nodeId);
    if (!q) {
      const name = this.opts.keys.nodeQueue(nodeId);
      const prefix = this.opts.keys.bullPrefix;
      const queue = new Queue(name, { connection: this.opts.redis, prefix, streams: { events: { maxLen: EVENTS_KEPT } } });
      const eventsRedis = createRedis(this.opts.redisUrl, { name: 'brulee-events' });
      queue.setMaxListeners(0);
      // Connection trouble shows as failed commands (503) and in /healthz; unhandled, BullMQ would print it.
      queue.on('error', () => undefined);
      const ready = (async () => {
        // Read the event stream from a second before now (server time), not from "$": an event
        // written between our connect and our first read is then not missed.
        const [sec] = await this.opts.redis.time();
        const events = new QueueEvents(name, { connection: eventsRedis, prefix, lastEventId: `${(Number(sec) - 1) * 1000}-0` });
        events.setMaxListeners(0);
        events.on('error', () => undefined);
        await events.waitUntilReady();
        return events;
      })();
      q = { queue, eventsRedis, ready };
      this.queues.set(nodeId, q);
    }
    try {
      return { queue: q.queue, events: await q.ready };
    } catch (e) {
      // Not ready (Redis away): forget it, so the next call builds it anew.
      if (this.queues.get(nodeId) === q) this.queues.delete(nodeId);
      void q.queue.close().catch(() => undefined);
      q.eventsRedis.disconnect();
      throw e;
    }
  }
}

/** The cache key of a model version: function name and content hash. */
export function modelKey(m: Pick<ModelRef, 'fn' | 'sha256'>): string {
  return `${m.fn}@${m.sha256.slice(0, 16)}`;
}
