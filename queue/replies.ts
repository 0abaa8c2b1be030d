import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BruleeError, errorFromWire } from '../errors';
import { createRedis, redisUnavailable } from './connection';
import type { Keys } from './keys';
import { answerOf, admitNowArgs, LUA_ADMIT_NOW, LUA_GIVE_BACK, type Admission, type AdmissionRequest } from './admission';
import { LUA_NOW, Script } from './scripts';
import { freeNow } from './free';
import { decodeFrame, encodeFrame, type BlobWriter } from './wire';

/**
 * Answers travel apart from the queues, keyed by the invocation's id, so that the answer does not
 * depend on which node's queue the job finished on (a job is moved when its node dies):
 *
 * - a sync call's answer goes onto its gateway's reply stream (`replyTo`), which that gateway
 *   reads with one blocking XREAD for all its calls;
 * - an async call's answer is stored under `result:<id>`, where `GET /invocations/{id}` finds it.
 *
 * Either way the first answer wins, atomically (SET NX in one script): a job run twice (its node
 * was declared dead while it ran, and it ran again elsewhere) is counted as a duplicate run and its
 * second answer is dropped. Never two answers for one call.
 */
export type Answer = { ok: unknown; blob?: Buffer } | { error: string };

/** An answer on its way out: its blob may be written straight into the frame (`layoutTensors`). */
export type OutgoingAnswer = { ok: unknown; blob?: Uint8Array | BlobWriter } | { error: string };

/**
 * An answer as it crosses Redis, one frame (`encodeFrame`): the answer's JSON without its blob,
 * then the blob's raw bytes (an invocation's output tensors, `packTensors`). No base64, no JSON
 * for tensor data.
 */
export function encodeAnswer(a: OutgoingAnswer, token?: string): Buffer {
  const { blob, ...rest } = 'ok' in a ? a : { ...a, blob: undefined };
  return encodeFrame(token === undefined ? rest : { ...rest, token }, blob);
}

/** The inverse of `encodeAnswer`; the blob is a view of `buf` (absent when empty). */
export function decodeAnswer(buf: Buffer): Answer {
  const { head, blob } = decodeFrame<Answer>(buf);
  if ('ok' in head && blob) head.blob = blob;
  return head;
}

/** Where and how long a job's answer goes. */
export interface ReplyTo {
  /** The invocation's id (the BullMQ job id on whichever queue it sits). */
  id: string;
  /** The gateway's reply stream; absent for an async call. */
  replyTo?: string;
  /** How long the answer (async) or the answered-marker (sync) is kept, ms. */
  answerTtlMs: number;
}

/**
 * Writes that go with an answer, in the same script (a node's counts of the invocation, the
 * deletion of its input key, its admission place given back): per write four arguments, its
 * command (HINCRBY, HINCRBYFLOAT, HSET, LPUSH, LTRIM, LREM, DEL, ZREM, GIVEBACK whose second argument
 * is the index of the bytes counter, IFEXISTS whose first argument is how many of the writes
 * after it are skipped when its key does not exist, or HELD, first, whose second argument is removed
 * from its list, and when it was not there, nothing is written, the answer neither, or LOCKED,
 * first, the same when its key does not hold its second argument), the 1-based index of its key in `keys`, and
 * two arguments (unused ones ''); or LPUSHN and ZREMN (several calls' writes merged,
 * `StatsOps.merge`): the command, its key's index, a count, then that many values.
 */
export interface WithAnswer {
  keys: readonly string[];
  args: ReadonlyArray<string | number | Buffer>;
  /** How many writes `args` holds. */
  count: number;
}

/**
 * `applyWrites(base, at, n)`: applies the `n` writes of `WithAnswer`'s form found from ARGV[at] on,
 * their keys at KEYS[base + index]. Needs `giveBack` (LUA_GIVE_BACK) before it.
 */
