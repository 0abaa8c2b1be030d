import { randomUUID } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError } from '../errors';
import { admit, admitSoon, refusal, type AdmissionRequest } from './admission';
import { RedisClock } from './clock';
import type { Keys } from './keys';
import { deadNodes, failoverCounts, HEARTBEAT_MS, liveNodes, MISSED_BEATS, removeDeadJob, type DeadNode, type FailoverCounts, type NodeInfo } from './nodes';
import { readAnswer, ReplyReader, unwrap, type Answer, type ReplyTo } from './replies';
import { encodeLaneJob, pushJob, takeBack, takeBackFromGone } from './lane';
import { chooseNode, type NodeView } from './routing';
import { whileRedisAnswers } from './deadline';
import { INLINE_BYTES, JOB, LANE_INLINE_BYTES, packTensors, unpackTensors, type InvokeJob, type InvokeReply, type InvokeResult, type LoadJob, type ModelRef, type Tensor, type UnloadJob, type WireTensors } from './wire';

export interface DispatcherOptions {
  redisUrl: string;
  /** Request/response Redis connection (shared with the rest of the gateway). */
  redis: Redis;
  keys: Keys;
  /** The cluster clock (Redis TIME); one is made and started here when absent. */
  clock?: RedisClock;
  /** How long a node list is reused before it is read again, ms. @default 500 */
  nodesRefreshMs?: number;
  /** How long an async invocation's result is kept, s. @default 3600 */
  asyncResultTtlS?: number;
  /** A node silent this long is not routed to, ms. @default HEARTBEAT_MS × MISSED_BEATS */
  deadAfterMs?: number;
  /**
   * How long a sync call (or load) a dead node had taken waits for a node restarted under the same
   * NODE_ID before it is answered 503, counted from when this gateway saw the node dead, ms
   * (`RESTART_GRACE_MS`). @default ORPHAN_GRACE × deadAfterMs
   */
  restartGraceMs?: number;
  /** The runtime node of this process (ROLE=all): it takes the sync calls routed to it directly. */
  local?: LocalNode;
  /** Where a failed take-back of a call from a dead node is told (`orphans`). */
  log?: Logger;
}

/** A sync invocation as the node of the gateway's own process takes it: its tensors as they are. */
export type InvokeHere = InvokeRequest & { deadline: number };

/** What that node answers: the result, and which function version it ran. */
export type AnswerHere = InvokeResult & { fn: string; version: number };

/**
 * The runtime node in the gateway's own process (ROLE=all). A sync call routed to it skips Redis
 * both ways (no job, no reply stream; one script counts it): its caller's connection is in this
 * process, so a queue that outlives the process would save nothing for it.
 */
export interface LocalNode {
  readonly id: string;
  /** False once the node is closing: then its calls go on its lane, as from any other gateway. */
  readonly accepting: boolean;
  /** Its calls from this process waiting for a slot, and running (queue depth and routing count them). */
  readonly here: { readonly waiting: number; readonly running: number };
  /** Whether a call of model `key` may run now, before its admission is decided (see `invokeHere`). */
  canRunNow(key: string, batches: boolean): boolean;
  /** Whether a lone call (no other of this gateway running) may start now, its admission decided after its run (`admitAfter`). */
  canStartAlone(batches: boolean): boolean;
  /**
   * Runs `job` there; one that `signal` gives up before it has a slot is dropped (not run, not
   * counted). With `admitted`, the call runs while its admission is decided, and counts only if
   * it was admitted; if not, the refusal is its answer. With `admitAfter` (a lone call that can start
   * now), its admission is decided after its run, in the script that counts it (one round trip:
   * queue/replies.ts `admitAndApply`), or before it takes its model if that would evict; refused,
   * it counts nowhere, whatever it loaded is taken back, and the refusal is its answer.
   */
  invokeHere(id: string, job: InvokeHere, signal?: GiveUp, admitted?: Promise<unknown>, admitAfter?: AdmissionRequest): Promise<AnswerHere>;
}

/**
 * How a gateway gives up a call it handed to its process's node (`LocalNode.invokeHere`): the
 * part of an AbortSignal the call uses, `aborted` and one callback, without an AbortController
 * and an EventTarget listener per call (4-10 µs of CPU each on these cores, measured alone).
 * Also how the call's outcome is decided once, between the two: its caller's timer (`abort`) and
 * the end of its run in time (`commit`), whichever comes first, so that the call counts as what its
 * caller is told.
 */
export class GiveUp {
  aborted = false;
  /** Its run ended in time and is counted so: its answer is promised to its caller (`commit`). */
  private committed = false;
  private listener: (() => void) | undefined;

  /** Calls `f` (once) when the call is given up; `undefined` forgets it. */
  onGiveUp(f: (() => void) | undefined): void {
    this.listener = f;
  }

