import type { Redis } from 'ioredis';
import type { Keys } from '../queue/keys';
import type { EvictionEvent } from './warm-pool';
import { applyCounts } from '../queue/replies';
import { StatsOps } from '../queue/writes';
import { TurnBatch } from '../queue/turn';

/** Latency samples kept per function and kind, for p50/p95. */
export const SAMPLES_KEPT = 1000;
/** Eviction records kept, newest first. */
export const EVICTIONS_KEPT = 500;

export interface InvocationRecord {
  fn: string;
  /**
   * `ok`, `error` (it ran or tried to load, and failed), `timeout` (skipped: reached past its
   * deadline), `prewarm` (a load with no invocation: asked for by the repository API, or the
   * eviction policy's prefetch), or `load` (the load alone: one started by a call that was then
   * refused, which another call waited for, node.ts `invokeHere`).
   */
  outcome: 'ok' | 'error' | 'timeout' | 'prewarm' | 'load';
  /** Whether the model was cold or warm for it; absent when it never got the model. */
  coldStart?: boolean;
  /** This record's job started a model load. */
  loaded: boolean;
  /** The whole load (fetch + session create) when `loaded`, else the wait for another's load. */
  loadMs: number;
  /**
   * Of `loadMs`, the time spent downloading the model bytes from the model store into the node's
   * local cache (0 when they were cached); present when `loaded`.
   */
  fetchMs?: number;
  execMs: number;
  /** Time in the queue, before a node took the job. */
  queueMs?: number;
  /**
   * With `ok`: whether this invocation counts the onnxruntime run that answered it. A run that
   * answered several batched callers is counted by one of them; a call that ran alone counts its own.
   */
  countsRun?: boolean;
  /** From the gateway's accepting the request to this record (queue, load, exec). */
  totalMs?: number;
}

/**
 * Cluster-wide counts in Redis, written by runtime nodes: what /stats reads. An invocation's go
 * in the script that gives its answer (`StatsOps`), so a client that got its answer sees it
 * counted; a load with no invocation (a prewarm) goes here, in one pipeline.
 */
export async function recordInvocation(redis: Redis, k: Keys, r: InvocationRecord): Promise<void> {
  await applyCounts(redis, k, invocationCommands(new StatsOps(), k, r));
}

/** The writes that count an invocation: an ioredis pipeline has them, and so does `StatsOps` (for a script). */
export interface StatsWriter {
  hincrby(key: string, field: string, n: number): unknown;
  hincrbyfloat(key: string, field: string, n: string): unknown;
  hset(key: string, field: string, value: number): unknown;
  lpush(key: string, value: string): unknown;
  ltrim(key: string, start: number, stop: number): unknown;
  /** Applies the writes `write` adds only if `key` exists when they run (a script's EXISTS); without it, always. */
  ifExists?(key: string, write: () => void): void;
}

/**
 * The counts of calls answered in this process (`RuntimeNode.invokeHere`), sent to Redis together
 * while other calls run here: those counted until the end of this turn of the event loop (a
 * `setImmediate`) leave in one script, their ops merged (`StatsOps.merge`). onnxruntime-node ends
 * each run in a `setImmediate` of its own, so under load each call was alone in its run of
 * microtasks and its counts were a script and a socket write of their own (14 commands, most of
 * them the same increments of the same hash). A call with no other running (a lone caller, a cold
 * start) is sent at once, as before: holding it would let the heartbeat that publishes its load
 * (held until after the answer, queue/held-writes.ts) go first. Each call's promise resolves when
 * its counts are written, so its answer still follows them on the wire: a caller that has its
 * answer sees it counted.
 */
export class CountsOut {
  private readonly batch: TurnBatch<{ id: string; writes: StatsOps }, undefined>;

  /**
   * `send(id, writes)` writes one batch (its id: the first call's, for its once-only marker) before
   * it returns; `othersRunning(n)` says whether calls other than the batch's `n` may still end in
   * this turn; `connection` gives the Redis connection `send` writes on (`TurnBatch`).
   */
  constructor(
    send: (id: string, writes: StatsOps) => void,
    private readonly othersRunning: (n: number) => boolean,
    connection?: () => Redis,
  ) {
    this.batch = new TurnBatch((calls) => {
      send(calls[0]!.id, StatsOps.merge(calls.map((c) => c.writes)));
      return calls.map(() => undefined);
    }, connection);
  }

