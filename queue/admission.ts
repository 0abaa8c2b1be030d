import type { Redis } from 'ioredis';
import { BruleeError } from '../errors';
import { LUA_NOW, Script } from './scripts';
import { TurnBatch } from './turn';

/**
 * Admission, counted cluster-wide in Redis, by two measures (either may be off):
 *
 * - a function's queue depth: a sorted set per function holds one member per accepted invocation
 *   not yet answered, scored by the Redis time past which it cannot be waiting any more (its
 *   deadline); MAX_QUEUED_PER_FUNCTION bounds its size;
 * - the bytes of inputs waiting in Redis, all functions together: one sorted set holds the same
 *   member with its input bytes written after it (`<id>:<bytes>`), scored by the same deadline,
 *   beside a counter of their sum; MAX_QUEUED_INPUT_BYTES bounds the sum (a call alone in the
 *   queue is admitted whatever its size: the request limits bound it).
 *
 * A call is admitted, and added, in one script, so concurrent gateways cannot both take the last
 * place. Its place is given back when the call's answer is given (the node does it in the script
 * that delivers the answer and deletes the inputs: answered or failed, on whichever node ran it,
 * after a failover too), when the gateway gives up on it (its timeout, or an error before any node
 * answered), and in any case at its deadline (a gateway that died). Each way gives the bytes back
 * only if it removed the member, so they are given back once.
 */

/** `giveBack(set, member, total)`: removes `member` from `set` and, if it was there, its bytes from `total`. For scripts. */
export const LUA_GIVE_BACK = `local function giveBack(set, member, total)
  if redis.call('ZREM', set, member) == 1 then
    redis.call('DECRBY', total, tonumber(string.match(member, ':(%d+)$')))
  end
end`;

/** `placed(set, bytesSet, member, depthLimit, bytesLimit, bytes)`: whether `member` already holds its place (a script run again). */
const LUA_PLACED = `local function placed(set, bytesSet, member, depthLimit, bytesLimit, bytes)
  if depthLimit > 0 then return redis.call('ZSCORE', set, member) ~= false end
  return bytesLimit > 0 and redis.call('ZSCORE', bytesSet, member .. ':' .. bytes) ~= false
end`;

/**
 * The first write of an admission script, `key` a sorted set of the script's: one Redis refuses
 * under OOM (maxmemory, noeviction), writing nothing. Redis refuses a legacy script's write that
 * may take memory (ZADD, INCRBY, LPUSH) only while the script has called no write command: past
 * the first, it lets every write through so as not to stop a script halfway. The admission's first
 * write was the clean-up of expired places (ZREMRANGEBYSCORE, even removing nothing; a bytes
 * place's ZREM), which Redis does not refuse, so under OOM the call was admitted and its job
 * queued past maxmemory. This ZADD XX of the member '' (never one) changes nothing, and makes the
 * script fail at once under OOM, as a write-flagged script (`#!lua`) would, which Redis < 7
 * (BLMOVE needs 6.2) cannot run. Reads before it are fine.
 */
const luaRefusedUnderOom = (key: string) => `redis.call('ZADD', ${key}, 'XX', 0, '')`;

/**
 * The admission decision, one fragment for every script that decides one (`admitScript`,
 * `ADMIT_MANY`, `LUA_ADMIT_NOW`): what is counted (expired places cleaned first) and when a limit
 * is full. Needs `now` (LUA_NOW) and `giveBack` (LUA_GIVE_BACK) before it.
 *
 * - `depthNow(set)`: the function's calls that hold a place, its expired places removed;
 * - `bytesNow(bytesSet, total)`: the input bytes waiting, up to 1 000 expired places given back
 *   first, and whether it took 1 000 (more may be left);
 * - `depthFull(n, depthLimit)`, `bytesFull(queued, bytes, bytesLimit)`: whether a call is refused
 *   (a call alone in the queue, `queued` 0, is admitted whatever its size).
 */