  /** Gives the call up (its caller's timeout), unless its answer was promised first (`commit`). Returns whether it is given up. */
  abort(): boolean {
    if (this.committed) return false;
    if (this.aborted) return true;
    this.aborted = true;
    const f = this.listener;
    this.listener = undefined;
    f?.();
    return true;
  }

  /**
   * Its node's run ended in time (it is counted as a success, or as the failure it answers): its
   * caller is to have that answer, and waits for it past its timer. False when the caller gave the
   * call up first (had its 504): then it counts as that, a timeout.
   */
  commit(): boolean {
    if (this.aborted) return false;
    this.committed = true;
    return true;
  }
}

export interface QueueDepth {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
  prioritized: number;
}

/** A node as routing sees it: its heartbeat and its queue's depth, read from Redis. */
export type LiveNode = NodeInfo & { queued: number };

export type InvocationStatus =
  | { id: string; status: 'waiting' | 'active' | 'delayed' }
  | { id: string; status: 'completed'; result: InvokeResult; fn: string; version: number }
  | { id: string; status: 'failed'; error: BruleeError };

/** What a node answers for an invocation: the result, and which function version it ran (for async status). */
export type InvokeAnswer = InvokeReply & { fn: string; version: number };

/**
 * A job being added: done when it is in Redis; `takeBack` removes it if no node has taken it.
 * `answer`, when there, is where its answer comes from (a call run in this process), else the
 * gateway's reply stream.
 */
interface Enqueued {
  added: Promise<unknown>;
  takeBack(): Promise<unknown>;
  answer?: Promise<Answer>;
  /**
   * `added` waits for the run itself (a lone call, admitted after its run): past the deadline its
   * caller has its 504 at once, and the node counts the run as that, a timeout, whatever its
   * admission would have said (runtime/node.ts invokeHere).
   */
  runs?: true;
  /** A sync call on a lane, or a load: watched while its caller waits (`Dispatcher.orphans`). */
  watched?: Orphanable;
  /**
   * A call run in this process: its caller's timer gives it up (`GiveUp.abort`) unless its run
   * ended in time (`GiveUp.commit`), when the caller waits for its answer instead (its counts, a
   * Redis round trip, may take longer than `ANSWER_MARGIN_MS`: it was a 504 counted as a success).
   */
  given?: GiveUp;
}

/**
 * A job its caller waits on that a dead node may hold: its model (routing's question: can a live
 * node take it?), and how it is taken back from the nodes `gone` (with `taken`, also where a node
 * had taken it), so that it never runs later; false when none of them holds it (answered, moved).
 */
interface Orphanable {
  model: ModelRef;
  takeBack(gone: readonly string[], taken: boolean): Promise<boolean>;
}

/** A watched job (a sync call on a node's lane, a load); `fail` answers its caller with an error. */
interface Watched extends Orphanable {
  nodeId: string;
  fail(e: BruleeError): void;
  /** Since when (local ms) no live node holds it or can take it (`orphans`). */
  orphanSince?: number;
}

/** Every job carries where its answer goes (see `queue/replies.ts`). */
export type Routed<T> = T & { reply: ReplyTo };

const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'] as const;

/**
 * One attempt: a job that failed would fail again, and its caller has its answer. A job whose node
 * died is not lost: the reaper (`queue/reaper.ts`) moves it to a live node. Answers do not go
 * through BullMQ's return value (see `queue/replies.ts`), so finished jobs are dropped at once.
 */
export const JOB_OPTIONS: JobsOptions = { removeOnComplete: true, removeOnFail: true, attempts: 1 };

/** Events kept in a node queue's event stream (nobody reads them now; BullMQ's default is 10 000). */
const EVENTS_KEPT = 100;

/** An invocation as the gateway hands it over; the dispatcher sets its deadline. */
export type InvokeRequest = Omit<InvokeJob, 'deadline' | 'inputs'> & { inputs: Record<string, Tensor> };

/** Admission's refusals (queue/admission.ts): the call was never queued. */
const REFUSED = new Set<string>(['QUEUE_FULL', 'OVERLOADED']);

/**
 * Admits a call (queue/admission.ts), pushing `push` onto a lane in the same script, or `soon` with
 * the other calls of this turn (`admitSoon`: `othersRunning`, whether this gateway waits on other
 * calls); a refusal is its 429/503.
 */
async function admitOrRefuse(redis: Redis, fn: string, admission: AdmissionRequest, push?: Parameters<typeof admit>[2], soon?: { othersRunning: boolean }): Promise<void> {
  const a = await (soon ? admitSoon(redis, admission, soon.othersRunning) : admit(redis, admission, push));
  if (!a.admitted) throw refusal(fn, admission, a);
}

/** Errors after which no node will run the job (or delete its input key): NO_NODE_AVAILABLE, a call taken back from a dead node. */
const NEVER_RUN = new Set<string>(['TIMEOUT', 'NO_NODE_AVAILABLE', ...REFUSED]);