const LUA_APPLY_WRITES = `-- ARGV[from..to] as the values of one command each 4 000 (Lua's unpack takes ~8 000 at most; a
-- turn's merged counts can hold more, one exec sample and one place a call).
local function each(cmd, key, from, to)
  for i = from, to, 4000 do redis.call(cmd, key, unpack(ARGV, i, math.min(i + 3999, to))) end
end
local function applyWrites(base, at, n)
  local skip = 0
  for i = 1, n do
    local op, key = ARGV[at], KEYS[base + tonumber(ARGV[at + 1])]
    local width = 4
    if op == 'LPUSHN' or op == 'ZREMN' then width = 3 + tonumber(ARGV[at + 2]) end
    if skip > 0 then skip = skip - 1
    elseif op == 'HELD' then
      if redis.call('LREM', key, 1, ARGV[at + 3]) == 0 then return false end
    elseif op == 'LOCKED' then
      if redis.call('GET', key) ~= ARGV[at + 3] then return false end
    elseif op == 'IFEXISTS' then
      if redis.call('EXISTS', key) == 0 then skip = tonumber(ARGV[at + 2]) end
    elseif op == 'LPUSH' then redis.call('LPUSH', key, ARGV[at + 2])
    elseif op == 'LPUSHN' then each('LPUSH', key, at + 3, at + width - 1)
    elseif op == 'ZREMN' then each('ZREM', key, at + 3, at + width - 1)
    elseif op == 'DEL' then redis.call('DEL', key)
    elseif op == 'GIVEBACK' then giveBack(key, ARGV[at + 2], KEYS[base + tonumber(ARGV[at + 3])])
    else redis.call(op, key, ARGV[at + 2], ARGV[at + 3]) end
    at = at + width
  end
  return true
end`;

// KEYS: the answered marker (sync) or result key (async), the reply stream (sync; else the result
// key again), the cluster counters, the tokens of the answers given after the first (`Keys.again`),
// then the keys of the writes that go with it.
// ARGV: answer, ttl ms, id, 'sync'|'async'|'none' (the writes alone, once per id: KEYS[1] is then
// their marker, a call's answered marker or the counted marker of counts with no call), or
// 'sync-first'|'async-first' (nothing at all, writes included, when the call has its answer
// already), the answer's token ('' with the writes alone), number of writes, then four per write.
// An answer is this token's: the marker holds it (sync), the result holds the answer, which
// carries it (async), or, given after the first, the again-set holds it. Found so, this very
// answer was sent again (ioredis resends a script whose reply its connection lost; a node retries
// one that failed): what it did then stands, and nothing is written twice.
const DELIVER = new Script(`${LUA_GIVE_BACK}
${LUA_APPLY_WRITES}
local mode, token = ARGV[4], ARGV[5]
local async = mode == 'async' or mode == 'async-first'
if token ~= '' then
  local v = redis.call('GET', KEYS[1])
  if v and v ~= 'q' then
    if v == (async and ARGV[1] or token) then return 1 end
    if redis.call('SISMEMBER', KEYS[4], token) == 1 then return 0 end
  end
end
-- A sync call's marker may hold 'q' (its job queued, queue/lane.ts pushJob): answered only once it holds a token.
local function answered()
  local v = redis.call('GET', KEYS[1])
  return v and v ~= 'q'
end
if mode == 'async-first' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif mode == 'sync-first' then
  if answered() then return 0 end
  mode = 'sync'
end
if mode == 'none' and not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return 0 end
if not applyWrites(4, 7, tonumber(ARGV[6])) then return -1 end
if mode == 'none' then return 1 end
-- A second run of the call (at-least-once): counted, its answer dropped, and its token kept.
local function again()
  redis.call('HINCRBY', KEYS[3], 'duplicateRuns', 1)
  redis.call('SADD', KEYS[4], token)
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
  return 0
end
if async then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return again() end
  return 1
end
if answered() then return again() end
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'a', ARGV[1])
redis.call('PEXPIRE', KEYS[2], 3600000)
return 1`);

// KEYS: the call's answered marker, admission's three keys (`admitNowArgs`), then the writes' keys.
// ARGV: the marker's ttl ms, admission's three arguments, the number of writes, then the writes.
// Returns `admitNow`'s answer; the writes are applied (once per id) only when admitted. A script
// sent again after a reconnect (its reply lost) finds the marker: admitted, nothing written twice.
const ADMIT_AND_APPLY = new Script(`${LUA_NOW}
${LUA_GIVE_BACK}
${LUA_ADMIT_NOW}
${LUA_APPLY_WRITES}
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0, 0} end
local a = admitNow(KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if a[1] ~= 1 then return a end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
applyWrites(4, 6, tonumber(ARGV[5]))
return a`);

/**
 * A node's side: gives the job's answer, unless it was given already, and applies `also` (its
 * counts) first either way, in one script: one command, one round trip. Resolves to whether this
 * was the first answer. With `onlyFirst` (an answer for a job nobody ran to its end, given up), a
 * job answered already gets nothing, `also` included, and is not counted as a duplicate run.
 */
export async function deliver(redis: Redis, k: Keys, to: ReplyTo, answer: OutgoingAnswer, also?: WithAnswer, onlyFirst = false, token?: string): Promise<boolean> {
  return (await delivered(redis, k, to, answer, also, onlyFirst, token)) === 'first';
}