const LUA_DECIDE = `local function depthNow(set)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  return redis.call('ZCARD', set)
end
local function bytesNow(bytesSet, total)
  local old = redis.call('ZRANGEBYSCORE', bytesSet, '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(old) do giveBack(bytesSet, m, total) end
  return tonumber(redis.call('GET', total) or '0'), #old == 1000
end
local function depthFull(n, depthLimit) return depthLimit > 0 and n >= depthLimit end
local function bytesFull(queued, bytes, bytesLimit) return bytesLimit > 0 and queued > 0 and queued + bytes > bytesLimit end`;

// KEYS: the function's set, the bytes set, the bytes counter (then what `onAdmit` uses).
// ARGV: depth limit (0: off), member id, hold ms, bytes limit (0: off), bytes (then what `onAdmit` uses).
// Returns {1, depth, bytes} when admitted (after running `onAdmit`); {0, depth} when the function is full; {-1, bytes} when the bytes are.
// A script run again for the same member (ioredis sends a command again after a reconnect when the
// dropped connection lost its reply, though Redis had run it) finds its place there: admitted again,
// nothing counted or queued twice (LUA_PLACED). `first` runs before anything is written (a check
// that may answer at once).
const admitScript = (onAdmit = '', first = '') => new Script(`${LUA_NOW}
${LUA_GIVE_BACK}
${LUA_PLACED}
${LUA_DECIDE}
${first}
${luaRefusedUnderOom('KEYS[2]')}
local depthLimit, hold, bytesLimit, bytes = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = 0
if depthLimit > 0 then
  n = depthNow(KEYS[1])
  if depthFull(n, depthLimit) then
    if placed(KEYS[1], KEYS[2], ARGV[2], depthLimit, bytesLimit, bytes) then return {1, n, 0} end
    return {0, n}
  end
end
local queued, fresh = 0, true
if bytesLimit > 0 then
  queued = bytesNow(KEYS[2], KEYS[3])
  if bytesFull(queued, bytes, bytesLimit) then
    if placed(KEYS[1], KEYS[2], ARGV[2], depthLimit, bytesLimit, bytes) then return {1, n, queued} end
    return {-1, queued}
  end
  fresh = redis.call('ZADD', KEYS[2], 'NX', now + hold, ARGV[2] .. ':' .. bytes) == 1
  if fresh then redis.call('INCRBY', KEYS[3], bytes) end
  -- The counter lives exactly as long as the set, so neither outlives the other.
  if redis.call('PTTL', KEYS[2]) < hold + 60000 then
    redis.call('PEXPIRE', KEYS[2], hold + 60000)
    redis.call('PEXPIRE', KEYS[3], hold + 60000)
  end
end
if depthLimit > 0 then
  if redis.call('ZADD', KEYS[1], now + hold, ARGV[2]) == 0 then fresh = false end
  if redis.call('PTTL', KEYS[1]) < hold + 60000 then redis.call('PEXPIRE', KEYS[1], hold + 60000) end
end
if fresh then
${onAdmit}
end
return {1, n + 1, queued + bytes}`);
const ADMIT = admitScript();
// KEYS[4]: a node's lane; KEYS[5]: the call's answered marker (queue/replies.ts); ARGV[6]: a job
// (queue/lane.ts). The job is queued only if admitted (once). Its place is given back when it is
// answered, so a script run again after that (the node was quicker than the reconnect) would find
// no place and take a new one, queuing the job again (run and counted twice, a place held to its
// deadline): the answered marker, set in the answer's script and kept past the deadline, says the
// call is done, and nothing is written.
const ADMIT_AND_PUSH = admitScript(`redis.call('LPUSH', KEYS[4], ARGV[6])`, `if redis.call('EXISTS', KEYS[5]) == 1 then return {1, 0, 0} end`);

/** An admitted invocation's place: its member in its function's set and/or in the bytes set. */
export interface AdmissionTicket {
  /** The function's set (absent when its depth is not limited). */
  key?: string;
  member: string;
  /** The bytes set and its counter, and the member there (`<member>:<bytes>`); absent when bytes are not limited. */
  bytes?: { key: string; total: string; member: string };
}

/** Where admission keeps its counts. */
export interface AdmissionKeys {
  /** The function's set. */
  depth: string;
  /** The set of input bytes waiting, and their sum. */
  bytes: string;
  bytesTotal: string;
}

