import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { exampleInputs, type ExampleTensor } from './example';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError, preview } from '../errors';
import { modelKey, type Dispatcher, type InvokeRequest, type QueueDepth } from '../queue/dispatcher';
import { admit, admitted, queuedBytes, refusal, release, ticketOf, type AdmissionRequest } from '../queue/admission';
import { tensorsByteLength } from '../queue/tensor';
import type { Keys } from '../queue/keys';
import type { InvokeResult, Tensor } from '../queue/wire';
import type { DeadNode, FailoverCounts, NodeInfo } from '../queue/nodes';
import { readFunctionStats, recentEvictions, type EvictionRecord, type FunctionStats } from '../runtime/stats';
import { modelRefOf, type FunctionMeta, type FunctionRegistry, type RegisterOptions, type RegisterResult } from './registry';
import { checkInputs } from './signature';
import type { LiveTimes, TraceRecorder } from './trace-recorder';
import { REDIS_HUNG_MS, whileRedisAnswers } from '../queue/deadline';

export interface DataPlaneOptions {
  redis: Redis;
  keys: Keys;
  registry: FunctionRegistry;
  dispatcher: Dispatcher;
  /** Invocation timeout when the function sets none, ms. */
  defaultTimeoutMs: number;
  /** Invocations of one function accepted and not yet answered, cluster-wide; past it 429 QUEUE_FULL. 0: no limit. @default 0 */
  maxQueuedPerFunction?: number;
  /** Input bytes of invocations accepted and not yet answered, cluster-wide; past it 503 OVERLOADED. 0: no limit. @default 0 */
  maxQueuedInputBytes?: number;
  /** How long an async invocation may wait for its answer (the dispatcher's result TTL), ms. @default 3600000 */
  asyncHoldMs?: number;
  log: Logger;
  recorder?: TraceRecorder;
}

/** What every front end may ask of an invocation besides its inputs. */
export interface InvokeOptions {
  /** Output names to compute and return; all when absent or empty. */
  outputs?: string[] | undefined;
  /** The version the caller addressed; only the current version is served. */
  version?: string | number | undefined;
}

export interface Invocation {
  fn: FunctionMeta;
  outputs: Record<string, Tensor>;
  coldStart: boolean;
  node: string;
  timings: InvokeResult['timings'] & { totalMs: number };
}

export type InvocationStatus =
  | { id: string; status: 'waiting' | 'active' | 'delayed' }
  | {
      id: string;
      status: 'completed';
      function: string;
      version: number;
      outputs: Record<string, Tensor>;
      coldStart: boolean;
      node: string;
      timings: InvokeResult['timings'];
    }
  | { id: string; status: 'failed'; error: BruleeError };

/** A function as `GET /functions/{name}` shows it: its description, live counts and where it is resident. */
export interface FunctionDetail {
  fn: FunctionMeta;
  stats: FunctionStats;
  residentOn: string[];
}

/** `GET /stats`: the whole cluster at one moment (the dashboard, `brulee ls/stats/top` read it). */
export interface StatsSnapshot {
  /** Waiting invocations by state, all nodes. */
  queue: QueueDepth;
  queueByNode: Record<string, QueueDepth>;
  functions: Record<string, FunctionStats & { version: number; sizeBytes: number; popularity: number; resident: boolean; residentOn: string[] }>;
  nodes: Array<{
    id: string;
    policy: string;
    budgetBytes: number;
    usedBytes: number;
    loads: number;
    evictions: number;
    /** The node process's RSS, V8 heap and external (ArrayBuffer) bytes at its last beat. */
    memory?: NodeInfo['memory'];
    /** Its parked and pre-parked sessions at its last beat (runtime/parked.ts, runtime/prepark.ts). */
    parked?: NodeInfo['parked'];
    residentModels: NodeInfo['resident'];
    /** ISO time of its last heartbeat. */
    heartbeatAt: string;
  }>;
  recentEvictions: EvictionRecord[];
  failover: FailoverCounts & { deadNodes: DeadNode[] };
}