  /** Sends a call's counts, or adds them to this turn's batch; resolves once they are written (not applied). */
  add(id: string, writes: StatsOps): Promise<void> {
    return this.batch.add({ id, writes }, !this.othersRunning(1));
  }
}

/** Adds the commands that count `r` to `p` (an ioredis pipeline, or `StatsOps` for a script). */
export function invocationCommands<W extends StatsWriter>(p: W, k: Keys, r: InvocationRecord): W {
  // Only while the function is registered (its registry key exists, checked in the script that
  // applies them): a call in flight at its function's deletion would otherwise write its counts
  // back after the registry deleted them, for good, or for a function registered again by its name.
  if (p.ifExists) p.ifExists(k.fn(r.fn), () => writeInvocation(p, k, r));
  else writeInvocation(p, k, r);
  return p;
}

function writeInvocation(p: StatsWriter, k: Keys, r: InvocationRecord): void {
  const key = k.fnStats(r.fn);
  if (r.loaded) {
    p.hincrby(key, 'loads', 1);
    p.lpush(k.fnSamples(r.fn, 'load'), r.loadMs.toFixed(3));
    p.ltrim(k.fnSamples(r.fn, 'load'), 0, SAMPLES_KEPT - 1);
    if (r.fetchMs !== undefined) {
      const createMs = Math.max(0, r.loadMs - r.fetchMs);
      p.lpush(k.fnSamples(r.fn, 'create'), createMs.toFixed(3));
      p.ltrim(k.fnSamples(r.fn, 'create'), 0, SAMPLES_KEPT - 1);
      if (r.fetchMs > 0) {
        p.hincrby(key, 'fetches', 1);
        p.lpush(k.fnSamples(r.fn, 'fetch'), r.fetchMs.toFixed(3));
        p.ltrim(k.fnSamples(r.fn, 'fetch'), 0, SAMPLES_KEPT - 1);
      }
    }
  }
  if (r.outcome === 'prewarm') {
    p.hincrby(key, 'prewarms', 1);
  } else if (r.outcome !== 'load') {
    p.hincrby(key, 'invocations', 1);
    p.hincrby(k.popularityCounts, r.fn, 1);
    if (r.outcome === 'timeout') p.hincrby(key, 'timeouts', 1);
    if (r.coldStart !== undefined) p.hincrby(key, r.coldStart ? 'coldStarts' : 'warmHits', 1);
    if (r.outcome === 'error') p.hincrby(key, 'failures', 1);
    if (r.outcome === 'ok') {
      p.lpush(k.fnSamples(r.fn, 'exec'), r.execMs.toFixed(3));
      p.ltrim(k.fnSamples(r.fn, 'exec'), 0, SAMPLES_KEPT - 1);
      // Sums for the load delay as a share of exec time (the paper's figure of merit), and for
      // the statistics extension (Triton's counts and durations).
      p.hincrbyfloat(key, 'execMsTotal', r.execMs.toFixed(3));
      if (r.countsRun) p.hincrby(key, 'executions', 1);
      if (r.coldStart) p.hincrbyfloat(key, 'loadWaitMsTotal', r.loadMs.toFixed(3));
      if (r.queueMs !== undefined) p.hincrbyfloat(key, 'queueMsTotal', r.queueMs.toFixed(3));
      p.hset(key, 'lastInference', Date.now());
    }
    if (r.totalMs !== undefined) p.hincrbyfloat(key, r.outcome === 'ok' ? 'successMsTotal' : 'failMsTotal', r.totalMs.toFixed(3));
  }
}

/**
 * Counts an eviction for its function and lists it among the recent ones. A deleted function's is
 * only listed: its counts went with it (functions/registry.ts, before the nodes unload it), and a
 * count now would bring them back, for good, or for a function registered again under its name.
 */