/**
 * A sync call a dead node had taken, with no live node to take it over, is answered 503 once this
 * many dead-after times have passed since the gateway saw it so (`Dispatcher.orphans`): room for
 * a node restarted under the same NODE_ID to take it back. A restart is a new process that starts
 * up (3.5 s under tsx on a quiet 2-core machine, 8.4 s at load 11: two dead-after times, 6 s, let
 * such a restart's call be answered 503 instead of run) and a container runtime's own delay.
 * The default of `restartGraceMs` (`RESTART_GRACE_MS`), which a cluster (or a test) may set.
 */
export const ORPHAN_GRACE = 4;

/**
 * How long past a call's deadline its gateway still waits for the answer: a node judges a run that
 * ends past the deadline a timeout (counted so, answered TIMEOUT: runtime/node.ts), so an answer
 * of a run that ended in time, still on its way, is not a 504 its node counted as a success. (A
 * call run in this process is decided with its run's end instead, `GiveUp`: no margin is short
 * enough for its counts' round trip on a loaded Redis or event loop.)
 */
const ANSWER_MARGIN_MS = 100;

/**
 * How long a caller whose call, run in this process, ended in time waits for its answer past its
 * timer (`GiveUp.commit`): its counts' round trip, unless Redis does not answer at all (then its
 * 504 goes, though the node may count the run a success once Redis answers).
 */
const COMMITTED_WAIT_MS = 5000;

/** Inputs stored under their own key outlive the job's deadline by this much (a node deletes them once the job has run). */
const INPUTS_GRACE_MS = 60_000;

/**
 * Puts a job's inputs on the wire: inline when their blob is small (no extra command: the caller
 * puts `inline` in the job), else as raw bytes under `key`, written on `redis` (the connection the
 * job is then added on, so the bytes are there before any node can see the job).
 */
function storeInputs(redis: Redis, key: string, ttlMs: number, ts: Record<string, Tensor>, inlineMax: number): { tensors: WireTensors['tensors']; inline?: Buffer; key?: string; stored?: Promise<unknown> } {
  const { tensors, blob } = packTensors(ts);
  if (blob.byteLength <= inlineMax) return { tensors, inline: blob };
  return { tensors, key, stored: redis.set(key, blob, 'PX', Math.max(1, Math.ceil(ttlMs))) };
}

/** An answer's outputs, decoded from its blob (`encodeAnswer`). */
function decodeOutputs(a: InvokeReply, blob: Buffer | undefined): Record<string, Tensor> {
  return unpackTensors(a.outputs.tensors, blob ?? EMPTY);
}
const EMPTY = Buffer.alloc(0);

/**
 * The gateway's side of the queue: routes an invocation to a node and enqueues it on that node's
 * BullMQ queue; the answer comes back on this gateway's reply stream, whichever node gives it.
 */
export class Dispatcher {
  /** This gateway's id: names its reply stream. Random, so two gateways never share one. */
  readonly gatewayId = randomUUID();
  readonly clock: RedisClock;
  private readonly replies: ReplyReader;
  private readonly queues = new Map<string, Queue>();
  private readonly inFlight = new Map<string, number>();
  /**
   * Jobs this gateway added to each node since the depths were last read and not yet answered:
   * routing counts them on top of the depths read from Redis. `generation` tells a job added
   * before the last read (already in the depth) from one added after.
   */
  private readonly addedSince = new Map<string, number>();
  private generation = 0;
  /** Calls of each model this gateway waits on: a model with calls pending is hot (routing may add a copy). */
  private readonly pendingByModel = new Map<string, number>();
  private nodesCache: { at: number; nodes: LiveNode[] } | undefined;
  private nodesRead: Promise<LiveNode[]> | undefined;
  private readonly opts: Required<Omit<DispatcherOptions, 'clock' | 'local' | 'log'>> & Pick<DispatcherOptions, 'local' | 'log'>;
  private readonly ownClock: boolean;
  private closed = false;
  /** Sync calls on lanes and loads, by id, while their callers wait (`orphans`). */
  private readonly watched = new Map<string, Watched>();
  private laneWatch: NodeJS.Timeout | undefined;
  private laneCheck: Promise<void> | undefined;

  constructor(opts: DispatcherOptions) {
    const deadAfterMs = opts.deadAfterMs ?? HEARTBEAT_MS * MISSED_BEATS;
    this.opts = { nodesRefreshMs: 500, asyncResultTtlS: 3600, deadAfterMs, restartGraceMs: ORPHAN_GRACE * deadAfterMs, ...opts };
    this.ownClock = !opts.clock;
    this.clock = opts.clock ?? new RedisClock(opts.redis);
    if (this.ownClock) void this.clock.start();
    this.replies = new ReplyReader(opts.redisUrl, opts.keys, this.gatewayId);
  }

  /** Whether `nodes()` answers from its cache (no Redis read). */
  private nodesCached(): boolean {
    return this.nodesCache !== undefined && Date.now() - this.nodesCache.at <= this.opts.nodesRefreshMs;
  }