export interface Health {
  redis: boolean;
  /** Live runtime nodes. */
  nodes: number;
}

/**
 * The one data plane (KServe's DataPlane): everything a front end can do, with typed tensors. The
 * front ends (v1 JSON, v2 REST, gRPC) only decode requests, call one method here and encode the
 * answer; none of them touches the registry, the dispatcher or Redis. The signature check happens
 * here, after decoding, so every protocol gets the same checks and the same messages.
 */
export class DataPlane {
  private readonly learnedExec = new Map<string, { at: number; ms: number | undefined }>();

  constructor(private readonly o: DataPlaneOptions) {}

  async register(name: string, bytes: Uint8Array, opts: RegisterOptions): Promise<RegisterResult> {
    const r = await this.o.registry.register(name, bytes, opts);
    this.forgetExec(name);
    if (r.replaced) {
      // Nodes also retire an old version when they next see the new one; this just frees it sooner.
      const job = { fn: name, belowVersion: r.fn.version, cause: 'retired', reason: `replaced by version ${r.fn.version}` } as const;
      this.o.dispatcher.unload(job, 10_000).catch((e: unknown) => this.o.log.warn({ err: e, fn: name }, 'retiring the old version failed'));
    }
    if (this.o.recorder) await this.o.recorder.writeCatalog(await this.o.registry.list());
    return r;
  }

  /**
   * Rewrites the trace catalogue (TRACE_RECORD) with the exec and load times the live invocations
   * measured (means; the registration profile where there are none). brulee calls it on close.
   */
  async writeTraceCatalog(): Promise<void> {
    if (!this.o.recorder) return;
    const fns = await this.o.registry.list();
    const live = new Map<string, LiveTimes>();
    for (const f of fns) {
      const s = await readFunctionStats(this.o.redis, this.o.keys, f.name);
      const ok = s.coldStarts + s.warmHits;
      live.set(f.name, {
        ...(ok > 0 && s.execMsTotal > 0 ? { execMs: s.execMsTotal / ok } : {}),
        ...(s.coldStarts > 0 && s.loadWaitMsTotal > 0 ? { loadMs: s.loadWaitMsTotal / s.coldStarts } : {}),
      });
    }
    await this.o.recorder.writeCatalog(fns, live);
  }

  async list(): Promise<FunctionMeta[]> {
    return this.o.registry.list();
  }

  /**
   * A function's metadata, at the version asked for.
   * @throws BruleeError FUNCTION_NOT_FOUND, or NOT_FOUND for a version that is not served.
   */
  async get(name: string, version?: string | number): Promise<FunctionMeta> {
    // A read of Redis within the default timeout (a function's own is not known until it is
    // read): every front end reads the function before it invokes it.
    const fn = this.o.registry.cached(name) ?? (await whileRedisAnswers(this.o.registry.get(name), this.o.defaultTimeoutMs, (ms) => `function ${name} could not be read within ${ms} ms`));
    if (version !== undefined && String(version) !== String(fn.version)) {
      const known = fn.versions.some((v) => String(v.version) === String(version));
      throw new BruleeError(
        'NOT_FOUND',
        `function "${fn.name}" version ${String(version)} ${known ? 'is no longer served' : 'does not exist'}; the current version is ${fn.version}`,
      );
    }
    return fn;
  }

  /** Metadata, live counts and residency of one function. */
  async describe(name: string): Promise<FunctionDetail> {
    const fn = await this.o.registry.get(name);
    const [stats, where] = await Promise.all([this.functionStats(fn.name), this.residency()]);
    return { fn, stats, residentOn: where.get(fn.name) ?? [] };
  }