/**
 * `deliver`, saying also when nothing was written: `also` began with `StatsOps.held` (or `locked`)
 * and the job was no longer its node's ('not held'); else 'first' or 'again' (answered already).
 * `token` names this answer: sent again with it (a retry after a failed send), it writes nothing
 * twice and resolves as it did the first time, as the script ioredis resends after a reconnect does.
 */
export async function delivered(redis: Redis, k: Keys, to: ReplyTo, answer: OutgoingAnswer, also?: WithAnswer, onlyFirst = false, token: string = randomUUID()): Promise<'first' | 'again' | 'not held'> {
  // An async answer carries its token: the result key holds it, no marker.
  const payload = encodeAnswer(answer, to.replyTo ? undefined : token);
  const ttl = Math.max(1000, Math.ceil(to.answerTtlMs));
  const keys = to.replyTo ? [k.answered(to.id), to.replyTo, k.cluster, k.again(to.id)] : [k.result(to.id), k.result(to.id), k.cluster, k.again(to.id)];
  const mode = to.replyTo ? (onlyFirst ? 'sync-first' : 'sync') : onlyFirst ? 'async-first' : 'async';
  const args: Array<string | number | Buffer> = [payload, ttl, to.id, mode, token, also?.count ?? 0];
  if (also) {
    keys.push(...also.keys);
    args.push(...also.args);
  }
  const r = Number(await DELIVER.run(redis, keys, args));
  // Sent and answered: no one reads the frame again (a failed send may be resent, so only now).
  freeNow([payload]);
  return r === 1 ? 'first' : r === -1 ? 'not held' : 'again';
}

/**
 * The writes that go with an answer, without one: a call answered in the process that runs it
 * (`RuntimeNode.invokeHere`) is counted by the same script, in one command, sent in order with the
 * connection's other commands (its caller does not wait for it; later reads must see it).
 */
export async function applyWrites(redis: Redis, k: Keys, id: string, writes: WithAnswer): Promise<void> {
  if (writes.args.length === 0) return;
  // Applied once per invocation id (its answered-marker, as `deliver` keeps), so a retry after a
  // reply lost with the connection does not count the call twice.
  // Written before this returns (an answer follows at once, and a read on another connection
  // after the answer must see these counts); waited for only by the caller's retries.
  const once = writesOnce(k, k.answered(id), id, writes);
  await DELIVER.runInOrder(redis, once.keys, once.args);
}

/**
 * A call that ran already (`RuntimeNode.invokeHere`, a lone call that could start at once) admitted
 * and counted in one script: `admitNow` decides its admission, and only an admitted call's writes
 * are applied (once per id). One round trip where a separate admission, sent before the run, and
 * counts, after it, took two; the call holds no place while it runs (a run of a resident model,
 * started with a slot free). Resolves to the admission.
 */
export async function admitAndApply(redis: Redis, k: Keys, id: string, writes: WithAnswer, r: AdmissionRequest): Promise<Admission> {
  const a = admitNowArgs(r);
  const out = await ADMIT_AND_APPLY.run(redis, [k.answered(id), ...a.keys, ...writes.keys], [ANSWERED_MARKER_MS, ...a.args, writes.count, ...writes.args]);
  return answerOf(r, out as number[]);
}

/**
 * Writes with no invocation behind them (a prewarm by the policy, a load counted apart), in one
 * script: one command, applied once however often it is sent (ioredis sends a script whose reply
 * its connection lost again once it reconnects): it sets a marker of its own (`Keys.counted`).
 */
export async function applyCounts(redis: Redis, k: Keys, writes: WithAnswer): Promise<void> {
  if (writes.args.length === 0) return;
  const token = randomUUID();
  const once = writesOnce(k, k.counted(token), token, writes);
  await DELIVER.run(redis, once.keys, once.args);
}

/** How long the marker of a call counted by `applyWrites` (or of counts, `applyCounts`) is kept: longer than its retries (50 × 200 ms) and a reconnect's resend. */
const ANSWERED_MARKER_MS = 60_000;

/**
 * DELIVER's keys and arguments for `writes` alone, applied once per `marker` (mode 'none': the
 * script sets it, and finds it set when the same writes come again); `id` fills the call's place
 * (not read in that mode), as the cluster key fills the stream's, counters' and again-set's.
 */