export interface AdmissionLimits {
  /** Invocations of the function at once (0: no limit). */
  depth: number;
  /** Input bytes waiting, all functions (0: no limit). */
  bytes: number;
}

export type Admission =
  | { admitted: true; ticket: AdmissionTicket }
  | { admitted: false; full: 'depth'; queued: number }
  | { admitted: false; full: 'bytes'; queuedBytes: number };

/** What admission needs to know of one invocation. */
export interface AdmissionRequest {
  keys: AdmissionKeys;
  /** The invocation's place (unique). */
  member: string;
  limits: AdmissionLimits;
  /** Its input bytes (counted when bytes are limited). */
  bytes: number;
  /** How long its place is held at most, ms (past it, the place is free again). */
  holdMs: number;
}

/** The place an admitted request holds (known before it is admitted: a job carries it). */
export function ticketOf(r: AdmissionRequest): AdmissionTicket {
  // Set field by field: built by spreading conditional objects it took ~6 µs (node 20, measured
  // alone), and a call builds two.
  const t: AdmissionTicket = { member: r.member };
  if (r.limits.depth > 0) t.key = r.keys.depth;
  if (r.limits.bytes > 0) t.bytes = { key: r.keys.bytes, total: r.keys.bytesTotal, member: `${r.member}:${size(r.bytes)}` };
  return t;
}

const size = (bytes: number) => Math.max(0, Math.ceil(bytes));

/**
 * Takes a place for one invocation, held for at most `holdMs`, or says which limit is full. With
 * `push`, the same script queues the job on a node's lane when admitted: one round trip for both;
 * `answered` is the call's answered marker (`Keys.answered`): once it is set, the call is not
 * admitted or queued again (a script sent again after a reconnect).
 */
export async function admit(redis: Redis, r: AdmissionRequest, push?: { lane: string; job: Buffer; answered: string }): Promise<Admission> {
  const { keys, limits } = r;
  const hold = Math.max(1, Math.ceil(r.holdMs));
  const args: Array<string | number | Buffer> = [limits.depth, r.member, hold, limits.bytes, size(r.bytes)];
  const ks = [keys.depth, keys.bytes, keys.bytesTotal];
  return answerOf(r, (push ? await ADMIT_AND_PUSH.run(redis, [...ks, push.lane, push.answered], [...args, push.job]) : await ADMIT.run(redis, ks, args)) as number[]);
}

// KEYS: the bytes set, the bytes counter, then the functions' sets. ARGV: the number of calls, then
// per call: the index of its function's set among them (1-based), then `admitScript`'s five ARGV.
// Each call is decided as `admitScript` would, in order, as if each ran alone back to back; a
// function's set is cleaned of expired members and counted once, the bytes set cleaned (1 000 at a
// time, as `admitScript` does) and read once unless more were left, and expiries are pushed once per key.
// Returns one `admitScript` answer per call.
const ADMIT_MANY = new Script(`${LUA_NOW}
${LUA_GIVE_BACK}
${LUA_PLACED}
${LUA_DECIDE}
${luaRefusedUnderOom('KEYS[1]')}
local counts, holds = {}, {}
-- clean: whether the next call with a bytes limit cleans expired places first: the first does, and
-- each after one whose clean-up took its 1 000 (more may be left; alone, each call takes 1 000).
local clean, queued, added, bytesHold = true, 0, 0, 0
local function one(at)
  local key = KEYS[2 + tonumber(ARGV[at])]
  local depthLimit, member, hold, bytesLimit, bytes = tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5])
  local n = 0
  if depthLimit > 0 then
    n = counts[key]
    if n == nil then n = depthNow(key) end
    counts[key] = n
    if depthFull(n, depthLimit) then
      if placed(key, KEYS[1], member, depthLimit, bytesLimit, bytes) then return {1, n, 0} end
      return {0, n}
    end
  end
  local q = 0
  if bytesLimit > 0 then
    if clean then
      queued, clean = bytesNow(KEYS[1], KEYS[2])
      queued = queued + added
    end
    if bytesFull(queued, bytes, bytesLimit) then
      if placed(key, KEYS[1], member, depthLimit, bytesLimit, bytes) then return {1, n, queued} end
      return {-1, queued}
    end
    q = queued
    if redis.call('ZADD', KEYS[1], 'NX', now + hold, member .. ':' .. bytes) == 1 then
      queued = queued + bytes
      added = added + bytes
    end
    if hold > bytesHold then bytesHold = hold end
  end
  if depthLimit > 0 then
    if redis.call('ZADD', key, now + hold, member) == 1 then counts[key] = n + 1 end
    if hold > (holds[key] or 0) then holds[key] = hold end
  end
  return {1, n + 1, q + bytes}
end
local out = {}
for i = 1, tonumber(ARGV[1]) do out[i] = one(2 + 6 * (i - 1)) end
if added > 0 then redis.call('INCRBY', KEYS[2], added) end
if bytesHold > 0 and redis.call('PTTL', KEYS[1]) < bytesHold + 60000 then
  redis.call('PEXPIRE', KEYS[1], bytesHold + 60000)
  redis.call('PEXPIRE', KEYS[2], bytesHold + 60000)
end
for key, hold in pairs(holds) do
  if redis.call('PTTL', key) < hold + 60000 then redis.call('PEXPIRE', key, hold + 60000) end
end
return out`);