  /** Live nodes with their queue depth (cached for `nodesRefreshMs`). */
  async nodes(fresh = false): Promise<LiveNode[]> {
    if (!fresh && this.nodesCached()) return this.nodesCache!.nodes;
    // One read at a time: a burst of calls shares it.
    this.nodesRead ??= (async () => {
      try {
        const live = await liveNodes(this.opts.redis, this.opts.keys, this.opts.deadAfterMs);
        const p = this.opts.redis.pipeline();
        for (const n of live) {
          const q = `${this.opts.keys.bullPrefix}:${this.opts.keys.nodeQueue(n.id)}`;
          p.llen(`${q}:wait`).llen(`${q}:active`).zcard(`${q}:prioritized`).llen(this.opts.keys.lane(n.id)).llen(this.opts.keys.laneActive(n.id));
        }
        this.generation++;
        this.addedSince.clear();
        const res = (await p.exec()) ?? [];
        const nodes = live.map((n, i) => ({ ...n, queued: [0, 1, 2, 3, 4].reduce((s, j) => s + Number(res[5 * i + j]?.[1] ?? 0), this.hereQueued(n)) }));
        this.nodesCache = { at: Date.now(), nodes };
        this.forgetDeadQueues(new Set(nodes.map((n) => n.id)));
        return nodes;
      } finally {
        this.nodesRead = undefined;
      }
    })();
    return this.nodesRead;
  }

  /** Picks a node for `model` (see `chooseNode`: warm first, a new copy when the warm queue costs more than a load). */
  async route(model: ModelRef): Promise<string> {
    const nodes = await this.nodes();
    const key = modelKey(model);
    const cost = { loadMs: model.loadMs, execMs: model.execMs, pending: this.pendingByModel.get(key) ?? 0 };
    return chooseNode(nodes.map((n) => this.view(n)), key, model.sizeBytes, cost).id;
  }

  /**
   * Enqueues an invocation and waits for its answer; 504 past `timeoutMs`. With `admission`, the
   * call is admitted (queue/admission.ts) in the script that queues it, or refused (429/503).
   * `onQueued` is called once it is queued.
   */
  async invoke(req: InvokeRequest, timeoutMs: number, opts: { admission?: AdmissionRequest; onQueued?: () => void } = {}): Promise<InvokeResult> {
    const key = modelKey(req.model);
    // Bounded where it reads Redis (its deadline's own timer starts later) by the call's timeout, 2 s at least.
    const routed = this.route(req.model);
    const nodeId = await (this.nodesCached() ? routed : whileRedisAnswers(routed, timeoutMs, (ms) => `invocation of ${req.model.fn} did not start within ${ms} ms (reading the live nodes)`));
    this.pendingByModel.set(key, (this.pendingByModel.get(key) ?? 0) + 1);
    try {
      return await this.invokeOn(nodeId, req, timeoutMs, opts);
    } finally {
      const n = (this.pendingByModel.get(key) ?? 1) - 1;
      if (n > 0) this.pendingByModel.set(key, n);
      else this.pendingByModel.delete(key);
    }
  }

  private async invokeOn(nodeId: string, req: InvokeRequest, timeoutMs: number, opts: { admission?: AdmissionRequest; onQueued?: () => void }): Promise<InvokeResult> {
    const here = this.opts.local;
    if (here?.accepting && here.id === nodeId) return this.invokeHere(here, req, timeoutMs, opts);
    const id = randomUUID();
    const { redis, keys } = this.opts;
    const { tensors, inline, key, stored } = storeInputs(redis, keys.inputs(id), timeoutMs + INPUTS_GRACE_MS, req.inputs, LANE_INLINE_BYTES);
    const job: InvokeJob = { ...req, inputs: key === undefined ? { tensors } : { tensors, key }, acceptedAt: this.clock.fromLocal(req.acceptedAt), deadline: this.clock.now() + timeoutMs };
    let answer: InvokeAnswer;
    let blob: Buffer | undefined;
    try {
      // On the node's lane (queue/lane.ts): one script that queues it once (the admission script
      // when there is one, else pushJob), after the input bytes on the same connection.
      ({ value: answer, blob } = await this.run<InvokeAnswer>(nodeId, timeoutMs, `invocation of ${req.model.fn}`, id, (reply) => {
        const frame = encodeLaneJob(id, JOB.invoke, { ...job, reply }, inline);
        const push = { lane: keys.lane(nodeId), job: frame, answered: keys.answered(id) };
        const queued = opts.admission ? admitOrRefuse(redis, req.model.fn, opts.admission, push) : pushJob(redis, keys, nodeId, frame, push.answered, reply.answerTtlMs);
        return { added: Promise.all([stored, queued.then(() => opts.onQueued?.())]), takeBack: () => takeBack(redis, keys, nodeId, frame), watched: { model: req.model, takeBack: (gone, taken) => takeBackFromGone(redis, keys, gone, frame, taken) } };
      }));
    } catch (e) {
      // A node deletes the inputs once it has run the job; one that never will (a timeout, a refusal) leaves them to us.
      if (key !== undefined && e instanceof BruleeError && NEVER_RUN.has(e.code)) void redis.del(key).catch(() => undefined);
      throw e;
    }
    return this.result({ ...answer, outputs: decodeOutputs(answer, blob) });
  }

