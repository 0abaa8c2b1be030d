import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError, errorFromWire, errorToWire, isBruleeError } from '../errors';
import type { LocalModels } from '../store';
import { closeRedis, createRedis } from '../queue/connection';
import type { RedisClock } from '../queue/clock';
import { modelKey, type AnswerHere, type GiveUp, type InvokeAnswer, type InvokeHere, type LocalNode, type Routed } from '../queue/dispatcher';
import { controlType, type Keys } from '../queue/keys';
import { claimNodeId, HEARTBEAT_MS, leaveCluster, MISSED_BEATS, writeHeartbeat, type NodeInfo } from '../queue/nodes';
import { admit, refusal, releaseWith, ticketOf, type Admission, type AdmissionRequest, type AdmissionTicket } from '../queue/admission';
import { admitAndApply, delivered, applyWrites, hasAnswer, type OutgoingAnswer } from '../queue/replies';
import { freeNow } from '../queue/free';
import { HeldWrites } from '../queue/held-writes';
import { LaneWorker } from '../queue/lane';
import { lostTooOften, settleCrashed, stalledOut } from '../queue/poison';
import { tensorsByteLength } from '../queue/tensor';
import { JOB, layoutTensors, unpackTensors, type InvokeJob, type InvokeResult, type LoadJob, type ModelRef, type Tensor, type UnloadJob, type WireTensors } from '../queue/wire';
import { Batcher } from './batcher';
import { closeInOrder } from './close';
import { chargesHeld, Footprints, ProcessOverhead } from './footprint';
import type { Metrics } from './metrics';
import { artifactLayout, type ArtifactLayout } from './mapped';
import { artifactKey, loadModel, offThread, type LoadedModel, type OffThreadLimits, type OffThreadMode } from './onnx';
import { SessionHost } from './session-host';
import { createPolicy, type RuntimePolicyName } from './policies';
import { readPopularity } from './popularity';
import { CountsOut, invocationCommands, recordEviction, recordInvocation, type InvocationRecord } from './stats';
import { StatsOps } from '../queue/writes';
import { mallocReturnsMemory, MALLOC_TUNABLES, trimHeap } from './malloc';
import { WHOLE_PARK_MAX_BYTES, ParkedSessions } from './parked';
import { PreParker, type PreParkCandidate, type PreParkOutcome } from './prepark';
import { WarmPool, type EvictionEvent, type ModelSpec, type Reservation } from './warm-pool';
import { WARMUP_MODEL_B64 } from './warmup-model';
import { warmLoadPath, type Warmed } from './warmup';

/**
 * Parked sessions may hold this share of the budget by default (`RuntimeNodeOptions.parkBytes`):
 * a parked mapped artifact's session holds ~3 % of its charge (a 20 MB MLP 0.5 of 19.6 MiB) up to
 * ~40 % of it (PP-OCR rec, whose smaller tensors and arena are not mapped).
 */
const PARK_SHARE = 0.05;

/** How long a load waits for the process's overhead to leave it room (`WarmPoolOptions.overheadWaitMs`), ms. */
export const OVERHEAD_WAIT_MS = 1000;
/** Dead JS buffers past this fraction of the budget are collected for a load that waits (`RuntimeNode.collect`). */
const COLLECT_DEAD_FRACTION = 1 / 16;

let gcFn: (() => void) | null | undefined;
/** V8's full collection, without `--expose-gc` on the command line (null where it cannot be had). */
function fullGc(): (() => void) | null {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  return gcFn;
}

/** How long a node must have had no call before a pre-park starts (runtime/prepark.ts), ms. */
const PREPARK_IDLE_MS = 200;

/** `RuntimeNode.parkedSessions`: what parking, and pre-parking, did on a node (its heartbeat carries it). */
export type ParkedStats = NonNullable<NodeInfo['parked']>;

/** Copies of a call's input and output bytes alive on a node at once (`RuntimeNode.callBytes`). */
const IN_COPIES = 2;
const OUT_COPIES = 3;

/** A job as a node runs it: a BullMQ job, or a lane job (`queue/lane.ts`) with its frame and inline bytes. */
type NodeJob<T = object> = { id?: string; name: string; data: Routed<T>; processedOn?: number; inline?: Buffer; frame?: Buffer };

/** What a node's warm pool holds: a model version, and where its bytes are. */
type NodeModelSpec = ModelSpec & Pick<ModelRef, 'sha256' | 'session' | 'artifact'>;

export interface RuntimeNodeOptions {
  id: string;
  redisUrl: string;
  /** Request/response connection shared with the rest of the process. */
  redis: Redis;
  keys: Keys;
  /** This node's local copies of model bytes, fetched from the model store. */
  models: LocalModels;
  budgetBytes: number;
  policy: RuntimePolicyName;
  /** Keep-alive for the `ttl` policy, ms. */
  ttlMs: number;
  /** Jobs run at once. @default 16 */
  concurrency?: number;
  /** Bytes the outputs of one invocation may take; past it the answer is OUTPUT_TOO_LARGE. @default 64 MiB */
  maxOutputBytes?: number;
  /** Heartbeat period, ms; the node is declared dead after `MISSED_BEATS` missed beats. @default HEARTBEAT_MS */
  heartbeatMs?: number;
  /** MAX_NODE_DEATHS_PER_JOB, for the jobs an earlier process with this id died running, and those its BullMQ queue lost (queue/poison.ts). @default 2 */
  maxDeathsPerJob?: number;
  /** JOB_LOCK_MS: how long this node's hold on a job of its BullMQ queue lasts unless renewed, and how often lapsed ones are looked for. @default 30 000 */
  jobLockMs?: number;
  /**
   * The node is its process's only tenant (ROLE=worker): the warm pool also charges what the
   * process holds beyond its charges (runtime/footprint.ts `ProcessOverhead`), sampled every 50 ms.
   */
  chargeProcess?: boolean;
  /**
   * Which models' sessions load and run off the main thread, in the node's session host
   * (runtime/session-host.ts): `ORT_OFF_THREAD`, `ORT_OFF_THREAD_MS` and `ORT_OFF_THREAD_LOAD_MS`
   * (runtime/onnx.ts `offThread`); with `auto`, also a model whose run on the main thread here took
   * `limits.runMs` or more (registration ran it on one row; calls may carry thousands), from its
   * next load. `threads`: the host's threads (`ORT_OFF_THREAD_THREADS`).
   * @default { mode: 'auto', limits: { runMs: 10, loadMs: 100 }, threads: 1 }
   */
  offThread?: { mode: OffThreadMode; limits: OffThreadLimits; threads: number };
  /**
   * The most bytes sessions of evicted models may hold while parked (`PARK_BUDGET`,
   * runtime/parked.ts): a mapped artifact's session is kept with its mapped pages given back, and
   * its next cold start reuses it. 0 parks none. @default 5 % of `budgetBytes`
   */
  parkBytes?: number;
  /**
   * Pre-park (`PREPARK`, runtime/prepark.ts): in idle time, create and park the session of each
   * registered mapped model not held here, most popular first, within `parkBytes`, so that its
   * first call here is a reload from park. Needs `listFunctions`. @default false
   */
  prePark?: boolean;
  /** The registered functions' current versions (functions/registry.ts), and whether each has a mapped artifact: what `prePark` picks from. */
  listFunctions?: () => Promise<Array<{ model: ModelRef; mapped: boolean }>>;
  /**
   * The registry's record of a function (functions/registry.ts `readFunction`; undefined: not
   * registered): its current version's bytes and all its versions'. Handed in, so that runtime/
   * neither knows the registry's stored form nor imports functions/.
   */
  findFunction: (name: string) => Promise<{ sha256: string; versions: ReadonlyArray<{ sha256: string }> } | undefined>;
  /** The cluster clock (Redis TIME): deadlines and queue times are on it. */
  clock: RedisClock;
  metrics: Metrics;
  log: Logger;
}

/**
 * A runtime node: a BullMQ worker on the node's own queue, running invocations on onnxruntime
 * sessions kept in a warm pool under the node's byte budget.
 */
export class RuntimeNode implements LocalNode {
  readonly pool: WarmPool<LoadedModel, NodeModelSpec>;
  private worker?: Worker;
  /** Takes this node's sync invocations off its lane (queue/lane.ts); the BullMQ worker takes the rest. */
  private lane?: LaneWorker;
  /** BullMQ does not close a connection it was handed. */
  private workerRedis?: Redis;
  /** Duration of each key's latest load, ms (for the invocation that caused it). */
  private readonly lastLoadMs = new Map<string, number>();
  /** Of each key's latest load, the time spent fetching its bytes from the model store, ms. */
  private readonly lastFetchMs = new Map<string, number>();
  private sub?: Redis;
  private timers: NodeJS.Timeout[] = [];
  private popularity = new Map<string, number>();
  private loads = 0;
  private evictions = 0;
  private readonly startedAt = Date.now();
  private closing?: Promise<void>;
  /** This process's claim on its node id (two processes with one NODE_ID cannot both run). */
  private readonly token = randomUUID();
  private readonly o: Required<Omit<RuntimeNodeOptions, 'listFunctions'>> & Pick<RuntimeNodeOptions, 'listFunctions'>;
  /** Merges concurrent calls of a model whose function asks for it (`ModelRef.batch`). */
  private readonly batcher: Batcher;
  /** What each model really holds here, measured (runtime/footprint.ts); the pool charges it. */
  readonly footprints: Footprints;
  /** Each model's resident bytes as registration measured them: the least it is charged. */
  private readonly registered = new Map<string, number>();
  /** The thread that loads and runs long models' sessions (`offThread`). */
  private readonly host: SessionHost;

