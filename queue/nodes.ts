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

/** Nodes whose heartbeat is fresh. */
export async function liveNodes(redis: Redis, k: Keys, now = Date.now()): Promise<NodeInfo[]> {
  const all = await redis.hgetall(k.nodes);
  const out: NodeInfo[] = [];
  for (const v of Object.values(all)) {
    const info = JSON.parse(v) as NodeInfo;
    if (now - info.heartbeatAt <= NODE_TTL_MS) out.push(info);
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}
