import type { Redis } from 'ioredis';
import type { Keys } from './keys';
import type { InvokeResult, WireTensor } from './wire';

/** Outputs larger than this (base64 characters) are parked in Redis rather than returned inline. */
export const INLINE_RESULT_LIMIT = 64 * 1024;

/**
 * A node's side: returns the result to hand to BullMQ. Large outputs go under their own key with
 * a TTL, because BullMQ copies every return value into the queue's event stream.
 */
export async function parkLargeOutputs(redis: Redis, k: Keys, jobId: string, ttlS: number, r: InvokeResult): Promise<InvokeResult> {
  let size = 0;
  for (const t of Object.values(r.outputs)) size += t.b64.length;
  if (size <= INLINE_RESULT_LIMIT) return r;
  const key = k.result(jobId);
  await redis.set(key, JSON.stringify(r.outputs), 'EX', Math.max(1, Math.ceil(ttlS)));
  return { ...r, outputs: {}, outputsKey: key };
}

/** The gateway's side: the outputs, fetched if parked (and deleted when `consume`, for sync calls). */
export async function outputsOf(redis: Redis, r: InvokeResult, consume: boolean): Promise<Record<string, WireTensor>> {
  if (!r.outputsKey) return r.outputs;
  const raw = consume ? await redis.getdel(r.outputsKey) : await redis.get(r.outputsKey);
  if (raw === null) throw new Error(`the result under ${r.outputsKey} has expired`);
  return JSON.parse(raw) as Record<string, WireTensor>;
}