  constructor(opts: RuntimeNodeOptions) {
    this.o = { concurrency: 16, maxOutputBytes: 64 * 1024 ** 2, heartbeatMs: HEARTBEAT_MS, maxDeathsPerJob: 2, jobLockMs: 30_000, chargeProcess: false, offThread: { mode: 'auto', limits: { runMs: 10, loadMs: 100 }, threads: 1 }, parkBytes: Math.floor(opts.budgetBytes * PARK_SHARE), prePark: false, ...opts };
    const { metrics, log } = this.o;
    this.host = new SessionHost(this.o.offThread.threads);
    this.heldWrites = HeldWrites.on(this.o.redis);
    this.footprints = new Footprints({
      capBytes: opts.budgetBytes,
      onGrow: (key) => {
        const registered = this.registered.get(key);
        if (registered !== undefined) this.pool.resize(key, this.footprints.charge(key, registered));
      },
    });
    // A parked session's pages go, and it is disposed, out of the way of measured loads (as `metered`'s dispose).
    this.parked = new ParkedSessions({ capBytes: this.o.parkBytes, aside: (f) => this.footprints.turns.run(false, f) });
    const list = this.o.listFunctions;
    if (this.o.prePark && list && this.o.parkBytes > 0) {
      this.preParker = new PreParker({
        candidates: async () => (await list()).filter((f) => f.mapped).map((f) => ({ key: modelKey(f.model), fn: f.model.fn, popularity: this.popularityOf(f.model.fn), loadMs: f.model.loadMs, model: f.model })),
        idle: () => this.idle(),
        park: async (c) => {
          const out = await this.prePark(c.model);
          if (out === 'no-room') this.preNoRoom++;
          return out;
        },
        idleMs: PREPARK_IDLE_MS,
        onError: (e) => log.warn({ err: e }, 'pre-park failed'),
      });
    }
    this.batcher = new Batcher({
      onRun: (r) => {
        const g = this.gone.get(r.tag);
        if (g === undefined || g.reborn) metrics.batchSize.observe({ function: r.tag }, r.callers);
      },
    });
    this.pool = new WarmPool<LoadedModel, NodeModelSpec>({
      budgetBytes: opts.budgetBytes,
      policy: createPolicy(opts.policy, { ttlMs: opts.ttlMs }),
      popularity: (fn) => this.popularity.get(fn) ?? 0,
      load: (spec) => this.loadSpec(spec),
      heldAtLoad: (spec) => this.heldAtLoad(spec),
      // Where the process's overhead is charged, a load waits for it (a bound, not a hope), and
      // the dead buffers in it are collected for the load.
      ...(this.o.chargeProcess ? { overheadWaitMs: OVERHEAD_WAIT_MS, onOverheadWait: () => this.collect() } : {}),
      // Parked sessions are part of the process's overhead: they go before any idle model is evicted for it.
      reclaim: (bytes) => this.parked.reclaim(bytes),
      dispose: (m, key, evicted) => this.release(m, key, evicted),
      onEvict: (ev) => {
        this.evictions++;
        this.lastLoadMs.delete(ev.key);
        this.lastFetchMs.delete(ev.key);
        // A retired version's key (its bytes) or a deleted function's will not be loaded again:
        // nothing of it is kept (`forgetModel`). An explicit unload keeps what was measured, as an
        // eviction does: the key is the model's bytes, and what this process measured of them holds
        // at their next load (one under other session options is measured again: `loadSpec`),
        // which then runs beside other calls instead of alone, and a cold call skips four reads of
        // /proc (`bench:speed`'s cold calls each follow an unload).
        if (ev.cause === 'retired' || ev.cause === 'deleted') this.forgetModel(ev.key);
        else if (ev.cause === 'unload') this.registered.delete(ev.key);
        // A deleted function's eviction is not counted: its series went at the deletion (`forgetFunction`).
        if (ev.cause !== 'deleted') metrics.evictions.inc({ function: ev.fn, cause: ev.cause });
        log.info({ model: ev.key, cause: ev.cause, reason: ev.reason }, 'evicted');
        void recordEviction(this.o.redis, this.o.keys, this.o.id, ev).catch(() => undefined);
        void this.heartbeat();
      },
      // A retired version or a deleted function's model that was evicted before: what is kept of it goes too.
      onDropNotHeld: (key, cause) => {
        if (cause !== 'unload') this.forgetModel(key);
      },
      onPrefetch: (ev) => {
        if (ev.outcome !== 'loaded') {
          if (ev.outcome === 'failed') log.warn({ model: ev.key, err: ev.error, reason: ev.reason }, 'prefetch failed');
          else log.info({ model: ev.key }, 'prefetched model dropped while it loaded');
          return this.settleGone(ev.fn);
        }
        log.info({ model: ev.key, reason: ev.reason }, 'prefetched');
        if (!this.counted(ev.fn, ev.key)) return this.settleGone(ev.fn);
        void this.prewarmed(ev.fn, ev.key, 'policy').catch(() => undefined);
      },
    });
    metrics.onCollect(() => {
      metrics.cacheUsed.set({ node: this.o.id }, this.pool.usedBytes);
      metrics.cacheBudget.set({ node: this.o.id }, this.pool.budgetBytes);
      metrics.residentModels.set({ node: this.o.id }, this.pool.list().filter((m) => m.state === 'resident').length);
      const w = this.pool.overheadWaits;
      metrics.overheadWaits.set({ node: this.o.id, what: 'loads' }, w.loads);
      metrics.overheadWaits.set({ node: this.o.id, what: 'seconds' }, w.ms / 1000);
      metrics.overheadWaits.set({ node: this.o.id, what: 'timed_out' }, w.timedOut);
      metrics.overheadWaits.set({ node: this.o.id, what: 'no_room' }, w.noRoom);
      metrics.overheadWaits.set({ node: this.o.id, what: 'collections' }, this.collections);
      const p = this.parkedSessions;
      for (const what of ['parked', 'taken', 'held', 'bytes'] as const) metrics.parked.set({ node: this.o.id, what }, p[what]);
      for (const [what, v] of Object.entries(p.pre)) metrics.parked.set({ node: this.o.id, what: `pre_${what.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}` }, v);
    });
  }

  get id(): string {
    return this.o.id;
  }

  async start(): Promise<void> {
    const { keys } = this.o;
    if (!mallocReturnsMemory()) {
      this.o.log.warn(
        `GLIBC_TUNABLES has no glibc.malloc.mmap_threshold: memory of evicted models may stay in this process, and measured model footprints may be low; start with GLIBC_TUNABLES=${MALLOC_TUNABLES} (npm start, brulee serve and the image do)`,
      );
    }
    await this.reloadPopularity();
    await this.warmUp();
    // Started now, not at a long model's cold start (~100 ms), and before the process's memory at rest is read.
    if (this.o.offThread.mode !== 'never') await this.host.start();
    const crashed = await this.claimId();
    // An earlier process with this id died holding jobs, and the reaper has not moved them: each
    // counts that death before this node takes them back (a poison pill must not crash-loop it).
    if (crashed !== undefined) {
      await settleCrashed({ redis: this.o.redis, keys, log: this.o.log, limit: this.o.maxDeathsPerJob }, { node: this.o.id, lastBeatAt: crashed }).catch((e: unknown) => this.o.log.warn({ err: e }, 'could not count the deaths of the jobs an earlier process with this id held'));
    }
    this.sub = createRedis(this.o.redisUrl, { name: `brulee-node-${this.o.id}-sub` });
    await this.sub.subscribe(keys.control);
    this.sub.on('message', (_ch, msg: string) => {
      const type = controlType(msg);
      if (type === 'popularity') void this.reloadPopularity().then(() => this.preParker?.wake(), () => undefined);
      if (type === 'function' && this.preParker) void this.registrationChanged((JSON.parse(msg) as { name?: unknown }).name).catch(() => undefined);
    });
    await this.heartbeat();
    this.workerRedis = createRedis(this.o.redisUrl, { name: `brulee-node-${this.o.id}` });
    // Once the id is this node's and before any job: its first sample is the process at rest.
    if (this.o.chargeProcess) this.sampleOverhead();
    // The lane's worker first: the BullMQ worker's jobs take their slots from it.
    const lane = (this.lane = new LaneWorker({
      redisUrl: this.o.redisUrl,
      keys,
      nodeId: this.o.id,
      concurrency: this.o.concurrency,
      handle: (job) => this.process(job),
      onError: (e) => this.o.log.warn({ err: e }, 'lane error'),
    }));
    const poison = { redis: this.o.redis, keys, log: this.o.log, limit: this.o.maxDeathsPerJob };
    // A job whose hold lapsed (a blocked event loop, a predecessor under this id) is run again
    // here, and given up once MAX_NODE_DEATHS_PER_JOB says: answered NODE_CRASHED as its run
    // (queue/poison.ts `stalledOut`), so it leaves the queue only once answered. BullMQ's own
    // give-up (`maxStalledCount`) is never reached: it drops the job before anyone answers it.
    const handle = async (job: Job, lock?: string) => {
      // One its queue lost may have been answered by the run that lost it (a process that died
      // between its answer and BullMQ's completion): not run again.
      if (job.stalledCounter > 0 && (await hasAnswer(this.o.redis, keys, (job.data as Routed<unknown>).reply))) return;
      if (!lostTooOften(job, this.o.maxDeathsPerJob)) return lane.slot(() => this.process(job, lock));
      // One token for every try: a try whose reply was lost finds its own answer, not another's.
      const token = randomUUID();
      return this.retried(() => stalledOut(poison, this.o.id, job, token, lock));
    };
    this.worker = new Worker(keys.nodeQueue(this.o.id), handle, {
      connection: this.workerRedis,
      prefix: keys.bullPrefix,
      concurrency: this.o.concurrency,
      lockDuration: this.o.jobLockMs,
      stalledInterval: this.o.jobLockMs,
      maxStalledCount: Number.MAX_SAFE_INTEGER,
    });
    this.worker.on('error', (e) => this.o.log.warn({ err: e }, 'worker error'));
    await this.worker.waitUntilReady();
    this.timers.push(setInterval(() => void this.heartbeat(), this.o.heartbeatMs));
    // Keep-alive expiry and the policy's pre-warming (both no-ops for policies without them).
    this.timers.push(
      setInterval(() => {
        this.pool.sweep();
        this.pool.prefetch();
        // Room freed in the park since the last pass (a session taken, dropped or reclaimed): try again.
        if (this.preParker && this.parked.bytes < this.preParkedAtBytes) this.preParker.wake();
        this.preParkedAtBytes = this.parked.bytes;
      }, 1000),
    );
    this.preParker?.wake();
  }

  /** What the start's warm-up did (`warmUp`), or undefined where it could not run. */
  warmed?: Warmed;
  /**
   * Warms the load path before the node takes calls (runtime/warmup.ts: a tiny MLP made here, loaded,
   * run and released twice through a pool, policy and footprints of its own; nothing of the node's
   * sees it). Where that cannot run (no writable temporary folder), onnxruntime's own start-up is
   * still paid here, with a one-node model from memory, not at the first cold start.
   */
  private async warmUp(): Promise<void> {
    try {
      const w = (this.warmed = await warmLoadPath(createPolicy(this.o.policy, { ttlMs: this.o.ttlMs })));
      this.o.log.debug({ ...w }, 'load path warmed');
    } catch (e) {
      this.o.log.warn({ err: e }, 'the load path could not be warmed (the first cold start pays it)');
      await (await loadModel(Buffer.from(WARMUP_MODEL_B64, 'base64'))).dispose();
    }
  }