  async delete(name: string): Promise<{ fn: FunctionMeta; unloaded: number }> {
    const { fn, removed } = await this.o.registry.delete(name);
    this.forgetExec(name);
    // Nodes drop the removed bytes from their caches too (a worker process's is its own).
    const unloaded = await this.o.dispatcher.unload({ fn: name, cause: 'deleted', reason: 'function deleted', sha256s: removed }, 10_000).catch(() => 0);
    return { fn, unloaded };
  }

  /** Checks the inputs against the function's signature and runs one invocation, waiting for it. */
  async invoke(name: string, inputs: Record<string, Tensor>, opts: InvokeOptions = {}): Promise<Invocation> {
    const t0 = performance.now();
    const { fn, job } = await this.prepare(name, inputs, opts);
    const timeoutMs = fn.options.timeoutMs ?? this.o.defaultTimeoutMs;
    // Held a little past the deadline: a node that reaches the job late still answers (and frees it).
    // Admitted and queued in one script (queue/admission.ts), so admission costs no round trip.
    const admission = this.admission(fn.name, inputs, timeoutMs + 5000);
    if (admission) job.admission = ticketOf(admission);
    let r;
    try {
      const how: { admission?: AdmissionRequest; onQueued: () => void } = { onQueued: () => this.o.recorder?.record(name, job.acceptedAt) };
      if (admission) how.admission = admission;
      r = await this.o.dispatcher.invoke(job, timeoutMs, how);
    } catch (e) {
      // No answer may ever come (a timeout, Redis, no node): give the place back here. When a node
      // did answer (an error), it has already, and a call refused never had one; a second release is a no-op.
      if (job.admission) void release(this.o.redis, job.admission).catch(() => undefined);
      throw e;
    }
    return {
      fn,
      outputs: r.outputs,
      coldStart: r.coldStart,
      node: r.node,
      timings: { queueMs: r.timings.queueMs, loadMs: r.timings.loadMs, execMs: r.timings.execMs, totalMs: performance.now() - t0 },
    };
  }

  /**
   * Like `invoke`, but answers at once with the invocation's id (see `status`). The function's
   * timeout bounds it as it bounds a sync call: past it, its status is `failed` with TIMEOUT.
   */
  async submit(name: string, inputs: Record<string, Tensor>, opts: InvokeOptions = {}): Promise<{ id: string; fn: FunctionMeta }> {
    // Its writes (admission, the job) within INVOKE_TIMEOUT_MS: a Redis that hangs would otherwise
    // keep the caller from its id, or any answer, for ever.
    return whileRedisAnswers(this.queue(name, inputs, opts), this.o.defaultTimeoutMs, (ms) => `invocation of ${name} was not accepted within ${ms} ms (whether it was queued is not known)`);
  }

  private async queue(name: string, inputs: Record<string, Tensor>, opts: InvokeOptions): Promise<{ id: string; fn: FunctionMeta }> {
    const { fn, job } = await this.prepare(name, inputs, opts);
    const admission = this.admission(fn.name, inputs, this.o.asyncHoldMs ?? 3_600_000);
    if (admission) {
      const a = await admit(this.o.redis, admission);
      if (!a.admitted) throw refusal(fn.name, admission, a);
      job.admission = a.ticket;
    }
    // A call refused by admission never reached a node: the recorded trace leaves it out.
    this.o.recorder?.record(name, job.acceptedAt);
    try {
      return { id: await this.o.dispatcher.submit(job, fn.options.timeoutMs ?? this.o.defaultTimeoutMs), fn };
    } catch (e) {
      if (job.admission) void release(this.o.redis, job.admission).catch(() => undefined);
      throw e;
    }
  }

