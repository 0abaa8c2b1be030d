import type { Redis } from 'ioredis';
import { LUA_NOW, Script } from './scripts';

/**
 * Admission by a function's queue depth, counted cluster-wide in Redis: a sorted set per function
 * holds one member per accepted invocation not yet answered, scored by the Redis time past which
 * it cannot be waiting any more (its deadline). A call is admitted, and added, in one script, so
 * concurrent gateways cannot both take the last place. A member leaves when the call's answer is
 * given (the node removes it in the script that delivers the answer: answered or failed, on
 * whichever node ran it, after a failover too), when the gateway gives up on it (its timeout, or
 * an error before any node answered), and in any case at its deadline (a gateway that died).
 */
const ADMIT = new Script(`${LUA_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return -n end
local hold = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + hold, ARGV[2])
if redis.call('PTTL', KEYS[1]) < hold + 60000 then redis.call('PEXPIRE', KEYS[1], hold + 60000) end
return n + 1`);

/** An admitted invocation's place: the function's set and its member. */
export interface AdmissionTicket {
  key: string;
  member: string;
}

/**
 * Takes a place for one invocation in `key` (at most `limit` at once), held for at most `holdMs`.
 * Resolves to the number of places taken with this one, or to minus the number taken when full.
 */
export async function admit(redis: Redis, key: string, member: string, limit: number, holdMs: number): Promise<number> {
  return Number(await ADMIT.run(redis, [key], [limit, member, Math.max(1, Math.ceil(holdMs))]));
}

/** Gives a place back (idempotent: a place given back twice is given back once). */
export async function release(redis: Redis, t: AdmissionTicket): Promise<void> {
  await redis.zrem(t.key, t.member);
}

/** Invocations of a function accepted and not yet answered (members past their deadline left out). */
export async function admitted(redis: Redis, key: string): Promise<number> {
  const t = await redis.time();
  return redis.zcount(key, Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000), '+inf');
}