  /**
   * Charges the pool what the process holds beyond its charges (`chargeProcess`), sampled every
   * 50 ms until `close`; the timer does not keep the process alive.
   */
  private sampleOverhead(): void {
    if (this.closing) return;
    const pool = this.pool;
    const restBuffers = (this.restBuffers = process.memoryUsage().arrayBuffers);
    const overhead = (this.overhead = new ProcessOverhead({
      charged: () => this.heldBytes(process.memoryUsage().arrayBuffers - restBuffers),
      started: () => pool.peakUsedBytes > 0,
      settled: () => pool.settled,
      set: (n) => pool.setOverhead(n),
    }));
    overhead.sample();
    const t = setInterval(() => overhead.sample(), 50);
    t.unref();
    this.timers.push(t);
  }

  private overhead?: ProcessOverhead;
  /** JS ArrayBuffers at rest, when the overhead's sampling started. */
  private restBuffers = 0;
  private lastCollect = -Infinity;
  /** Full garbage collections run for loads that waited for the overhead (`collect`). */
  collections = 0;

  /**
   * A load waits for the process's overhead (`WarmPool` `onOverheadWait`): when JS ArrayBuffers
   * beyond the calls' tensors (dead tensors V8 has not collected: it starts a collection for them
   * only some 64 MiB later) are a good part of the budget, a full collection frees them now (at
   * most one per `OVERHEAD_WAIT_MS`), and the overhead is measured again at once.
   */
  private collect(): void {
    trimHeap(); // large blocks freed into a load window's holes (runtime/malloc.ts)
    const dead = process.memoryUsage().arrayBuffers - this.restBuffers - this.pool.tensorBytes;
    const now = performance.now();
    if (dead > this.pool.budgetBytes * COLLECT_DEAD_FRACTION && now - this.lastCollect >= OVERHEAD_WAIT_MS) {
      this.lastCollect = now;
      const gc = fullGc();
      if (gc) {
        gc();
        this.collections++;
      }
    }
    this.overhead?.sample();
  }

  /** Reads the popularity shares the cron job last computed (the job announces each refresh). */
  async reloadPopularity(): Promise<void> {
    this.popularity = await readPopularity(this.o.redis, this.o.keys);
  }

  /** The popularity share this node's eviction policy currently sees for `fn`. */
  popularityOf(fn: string): number {
    return this.popularity.get(fn) ?? 0;
  }

  info(): NodeInfo {
    return {
      id: this.o.id,
      policy: this.pool.policyName,
      budgetBytes: this.pool.budgetBytes,
      usedBytes: this.pool.usedBytes,
      concurrency: this.o.concurrency,
      resident: this.pool.list().map((m) => ({ key: m.key, fn: m.fn, sizeBytes: m.sizeBytes, state: m.state, pinned: m.pinned, inFlight: m.inFlight })),
      loads: this.loads,
      evictions: this.evictions,
      here: this.here.waiting + this.here.running,
      memory: this.memory(),
      parked: this.parkedSessions,
      startedAt: this.startedAt,
      cpus: availableParallelism(),
      heartbeatAt: this.o.clock.now(),
    };
  }

  /**
   * The process's memory for heartbeats, read at most once a heartbeat period: a load and an
   * eviction beat at once, and `process.memoryUsage()` reads /proc (10-40 µs, several times that on
   * a loaded machine), on a cold start's path.
   */
  private memory(): NonNullable<NodeInfo['memory']> {
    const now = Date.now();
    if (!this.lastMemory || now - this.lastMemory.at >= this.o.heartbeatMs) this.lastMemory = { at: now, value: processMemory() };
    return this.lastMemory.value;
  }
  private lastMemory?: { at: number; value: NonNullable<NodeInfo['memory']> };