/**
 * `admitNow(set, bytesSet, total, depthLimit, bytesLimit, bytes)`: whether a call that ran already
 * is admitted, decided as `admitScript` decides (expired places cleaned first), without taking a
 * place: it is answered in the same script (queue/replies.ts `admitAndApply`), so a place would be
 * taken and given back at once. Answers as `admitScript` does. Needs `now` (LUA_NOW) and `giveBack`
 * (LUA_GIVE_BACK) before it.
 */
export const LUA_ADMIT_NOW = `${LUA_DECIDE}
local function admitNow(set, bytesSet, total, depthLimit, bytesLimit, bytes)
  ${luaRefusedUnderOom('bytesSet')}
  local n, queued = 0, 0
  if depthLimit > 0 then
    n = depthNow(set)
    if depthFull(n, depthLimit) then return {0, n} end
  end
  if bytesLimit > 0 then
    queued = bytesNow(bytesSet, total)
    if bytesFull(queued, bytes, bytesLimit) then return {-1, queued} end
  end
  return {1, n + 1, queued + bytes}
end`;

/** `admitNow`'s keys and arguments for `r` (set, bytes set, counter; depth limit, bytes limit, bytes). */
export function admitNowArgs(r: AdmissionRequest): { keys: string[]; args: number[] } {
  return { keys: [r.keys.depth, r.keys.bytes, r.keys.bytesTotal], args: [r.limits.depth, r.limits.bytes, size(r.bytes)] };
}

/** A script's admission answer (`admitScript`'s form) as an `Admission`. */
export const answerOf = (r: AdmissionRequest, [ok, n]: number[]): Admission =>
  ok === 0 ? { admitted: false, full: 'depth', queued: n! } : ok === -1 ? { admitted: false, full: 'bytes', queuedBytes: n! } : { admitted: true, ticket: ticketOf(r) };

/** Admissions of several calls in one script, each decided as `admit` would, in order. */
export async function admitMany(redis: Redis, rs: readonly AdmissionRequest[]): Promise<Admission[]> {
  if (rs.length === 1) return [await admit(redis, rs[0]!)];
  const keys = [rs[0]!.keys.bytes, rs[0]!.keys.bytesTotal];
  const at = new Map<string, number>();
  const args: Array<string | number> = [rs.length];
  for (const r of rs) {
    let i = at.get(r.keys.depth);
    if (i === undefined) at.set(r.keys.depth, (i = keys.push(r.keys.depth) - 2));
    args.push(i, r.limits.depth, r.member, Math.max(1, Math.ceil(r.holdMs)), r.limits.bytes, size(r.bytes));
  }
  const out = (await ADMIT_MANY.run(redis, keys, args)) as number[][];
  return rs.map((r, i) => answerOf(r, out[i]!));
}