function writesOnce(k: Keys, marker: string, id: string, writes: WithAnswer): { keys: string[]; args: Array<string | number | Buffer> } {
  return { keys: [marker, k.cluster, k.cluster, k.cluster, ...writes.keys], args: ['', ANSWERED_MARKER_MS, id, 'none', '', writes.count, ...writes.args] };
}

/**
 * Whether the call `to` has its answer already: a sync call's answered marker is set, and not to
 * 'q' (queued), an async call's result is there. A read, so another may answer it right after; for
 * a job that need not run again (its node answered it and died before BullMQ finished it), not for
 * the answer itself.
 */
export async function hasAnswer(redis: Redis, k: Keys, to: ReplyTo): Promise<boolean> {
  if (!to.replyTo) return (await redis.exists(k.result(to.id))) === 1;
  const v = await redis.get(k.answered(to.id));
  return v !== null && v !== 'q';
}

/** An async invocation's answer, if it has one yet. */
export async function readAnswer(redis: Redis, k: Keys, id: string): Promise<Answer | undefined> {
  const raw = await redis.getBuffer(k.result(id));
  return raw === null ? undefined : decodeAnswer(raw);
}

/** The value of an answer, or its error rebuilt with its code. */
export function unwrap<T>(a: Answer): T {
  if ('error' in a) throw errorFromWire(a.error);
  return a.ok as T;
}

interface Waiter {
  resolve(a: Answer): void;
  reject(e: BruleeError): void;
}

/**
 * A gateway's side: one blocking connection reads the gateway's reply stream and hands each answer
 * to the call waiting for it. Register with `wait` before the job is added, so no answer can come
 * first. When the connection to Redis drops, every waiting call fails at once with 503
 * (REDIS_UNAVAILABLE) rather than waiting out its deadline; its job may still run.
 */
export class ReplyReader {
  readonly key: string;
  private readonly waiters = new Map<string, Waiter>();
  private readonly conn: Redis;
  private lastId = '0-0';
  private running = true;
  private loop: Promise<void>;

  constructor(redisUrl: string, k: Keys, gatewayId: string) {
    this.key = k.replies(gatewayId);
    this.conn = createRedis(redisUrl, { name: `brulee-replies-${gatewayId}` });
    this.conn.on('close', () => this.failAll(redisUnavailable(new Error('the connection to Redis closed while the call waited for its answer'))));
    this.loop = this.read();
  }

  /** The answer of job `id`, when it comes. Call before adding the job. */
  wait(id: string): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => this.waiters.set(id, { resolve, reject }));
  }

  /** Stops waiting for `id` (timed out, or the job could not be added). */
  cancel(id: string): void {
    this.waiters.delete(id);
  }

  get waiting(): number {
    return this.waiters.size;
  }

  async close(): Promise<void> {
    this.running = false;
    this.conn.disconnect();
    await this.loop;
    this.failAll(new BruleeError('NO_NODE_AVAILABLE', 'the gateway is shutting down'));
  }

  private failAll(e: BruleeError): void {
    const all = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of all) w.reject(e);
  }

  private async read(): Promise<void> {
    // What was read is no longer needed: the stream holds only answers not yet read. The trim goes
    // out with the next XREAD, in one write and one round trip (MINID keeps ids from the one given
    // on, so trim from just past the last one read, or a large answer would stay in Redis until the
    // next one).
    let trimFrom: string | undefined;
    while (this.running) {
      let res: Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
      try {
        if (trimFrom === undefined) {
          res = (await this.conn.xreadBuffer('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.key, this.lastId)) as typeof res;
        } else {
          const out = await this.conn.pipeline().xtrim(this.key, 'MINID', trimFrom).xreadBuffer('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.key, this.lastId).exec();
          trimFrom = undefined;
          const [err, value] = out?.[1] ?? [new Error('no reply to XREAD')];
          if (err) throw err;
          res = value as typeof res;
        }
      } catch {
        if (!this.running) return;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const entries = res?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      for (const [entryId, fields] of entries) {
        this.lastId = entryId.toString();
        let id: string | undefined;
        let raw: Buffer | undefined;
        for (let i = 0; i + 1 < fields.length; i += 2) {
          const f = fields[i]!.toString();
          if (f === 'id') id = fields[i + 1]!.toString();
          else if (f === 'a') raw = fields[i + 1];
        }
        const w = id === undefined ? undefined : this.waiters.get(id);
        if (!w || raw === undefined) continue;
        this.waiters.delete(id!);
        w.resolve(decodeAnswer(raw));
      }
      const [ms, seq] = this.lastId.split('-');
      trimFrom = `${ms}-${BigInt(seq ?? '0') + 1n}`;
    }
  }
}
