import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedis, writeNow, writeSoon } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { applyWrites } from '../../queue/replies';
import { StatsOps } from '../../runtime/stats';

/*
 * Writes that share one socket write while a connection is busy (queue/connection.ts), against a
 * real Redis: an idle connection is never held; a busy one holds the next commands until the end
 * of the event loop's turn or `writeNow`; a call's counts (`applyWrites`) always leave at once,
 * since its answer follows them and another connection's read after the answer must see them.
 */

const redis = createRedis(inject('redisUrl'));
const other = createRedis(inject('redisUrl'));
const k = keys(`writesoon${process.pid}`);
afterAll(async () => {
  const found = await other.keys(`writesoon${process.pid}*`);
  if (found.length > 0) await other.del(...found);
  redis.disconnect();
  other.disconnect();
});

/** Makes `redis` busy: a command sent, its reply not read yet (until this turn of the event loop ends). */
const busy = () => redis.ping();
const stream = () => redis.stream;

describe('writeSoon / writeNow', () => {
  it('does not hold the commands of an idle connection', async () => {
    await redis.ping();
    writeSoon(redis);
    expect(stream().writableCorked).toBe(0);
    void redis.set(`${k.cluster}:idle`, '1');
    expect(stream().writableLength).toBe(0);
    expect(await other.get(`${k.cluster}:idle`)).toBe('1');
  });

  it('holds a busy connection\'s next commands until the end of the turn, or until writeNow', async () => {
    await redis.ping();
    const waiting = busy();
    writeSoon(redis);
    expect(stream().writableCorked).toBe(1);
    const set = redis.set(`${k.cluster}:held`, '1');
    expect(stream().writableLength).toBeGreaterThan(0); // still in this process
    writeNow(redis);
    expect(stream().writableCorked).toBe(0);
    expect(stream().writableLength).toBe(0); // handed to the socket
    await set;
    // Without writeNow, the end of the turn sends it.
    const again = busy();
    writeSoon(redis);
    const later = redis.set(`${k.cluster}:later`, '1');
    expect(stream().writableLength).toBeGreaterThan(0);
    await new Promise((r) => setImmediate(r));
    expect(stream().writableCorked).toBe(0);
    expect(stream().writableLength).toBe(0);
    await Promise.all([later, again, waiting]);
  });

  it('sends a call\'s counts at once, with the admissions held before them', async () => {
    await redis.ping();
    const waiting = busy();
    writeSoon(redis);
    const admitted = redis.incr(`${k.cluster}:admitted`);
    const o = new StatsOps();
    o.hincrby(`${k.cluster}:counted`, 'invocations', 1);
    const counted = applyWrites(redis, k, randomUUID(), o);
    // Both left this process before applyWrites returned: an answer can follow at once.
    expect(stream().writableCorked).toBe(0);
    expect(stream().writableLength).toBe(0);
    await Promise.all([admitted, counted, waiting]);
    expect(await other.hget(`${k.cluster}:counted`, 'invocations')).toBe('1');
  });
});