  /** A node's answer as the caller gets it (without the version it ran, which async status shows). */
  private result(a: InvokeResult & { fn: string; version: number }): InvokeResult {
    // A model was loaded: the next call should see where (the node's heartbeat has published it).
    if (a.coldStart) this.nodesCache = undefined;
    return { outputs: a.outputs, coldStart: a.coldStart, node: a.node, timings: a.timings };
  }

  /**
   * A call routed to the node of this process: admitted (one script, when there are limits) and
   * run there. With a slot free and its model resident (and no batching), both start at once and
   * the call counts only once admitted (a refused one is run for nothing: one run of a warm model);
   * else it waits for its admission before it queues for a slot. Its deadline holds as on the lane: the caller gets its 504 at
   * `timeoutMs`, and the node skips the call if it reaches it later.
   */
  private async invokeHere(node: LocalNode, req: InvokeRequest, timeoutMs: number, opts: { admission?: AdmissionRequest; onQueued?: () => void }): Promise<InvokeResult> {
    const id = randomUUID();
    // Set field by field, not spread (a hot path: see queue/admission.ts ticketOf).
    const job: InvokeHere = { model: req.model, inputs: req.inputs, acceptedAt: this.clock.fromLocal(req.acceptedAt), deadline: this.clock.now() + timeoutMs };
    if (req.outputs) job.outputs = req.outputs;
    const { value } = await this.run<AnswerHere>(node.id, timeoutMs, `invocation of ${req.model.fn}`, id, () => {
      const { admission, onQueued } = opts;
      const batches = req.model.batch !== undefined;
      // Its give-up signal: its caller's timer, and (`GiveUp.commit`) its run's end, decide its outcome once.
      const given = new GiveUp();
      if (admission !== undefined && this.pending === 1 && node.canStartAlone(batches)) {
        // Alone (no other call of this gateway running): it runs now, and its admission is
        // decided after, with its counts, in one script: one round trip, not two; a cold call
        // too, when its load evicts nothing (else the node admits it first). It holds no place
        // while it runs, so its job has none to give back. It starts now, so it never waits for a
        // slot with its give-up signal.
        const ran = node.invokeHere(id, job, given, undefined, admission);
        const answered = ran.then(() => onQueued?.());
        return { added: answered, takeBack: () => Promise.resolve(), answer: ran.then((ok) => ({ ok })), runs: true, given };
      }
      // Under load (other calls running: `run` counts this one in `pending` already) its admission
      // is decided with the other calls' of this turn, in one script (admitSoon).
      const added = (admission ? admitOrRefuse(this.opts.redis, req.model.fn, admission, undefined, { othersRunning: this.pending > 1 }) : Promise.resolve()).then(() => onQueued?.());
      if (req.admission) job.admission = req.admission;
      const early = admission !== undefined && node.canRunNow(modelKey(req.model), batches);
      const ran = early ? node.invokeHere(id, job, given, added) : added.then(() => node.invokeHere(id, job, given));
      return { added, takeBack: () => Promise.resolve(given.abort()), answer: ran.then((ok) => ({ ok })), given };
    });
    return this.result(value);
  }

  /**
   * Calls a node runs for its own process's gateway (`LocalNode`), waiting or running: no Redis
   * list holds them. This process's own node counts them live; another's, at its last beat.
   */
  private hereQueued(n: NodeInfo): number {
    const here = this.hereOf(n);
    return here.waiting + here.running;
  }

  /** Those calls by state; another process's node says only how many, counted as running. */
  private hereOf(n: NodeInfo): { waiting: number; running: number } {
    const local = this.opts.local;
    return local?.id === n.id ? local.here : { waiting: 0, running: n.here ?? 0 };
  }

  /**
   * Enqueues an invocation without waiting; the id reads it back with `status`. Its deadline is
   * `timeoutMs` away, as a sync call's (a node answers TIMEOUT past it); its result is kept
   * `asyncResultTtlS`.
   */
  async submit(req: InvokeRequest, timeoutMs: number): Promise<string> {
    const nodeId = await this.route(req.model);
    const id = randomUUID();
    const ttl = this.opts.asyncResultTtlS;
    const { tensors, inline, key, stored } = storeInputs(this.opts.redis, this.opts.keys.inputs(id), ttl * 1000, req.inputs, INLINE_BYTES);
    const job: Routed<InvokeJob> = {
      ...req,
      // BullMQ keeps job data as JSON: inline bytes go as base64 there.
      inputs: key === undefined ? { tensors, b64: inline!.toString('base64') } : { tensors, key },
      acceptedAt: this.clock.fromLocal(req.acceptedAt),
      deadline: this.clock.now() + Math.min(timeoutMs, ttl * 1000),
      reply: { id, answerTtlMs: ttl * 1000 },
    };
    await Promise.all([stored, this.opts.redis.set(this.opts.keys.invocation(id), nodeId, 'EX', ttl)]);
    await this.queueFor(nodeId).add(JOB.invoke, job, { ...JOB_OPTIONS, jobId: id });
    this.added(nodeId);
    return id;
  }

