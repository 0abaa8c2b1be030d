import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from './keys';
import { LUA_NOW, Script } from './scripts';

/** A node's heartbeat, as it writes it into Redis. */
export interface NodeInfo {
  id: string;
  policy: string;
  budgetBytes: number;
  usedBytes: number;
  concurrency: number;
  /** Cores the node's process may use: how many jobs it really runs at once. */
  cpus?: number;
  resident: Array<{ key: string; fn: string; sizeBytes: number; state: 'loading' | 'resident'; pinned: boolean; inFlight: number }>;
  loads: number;
  evictions: number;
  /**
   * Sync calls of the node's own process's gateway (ROLE=all) waiting or running there at the
   * beat: they are in no Redis list, so other gateways' routing counts them from here.
   */
  here?: number;
  /** The process's memory at the beat (`process.memoryUsage()`), bytes: to read beside the budget. */
  memory?: { rssBytes: number; heapBytes: number; externalBytes: number };
  /**
   * Parked sessions (runtime/parked.ts): parked and taken back so far, held now and their estimated
   * bytes; `pre`, the same for those pre-parked before any call (runtime/prepark.ts), `dropped`
   * those disposed with no call having taken them, `noRoom` pre-parks not made for want of room,
   * and the wall and CPU seconds their creates took.
   */
  parked?: {
    parked: number;
    taken: number;
    held: number;
    bytes: number;
    pre: { parked: number; taken: number; dropped: number; held: number; bytes: number; noRoom: number; seconds: number; cpuSeconds: number };
  };
  startedAt: number;
  /** Redis time of the beat (epoch ms). */
  heartbeatAt: number;
}

/** A node the reaper declared dead (it stopped beating), or one that left cleanly. */
export interface DeadNode {
  id: string;
  reason: 'silent' | 'left';
  /** Redis time of its last heartbeat (epoch ms). */
  lastBeatAt: number;
  /** Redis time it was declared dead or left (epoch ms). */
  at: number;
  /** Jobs moved off its queue to live nodes. */
  jobsMoved: number;
}

/** Heartbeat period, ms (`HEARTBEAT_MS`). */
export const HEARTBEAT_MS = 1000;
/** A node is dead after this many missed beats. */
export const MISSED_BEATS = 3;

/**
 * Liveness is a sorted set of node ids scored by the Redis time of their last beat, so every
 * process judges it on one clock (Redis's), not on the clocks of the node or of the judge.
 * `owner` maps a node id to the random token of the process that holds it: two processes with
 * the same NODE_ID cannot both be the node. A claim answers {1, now, the last beat of an earlier
 * process with this id that stopped beating (declared dead or not yet), or 0}.
 */
const CLAIM = new Script(`${LUA_NOW}
local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if last and owner and owner ~= ARGV[2] and now - tonumber(last) < tonumber(ARGV[3]) then
  return {0, now - tonumber(last)}
end
local crashed = 0
if last and owner and owner ~= ARGV[2] then
  crashed = tonumber(last)
elseif not owner then
  local dead = redis.call('HGET', KEYS[3], ARGV[1])
  if dead then
    local d = cjson.decode(dead)
    if d.reason == 'silent' then crashed = d.lastBeatAt end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return {1, now, crashed}`);

/** 1: beat recorded; 2: this node had been declared dead and rejoins; 0: another process holds the id. */
const BEAT = new Script(`${LUA_NOW}
local owner = redis.call('HGET', KEYS[2], ARGV[1])
local code = 1
if owner ~= ARGV[2] then
  if owner then return {0, now} end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[4], ARGV[1])
  code = 2
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], (string.gsub(ARGV[3], '"heartbeatAt":0', '"heartbeatAt":' .. now, 1)))
return {code, now}`);

const LEAVE = new Script(`${LUA_NOW}
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local last = redis.call('ZSCORE', KEYS[1], ARGV[1]) or now
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({id = ARGV[1], reason = 'left', lastBeatAt = tonumber(last), at = now}))
return 1`);

const LIVE = new Script(`${LUA_NOW}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))`);

/** Declares dead every node silent for `ARGV[1]` ms, atomically: one reaper counts each death once. */
const DECLARE_DEAD = new Script(`${LUA_NOW}
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'WITHSCORES')
local ids = {}
for i = 1, #gone, 2 do
  local id = gone[i]
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HSET', KEYS[4], id, cjson.encode({id = id, reason = 'silent', lastBeatAt = tonumber(gone[i + 1]), at = now}))
  redis.call('HINCRBY', KEYS[5], 'nodeDeaths', 1)
  ids[#ids + 1] = id
end
return ids`);

/**
 * `crashedLastBeatAt`: the last heartbeat (Redis time) of the earlier process with this id, when it
 * stopped beating rather than leaving (it died: what it held was running when it did).
 */