  /**
   * What admission (queue/admission.ts) is to count of a call: a place among `fn`'s invocations
   * waiting or running, and its bytes among the input bytes waiting in Redis. Undefined when there
   * is no limit.
   */
  private admission(fn: string, inputs: Record<string, Tensor>, holdMs: number): AdmissionRequest | undefined {
    const limits = { depth: Math.max(0, this.o.maxQueuedPerFunction ?? 0), bytes: Math.max(0, this.o.maxQueuedInputBytes ?? 0) };
    if (limits.depth === 0 && limits.bytes === 0) return undefined;
    const k = this.o.keys;
    const bytes = limits.bytes > 0 ? tensorsByteLength(Object.values(inputs)) : 0;
    return { keys: { depth: k.admitted(fn), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member: randomUUID(), limits, bytes, holdMs };
  }

  /** `fn`'s invocations accepted and not yet answered (what admission counts). */
  async queued(fn: string): Promise<number> {
    return admitted(this.o.redis, this.o.keys.admitted(fn));
  }

  /** Input bytes of the invocations accepted and not yet answered, all functions (what admission counts). */
  async queuedInputBytes(): Promise<number> {
    return queuedBytes(this.o.redis, { bytesTotal: this.o.keys.queuedBytesTotal });
  }

  /** An async invocation: waiting, running, or its outputs or error. */
  async status(id: string): Promise<InvocationStatus> {
    const s = await this.o.dispatcher.status(id);
    if (s.status === 'completed') {
      const { outputs, coldStart, node, timings } = s.result;
      return { id: s.id, status: 'completed', function: s.fn, version: s.version, outputs, coldStart, node, timings };
    }
    return s;
  }

  /** Prewarms a function on the node routing picks. */
  async load(name: string): Promise<{ node: string; loaded: boolean }> {
    const fn = await this.o.registry.get(name);
    return this.o.dispatcher.load(modelRefOf(fn, await this.execEstimate(fn)), fn.options.timeoutMs ?? this.o.defaultTimeoutMs);
  }

  /** Evicts a function from every node; returns how many copies were dropped. */
  async unload(name: string): Promise<number> {
    await this.o.registry.get(name);
    return this.o.dispatcher.unload({ fn: name, cause: 'unload', reason: 'unloaded on request' }, 10_000);
  }

  /**
   * Redis reachable, and how many runtime nodes are alive. A Redis that does not answer within
   * REDIS_HUNG_MS (hung, or cut off by the network rather than refusing connections) is
   * unreachable: without the bound a probe waited for it as long as it hung, with no answer.
   */
  async health(): Promise<Health> {
    const check = (async () => {
      const redis = await this.o.redis.ping().then(() => true, () => false);
      const nodes = redis ? (await this.o.dispatcher.nodes(true)).length : 0;
      return { redis, nodes };
    })();
    return whileRedisAnswers(check, REDIS_HUNG_MS, (ms) => `readiness not known within ${ms} ms`).catch((e: unknown) => {
      if (e instanceof BruleeError && e.code === 'TIMEOUT') return { redis: false, nodes: 0 };
      throw e;
    });
  }

  /** Ready to serve: Redis answers and some node is alive (a model loads on demand). */
  async ready(): Promise<boolean> {
    const h = await this.health();
    return h.redis && h.nodes > 0;
  }

  /**
   * The model repository's index: every function (or only the resident ones) with its state,
   * READY when some node holds it, else UNAVAILABLE with the reason.
   */
  async repositoryIndex(opts: { ready?: boolean } = {}): Promise<Array<{ name: string; version: string; state: 'READY' | 'UNAVAILABLE'; reason: string }>> {
    const [fns, where] = await Promise.all([this.o.registry.list(), this.residency()]);
    const rows = fns.map((f) => {
      const loaded = (where.get(f.name) ?? []).length > 0;
      return { name: f.name, version: String(f.version), state: loaded ? ('READY' as const) : ('UNAVAILABLE' as const), reason: loaded ? '' : 'not loaded; loads on the first invocation or on load' };
    });
    return opts.ready ? rows.filter((r) => r.state === 'READY') : rows;
  }

  /**
   * The statistics extension, in Triton's format: per function (all of them, or the one named, at
   * the version asked for), counts and cumulative nanoseconds of successful and failed
   * invocations, queue waits and execs, and brulee's cold starts (with their load waits).
   * inference_count is successful invocations; execution_count the onnxruntime runs that answered
   * them, fewer when dynamic batching merged callers.
   * @throws BruleeError FUNCTION_NOT_FOUND, or NOT_FOUND for a version that is not served.
   */
  async modelStatistics(name?: string, version?: string): Promise<{ model_stats: ModelStatistics[] }> {
    const fns = name === undefined ? await this.o.registry.list() : [await this.get(name, version)];
    const stats = await Promise.all(fns.map((f) => readFunctionStats(this.o.redis, this.o.keys, f.name)));
    return { model_stats: fns.map((f, i) => tritonStats(f, stats[i]!)) };
  }

  /** A valid input for a function (its signature, the dims its profile ran with): `--example`, the dashboard's "try it". */
  async example(name: string): Promise<Record<string, ExampleTensor>> {
    const fn = await this.get(name);
    return exampleInputs(fn.signature, fn.profile.profiledDims);
  }

  /** The BullMQ queues of live nodes, for read-only views (bull-board). */
  async queues(): Promise<Queue[]> {
    return this.o.dispatcher.liveQueues();
  }

  /** Where each function is resident, by node. */
  async residency(): Promise<Map<string, string[]>> {
    const where = new Map<string, string[]>();
    for (const n of await this.o.dispatcher.nodes(true)) {
      for (const r of n.resident) if (r.state === 'resident') where.set(r.fn, [...(where.get(r.fn) ?? []), n.id]);
    }
    return where;
  }

  async functionStats(name: string): Promise<FunctionStats> {
    return readFunctionStats(this.o.redis, this.o.keys, name);
  }

  /** Everything GET /stats shows: per function, per node, queue depth, recent evictions. */
  async stats(): Promise<StatsSnapshot> {
    const { redis, keys } = this.o;
    const [fns, depth, nodes, popularity, evictions, where, failover] = await Promise.all([
      this.o.registry.list(),
      this.o.dispatcher.depth(),
      this.o.dispatcher.nodes(true),
      redis.hgetall(keys.popularity),
      recentEvictions(redis, keys, 50),
      this.residency(),
      this.o.dispatcher.failover(),
    ]);
    const functions: StatsSnapshot['functions'] = {};
    for (const f of fns) {
      functions[f.name] = {
        version: f.version,
        sizeBytes: f.sizeBytes,
        ...(await readFunctionStats(redis, keys, f.name)),
        popularity: Number(popularity[f.name] ?? 0),
        resident: (where.get(f.name) ?? []).length > 0,
        residentOn: where.get(f.name) ?? [],
      };
    }
    return {
      queue: depth.total,
      queueByNode: depth.byNode,
      functions,
      nodes: nodes.map((n) => ({
        id: n.id,
        policy: n.policy,
        budgetBytes: n.budgetBytes,
        usedBytes: n.usedBytes,
        loads: n.loads,
        evictions: n.evictions,
        ...(n.memory ? { memory: n.memory } : {}),
        ...(n.parked ? { parked: n.parked } : {}),
        residentModels: n.resident,
        heartbeatAt: new Date(n.heartbeatAt).toISOString(),
      })),
      recentEvictions: evictions,
      // Nodes declared dead (or gone), the jobs moved off them, and duplicate runs (queue/reaper.ts).
      failover,
    };
  }

  private async prepare(name: string, inputs: Record<string, Tensor>, opts: InvokeOptions) {
    const fn = await this.get(name, opts.version);
    checkInputs(fn.signature, inputs);
    // No output names, or an empty list, means all outputs (as Triton does).
    const outputs = opts.outputs && opts.outputs.length > 0 ? opts.outputs : undefined;
    if (outputs) {
      const names = fn.signature.outputs.map((o) => o.name);
      const bad = outputs.filter((o) => !names.includes(o));
      if (bad.length > 0) {
        throw new BruleeError('INVALID_INPUT', `unknown output ${bad.slice(0, 5).map((b) => preview(b, 60)).join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}: the model's outputs are ${names.map((n) => `"${n}"`).join(', ')}`);
      }
    }
    // Set field by field, not spread (a hot path: see queue/admission.ts ticketOf).
    const job: InvokeRequest = { model: modelRefOf(fn, await this.execEstimate(fn)), inputs, acceptedAt: Date.now() };
    if (outputs) job.outputs = outputs;
    return { fn, job };
  }

  /** Drops the exec times learned for a function's models (deleted, or registered again: a replaced version's key is not asked again). */
  private forgetExec(name: string): void {
    const prefix = modelKey({ fn: name, sha256: '' });
    for (const key of [...this.learnedExec.keys()]) if (key.startsWith(prefix)) this.learnedExec.delete(key);
  }

  /** Exec time learned from live invocations, for models whose profile run failed. */
  private async execEstimate(fn: FunctionMeta): Promise<number | undefined> {
    if (fn.profile.execMs !== null) return undefined;
    const key = modelKey({ fn: fn.name, sha256: fn.sha256 });
    const hit = this.learnedExec.get(key);
    if (hit && Date.now() - hit.at < 10_000) return hit.ms;
    // An estimate is not worth a call's deadline: a Redis that does not answer within REDIS_HUNG_MS
    // (hung, or cut off) or refuses leaves the last estimate (or none) for the next 10 s, and the
    // call goes on to the waits that are bounded by its deadline. Unbounded, a call of such a
    // function waited as long as Redis hung, with no answer.
    let ms = hit?.ms;
    try {
      ms = (await whileRedisAnswers(readFunctionStats(this.o.redis, this.o.keys, fn.name), REDIS_HUNG_MS, (b) => `the exec time of ${fn.name} could not be read within ${b} ms`)).execMs.p50 ?? undefined;
    } catch {
      // (kept: the last estimate)
    }
    this.learnedExec.set(key, { at: Date.now(), ms });
    return ms;
  }
}

/** Count and cumulative nanoseconds, as Triton's `StatisticDuration`. */
export interface StatisticDuration {
  count: number;
  ns: number;
}

/** One model's entry of the statistics extension (Triton's `ModelStatistics`, plus `cold_start`). */
export interface ModelStatistics {
  name: string;
  version: string;
  /** Epoch ms of the last successful inference; 0 when none. */
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: {
    success: StatisticDuration;
    fail: StatisticDuration;
    queue: StatisticDuration;
    compute_input: StatisticDuration;
    compute_infer: StatisticDuration;
    compute_output: StatisticDuration;
    cache_hit: StatisticDuration;
    cache_miss: StatisticDuration;
    /** brulee's addition: invocations that waited for a model load, and the time they waited. */
    cold_start: StatisticDuration;
  };
  batch_stats: never[];
}

const ns = (ms: number) => Math.round(ms * 1e6);

function tritonStats(fn: FunctionMeta, s: FunctionStats): ModelStatistics {
  const failed = s.failures + s.timeouts;
  const ok = Math.max(0, s.invocations - failed);
  return {
    name: fn.name,
    version: String(fn.version),
    last_inference: s.lastInference,
    inference_count: ok,
    execution_count: s.executions,
    inference_stats: {
      success: { count: ok, ns: ns(s.successMsTotal) },
      fail: { count: failed, ns: ns(s.failMsTotal) },
      queue: { count: ok, ns: ns(s.queueMsTotal) },
      // Decoding and encoding happen in the front ends, before and after the queue: not timed apart.
      compute_input: { count: ok, ns: 0 },
      compute_infer: { count: ok, ns: ns(s.execMsTotal) },
      compute_output: { count: ok, ns: 0 },
      cache_hit: { count: 0, ns: 0 },
      cache_miss: { count: 0, ns: 0 },
      cold_start: { count: s.coldStarts, ns: ns(s.loadWaitMsTotal) },
    },
    batch_stats: [],
  };
}