  /** An async invocation: its answer (whichever node gave it), else where its job is. */
  async status(id: string): Promise<InvocationStatus> {
    const { redis, keys } = this.opts;
    const valid = /^[0-9a-f-]{36}$/.test(id);
    const [answer, nodeId] = valid ? await Promise.all([readAnswer(redis, keys, id), redis.get(keys.invocation(id))]) : [undefined, null];
    if (answer) {
      if ('error' in answer) {
        try {
          unwrap(answer);
        } catch (e) {
          return { id, status: 'failed', error: e as BruleeError };
        }
      }
      const { fn, version, ...rest } = unwrap<InvokeAnswer>(answer);
      return { id, status: 'completed', result: { ...rest, outputs: decodeOutputs(rest, 'blob' in answer ? answer.blob : undefined) }, fn, version };
    }
    if (!nodeId) throw new BruleeError('INVOCATION_NOT_FOUND', `no invocation ${id}: ids come from POST /functions/{name}/invoke?async=true and are kept for ${this.opts.asyncResultTtlS} s`);
    // Not answered yet. A job being moved off a dead node is briefly on no queue: still waiting.
    const state = await this.queueFor(nodeId).getJobState(id);
    return { id, status: state === 'active' ? 'active' : state === 'delayed' ? 'delayed' : 'waiting' };
  }

  /** Loads a model on the node that routing picks (prewarm). Resolves to that node's id. */
  async load(model: ModelRef, timeoutMs: number): Promise<{ node: string; loaded: boolean }> {
    const nodeId = await this.route(model);
    const put = this.onQueue(nodeId, JOB.load, { model } satisfies LoadJob);
    // Watched as a sync call is: a load on a dead node that no live node can take is answered 503.
    const { value: r } = await this.run<{ loaded: boolean; node?: string }>(nodeId, timeoutMs, `load of ${model.fn}`, randomUUID(), (reply) => ({
      ...put(reply),
      watched: { model, takeBack: (gone, taken) => this.takeBackJob(gone, reply.id, taken) },
    }));
    return { node: r.node ?? nodeId, loaded: r.loaded };
  }

  /** Unloads `fn` (all versions, or those below `job.belowVersion`) on every live node. Resolves to the number of models dropped. */
  async unload(job: UnloadJob, timeoutMs: number): Promise<number> {
    const nodes = await this.nodes(true);
    const counts = await Promise.all(nodes.map((n) => this.run<{ dropped: number }>(n.id, timeoutMs, `unload of ${job.fn}`, randomUUID(), this.onQueue(n.id, JOB.unload, job))));
    return counts.reduce((s, c) => s + c.value.dropped, 0);
  }

