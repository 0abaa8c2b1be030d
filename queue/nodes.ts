import type { Redis } from 'ioredis';
import type { Keys } from './keys';

/** A node's heartbeat, as it writes it into Redis. */
export interface NodeInfo {
  id: string;
  policy: string;
  budgetBytes: number;
  usedBytes: number;
  concurrency: number;
  resident: Array<{ key: string; fn: string; sizeBytes: number; state: 'loading' | 'resident'; pinned: boolean; inFlight: number }>;
  loads: number;
  evictions: number;
  startedAt: number;
  heartbeatAt: number;
}

/** A node whose last heartbeat is older than this is dead. */
export const NODE_TTL_MS = 5000;

export async function writeHeartbeat(redis: Redis, k: Keys, info: NodeInfo): Promise<void> {
  await redis.hset(k.nodes, info.id, JSON.stringify(info));
}

export async function removeNode(redis: Redis, k: Keys, id: string): Promise<void> {
  await redis.hdel(k.nodes, id);
}

/** A node silent this long is forgotten (its entry removed from the heartbeat hash). */
export const NODE_FORGET_MS = 3_600_000;

/** Nodes whose heartbeat is fresh; entries of nodes long gone are removed on the way. */
export async function liveNodes(redis: Redis, k: Keys, now = Date.now()): Promise<NodeInfo[]> {
  const all = await redis.hgetall(k.nodes);
  const out: NodeInfo[] = [];
  const gone: string[] = [];
  for (const [id, v] of Object.entries(all)) {
    const info = JSON.parse(v) as NodeInfo;
    if (now - info.heartbeatAt <= NODE_TTL_MS) out.push(info);
    else if (now - info.heartbeatAt > NODE_FORGET_MS) gone.push(id);
  }
  if (gone.length > 0) await redis.hdel(k.nodes, ...gone);
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}