export type ClaimResult = { ok: true; now: number; crashedLastBeatAt?: number } | { ok: false; lastBeatAgoMs: number };

/** Takes `id` for the process holding `token`, unless a live process (one that beat within `deadAfterMs`) holds it. */
export async function claimNodeId(redis: Redis, k: Keys, id: string, token: string, deadAfterMs: number): Promise<ClaimResult> {
  const [ok, n, crashed] = (await CLAIM.run(redis, [k.alive, k.nodeOwner, k.deadNodes], [id, token, deadAfterMs])) as [number, number, number?];
  if (ok !== 1) return { ok: false, lastBeatAgoMs: n };
  return crashed ? { ok: true, now: n, crashedLastBeatAt: crashed } : { ok: true, now: n };
}

export type BeatResult = { code: 'ok' | 'rejoined' | 'taken'; now: number };

/** Writes a heartbeat; `info.heartbeatAt` is replaced by Redis's time. Answers with that time. */
export async function writeHeartbeat(redis: Redis, k: Keys, info: NodeInfo, token: string): Promise<BeatResult> {
  const json = JSON.stringify({ ...info, heartbeatAt: 0 });
  const [code, now] = (await BEAT.run(redis, [k.alive, k.nodeOwner, k.nodes, k.deadNodes], [info.id, token, json])) as [number, number];
  return { code: code === 1 ? 'ok' : code === 2 ? 'rejoined' : 'taken', now };
}

/** A clean exit: the node leaves at once (no wait for the reaper), and the reaper still moves any job that reached its queue late. */
export async function leaveCluster(redis: Redis, k: Keys, id: string, token: string): Promise<void> {
  await LEAVE.run(redis, [k.alive, k.nodeOwner, k.nodes, k.deadNodes], [id, token]);
}

/** Nodes that beat within `deadAfterMs` (Redis time), by id. */
export async function liveNodes(redis: Redis, k: Keys, deadAfterMs = HEARTBEAT_MS * MISSED_BEATS): Promise<NodeInfo[]> {
  const raw = (await LIVE.run(redis, [k.alive, k.nodes], [deadAfterMs])) as Array<string | null>;
  const out = raw.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as NodeInfo);
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** Declares dead the nodes silent for `deadAfterMs`; answers their ids (each death is returned once, cluster-wide). */
export async function declareDead(redis: Redis, k: Keys, deadAfterMs: number): Promise<string[]> {
  return (await DECLARE_DEAD.run(redis, [k.alive, k.nodes, k.nodeOwner, k.deadNodes, k.cluster], [deadAfterMs])) as string[];
}

/**
 * Takes job `id` off `q`, the BullMQ queue of `nodeId`, a node that is gone: its lock first, which
 * is the dead worker's (BullMQ keeps a locked job, active, until the lock lapses: up to
 * JOB_LOCK_MS). True when it was removed.
 */
export async function removeDeadJob(redis: Redis, k: Keys, q: Queue, nodeId: string, id: string): Promise<boolean> {
  await redis.del(k.jobLock(nodeId, id));
  return (await q.remove(id)) === 1;
}

/** Nodes declared dead or gone, with the jobs moved off each. */
export async function deadNodes(redis: Redis, k: Keys): Promise<DeadNode[]> {
  const [dead, moved] = await Promise.all([redis.hgetall(k.deadNodes), redis.hgetall(k.jobsMoved)]);
  return Object.values(dead)
    .map((v) => JSON.parse(v) as Omit<DeadNode, 'jobsMoved'>)
    .map((d) => ({ ...d, jobsMoved: Number(moved[d.id] ?? 0) }))
    .sort((a, b) => b.at - a.at);
}

/** Cluster-wide failover counts. */
export interface FailoverCounts {
  /** Nodes declared dead (silent for `MISSED_BEATS` beats); clean exits are not deaths. */
  nodeDeaths: number;
  /** Jobs moved off dead or departed nodes onto live ones. */
  jobsRerouted: number;
  /** Runs of a job whose answer had already been given (at-least-once execution): counted, never returned. */
  duplicateRuns: number;
  /** Jobs not run again because as many nodes as allowed (MAX_NODE_DEATHS_PER_JOB) died while running them, or their node lost them that many times (queue/poison.ts `stalledOut`): answered NODE_CRASHED. */
  poisonJobs: number;
}

export async function failoverCounts(redis: Redis, k: Keys): Promise<FailoverCounts> {
  const h = await redis.hgetall(k.cluster);
  return { nodeDeaths: Number(h.nodeDeaths ?? 0), jobsRerouted: Number(h.jobsRerouted ?? 0), duplicateRuns: Number(h.duplicateRuns ?? 0), poisonJobs: Number(h.poisonJobs ?? 0) };
}