  /** Job counts by state (lane and BullMQ queue together), summed over every node that is live. */
  async depth(): Promise<{ total: QueueDepth; byNode: Record<string, QueueDepth> }> {
    const nodes = await this.nodes(true);
    const byNode: Record<string, QueueDepth> = {};
    const total: QueueDepth = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0, prioritized: 0 };
    for (const n of nodes) {
      const [c, lane, active] = await Promise.all([
        this.queueFor(n.id).getJobCounts(...STATES),
        this.opts.redis.llen(this.opts.keys.lane(n.id)),
        this.opts.redis.llen(this.opts.keys.laneActive(n.id)),
      ]);
      const d = Object.fromEntries(STATES.map((s) => [s, c[s] ?? 0])) as unknown as QueueDepth;
      // Sync invocations wait on the node's lane (queue/lane.ts), or in its own process (`LocalNode`,
      // `hereOf`); the rest on its BullMQ queue.
      const here = this.hereOf(n);
      d.waiting += lane + here.waiting;
      d.active += active + here.running;
      byNode[n.id] = d;
      for (const s of STATES) total[s] += d[s];
    }
    return { total, byNode };
  }

  /** Failover so far: nodes declared dead (or gone) with the jobs moved off each, and the cluster-wide counts. */
  async failover(): Promise<FailoverCounts & { deadNodes: DeadNode[] }> {
    const [counts, dead] = await Promise.all([failoverCounts(this.opts.redis, this.opts.keys), deadNodes(this.opts.redis, this.opts.keys)]);
    return { ...counts, deadNodes: dead };
  }

  /** The BullMQ queue of every live node, for read-only views (bull-board at /queues). */
  async liveQueues(): Promise<Queue[]> {
    return (await this.nodes(true)).map((n) => this.queueFor(n.id));
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
    clearInterval(this.laneWatch);
    await this.laneCheck;
    if (this.ownClock) this.clock.stop();
    const all = [...this.queues.values()];
    this.queues.clear();
    await Promise.allSettled([this.replies.close(), ...all.map((q) => q.close())]);
  }

  /** Routing's view of a node: its queue depth from Redis plus what this gateway added since. */
  private view(n: LiveNode): NodeView {
    return {
      id: n.id,
      budgetBytes: n.budgetBytes,
      usedBytes: n.usedBytes,
      resident: n.resident.map((r) => r.key),
      queued: n.queued + (this.addedSince.get(n.id) ?? 0),
      parallel: Math.min(n.concurrency, n.cpus ?? 1),
    };
  }

  private added(nodeId: string): number {
    this.addedSince.set(nodeId, (this.addedSince.get(nodeId) ?? 0) + 1);
    return this.generation;
  }

  private answered(nodeId: string, generation: number): void {
    const n = this.addedSince.get(nodeId);
    if (generation === this.generation && n) this.addedSince.set(nodeId, n - 1);
  }

  /**
   * Adds a job (`put`, given where its answer goes) and awaits its answer for at most `timeoutMs`,
   * whatever the wait is spent on (adding the job, the queue, a move off a dead node, the run).
   */
  private async run<R>(nodeId: string, timeoutMs: number, what: string, id: string, put: (reply: ReplyTo) => Enqueued): Promise<{ value: R; blob?: Buffer }> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    // Also how a call on a lane is answered early (`orphans`): no promise of its own per call.
    let fail: (e: BruleeError) => void = () => undefined;
    const timeout = new Promise<never>((_, reject) => {
      fail = reject;
      const expire = () => {
        timedOut = true;
        reject(new BruleeError('TIMEOUT', `${what} did not finish within ${timeoutMs} ms (node ${nodeId}); raise the function's timeoutMs or add nodes`));
      };
      timer = setTimeout(() => {
        // A call of this process whose run ended in time has its answer promised (`GiveUp.commit`):
        // its caller waits for it, up to COMMITTED_WAIT_MS more (a Redis that does not answer its counts).
        if (job?.given?.abort() === false) timer = setTimeout(expire, COMMITTED_WAIT_MS);
        else expire();
      }, timeoutMs + ANSWER_MARGIN_MS);
    });
    timeout.catch(() => undefined);
    this.inFlight.set(nodeId, (this.inFlight.get(nodeId) ?? 0) + 1);
    let generation: number | undefined;
    let job: Enqueued | undefined;
    try {
      job = put({ id, replyTo: this.replies.key, answerTtlMs: timeoutMs + 60_000 });
      // Waited for before any answer can come: `put` only sends commands, and their replies (and
      // the reply stream's) are read in a later I/O callback.
      const answer = job.answer ?? this.replies.wait(id);
      answer.catch(() => undefined);
      const added = job.added;
      try {
        await Promise.race([added, timeout]);
      } catch (e) {
        // The script that queues a call may refuse it (admission). A refusal is the answer even
        // when the timer fired first (a blocked event loop runs due timers before it reads
        // Redis's reply): a refused call was never queued, so it did not time out.
        if (timedOut && !job.runs) {
          const outcome = await Promise.race([added.then(() => undefined, (x: unknown) => x), new Promise((r) => setTimeout(r, 1000, undefined))]);
          if (outcome instanceof BruleeError && REFUSED.has(outcome.code)) throw outcome;
        }
        throw e;
      }
      generation = this.added(nodeId);
      if (job.watched) this.watch(id, { nodeId, model: job.watched.model, takeBack: job.watched.takeBack, fail });
      const a = await Promise.race([answer, timeout]);
      return { value: unwrap<R>(a), ...('blob' in a && a.blob ? { blob: a.blob } : {}) };
    } finally {
      clearTimeout(timer);
      if (job?.watched) this.watched.delete(id);
      if (generation !== undefined) this.answered(nodeId, generation);
      this.replies.cancel(id);
      this.inFlight.set(nodeId, (this.inFlight.get(nodeId) ?? 1) - 1);
      // A job nobody waits for any more is taken back if no node has started it (a node also
      // skips an invocation it reaches past its deadline).
      if (timedOut) job?.takeBack().catch(() => undefined);
    }
  }

  /** Watches a sync call on a lane (or a load) while its caller waits (`orphans`, every `nodesRefreshMs` while any waits). */
  private watch(id: string, w: Watched): void {
    this.watched.set(id, w);
    if (this.laneWatch || this.closed) return;
    this.laneWatch = setInterval(() => {
      if (this.watched.size === 0) {
        clearInterval(this.laneWatch);
        this.laneWatch = undefined;
        return;
      }
      this.laneCheck ??= this.orphans()
        .catch(() => undefined)
        .finally(() => (this.laneCheck = undefined));
    }, this.opts.nodesRefreshMs);
    this.laneWatch.unref();
  }

  /**
   * Answers the sync calls (and loads) that wait on a node no longer live (silent for `deadAfterMs`, or gone)
   * when no live node can take them over either: the reaper leaves such a call where it is
   * (queue/reaper.ts), and its caller waited out its whole timeout for a 504. Each is taken back
   * from wherever a gone node holds it (so it never runs later, on a node that comes back, for a
   * caller that had its answer) and answered with routing's refusal (503 NO_NODE_AVAILABLE, with
   * Retry-After): at once when it was waiting (it never ran; its caller sends it again); one the
   * dead node had taken only after `restartGraceMs` more (`ORPHAN_GRACE` dead-after times), as the call may be what
   * killed it: a node restarted under the same NODE_ID (compose's `restart:`, a StatefulSet) takes
   * it back and runs it again, counting that death, and a call that kills node after node is given
   * up (queue/poison.ts), where callers resending it on each 503 would kill the node for ever. A
   * node that is only slow still beats, and keeps its calls; a call a live node can take is left
   * to the reaper, which moves it there.
   */
  private async orphans(): Promise<void> {
    const nodes = await this.nodes();
    const live = new Set(nodes.map((n) => n.id));
    const now = Date.now();
    let views: NodeView[] | undefined;
    let gone: string[] | undefined;
    for (const [id, w] of this.watched) {
      if (live.has(w.nodeId)) {
        w.orphanSince = undefined;
        continue;
      }
      views ??= nodes.map((n) => this.view(n));
      let refusal: BruleeError;
      try {
        chooseNode(views, modelKey(w.model), w.model.sizeBytes);
        w.orphanSince = undefined;
        continue;
      } catch (e) {
        if (!(e instanceof BruleeError)) throw e;
        refusal = e;
      }
      w.orphanSince ??= now;
      const taken = now - w.orphanSince >= this.opts.restartGraceMs;
      // Its node, and any it may have been moved to since that died too.
      gone ??= await this.opts.redis.hkeys(this.opts.keys.deadNodes);
      let back: boolean;
      try {
        back = await w.takeBack([w.nodeId, ...gone], taken);
      } catch (e) {
        // Its take-back is tried again on the next pass; the calls after it are not held back a
        // whole interval by it (one take-back that threw ended the pass).
        this.opts.log?.warn({ err: e, call: id, node: w.nodeId }, 'could not take a call back from a dead node: trying again on the next pass');
        continue;
      }
      if (back) {
        this.watched.delete(id);
        w.fail(refusal);
      }
    }
  }

  /**
   * Takes job `id` off the BullMQ queue of any of `nodeIds` (nodes that are gone): where it waits,
   * and with `taken` also where a node had taken it (its lock is the dead node's: dropped first, as
   * the reaper does). True when it was removed from one.
   */
  private async takeBackJob(nodeIds: readonly string[], id: string, taken: boolean): Promise<boolean> {
    for (const nodeId of new Set(nodeIds)) {
      const q = this.queueFor(nodeId);
      const state = await q.getJobState(id);
      if (state === 'unknown' || state === 'completed' || state === 'failed') continue;
      if (state === 'active' || state === 'waiting-children') return taken && removeDeadJob(this.opts.redis, this.opts.keys, q, nodeId, id);
      return (await q.remove(id)) === 1;
    }
    return false;
  }

  /** `put` for `run`: a job on the node's BullMQ queue (loads and unloads). */
  private onQueue(nodeId: string, name: string, data: object): (reply: ReplyTo) => Enqueued {
    return (reply) => {
      const queue = this.queueFor(nodeId);
      const id = reply.id;
      return { added: queue.add(name, { ...data, reply }, { ...JOB_OPTIONS, jobId: id }), takeBack: () => queue.remove(id) };
    };
  }

  /** Closes the queues of nodes that are gone (and that nobody here waits on). */
  private forgetDeadQueues(live: Set<string>): void {
    for (const [id, q] of this.queues) {
      if (live.has(id) || (this.inFlight.get(id) ?? 0) > 0) continue;
      this.queues.delete(id);
      this.inFlight.delete(id);
      void q.close().catch(() => undefined);
    }
  }

  private queueFor(nodeId: string): Queue {
    if (this.closed) throw new BruleeError('NO_NODE_AVAILABLE', 'the gateway is shutting down');
    let q = this.queues.get(nodeId);
    if (!q) {
      q = new Queue(this.opts.keys.nodeQueue(nodeId), { connection: this.opts.redis, prefix: this.opts.keys.bullPrefix, streams: { events: { maxLen: EVENTS_KEPT } } });
      // Connection trouble shows as failed commands (503) and in /healthz; unhandled, BullMQ would print it.
      q.on('error', () => undefined);
      this.queues.set(nodeId, q);
    }
    return q;
  }
}

/** The cache key of a model version: function name and content hash. */
export function modelKey(m: Pick<ModelRef, 'fn' | 'sha256'>): string {
  return `${m.fn}@${m.sha256.slice(0, 16)}`;
}
