import type { Redis } from 'ioredis';
import type { Keys } from '../queue/keys';
import type { EvictionEvent } from './warm-pool';
import { applyCounts } from '../queue/replies';
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
  await applyCounts(redis, invocationCommands(new StatsOps(), k, r));
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
 * The same writes as data, for a Lua script to apply (`queue/replies.ts` runs them in the script
 * that gives the job's answer: one command and one round trip per invocation, not two and eleven).
 * Per op: its command, the 1-based index of its key in `keys`, then two arguments; `LPUSHN` and
 * `ZREMN` (`merge`'s, for several calls at once) take a count and that many values instead.
 */
export class StatsOps implements StatsWriter {
  readonly keys: string[] = [];
  readonly args: Array<string | number | Buffer> = [];
  /** How many ops `args` holds. */
  count = 0;
  private readonly index = new Map<string, number>();
  hincrby(key: string, field: string, n: number) { this.op('HINCRBY', key, field, n); }
  hincrbyfloat(key: string, field: string, n: string) { this.op('HINCRBYFLOAT', key, field, n); }
  hset(key: string, field: string, value: number) { this.op('HSET', key, field, value); }
  lpush(key: string, value: string) { this.op('LPUSH', key, value, ''); }
  ltrim(key: string, start: number, stop: number) { this.op('LTRIM', key, start, stop); }
  del(key: string) { this.op('DEL', key, '', ''); }
  ifExists(key: string, write: () => void): void {
    const at = this.args.length;
    const before = this.count;
    this.op('IFEXISTS', key, 0, '');
    write();
    // How many of the ops that follow the script skips when `key` is missing.
    this.args[at + 2] = this.count - before - 1;
  }
  /** Removes one `value` from the list at `key` (a lane job from its node's active list). */
  lrem(key: string, value: Buffer) { this.op('LREM', key, 1, value); }
  /** Removes `member` (and the member '', which is never one). */
  zrem(key: string, member: string) { this.op('ZREM', key, member, ''); }
  /** Removes `member` from `set` and, if it was there, its bytes from `total` (queue/admission.ts). */
  giveBack(set: string, member: string, total: string) {
    const i = this.keyIndex(set);
    this.args.push('GIVEBACK', i, member, this.keyIndex(total));
    this.count++;
  }
  private op(cmd: string, key: string, a: string | number | Buffer, b: string | number | Buffer): void {
    this.args.push(cmd, this.keyIndex(key), a, b);
    this.count++;
  }
  private many(cmd: 'LPUSHN' | 'ZREMN', key: string, values: ReadonlyArray<string | number | Buffer>): void {
    this.args.push(cmd, this.keyIndex(key), values.length, ...values);
    this.count++;
  }
  private keyIndex(key: string): number {
    let i = this.index.get(key);
    if (i === undefined) {
      this.keys.push(key);
      this.index.set(key, (i = this.keys.length));
    }
    return i;
  }

  /**
   * The writes of several calls as one set of ops with the same effect as applying each in turn
   * (issue 10 §3: the counts of the calls answered in one turn go to Redis in one script). Ops under
   * the same `ifExists` key go under one check; a hash field's increments are summed (`HINCRBYFLOAT`'s
   * to the 3 decimals every count writes, so the sum is exact), its `HSET` keeps the last value, a
   * list's pushes become one push of them all in order followed by its trim, a set's removals one
   * removal. Other ops (`GIVEBACK`, `DEL`, `LREM`) are kept one by one, in order. Only ops that touch
   * different keys change order, or increments and sets of one hash's fields (which commute).
   */
  static merge(all: readonly StatsOps[]): StatsOps {
    if (all.length === 1) return all[0]!;
    type Slot = { cmd: string; key: string; a: string | number | Buffer; b: string | number | Buffer; sum?: number; values?: Array<string | number | Buffer> };
    const groups = new Map<string, Map<string, Slot>>();
    let kept = 0;
    for (const o of all) {
      let guard = '';
      let guarded = 0;
      for (let at = 0; at < o.args.length; ) {
        const cmd = o.args[at] as string;
        const key = o.keys[(o.args[at + 1] as number) - 1]!;
        const width = cmd === 'LPUSHN' || cmd === 'ZREMN' ? 3 + (o.args[at + 2] as number) : 4;
        const a = o.args[at + 2]!;
        const b = o.args[at + 3]!;
        if (cmd === 'IFEXISTS') {
          guard = key;
          guarded = a as number;
          at += width;
          continue;
        }
        const g = guarded > 0 ? guard : '';
        if (guarded > 0) guarded--;
        let slots = groups.get(g);
        if (!slots) groups.set(g, (slots = new Map()));
        const values = (): Array<string | number | Buffer> => (width === 4 ? [a as string] : o.args.slice(at + 3, at + width));
        let id: string;
        switch (cmd) {
          case 'HINCRBY':
          case 'HINCRBYFLOAT':
          case 'HSET':
            id = `${cmd}\0${key}\0${String(a)}`;
            break;
          case 'LPUSH':
          case 'LPUSHN':
            id = `LPUSHN\0${key}`;
            break;
          case 'ZREM':
          case 'ZREMN':
            id = `ZREMN\0${key}`;
            break;
          case 'LTRIM':
            id = `LTRIM\0${key}\0${String(a)}\0${String(b)}`;
            break;
          default:
            id = `${kept++}`;
        }
        const s = slots.get(id);
        if (!s) {
          const slot: Slot = { cmd, key, a, b: cmd === 'GIVEBACK' ? o.keys[(b as number) - 1]! : b };
          if (cmd === 'HINCRBY' || cmd === 'HINCRBYFLOAT') slot.sum = Number(b);
          if (id.startsWith('LPUSHN') || id.startsWith('ZREMN')) slot.values = values();
          slots.set(id, slot);
        } else if (s.sum !== undefined) s.sum += Number(b);
        else if (s.values) s.values.push(...values());
        else if (cmd === 'HSET') s.b = b;
        at += width;
      }
    }
    const out = new StatsOps();
    const emit = (slots: Map<string, Slot>) => {
      for (const s of slots.values()) {
        if (s.values) out.many(s.cmd === 'LPUSH' || s.cmd === 'LPUSHN' ? 'LPUSHN' : 'ZREMN', s.key, s.values);
        else if (s.cmd === 'HINCRBYFLOAT') out.op(s.cmd, s.key, s.a, s.sum!.toFixed(3));
        else if (s.cmd === 'HINCRBY') out.op(s.cmd, s.key, s.a, s.sum!);
        else if (s.cmd === 'GIVEBACK') out.giveBack(s.key, s.a as string, s.b as string);
        else out.op(s.cmd, s.key, s.a, s.b);
      }
    };
    for (const [g, slots] of groups) {
      if (g === '') emit(slots);
      else out.ifExists(g, () => emit(slots));
    }
    return out;
  }
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