  /**
   * Drains: stops taking jobs, finishes in-flight ones (for up to `drainMs`), leaves the cluster,
   * frees the models. Idempotent, and bounded even when Redis is unreachable: a step that waits
   * on Redis past its time has its connection dropped.
   */
  close(opts: { drainMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.timers) clearInterval(t);
      await closeInOrder(
        [
          // No pre-park starts from here; the create under way ends (its session is disposed at 'free the parked sessions').
          { name: 'pre-parking', run: () => this.preParker?.close() },
          {
            name: 'worker: finish active jobs',
            run: () => Promise.all([this.lane?.close(), this.worker?.close(), Promise.allSettled([...this.hereCalls])]),
            // Active jobs cannot complete without Redis: then there is nothing to wait for.
            timeoutMs: this.o.redis.status === 'ready' ? Math.max(1000, opts.drainMs ?? 10_000) : 1000,
            force: () => {
              this.stopped = true;
              this.workerRedis?.disconnect();
              return Promise.all([this.lane?.close(true), this.worker?.close(true)]);
            },
          },
          { name: 'counts of the calls answered here', run: () => ((this.stopped = true), this.heldWrites.flush(), Promise.all([...this.counting])) },
          { name: 'worker connection', run: () => closeRedis(this.workerRedis), force: () => this.workerRedis?.disconnect() },
          // Leaves at once; a job a gateway adds after this is moved by the reaper.
          { name: 'leave the cluster', run: () => leaveCluster(this.o.redis, this.o.keys, this.o.id, this.token) },
          { name: 'control subscription', run: () => closeRedis(this.sub), force: () => this.sub?.disconnect() },
          { name: 'free the models', run: () => this.pool.clear() },
          { name: 'free the parked sessions', run: () => this.parked.clear() },
          { name: 'session host', run: () => this.host.close() },
        ],
        this.o.log,
      );
    })();
    return this.closing;
  }

  /**
   * Takes this node's id in Redis. An id held by a process that still beats is refused: two
   * processes with one NODE_ID would merge their queues and their stats. A holder that stopped
   * beating (a crash just before this restart) is waited out: at most `MISSED_BEATS` beats.
   * Resolves to the last beat of an earlier holder that died (did not leave), if any.
   */
  private async claimId(): Promise<number | undefined> {
    const deadAfter = this.o.heartbeatMs * MISSED_BEATS;
    for (let attempt = 0; ; attempt++) {
      const r = await claimNodeId(this.o.redis, this.o.keys, this.o.id, this.token, deadAfter);
      if (r.ok) return r.crashedLastBeatAt;
      if (attempt >= 1 || r.lastBeatAgoMs < 0) {
        throw new BruleeError(
          'CONFLICT',
          `NODE_ID "${this.o.id}" is held by another live process (its last heartbeat was ${r.lastBeatAgoMs} ms ago): give every process its own NODE_ID, or leave NODE_ID unset for a unique one`,
        );
      }
      await new Promise((res) => setTimeout(res, deadAfter - r.lastBeatAgoMs + 100));
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.closing) return;
    const t0 = Date.now();
    try {
      const r = await writeHeartbeat(this.o.redis, this.o.keys, this.info(), this.token);
      this.o.clock.observe(r.now, t0, Date.now());
      if (r.code === 'rejoined') this.o.log.warn({ node: this.o.id }, 'this node had been declared dead (it missed its heartbeats) and rejoins; its jobs were moved and may run twice (counted as duplicate runs)');
      if (r.code === 'taken') {
        this.o.log.error({ node: this.o.id }, 'another process now holds this NODE_ID; this node stops taking jobs');
        this.stopped = true;
        void this.worker?.close();
        void this.lane?.close();
      }
    } catch {
      // Redis away: the next beat tries again.
    }
  }

  /** The session options (JSON) each model's footprint was measured under (`loadSpec`). */
  private readonly measuredWith = new Map<string, string>();

  /** Of each model, the most output bytes a call had per input byte (to reserve a call's outputs before it runs). */
  private readonly outPerIn = new Map<string, number>();

  /**
   * What a call holds on this node beside its model: its inputs (the bytes read from the job, which
   * the tensors onnxruntime reads view, and the lane frame again in the command that answers it)
   * and its outputs (onnxruntime's copy into JavaScript, the answer frame they are written into,
   * the command that sends it). Before the run the outputs are `outBytes` as the model's calls had them
   * per input byte so far (the input's size for a model not run yet); after it, their real size.
   */
  private callBytes(key: string, inBytes: number, outBytes = Math.ceil(inBytes * (this.outPerIn.get(key) ?? 1))): number {
    return IN_COPIES * inBytes + OUT_COPIES * outBytes;
  }

  private spec(m: ModelRef): NodeModelSpec {
    const key = modelKey(m);
    // An operator's memoryBytes is charged as given; else at least what registration measured.
    if (m.sizeFixed) this.registered.delete(key);
    else this.registered.set(key, m.sizeBytes);
    return {
      key, fn: m.fn, version: m.version, sha256: m.sha256, sizeBytes: m.sizeFixed ? m.sizeBytes : this.footprints.charge(key, m.sizeBytes), loadMs: m.loadMs, execMs: m.execMs, pinned: m.pinned,
      ...(m.session ? { session: m.session } : {}),
      ...(m.artifact ? { artifact: m.artifact } : {}),
    };
  }

  /**
   * Loads the pre-optimized artifact when it was derived for this node's onnxruntime and CPU
   * (`artifactKey`), else the original; an artifact that fails to fetch or load falls back to the
   * original, which stays the source of truth.
   */
  private async loadSpec(spec: NodeModelSpec): Promise<LoadedModel> {
    // A load holds this thread: what earlier answers left held goes out first (queue/held-writes.ts).
    this.heldWrites.flush();
    const t0 = performance.now();
    const { session, host } = this.loadPlan(spec);
    if (spec.artifact && spec.artifact.key === this.artifactKeyOf(spec)) {
      try {
        // A pre-park of this model under way (runtime/prepark.ts): its session, once parked, is this load's.
        await this.preParking.get(spec.key);
        const a = await this.openArtifact(spec, spec.artifact.sha256, host);
        // The session of its last eviction, or of a pre-park, if it was parked so (runtime/parked.ts): the same artifact, options and thread.
        const parked = await this.parked.take(spec.key, a.built);
        const model = parked ?? (await this.createArtifact(spec, session, host, a));
        this.sources.set(spec.key, 'artifact');
        return this.loaded(spec, t0, a.fetchMs, model, a.built);
      } catch (e) {
        this.o.log.warn({ model: spec.key, err: e }, 'the pre-optimized model did not load; loading the original');
      }
    }
    let path: string;
    let fetchMs: number;
    try {
      ({ path, fetchMs } = await this.o.models.open(spec.sha256));
    } catch (e) {
      if (isBruleeError(e) && e.code === 'MODEL_BYTES_MISSING') {
        // A late call of a deleted function: nothing of it is kept (`forgetModel`).
        this.forgetModel(spec.key);
        throw new BruleeError('FUNCTION_NOT_FOUND', `the bytes of ${spec.key} are gone (the function was deleted or replaced, or the model store lost them: register it again)`);
      }
      throw e;
    }
    const model = await this.footprints.load(spec.key, () => this.hostLoad(spec, host, () => loadModel(path, { session, host })));
    this.sources.set(spec.key, 'original');
    return this.loaded(spec, t0, fetchMs, model);
  }

  /**
   * How `spec` loads here: its session options, and the session host when it loads off the main
   * thread (`offThread`). A footprint holds for the session options it was measured under: others
   * (a function registered again with other threads or arena) are measured again from this load.
   */
  private loadPlan(spec: NodeModelSpec): { session: NonNullable<NodeModelSpec['session']>; host: SessionHost | undefined } {
    const session = spec.session ?? {};
    const options = JSON.stringify(session);
    if (this.measuredWith.get(spec.key) !== options) {
      this.footprints.forget(spec.key);
      this.measuredWith.set(spec.key, options);
    }
    const { mode, limits } = this.o.offThread;
    const host = offThread(mode, limits, spec) || (mode === 'auto' && this.longRuns.has(spec.key)) ? this.host : undefined;
    if (host) this.inHost.add(spec.key);
    else this.inHost.delete(spec.key);
    return { session, host };
  }

  /**
   * The artifact `sha256` of `spec` in the local cache (fetched if need be), its layout (an
   * artifact's bytes never change, content-addressed: read at its first load here) and what a
   * session of it is built as (`built`: the artifact, options and thread; a parked one is reused
   * only for the same).
   */
  private async openArtifact(spec: NodeModelSpec, sha256: string, host: SessionHost | undefined): Promise<{ path: string; fetchMs: number; layout: ArtifactLayout; built: string }> {
    const { path, fetchMs } = await this.o.models.open(sha256);
    const kept = this.layouts.get(spec.key);
    const layout = kept?.sha256 === sha256 ? kept.layout : artifactLayout(path);
    this.layouts.set(spec.key, { sha256, layout });
    return { path, fetchMs, layout, built: `${sha256} ${JSON.stringify(spec.session ?? {})} ${host ? 'host' : 'main'}` };
  }

  /** A session of the artifact `a` (`openArtifact`), its load measured (runtime/footprint.ts). */
  private createArtifact(spec: NodeModelSpec, session: NonNullable<NodeModelSpec['session']>, host: SessionHost | undefined, a: { path: string; layout: ArtifactLayout }): Promise<LoadedModel> {
    return this.footprints.load(spec.key, () => this.hostLoad(spec, host, () => loadModel(a.path, { session, preOptimized: true, layout: a.layout, host })));
  }

  /**
   * Whether a model's memory is in this process from its load on (the warm pool's `heldAtLoad`):
   * yes unless its latest load here was a mapped artifact, whose weights are file pages that only
   * a run touches (runtime/mapped.ts). An original ONNX file, or an ORT-format or unmapped artifact,
   * copies its weights into memory as it loads.
   */
  private heldAtLoad(spec: NodeModelSpec): boolean {
    const sha = this.sources.get(spec.key) === 'artifact' ? spec.artifact?.sha256 : undefined;
    const kept = this.layouts.get(spec.key);
    return sha === undefined || kept?.sha256 !== sha || kept.layout.form !== 'mapped';
  }

  /**
   * Of the warm pool's charges, the bytes this process holds now (`chargesHeld`, given JS
   * ArrayBuffers above their figure at rest), and the charges of loads under way in the session
   * host: on the main thread a load stops the overhead's sampler, which sees the model only once
   * the pool counts it (`heldAtLoad`); in the host the sampler runs meanwhile, and the model's
   * memory, already charged at its admission, would read as overhead that idle models are evicted
   * for (a 60 MiB model: 62 MiB of overhead during its load, 0.5 on the main thread). Counted from
   * its start, it reads low instead until its memory exists, as a call's reserve does.
   */
  heldBytes(buffers: number): number {
    return chargesHeld(this.pool, buffers) + this.hostLoadingBytes;
  }
  private hostLoadingBytes = 0;

  /** A load in the session host, its charge counted as held (`heldBytes`) while it is under way. */
  private async hostLoad<T>(spec: NodeModelSpec, host: SessionHost | undefined, load: () => Promise<T>): Promise<T> {
    if (!host) return load();
    this.hostLoadingBytes += spec.sizeBytes;
    try {
      return await load();
    } finally {
      this.hostLoadingBytes -= spec.sizeBytes;
    }
  }

  /** Models whose run on the main thread here took `offThread.limits.runMs` or more: their next load goes to the session host. */
  private readonly longRuns = new Set<string>();

  /** Whether a model's latest load here put its session in the session host (`offThread`), not on the main thread. */
  inSessionHost(key: string): boolean {
    return this.inHost.has(key);
  }
  private readonly inHost = new Set<string>();

  /** What a model's latest load here read: its pre-optimized artifact or the original. */
  loadedFrom(key: string): 'artifact' | 'original' | undefined {
    return this.sources.get(key);
  }
  private readonly sources = new Map<string, 'artifact' | 'original'>();
  /**
   * Each model's artifact layout (runtime/mapped.ts), by model key and the artifact's sha256, read
   * at its first load here (by model key, so that it goes with the model: `forgetModel`).
   */
  private readonly layouts = new Map<string, { sha256: string; layout: ArtifactLayout }>();

  /** The artifact key (`artifactKey`) each model's artifact must have to be loaded here, by model key. */
  private readonly artifactKeys = new Map<string, string>();
  private artifactKeyOf(spec: NodeModelSpec): string {
    let k = this.artifactKeys.get(spec.key);
    if (k === undefined) this.artifactKeys.set(spec.key, (k = artifactKey(spec.sha256)));
    return k;
  }

  private loaded(spec: NodeModelSpec, t0: number, fetchMs: number, model: LoadedModel, built?: string): LoadedModel {
    const ms = performance.now() - t0;
    const count = () => {
      this.loads++;
      if (this.counted(spec.fn, spec.key)) {
        this.o.metrics.loads.inc({ function: spec.fn });
        this.o.metrics.loadSeconds.observe({ function: spec.fn }, ms / 1000);
        if (fetchMs > 0) this.o.metrics.fetchSeconds.observe({ function: spec.fn }, fetchMs / 1000);
      }
    };
    // A load for a call not yet admitted is counted once it is (`invokeHere`); refused, it is taken back.
    const unadmitted = this.unadmittedLoads.get(spec.key);
    if (unadmitted) unadmitted.push(count);
    else count();
    this.lastLoadMs.set(spec.key, ms);
    this.lastFetchMs.set(spec.key, fetchMs);
    const m = this.metered(spec.key, model);
    if (built !== undefined && (model.mappedPath !== undefined || spec.sizeBytes <= WHOLE_PARK_MAX_BYTES)) this.parkable.set(m, { model, built });
    return m;
  }

  /** Sessions of evicted mapped artifacts, kept with their pages given back, and of small models, kept whole (runtime/parked.ts). */
  private readonly parked: ParkedSessions<LoadedModel>;
  /** Of the pool's values, those a mapped artifact built, or an artifact of a small model: the session itself and how it was built. */
  private readonly parkable = new WeakMap<LoadedModel, { model: LoadedModel; built: string }>();

  /**
   * What parking has done here: sessions parked, taken back at a cold start, held now, and their
   * estimated bytes; and of pre-parking (runtime/prepark.ts) the same for the sessions it parked
   * (`dropped`: disposed with no call having taken them), with the time its creates took.
   */
  get parkedSessions(): ParkedStats {
    return { ...this.parked.counts, bytes: this.parked.bytes, pre: { ...this.parked.preCounts, noRoom: this.preNoRoom, seconds: this.preParkMs / 1000, cpuSeconds: this.preParkCpuUs / 1e6 } };
  }

  /** Creates and parks sessions of registered models before their first call here (`prePark`). */
  private readonly preParker?: PreParker<PreParkCandidate & { model: ModelRef }>;
  /** Pre-parks under way, by model key: a load of the key waits for it and takes its session. */
  private readonly preParking = new Map<string, Promise<unknown>>();
  /** The parked bytes at the last tick (a fall: room freed, pre-park again). */
  private preParkedAtBytes = 0;
  /** Wall time and CPU time (the process's, all threads) pre-parks took here, ms and µs. */
  private preParkMs = 0;
  /** Pre-parks not made for want of room (the park's, or the warm pool's for the create). */
  private preNoRoom = 0;
  /** Of each model a pre-park tried, the least its parked session would cost (`prePark`): it is not fetched again while the room is smaller. */
  private readonly preParkCost = new Map<string, number>();
  private preParkCpuUs = 0;

  /** When a call here last started or ended (`performance.now()`). */
  private lastCallAt = -Infinity;

  /**
   * The node takes calls, none has started or ended here for `PREPARK_IDLE_MS`, none waits or
   * runs, no model loads: a pre-park may start. A node called more often than that never pre-parks.
   */
  private idle(): boolean {
    if (!this.accepting || performance.now() - this.lastCallAt < PREPARK_IDLE_MS) return false;
    if (this.here.waiting + this.here.running > 0 || (this.lane?.freeSlots ?? 0) < this.o.concurrency) return false;
    return this.pool.list().every((m) => m.state === 'resident' && m.inFlight === 0);
  }

  /**
   * One pre-park: `m`'s mapped artifact opened (fetched) and its session built exactly as a call's
   * load would build it (`loadPlan`, `openArtifact`, `createArtifact`: same artifact, options and
   * thread), then parked into the room left, disposing no other parked session. Skipped when the
   * model is held here (resident, loading, parked), when the warm pool has not the room for the
   * create's charge, or when its parked cost, estimated from the artifact's layout (its charge less
   * its mapped data), does not fit the park's room.
   */
  private async prePark(m: ModelRef): Promise<PreParkOutcome> {
    const key = modelKey(m);
    if (!m.artifact || this.pool.has(key) || this.parked.keys().includes(key) || this.preParking.has(key)) return 'skipped';
    const spec = this.spec(m);
    if (m.artifact.key !== this.artifactKeyOf(spec)) return 'skipped';
    if (this.pool.budgetBytes - this.pool.usedBytes - this.pool.overheadBytes < spec.sizeBytes) return 'no-room';
    // Known not to fit (its cost seen at an earlier try), or no room at all: its bytes are not fetched for nothing.
    if ((this.preParkCost.get(key) ?? 1) > this.parked.room) return 'no-room';
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // From here a drop of the key (its function deleted) makes the park dispose what the create makes.
    const token = this.parked.reserve(key);
    const work = (async (): Promise<PreParkOutcome> => {
      const { session, host } = this.loadPlan(spec);
      const a = await this.openArtifact(spec, m.artifact!.sha256, host);
      if (a.layout.form !== 'mapped') return 'skipped';
      this.preParkCost.set(key, Math.max(1, spec.sizeBytes - a.layout.graphOffset));
      if (this.preParkCost.get(key)! > this.parked.room) return 'no-room';
      const model = await this.createArtifact(spec, session, host, a);
      const parked = await this.parked.park(key, model, { mappedPath: model.mappedPath, match: a.built, sizeBytes: spec.sizeBytes, pre: { token } });
      // Refused for room: what it would have cost parked, at least (its charge less what a park gives back is not known without one).
      if (!parked) this.preParkCost.set(key, Math.max(this.preParkCost.get(key)!, this.parked.room + 1));
      return parked ? 'parked' : 'no-room';
    })();
    this.preParking.set(key, work.catch(() => undefined));
    try {
      return await work;
    } finally {
      this.parked.unreserve(key, token);
      this.preParking.delete(key);
      this.preParkMs += performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      this.preParkCpuUs += cpu.user + cpu.system;
      void this.heartbeat();
    }
  }

  /**
   * A registration or deletion of `name` (the registry's control message): a pre-parked session of
   * a version that is no longer its current one goes (a deletion's unload job drops it too:
   * `dropFunction`; this covers a node that job missed), and a pass looks for what to pre-park.
   */
  private async registrationChanged(name: unknown): Promise<void> {
    if (typeof name !== 'string') return;
    const current = (await this.registration(name))?.key;
    const prefix = modelKey({ fn: name, sha256: '' });
    for (const key of this.parked.keys()) if (key.startsWith(prefix) && key !== current && this.parked.isPre(key)) await this.parked.drop(key);
    this.preParker?.wake(name);
  }

  /**
   * The warm pool's disposal: a mapped artifact's session evicted by the policy, its keep-alive or
   * an unload is parked (its pages given back; runtime/parked.ts), as is a small model's (kept
   * whole: `WHOLE_PARK_MAX_BYTES`); one retired or deleted is disposed, as is any that does not
   * fit under `parkBytes`.
   */
  private async release(m: LoadedModel, key: string, evicted?: { cause: EvictionEvent['cause']; sizeBytes: number }): Promise<void> {
    const p = this.parkable.get(m);
    if (!p || !evicted || evicted.cause === 'retired' || evicted.cause === 'deleted' || this.closing) return m.dispose();
    await this.parked.park(key, p.model, { mappedPath: p.model.mappedPath, match: p.built, sizeBytes: evicted.sizeBytes });
  }

  /**
   * The model with its runs measured while they may still grow it, and its release kept out of
   * a measured operation (runtime/footprint.ts).
   */
  private metered(key: string, m: LoadedModel): LoadedModel {
    const fp = this.footprints;
    const { mode, limits } = this.o.offThread;
    // A long run on the main thread (a larger input than registration's) sends the model's next
    // load to the host. Only a run the footprint measures is timed for it: the model's first runs
    // here (measured alone), or one on more input bytes than any before it. Any other run is on no
    // more input than one that was timed short, and its wall time beyond that is the process
    // waiting: behind other calls' turns in the event loop (onnxruntime-node runs a session in a
    // setImmediate of its own), or for a CPU other processes hold. Timed so, a run of the tiny MLP
    // (~0.1 ms) passed 10 ms at load 10-11 and sent it to the host: from its next load every call
    // of it took two thread hops (a message to the host thread and back, for the load and for each
    // run; bench/cold-wakes.ts).
    const watch = !m.hosted && mode === 'auto';
    const timed = async (inputs: Record<string, Tensor>, outputs?: string[]) => {
      const t0 = performance.now();
      const out = await m.run(inputs, outputs);
      if (performance.now() - t0 >= limits.runMs) this.longRuns.add(key);
      return out;
    };
    const plain = (inputs: Record<string, Tensor>, outputs?: string[]) => m.run(inputs, outputs);
    return {
      signature: m.signature,
      run: (inputs, outputs) => {
        const bytes = tensorsByteLength(Object.values(inputs));
        const run = watch && fp.measures(key, bytes) ? timed : plain;
        return fp.run(key, bytes, () => run(inputs, outputs), m.hosted && ((out) => tensorsByteLength(Object.values(out))));
      },
      dispose: () => fp.turns.run(false, () => m.dispose()),
    };
  }

  /**
   * Runs a job and gives its answer (outputs or error) by its id, not through BullMQ's return value:
   * the job may have been moved here from a dead node, and its caller waits on its own reply stream
   * or result key (queue/replies.ts). Jobs are not retried (attempts: 1): what failed would fail
   * again, and the caller has its answer. A second run of a job already answered is counted there.
   */
  private async process(job: NodeJob, lock?: string): Promise<{ first: boolean }> {
    // The bytes of an invocation's tensors stay charged until its answer is sent.
    const held: Reservation[] = [];
    // Its output tensors, read by no one once the answer is sent: freed then, not at V8's next collection (queue/free.ts).
    const spent: unknown[] = [];
    try {
      return await this.answer(job, held, spent, lock);
    } finally {
      for (const r of held) r.free();
      freeNow(spent);
    }
  }

  /** `lock`: the token by which this node holds `job` on its BullMQ queue (none for a lane job). */
  private async answer(job: NodeJob, held: Reservation[], spent: unknown[], lock?: string): Promise<{ first: boolean }> {
    let answer: OutgoingAnswer;
    // An invocation's counts (and its input key's deletion) go in the script that gives its answer.
    const stats = new StatsOps();
    // A job of the node's BullMQ queue is answered as its node's only while the node still holds
    // it: one taken back while the node was held dead (stopped, cut off) has its answer from
    // elsewhere (a load its caller's 503, queue/dispatcher.ts takeBackJob; an async call failed
    // TIMEOUT, or moved to a live node and run there, queue/reaper.ts), and one whose hold lapsed
    // is run again by whoever takes it next (a BullMQ stall), which answers it.
    const jobLock = lock !== undefined && job.id !== undefined ? { key: this.o.keys.jobLock(this.o.id, job.id), token: lock } : undefined;
    // A job's metric updates, applied once its answer's script has applied its counts, or not at
    // all when that found it taken back (`StatsOps.held`, `locked`): /metrics counts what /stats does.
    let metered: ((counted: boolean) => void) | undefined;
    try {
      answer = await this.run(job, stats, held, spent, job.frame || jobLock ? (m) => (metered = m) : undefined);
    } catch (e) {
      this.logFailure(e, job.id, job.name, (job.data as { model?: { fn?: string } } | undefined)?.model?.fn);
      answer = { error: errorToWire(e) };
    }
    // Its place in admission (queue depth, input bytes) goes back in the script that answers it.
    const admission = (job.data as Partial<InvokeJob>).admission;
    if (admission) releaseWith(stats, admission);
    // A lane job leaves its node's active list with its answer; one no longer there was taken back
    // while this node was held dead (stopped, cut off): its caller has an answer from elsewhere, and it is not counted here.
    if (job.frame) stats.held(this.o.keys.laneActive(this.o.id), job.frame);
    else if (jobLock) stats.locked(jobLock.key, jobLock.token);
    let d: Awaited<ReturnType<typeof delivered>> | undefined;
    // One token for the answer, however often it is sent: a retry after a send whose reply was lost writes nothing twice.
    const token = randomUUID();
    try {
      d = await this.retried(() => delivered(this.o.redis, this.o.keys, job.data.reply, answer, stats.count > 0 ? stats : undefined, false, token));
      return { first: d === 'first' };
    } finally {
      metered?.(d !== 'not held');
    }
  }

  /** Redis may be restarting: an answer (and its counts) is worth a few retries (an async caller reads it later). */
  private async retried<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await write();
      } catch (e) {
        if (attempt >= 50 || this.closing) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** A bug (anything but a BruleeError with a code of its own) is logged with its stack and the job: the caller only gets `INTERNAL: message`. */
  private logFailure(e: unknown, job: string | undefined, name: string, fn: string | undefined): void {
    if (!isBruleeError(e) || e.code === 'INTERNAL') this.o.log.error({ err: e, job, name, fn }, 'job failed');
  }

  /** `defer`: the call's metric updates are handed to it, to apply later (or not), instead of now. */
  private async run(job: NodeJob, stats: StatsOps, held: Reservation[], spent: unknown[], defer?: (m: (counted: boolean) => void) => void): Promise<OutgoingAnswer> {
    switch (job.name) {
      case JOB.invoke: {
        const data = (job as NodeJob<InvokeJob>).data;
        const later: Array<() => void> = [];
        const call: CallHere = { held, inBytes: wireBytes(data.inputs) };
        let ran;
        try {
          ran = await this.invoke(data, job.processedOn ?? Date.now(), stats, later, call, () => readInputs(this.o.redis, data.inputs, job.inline), data.inputs.key);
        } finally {
          // Taken back, it is not counted, but a load made for it is (apart): its model stays here, and /metrics counted that load as it came.
          const taken = () => {
            this.countMetrics(data.model, []);
            if (call.loaded) this.countLoadApart(data.model.fn, modelKey(data.model));
          };
          if (defer) defer((counted) => (counted ? this.countMetrics(data.model, later) : taken()));
          else this.countMetrics(data.model, later);
        }
        const { result, outputs } = ran;
        for (const t of Object.values(outputs)) spent.push(t.data);
        // Written straight into the answer's frame: no blob of its own.
        const laid = layoutTensors(outputs);
        return { ok: { ...result, outputs: { tensors: laid.tensors } }, blob: laid.blob };
      }
      case JOB.load: {
        const { model } = (job as NodeJob<LoadJob>).data;
        this.seeRegistration(model);
        await this.retireOlder(model);
        const loaded = await this.pool.prewarm(this.spec(model));
        if (!this.counted(model.fn, modelKey(model))) this.settleGone(model.fn);
        else if (loaded) await this.prewarmed(model.fn, modelKey(model), 'api', { stats, defer });
        return { ok: { loaded, node: this.o.id } };
      }
      case JOB.unload: {
        const { fn, ...how } = (job as NodeJob<UnloadJob>).data;
        const current = how.cause === 'unload' ? undefined : await this.registration(fn);
        // A deletion's job that reaches this node after the name was registered again (its sender
        // stops waiting after 10 s; a busy node runs it later) is stale: the registry's record,
        // deleted before the job was sent, is back, and the name's cached bytes and series are the
        // new registration's. Only the old registration's models go (never called again): those
        // whose bytes no version of the new one has.
        if (how.cause === 'deleted' && current) return { ok: { dropped: this.dropFunction(fn, { cause: 'deleted', reason: how.reason, keep: current.keys }) } };
        // A retirement's job can be late too: the version it retires (its bytes, its model here)
        // may be the current one again (the same bytes registered again as a newer version), and
        // stays. (A model held here keeps the version it was loaded for until a call or load of
        // the newer one reaches it, `WarmPool.adoptVersion`: before that, `belowVersion` alone
        // would drop it.)
        if (how.cause === 'retired' && current) return { ok: { dropped: this.dropFunction(fn, { ...how, keep: [current.key] }) } };
        const dropped = this.dropFunction(fn, how);
        if (how.cause === 'deleted') await this.forgetFunction(fn, how.sha256s ?? []);
        return { ok: { dropped } };
      }
      default:
        throw new BruleeError('BAD_REQUEST', `unknown job ${job.name}`);
    }
  }

  /**
   * A model loaded with no invocation (the load API, or the policy's pre-warming): counted, and
   * published at once, since routing reads residency from heartbeats. A load job's counts go with
   * its `answer` (once, however often it is sent), its metric updates once that has counted it; one
   * taken back from this node has only its load counted (apart), not the prewarm its caller was
   * told failed.
   */
  private async prewarmed(fn: string, key: string, by: 'api' | 'policy', answer?: { stats: StatsOps; defer?: (m: (counted: boolean) => void) => void }): Promise<void> {
    const record: InvocationRecord = { fn, outcome: 'prewarm', loaded: true, loadMs: this.lastLoadMs.get(key) ?? 0, fetchMs: this.lastFetchMs.get(key) ?? 0, execMs: 0 };
    await this.heartbeat();
    const metered = (counted: boolean) => (counted ? this.o.metrics.prewarms.inc({ function: fn, by }) : this.countLoadApart(fn, key));
    if (!answer) {
      metered(true);
      return recordInvocation(this.o.redis, this.o.keys, record);
    }
    invocationCommands(answer.stats, this.o.keys, record);
    if (answer.defer) answer.defer(metered);
    else metered(true);
  }

  /** The model key of `fn`'s current version in the registry, and those of all its versions (none: not registered). */
  private async registration(fn: string): Promise<{ key: string; keys: string[] } | undefined> {
    const r = await this.o.findFunction(fn);
    if (r === undefined) return undefined;
    return { key: modelKey({ fn, sha256: r.sha256 }), keys: r.versions.map((v) => modelKey({ fn, sha256: v.sha256 })) };
  }

  /**
   * Everything this node keeps of a model it will not load again (a retired version, a deleted
   * function): without this, a node where functions come and go would keep a few records per model
   * it ever ran.
   */
  private forgetModel(key: string): void {
    void this.parked.drop(key);
    this.footprints.forget(key);
    for (const m of this.perModel()) m.delete(key);
  }

  /** This node's records by model key (beside `footprints`). */
  private perModel(): Array<{ keys(): Iterable<string>; delete(key: string): boolean }> {
    return [this.registered, this.measuredWith, this.outPerIn, this.lastLoadMs, this.lastFetchMs, this.sources, this.layouts, this.artifactKeys, this.longRuns, this.inHost, this.preParkCost];
  }

  /**
   * A deleted function's series in this process's metrics, and its models: those the warm pool
   * still holds go when their calls end (evicted as `deleted`); what is kept of the others
   * (unloaded or evicted before) goes now.
   */
  private async forgetFunction(fn: string, sha256s: readonly string[]): Promise<void> {
    this.o.metrics.forgetFunction(fn);
    this.registrations.delete(fn);
    // Its models still held here (calls in flight, a load) count nothing in this process's metrics
    // until the last is gone (`settleGone`): their counts would put its series back, for good.
    const held = this.pool.list().filter((m) => m.fn === fn).map((m) => m.key);
    if (held.length > 0) this.gone.set(fn, { keys: new Set(held), reborn: false });
    const holds = new Set(this.pool.list().map((m) => m.key));
    const prefix = modelKey({ fn, sha256: '' });
    const keys = new Set<string>();
    for (const m of this.perModel()) for (const key of m.keys()) if (key.startsWith(prefix) && !holds.has(key)) keys.add(key);
    for (const key of keys) this.forgetModel(key);
    // The bytes the registry removed from the model store (no other function has them) go from
    // this process's cache too: a worker process's would keep them up to MODEL_CACHE_BYTES.
    for (const sha of sha256s) await this.o.models.drop(sha).catch((e: unknown) => this.o.log.warn({ err: e, sha256: sha }, 'a deleted model could not be dropped from the cache'));
  }

  /**
   * Deleted functions whose models were still held here at the deletion (calls in flight, a load),
   * by name, with those models' keys: nothing of theirs is counted in this process's metrics, and
   * the name goes with their last model (`settleGone`), so the map holds only functions with a
   * model here. A model of the name not among them belongs to a registration made since (`reborn`):
   * it counts, and the name's series then stay when the old models go. (One of the same bytes has
   * the same key: while the old model is held, a call of it counts as the deleted function's.)
   */
  private readonly gone = new Map<string, { keys: Set<string>; reborn: boolean }>();

  /** Of each function a job here came from, its latest registration (`ModelRef.registered`). */
  private readonly registrations = new Map<string, string>();

  /**
   * A job of a later registration of a name than this process has counted (deleted and registered
   * again, the deletion's job run here late or not yet) restarts the name's series here, as the
   * deletion restarted its counts in Redis: else the old registration's counts stayed in /metrics
   * for as long as the process lived, over /stats. What ends after it counts, here as in Redis
   * (the name is registered): the old registration's calls still in flight too.
   */
  private seeRegistration(m: ModelRef): void {
    const r = m.registered;
    if (r === undefined) return;
    const seen = this.registrations.get(m.fn);
    if (seen !== undefined && r <= seen) return;
    this.registrations.set(m.fn, r);
    if (seen !== undefined) this.o.metrics.forgetFunction(m.fn);
  }

  /** Whether what a model of `fn` (by its key) does counts in this process's metrics (`gone`). */
  private counted(fn: string, key: string): boolean {
    const g = this.gone.get(fn);
    if (g === undefined) return true;
    if (g.keys.has(key)) return false;
    g.reborn = true;
    return true;
  }

  /** A deleted function's last model here is gone: what its calls observed meanwhile (a batch's size) goes too, unless the name was registered again. */
  private settleGone(fn: string): void {
    const g = this.gone.get(fn);
    if (g === undefined || this.pool.list().some((m) => m.fn === fn && g.keys.has(m.key))) return;
    this.gone.delete(fn);
    if (!g.reborn) this.o.metrics.forgetFunction(fn);
  }

  /** Applies a call's metric updates, unless its function was deleted while it ran (`gone`). */
  private countMetrics(model: ModelRef, later: Array<() => void>): void {
    if (this.counted(model.fn, modelKey(model))) for (const count of later) count();
    this.settleGone(model.fn);
  }

  /**
   * A job for a newer version of a function retires the older versions held here, never newer ones,
   * nor its own model (an older version's, loaded for it, when its bytes are that version's again),
   * nor the current version's: a late job of a version in between (a stale gateway's call) may
   * reach a model of older bytes that a newer version has again before anything of that version
   * did (`WarmPool.adoptVersion`), so the registry says which one is current, as for a late
   * retirement job. Read only when another model of the function is here (a version changed):
   * else undefined, and a call's way goes on without a turn.
   */
  private retireOlder(m: ModelRef): Promise<void> | undefined {
    const key = modelKey(m);
    return this.pool.holdsOther(m.fn, key) ? this.retireOlderThan(m, key) : undefined;
  }

  private async retireOlderThan(m: ModelRef, key: string): Promise<void> {
    let current: string | undefined;
    try {
      current = (await this.registration(m.fn))?.key;
    } catch {
      // Redis away: nothing is retired now (the next job of the function, or its retirement job, does it).
      return;
    }
    this.dropFunction(m.fn, { belowVersion: m.version, keep: current === undefined ? [key] : [key, current], cause: 'retired', reason: `replaced by version ${m.version}` });
  }

  /**
   * The warm pool's `dropFunction`, and for a retirement or deletion the function's parked sessions
   * but `keep`'s too: an unload parked them and took them out of the models the pool knows, so its
   * drop does not reach them (runtime/parked.ts).
   */
  private dropFunction(fn: string, how: Parameters<WarmPool<LoadedModel, NodeModelSpec>['dropFunction']>[1]): number {
    const dropped = this.pool.dropFunction(fn, how);
    if (how.cause !== 'unload') {
      const prefix = modelKey({ fn, sha256: '' });
      for (const key of this.parked.keys()) if (key.startsWith(prefix) && !how.keep?.includes(key)) this.forgetModel(key);
    }
    return dropped;
  }

  /**
   * Whether `invokeHere` takes calls: a node that is closing leaves them to the lane (where another
   * node, or the reaper, finds them).
   */
  get accepting(): boolean {
    return this.lane !== undefined && this.closing === undefined && !this.stopped;
  }

  /** Sync invocations of this process's gateway running here (`invokeHere`): waiting for a slot, and running. */
  readonly here = { waiting: 0, running: 0 };

  /**
   * Runs a sync invocation of this process's own gateway (ROLE=all) in one of the node's slots, its
   * tensors as they are: no Redis on the way in or out. Its error is what the lane's caller would
   * get (the same wire form). The caller's process is this one: if it dies, so does the caller's
   * connection, so nothing here needs a queue to survive it.
   *
   * - `signal`: a call given up by its caller before it had a slot is dropped, as a lane job taken
   *   back is: not run, not counted. One that ran is decided with it as its run ends: in time, its
   *   answer is promised to its caller (`GiveUp.commit`), else it counts as a timeout.
   * - `admitted`: the call's admission, decided while it runs (the caller starts both at once when
   *   a slot is free). A refused call's outputs and counts are dropped: it was never accepted.
   * - `admitAfter`: the admission of a lone call (its gateway runs no other), decided after its
   *   run in the one script that counts it (`admitAndApply`), waited for: refused, it counts
   *   nowhere and its caller gets the refusal.
   * - Its counts (and its admission place given back) go to Redis in one script, the same writes
   *   as `deliver`'s, sent before the answer is returned and not waited for (`countLater`): every
   *   read this process makes after it goes on the same connection, which Redis serves in order,
   *   and another process's read starts only once the caller has its answer, after they were
   *   written. `close` waits for them.
   */
  async invokeHere(id: string, data: InvokeHere, signal?: GiveUp, admitted?: Promise<unknown>, admitAfter?: AdmissionRequest): Promise<AnswerHere> {
    const lane = this.lane;
    if (!lane || !this.accepting) throw new BruleeError('NO_NODE_AVAILABLE', `node ${this.o.id} is shutting down`);
    if (signal?.aborted) throw givenUp(id);
    // Waiting for a slot until it has one, or its caller gives up (then it leaves the count at once).
    let waiting = true;
    this.here.waiting++;
    const leave = () => {
      if (waiting) this.here.waiting--;
      waiting = false;
    };
    signal?.onGiveUp(leave);
    let call: Promise<AnswerHere> | undefined;
    try {
      call = lane.slot(async () => {
        leave();
        if (signal?.aborted) throw givenUp(id);
        // A drain that ran out of time, or a node whose id another process took: nothing more runs.
        if (this.stopped) throw new BruleeError('NO_NODE_AVAILABLE', `node ${this.o.id} is shutting down`);
        this.here.running++;
        try {
          const stats = new StatsOps();
          const later: Array<() => void> = [];
          let out: { result: Omit<InvokeAnswer, 'outputs'>; outputs: Record<string, Tensor> } | undefined;
          let error: BruleeError | undefined;
          // Its tensors are charged while it runs here; its answer is encoded by the gateway, after.
          const here: CallHere = { held: [], inBytes: tensorsByteLength(Object.values(data.inputs)) };
          if (signal) here.given = signal;
          const after = admitAfter && this.decidedAfter(data.model, admitAfter, here);
          try {
            out = await this.invoke(data, Date.now(), stats, later, here, () => Promise.resolve(data.inputs));
          } catch (e) {
            // Refused (or Redis away) before it took its model: nothing of it ran or counts.
            if (after?.failedFirst !== undefined) throw after.failedFirst;
            this.logFailure(e, id, JOB.invoke, data.model.fn);
            error = errorFromWire(errorToWire(e));
          } finally {
            for (const r of here.held) r.free();
          }
          // Refused (or Redis away): nothing of it is counted, and its caller gets that error.
          if (after && !after.ticket) {
            // A run that ended past its deadline: its caller had its 504 then (its gateway does not
            // wait for this decision), so it counts as that, a timeout, whatever admission would say.
            const late = error?.code === 'TIMEOUT';
            await after.settle(() => (late ? applyWrites(this.o.redis, this.o.keys, id, stats).then((): Admission => ({ admitted: true, ticket: ticketOf(admitAfter!) })) : admitAndApply(this.o.redis, this.o.keys, id, stats, admitAfter!)));
            this.countMetrics(data.model, later);
          } else {
            await admitted;
            this.countMetrics(data.model, later);
            if (data.admission) releaseWith(stats, data.admission);
            if (after?.ticket) releaseWith(stats, after.ticket);
            await this.countLater(id, stats);
          }
          if (error) throw error;
          return { ...out!.result, outputs: out!.outputs };
        } finally {
          this.here.running--;
        }
      });
      this.hereCalls.add(call);
      return await call;
    } finally {
      leave();
      signal?.onGiveUp(undefined);
      if (call) this.hereCalls.delete(call);
    }
  }

  /**
   * A lone call's admission, decided after its run (`invokeHere`'s `admitAfter`), cold calls too:
   * its model is loaded before the call is admitted only when that evicts nothing (`CallHere
   * .admitFirst`: else it is admitted first, taking a place, `ticket`, given back with its counts).
   * A load of its model while it is undecided is counted once it is admitted (`unadmittedLoads`);
   * refused (or its script failed), the model it loaded is taken back uncounted (`WarmPool
   * .withdraw`): the refusal leaves no trace. One another call used meanwhile stays, and its load
   * is counted apart (outcome `load`), as the call that waited for it counts no load.
   */
  private decidedAfter(model: ModelRef, r: AdmissionRequest, call: CallHere): DecidedAfter {
    const key = modelKey(model);
    // One undecided call of a model at a time (its gateway's lone call); another is admitted first.
    const loads: Array<() => void> | undefined = this.unadmittedLoads.has(key) ? undefined : [];
    if (loads) this.unadmittedLoads.set(key, loads);
    const undefer = (): Array<() => void> => {
      if (!loads || this.unadmittedLoads.get(key) !== loads) return [];
      this.unadmittedLoads.delete(key);
      return loads;
    };
    const d: DecidedAfter = {
      settle: async (decide) => {
        let a: Admission | undefined;
        try {
          a = await decide();
        } finally {
          const deferred = undefer();
          if (a?.admitted) for (const f of deferred) f();
          else if (call.loaded && this.pool.withdraw(key, call.loaded)) this.publishLoad();
          else {
            for (const f of deferred) f();
            if (call.loaded) this.countLoadApart(model.fn, key);
          }
        }
        if (!a.admitted) throw refusal(model.fn, r, a);
      },
    };
    call.admitFirst = async () => {
      // Decided from here on: a load counts as it comes.
      for (const f of undefer()) f();
      try {
        const a = await admit(this.o.redis, r);
        if (!a.admitted) throw refusal(model.fn, r, a);
        d.ticket = a.ticket;
      } catch (e) {
        d.failedFirst = e;
        throw e;
      }
    };
    call.mustAdmitFirst = loads === undefined;
    return d;
  }

  /** Loads for lone calls not yet admitted (`decidedAfter`), by model key: their counts, held until the call is. */
  private readonly unadmittedLoads = new Map<string, Array<() => void>>();

  /** A load that a refused call started and another call used: counted on its own (the other counts no load). */
  private countLoadApart(fn: string, key: string): void {
    const loadMs = this.lastLoadMs.get(key) ?? 0;
    const fetchMs = this.lastFetchMs.get(key) ?? 0;
    recordInvocation(this.o.redis, this.o.keys, { fn, outcome: 'load', loaded: true, loadMs, fetchMs, execMs: 0 }).catch((e: unknown) => this.o.log.error({ err: e }, 'the count of a load was lost (Redis away)'));
  }

  /** Calls running here for this process's gateway (`invokeHere`): a drain lets them finish. */
  private readonly hereCalls = new Set<Promise<unknown>>();
  /** Set when a drain ran out of time or another process took this node's id: calls waiting here do not start. */
  private stopped = false;

  /**
   * Whether a call of `key` given to `invokeHere` now could run before its admission is decided:
   * a slot is free, its model is resident (a refused call must not start a load, which evicts and
   * counts), and it does not batch (a refused caller must not share another's run).
   */
  canRunNow(key: string, batches: boolean): boolean {
    return this.canStartAlone(batches) && this.pool.has(key);
  }

  /**
   * Whether a lone call given to `invokeHere` now, with `admitAfter`, starts at once: a slot is free
   * and it does not batch. Its model may be cold: it is loaded before the call is admitted only
   * when that evicts nothing (`decidedAfter`).
   */
  canStartAlone(batches: boolean): boolean {
    return this.accepting && !batches && (this.lane?.freeSlots ?? 0) > 0;
  }

  /**
   * Publishes a model this call loaded (a heartbeat) once the call's answer is on its way: its
   * delivery script, or for `invokeHere` the gateway's HTTP answer, is sent in the same run of
   * microtasks as the run's end, before the next tick. From there it is held (queue/held-writes.ts)
   * until this process next sends a command on the connection (a next call's routing reads it
   * after the beat) or is idle, so the cold call's client is not kept waiting for it.
   */
  private publishLoad(): void {
    process.nextTick(() => void this.heldWrites.hold(() => this.heartbeat()));
  }

  /** Counts of calls answered here (`invokeHere`) on their way to Redis. */
  private readonly counting = new Set<Promise<void>>();
  /** Writes held until just after an answer (the heartbeat after a load): queue/held-writes.ts. */
  private readonly heldWrites: HeldWrites;
  /** The counts of the calls answered here, in one script a turn of the event loop while others run (runtime/stats.ts). */
  private readonly countsOut = new CountsOut((id, stats) => {
    const p: Promise<void> = this.retried(() => applyWrites(this.o.redis, this.o.keys, id, stats))
      .catch((e: unknown) => this.o.log.error({ err: e }, 'the counts of answered invocations were lost (Redis stayed away)'))
      .finally(() => this.counting.delete(p));
    this.counting.add(p);
  }, (n) => this.here.running > n, () => this.o.redis);

  /**
   * Sends a call's counts (and its admission place given back) before its answer is returned: at
   * once when no other call runs here, else with the other calls' of this turn of the event loop
   * (`CountsOut`). Resolves once they are written (not applied), and the answer waits for that, so
   * they leave before it (sent after it, a read on another connection, a popularity refresh in
   * cache.test.ts, sometimes came first); retries of a write Redis did not take are not waited for
   * (`counting`).
   */
  private countLater(id: string, stats: StatsOps): Promise<void> {
    if (stats.count === 0) return Promise.resolve();
    return this.countsOut.add(id, stats);
  }

  /**
   * Runs an invocation (`inputs` reads its tensors, while the model is acquired: a load, on a cold
   * start). Resolves to its answer's facts and its output tensors. Its counts go into `stats` (for
   * Redis) and `later` (this process's metrics): the caller applies both, or neither (a call whose
   * admission was refused while it ran, `invokeHere`). Its tensors (`call.inBytes` of inputs, and
   * its outputs) are charged to the warm pool beside its model, admitted with it; the reservation
   * goes into `call.held`, for the caller to free once the call is answered.
   */
  private async invoke(
    data: Omit<InvokeJob, 'inputs'>,
    processedOn: number,
    stats: StatsOps,
    later: Array<() => void>,
    call: CallHere,
    readInputs: () => Promise<Record<string, Tensor>>,
    inputsKey?: string,
  ): Promise<{ result: Omit<InvokeAnswer, 'outputs'>; outputs: Record<string, Tensor> }> {
    const { model, outputs, deadline } = data;
    const { metrics, keys, clock } = this.o;
    const fn = model.fn;
    // Deadlines and acceptance times are on the Redis clock, which the gateway set them on.
    const queueMs = Math.max(0, clock.fromLocal(processedOn) - data.acceptedAt);
    // Its counts and the deletion of its inputs (kept until the job has run, for a re-run after a
    // node's death) go with its answer, in the one script that gives it (`deliver`, retried while
    // Redis is away): Redis applies them before the answer is visible, so a caller that has its
    // answer sees it counted.
    const record = (r: Omit<InvocationRecord, 'fn'>) => {
      invocationCommands(stats, keys, { fn, queueMs, totalMs: Math.max(0, clock.now() - data.acceptedAt), ...r });
      if (inputsKey !== undefined) stats.del(inputsKey);
    };
    if (clock.now() > deadline) {
      // The caller has already had its 504: running this now would only take a slot.
      later.push(() => metrics.invocations.inc({ function: fn, outcome: 'error' }));
      record({ outcome: 'timeout', loaded: false, loadMs: 0, execMs: 0 });
      throw new BruleeError('TIMEOUT', `the invocation waited ${queueMs} ms in the queue, past its deadline; it was not run`);
    }
    this.seeRegistration(model);
    this.lastCallAt = performance.now();
    const inputs = readInputs();
    inputs.catch(() => undefined);
    const retiring = this.retireOlder(model);
    if (retiring) await retiring;
    const spec = this.spec(model);
    const { inBytes } = call;
    const bytes = this.callBytes(spec.key, inBytes);
    const growth = this.footprints.growthEstimate(spec.key, inBytes);
    // A call not admitted yet takes the model only if that evicts nothing (its refusal must leave
    // no trace); else it is admitted first. Checked in the same synchronous step as the pool's own.
    if (call.admitFirst && (call.mustAdmitFirst || !this.pool.fitsWithoutEviction(spec, bytes + growth))) await call.admitFirst();
    // A run that ends past the call's deadline, in success or failure: its caller had its 504 at
    // the deadline (the gateway waits no longer, queue/dispatcher.ts ANSWER_MARGIN_MS), so it is
    // counted as what that caller saw, a timeout, and answered so (an async call's status). (A
    // wait for room or a load is bounded by the deadline itself, and answers its own error.) A
    // call of this process's gateway is decided with its caller's timer, whichever comes first
    // (`GiveUp.commit`): ended in time, its answer is promised to its caller, who waits for it
    // (its counts may take longer than the margin); given up first, it counts as a timeout too.
    const late = (facts: Pick<InvocationRecord, 'coldStart' | 'loaded' | 'loadMs' | 'fetchMs'>, failed?: unknown): BruleeError | undefined => {
      const lateMs = clock.now() - deadline;
      if (lateMs <= 0 && call.given?.commit() !== false) return undefined;
      later.push(() => metrics.invocations.inc({ function: fn, outcome: 'error' }));
      record({ outcome: 'timeout', ...facts, execMs: 0 });
      const what = failed === undefined ? 'outputs were' : 'error was';
      if (lateMs <= 0) return new BruleeError('TIMEOUT', `the invocation of ${fn} was given up by its caller (the function's timeoutMs) as its run ended; its ${what} dropped`);
      return new BruleeError('TIMEOUT', `the invocation of ${fn} finished ${Math.ceil(lateMs)} ms past its deadline (the function's timeoutMs); its ${what} dropped`);
    };
    let lease;
    try {
      lease = await this.pool.acquire(spec, clock.toLocal(deadline), { bytes, growth });
      call.held.push(lease.reservation);
      if (lease.loaded) call.loaded = lease.value;
    } catch (e) {
      later.push(() => metrics.invocations.inc({ function: fn, outcome: 'error' }));
      record({ outcome: 'error', loaded: false, loadMs: 0, execMs: 0 });
      throw e;
    }
    // Routing reads residency from heartbeats: a new resident model is published at once, once its
    // run has settled, after this call's answer is on its way (its script write is 0.2-0.4 ms of
    // this thread on a cold start's path): see `publishLoad`.
    later.push(() => (lease.coldStart ? metrics.coldStarts : metrics.warmHits).inc({ function: fn }));
    const loadMs = lease.loaded ? (this.lastLoadMs.get(spec.key) ?? lease.loadWaitMs) : lease.loadWaitMs;
    const facts = { coldStart: lease.coldStart, loaded: lease.loaded, loadMs, ...(lease.loaded ? { fetchMs: this.lastFetchMs.get(spec.key) ?? 0 } : {}) };
    let result: Omit<InvokeAnswer, 'outputs'>;
    let out: Record<string, Tensor>;
    let countsRun = true;
    try {
      let t0 = 0;
      try {
        const feeds = await inputs;
        // A run holds this thread: what earlier answers left held goes out first (queue/held-writes.ts).
        this.heldWrites.flush();
        t0 = performance.now();
        ({ outputs: out, countsRun } = await this.batcher.run(lease.value, feeds, outputs, model.batch, clock.toLocal(deadline), fn));
      } finally {
        if (lease.loaded) this.publishLoad();
      }
      const execMs = performance.now() - t0;
      // Checked from the tensors' byte size before any copy: a model that answers 1.2 GB must not
      // have it packed on its way out.
      const outBytes = tensorsByteLength(Object.values(out));
      if (outBytes > this.o.maxOutputBytes) {
        throw new BruleeError(
          'OUTPUT_TOO_LARGE',
          `the outputs of ${fn} on these inputs take ${outBytes} bytes, more than the limit of ${this.o.maxOutputBytes} bytes (MAX_OUTPUT_BYTES); ask for fewer outputs ("outputs"), send smaller inputs, or raise MAX_OUTPUT_BYTES`,
        );
      }
      // What the call holds now: its outputs are known.
      this.outPerIn.set(spec.key, Math.max(this.outPerIn.get(spec.key) ?? 0, outBytes / Math.max(1, inBytes)));
      lease.reservation.set(this.callBytes(spec.key, inBytes, outBytes));
      result = { coldStart: lease.coldStart, node: this.o.id, timings: { queueMs, loadMs, execMs }, fn, version: model.version };
    } catch (e) {
      const timedOut = late(facts, e);
      if (timedOut) throw timedOut;
      later.push(() => metrics.invocations.inc({ function: fn, outcome: 'error' }));
      record({ outcome: 'error', ...facts, execMs: 0 });
      throw e;
    } finally {
      lease.release();
      this.lastCallAt = performance.now();
    }
    const timedOut = late(facts);
    if (timedOut) throw timedOut;
    later.push(() => metrics.execSeconds.observe({ function: fn }, result.timings.execMs / 1000));
    later.push(() => metrics.invocations.inc({ function: fn, outcome: 'ok' }));
    record({ outcome: 'ok', ...facts, execMs: result.timings.execMs, countsRun });
    return { result, outputs: out };
  }
}


