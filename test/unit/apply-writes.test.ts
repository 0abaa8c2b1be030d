import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { applyWrites } from '../../queue/replies';
import { StatsOps } from '../../queue/writes';

/*
 * A call's counts (`applyWrites`) leave this process before it returns, against a real Redis: its
 * answer follows at once, and another connection's read after the answer must see them.
 */

const redis = createRedis(inject('redisUrl'));
const other = createRedis(inject('redisUrl'));
const k = keys(`applywrites${process.pid}`);
afterAll(async () => {
  const found = await other.keys(`applywrites${process.pid}*`);
  if (found.length > 0) await other.del(...found);
  redis.disconnect();
  other.disconnect();
});

describe('applyWrites', () => {
  it("sends a call's counts at once, on a busy connection too", async () => {
    await redis.ping();
    // Busy: a reply not read yet.
    const waiting = redis.ping();
    const o = new StatsOps();
    o.hincrby(`${k.cluster}:counted`, 'invocations', 1);
    const queued = redis.commandQueue.length;
    const counted = applyWrites(redis, k, randomUUID(), o);
    // Handed to the socket before applyWrites returned (the script, after its SCRIPT LOAD on a new
    // socket: in ioredis's queue of commands written and waiting for replies), nothing left in this process.
    expect(redis.commandQueue.length - queued).toBeGreaterThan(0);
    expect(redis.stream.writableLength).toBe(0);
    await Promise.all([counted, waiting]);
    expect(await other.hget(`${k.cluster}:counted`, 'invocations')).toBe('1');
  });
});