export async function recordEviction(redis: Redis, k: Keys, node: string, ev: EvictionEvent, at = Date.now()): Promise<void> {
  const p = redis.pipeline();
  if (ev.cause !== 'deleted') p.hincrby(k.fnStats(ev.fn), 'evictions', 1);
  await p
    .lpush(k.evictions, JSON.stringify({ at: new Date(at).toISOString(), node, ...ev }))
    .ltrim(k.evictions, 0, EVICTIONS_KEPT - 1)
    .exec();
}

export interface FunctionStats {
  invocations: number;
  failures: number;
  /** Invocations a node reached past their deadline and skipped (the caller had a 504). */
  timeouts: number;
  /** Model loads, prewarms included. */
  loads: number;
  /** Loads with no invocation: the repository API's load, or the policy's prefetch. */
  prewarms: number;
  coldStarts: number;
  warmHits: number;
  evictions: number;
  /** Loads that downloaded the model bytes from the model store (the node's local cache lacked them). */
  fetches: number;
  /**
   * onnxruntime runs that answered successful invocations: fewer than they when dynamic batching
   * merged callers into one run (Triton's execution_count).
   */
  executions: number;
  /** Exec time of successful invocations, summed, ms. */
  execMsTotal: number;
  /** Time successful invocations waited for a model load (cold starts), summed, ms. */
  loadWaitMsTotal: number;
  /** Whole loads: fetch (when the bytes were not cached) + session create. */
  loadMs: { p50: number | null; p95: number | null; samples: number };
  /** Downloads from the model store, of the loads that needed one. */
  fetchMs: { p50: number | null; p95: number | null; samples: number };
  /** onnxruntime session creates (a load less its fetch). */
  createMs: { p50: number | null; p95: number | null; samples: number };
  execMs: { p50: number | null; p95: number | null; samples: number };
  /** Successful invocations end to end (from the gateway's accepting them), summed, ms. */
  successMsTotal: number;
  /** Failed and timed-out invocations end to end, summed, ms. */
  failMsTotal: number;
  /** Time successful invocations waited in the queue, summed, ms. */
  queueMsTotal: number;
  /** When the last successful invocation finished (epoch ms), 0 when none has. */
  lastInference: number;
}

export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function readFunctionStats(redis: Redis, k: Keys, fn: string): Promise<FunctionStats> {
  const res = await redis
    .pipeline()
    .hgetall(k.fnStats(fn))
    .lrange(k.fnSamples(fn, 'load'), 0, -1)
    .lrange(k.fnSamples(fn, 'exec'), 0, -1)
    .lrange(k.fnSamples(fn, 'fetch'), 0, -1)
    .lrange(k.fnSamples(fn, 'create'), 0, -1)
    .exec();
  const h = (res?.[0]?.[1] ?? {}) as Record<string, string>;
  const dist = (i: number) => {
    const xs = ((res?.[i]?.[1] ?? []) as string[]).map(Number).sort((a, b) => a - b);
    return { p50: percentile(xs, 50), p95: percentile(xs, 95), samples: xs.length };
  };
  const n = (f: string) => Number(h[f] ?? 0);
  return {
    invocations: n('invocations'),
    failures: n('failures'),
    timeouts: n('timeouts'),
    loads: n('loads'),
    prewarms: n('prewarms'),
    coldStarts: n('coldStarts'),
    warmHits: n('warmHits'),
    evictions: n('evictions'),
    fetches: n('fetches'),
    executions: n('executions'),
    execMsTotal: n('execMsTotal'),
    loadWaitMsTotal: n('loadWaitMsTotal'),
    loadMs: dist(1),
    fetchMs: dist(3),
    createMs: dist(4),
    execMs: dist(2),
    successMsTotal: n('successMsTotal'),
    failMsTotal: n('failMsTotal'),
    queueMsTotal: n('queueMsTotal'),
    lastInference: n('lastInference'),
  };
}

/** An eviction as `/stats` lists it: when (ISO time), on which node, and the pool's event. */
export interface EvictionRecord extends EvictionEvent {
  at: string;
  node: string;
}

export async function recentEvictions(redis: Redis, k: Keys, n = 50): Promise<EvictionRecord[]> {
  return (await redis.lrange(k.evictions, 0, n - 1)).map((s) => JSON.parse(s) as EvictionRecord);
}