/** The calls whose admissions wait for the end of this turn, by connection (`admitSoon`). */
const soon = new WeakMap<Redis, TurnBatch<AdmissionRequest, Admission>>();

/**
 * `admit`, shared with the other calls admitted on `redis` in this turn of the event loop while it
 * is busy (issue 10 §3): they are decided in one script (`admitMany`) at the end of the turn
 * (`TurnBatch`), one command and one socket write for all. A call with no other running
 * (`othersRunning` false) on an idle connection (no reply pending) is admitted at once, so a lone
 * caller's call is not held. Under 64 callers each admission was a script of its own: 11 Redis
 * commands, 9 of them cleaning, counting and expiring the same keys.
 */
export function admitSoon(redis: Redis, r: AdmissionRequest, othersRunning = false): Promise<Admission> {
  let batch = soon.get(redis);
  if (!batch) soon.set(redis, (batch = new TurnBatch((rs) => admitMany(redis, rs), () => redis)));
  return batch.add(r, redis.status !== 'ready' || (!othersRunning && redis.commandQueue.length === 0));
}

/**
 * Why a call was refused: 429 QUEUE_FULL when its function has its limit of calls (one flooded
 * function cannot fill the queues while the others keep being served), 503 OVERLOADED when the
 * cluster's queues hold their limit of input bytes; both with Retry-After.
 */
export function refusal(fn: string, r: AdmissionRequest, a: Exclude<Admission, { admitted: true }>): BruleeError {
  if (a.full === 'depth') {
    return new BruleeError(
      'QUEUE_FULL',
      `function "${fn}" already has ${a.queued} invocations waiting or running, its limit (MAX_QUEUED_PER_FUNCTION=${r.limits.depth}); retry after a moment, or raise the limit`,
      { retryAfterS: 1, queued: a.queued, limit: r.limits.depth },
    );
  }
  return new BruleeError(
    'OVERLOADED',
    `the queues already hold ${a.queuedBytes} bytes of inputs waiting to run, and this call's ${r.bytes} more would pass the limit of ${r.limits.bytes} (MAX_QUEUED_INPUT_BYTES); retry after a moment`,
    { retryAfterS: 1, queuedBytes: a.queuedBytes, bytes: r.bytes, limit: r.limits.bytes },
  );
}

// KEYS: the function's set (or the bytes set again), the bytes set, the bytes counter. ARGV: member, bytes member ('' when none).
const RELEASE = new Script(`${LUA_GIVE_BACK}
if KEYS[1] ~= KEYS[2] then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then giveBack(KEYS[2], ARGV[2], KEYS[3]) end
return 1`);

/** Gives a place back (idempotent: a place given back twice is given back once). */
export async function release(redis: Redis, t: AdmissionTicket): Promise<void> {
  const b = t.bytes;
  if (!b) {
    if (t.key) await redis.zrem(t.key, t.member);
    return;
  }
  await RELEASE.run(redis, [t.key ?? b.key, b.key, b.total], [t.member, b.member]);
}

/** What a script that gives a place back with the answer is told to do (queue/writes.ts `StatsOps`). */
export interface ReleaseWriter {
  zrem(key: string, member: string): unknown;
  giveBack(set: string, member: string, total: string): unknown;
}

/** Adds a ticket's release to the writes of the script that delivers the answer. */
export function releaseWith(w: ReleaseWriter, t: AdmissionTicket): void {
  if (t.key) w.zrem(t.key, t.member);
  if (t.bytes) w.giveBack(t.bytes.key, t.bytes.member, t.bytes.total);
}

/** Invocations of a function accepted and not yet answered (members past their deadline left out). */
export async function admitted(redis: Redis, key: string): Promise<number> {
  const t = await redis.time();
  return redis.zcount(key, Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000), '+inf');
}

/** Input bytes of invocations accepted and not yet answered, as admission counts them. */
export async function queuedBytes(redis: Redis, keys: Pick<AdmissionKeys, 'bytesTotal'>): Promise<number> {
  return Number((await redis.get(keys.bytesTotal)) ?? 0);
}