/** What `RuntimeNode.invoke` is told of a call, and tells back. */
interface CallHere {
  /** Its tensors' reservations, for the caller to free once it is answered. */
  held: Reservation[];
  /** Its input bytes. */
  inBytes: number;
  /** A call of this process's gateway: its give-up signal, with which its outcome is decided as its run ends (`GiveUp.commit`). */
  given?: GiveUp;
  /**
   * Set for a call whose admission is decided after its run (`invokeHere`'s `admitAfter`): admits
   * it before it takes its model when that would evict (or wait); throws its refusal.
   */
  admitFirst?: () => Promise<void>;
  /** `admitFirst` whatever the room. */
  mustAdmitFirst?: boolean;
  /** Set once it has its model, if it loaded it: the model its load made (`WarmPool.withdraw` takes back that one only). */
  loaded?: LoadedModel;
}

/** A call's admission decided after its run, or before it takes its model (`RuntimeNode.decidedAfter`). */
interface DecidedAfter {
  /** Decides it (`admitAndApply`), and counts or takes back a load made for it; throws its refusal. */
  settle(decide: () => Promise<Admission>): Promise<void>;
  /** Its place, when it was admitted before it took its model (`CallHere.admitFirst`). */
  ticket?: AdmissionTicket;
  /** What that admission threw (its refusal). */
  failedFirst?: unknown;
}

