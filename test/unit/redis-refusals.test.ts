import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asBruleeError } from '../../functions/http/errors';
import { admit, admitMany, type AdmissionRequest } from '../../queue/admission';
import { createRedis, waitForRedis } from '../../queue/connection';
import { startRedisServer, type PrivateRedis } from '../../queue/redis-server';

/*
 * A Redis that answers but refuses the work (out of memory under maxmemory, a read-only replica
 * after a failover, a replica cut off from its master) is Redis not available: the one error
 * mapping (functions/http/errors.ts) makes it a 503 REDIS_UNAVAILABLE, as for a Redis that does not
 * answer, not a 500 INTERNAL (a bug of ours). Against a real redis-server of this file's own.
 */

const dir = mkdtempSync(join(tmpdir(), 'brulee-redis-refusals-'));
let server: PrivateRedis;
let redis: ReturnType<typeof createRedis>;
beforeAll(async () => {
  server = await startRedisServer({ dir, persist: false });
  redis = createRedis(server.url, { failFast: true });
  await waitForRedis(redis);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const req: AdmissionRequest = { keys: { depth: 'r:admitted:f', bytes: 'r:bytes', bytesTotal: 'r:bytes:total' }, member: 'm', limits: { depth: 5, bytes: 1000 }, bytes: 10, holdMs: 60_000 };
const mapped = async (p: Promise<unknown>) => {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(Error);
  const b = asBruleeError(e);
  return [b.code, b.status];
};

describe('Redis refusing the work', () => {
  it('out of memory (maxmemory, noeviction), a read-only replica (an admission), a replica without its master: each 503 REDIS_UNAVAILABLE', async () => {
    await redis.config('SET', 'maxmemory', '1');
    try {
      expect(await mapped(redis.set('r:x', '1'))).toEqual(['REDIS_UNAVAILABLE', 503]);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
    await redis.replicaof('127.0.0.1', 1);
    try {
      expect(await mapped(admit(redis, req))).toEqual(['REDIS_UNAVAILABLE', 503]);
      await redis.config('SET', 'replica-serve-stale-data', 'no');
      expect(await mapped(redis.get('r:x'))).toEqual(['REDIS_UNAVAILABLE', 503]);
    } finally {
      await redis.config('SET', 'replica-serve-stale-data', 'yes');
      await redis.replicaof('NO', 'ONE');
    }
    expect((await admit(redis, req)).admitted).toBe(true);
  });
});

describe('an admission under Redis OOM (maxmemory, noeviction)', () => {
  // Legacy scripts: Redis refuses a write that may grow memory only while the script has written
  // nothing; the admission's first write was the clean-up of expired places (ZREMRANGEBYSCORE, even
  // removing nothing, or a ZREM of an expired bytes place), which Redis does not refuse, so every
  // write after it went through: the call admitted and its job queued past maxmemory.
  const lane = 'r:lane';
  const state = async () => [await redis.zrange(req.keys.depth, 0, -1), await redis.zrange(req.keys.bytes, 0, -1), await redis.get(req.keys.bytesTotal), await redis.llen(lane)];
  for (const limits of [{ depth: 5, bytes: 1000 }, { depth: 5, bytes: 0 }, { depth: 0, bytes: 1000 }]) {
    it(`is refused (503) with nothing written: limits ${JSON.stringify(limits)}, a live place and an expired one there`, async () => {
      await redis.del(req.keys.depth, req.keys.bytes, req.keys.bytesTotal, lane);
      const r = (member: string, holdMs = 60_000): AdmissionRequest => ({ ...req, member, limits, holdMs });
      expect((await admit(redis, r('live'))).admitted).toBe(true);
      expect((await admit(redis, r('old', 1))).admitted).toBe(true);
      await new Promise((res) => setTimeout(res, 10));
      const before = await state();
      await redis.config('SET', 'maxmemory', '1');
      try {
        expect(await mapped(admit(redis, r('new')))).toEqual(['REDIS_UNAVAILABLE', 503]);
        expect(await mapped(admit(redis, r('pushed'), { lane, job: Buffer.from('job'), answered: 'r:answered:pushed' }))).toEqual(['REDIS_UNAVAILABLE', 503]);
        expect(await mapped(admitMany(redis, [r('a'), r('b')]))).toEqual(['REDIS_UNAVAILABLE', 503]);
      } finally {
        await redis.config('SET', 'maxmemory', '0');
      }
      expect(await state()).toEqual(before);
    });
  }
});
