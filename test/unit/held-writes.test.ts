import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { HeldWrites } from '../../queue/held-writes';

/*
 * Writes held until just after an answer (queue/held-writes.ts), against a real Redis: not sent
 * at once, sent before any later command of this process on the same connection (pipelines and
 * scripts too), and by themselves once the event loop is idle.
 */

const redis = createRedis(inject('redisUrl'));
const other = createRedis(inject('redisUrl'));
const prefix = `held${process.pid}`;
afterAll(async () => {
  const found = await redis.keys(`${prefix}:*`);
  if (found.length > 0) await redis.del(...found);
  redis.disconnect();
  other.disconnect();
});

describe('HeldWrites', () => {
  it('holds a write until the next command on its connection, which Redis then serves after it', async () => {
    await Promise.all([redis.ping(), other.ping()]);
    const held = HeldWrites.on(redis);
    const k = `${prefix}:a`;
    const done = held.hold(() => redis.incr(k));
    // This connection's next command flushes it first, so it reads it.
    expect(await redis.get(k)).toBe('1');
    expect(await done).toBe(1);
    // Held, it has not left this process: another connection is served first.
    void held.hold(() => redis.incr(k));
    expect(await other.get(k)).toBe('1');
    expect(await redis.get(k)).toBe('2');
  });

  it('flushes before a pipeline and before a script, in the order held', async () => {
    const held = HeldWrites.on(redis);
    const k = `${prefix}:b`;
    void held.hold(() => redis.rpush(k, 'first'));
    void held.hold(() => redis.rpush(k, 'second'));
    const [[, list]] = (await redis.pipeline().lrange(k, 0, -1).exec()) as [[null, string[]]];
    expect(list).toEqual(['first', 'second']);
    void held.hold(() => redis.rpush(k, 'third'));
    expect(await redis.eval(`return redis.call('LLEN', KEYS[1])`, 1, k)).toBe(3);
  });

  it('sends held writes by itself once the event loop is idle, and at once on flush', async () => {
    const held = HeldWrites.on(redis);
    const k = `${prefix}:c`;
    const done = held.hold(() => redis.incr(k));
    expect(await other.get(k)).toBeNull();
    expect(await done).toBe(1);
    expect(await other.get(k)).toBe('1');
    // Flushed, it is handed to the connection before flush returns (not on the timer). Read it on
    // the other connection only once its reply is in: Redis need not serve two connections' commands
    // in the order they were written.
    let sent = false;
    const second = held.hold(() => {
      sent = true;
      return redis.incr(k);
    });
    expect(sent).toBe(false);
    held.flush();
    expect(sent).toBe(true);
    expect(await second).toBe(2);
    expect(await other.get(k)).toBe('2');
  });

  it("passes a write's failure to its caller, and the other held writes still go", async () => {
    const held = HeldWrites.on(redis);
    const k = `${prefix}:d`;
    const bad = held.hold((): Promise<number> => {
      throw new Error('no');
    });
    const good = held.hold(() => redis.incr(k));
    held.flush();
    await expect(bad).rejects.toThrow('no');
    expect(await good).toBe(1);
  });

  it('is one per connection', () => {
    expect(HeldWrites.on(redis)).toBe(HeldWrites.on(redis));
    expect(HeldWrites.on(other)).not.toBe(HeldWrites.on(redis));
  });
});