/** The bytes of a job's input tensors, from their wire descriptions (before they are read). */
function wireBytes(w: WireTensors): number {
  let n = 0;
  for (const t of Object.values(w.tensors)) n += t.byteLength;
  return n;
}

/** A call of this process's gateway given up (its timeout) before it had a slot: dropped, never run. */
function givenUp(id: string): BruleeError {
  return new BruleeError('TIMEOUT', `invocation ${id} was given up by its caller before it ran`);
}

function processMemory(): NonNullable<NodeInfo['memory']> {
  const m = process.memoryUsage();
  return { rssBytes: m.rss, heapBytes: m.heapTotal, externalBytes: m.external };
}

/** A job's input tensors: inline (in a lane job's frame, or base64 in a BullMQ job), or fetched as bytes from their own key. */
async function readInputs(redis: Redis, w: WireTensors, inline: Buffer | undefined): Promise<Record<string, Tensor>> {
  if (w.key === undefined) return unpackTensors(w.tensors, inline ?? Buffer.from(w.b64 ?? '', 'base64'));
  const blob = await redis.getBuffer(w.key);
  if (blob === null) throw new BruleeError('TIMEOUT', `the inputs of this invocation (${w.key}) are gone: its caller stopped waiting`);
  return unpackTensors(w.tensors, blob);
}
