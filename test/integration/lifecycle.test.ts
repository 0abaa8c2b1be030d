import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { asFloat32, directJson } from '../support/models';
import { until, within } from '../support/within';

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee({ MEMORY_BUDGET: '200MB', WORKER_CONCURRENCY: '1' });
});
afterAll(async () => {
  await b?.destroy();
  redis.disconnect();
});

const small = (seed: number) => mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed });
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

describe('function lifecycle under concurrency', () => {
  it('two registrations of one name at once: one wins, the other is a 409', async () => {
    const [r1, r2] = await Promise.all([b.put('race', small(1)), b.put('race', small(2))]);
    expect([r1.status, r2.status].sort()).toEqual([201, 409]);
    const loser = r1.status === 409 ? r1 : r2;
    expect(loser.body.error.code).toBe('CONFLICT');
    expect((await b.json('GET', '/functions/race')).body.version).toBe(1);
  });

  it('a registration refused because another holds the name answers 409 with Retry-After, as 429 does', async () => {
    // The lock another request's registration or deletion holds (a lease, renewed while it runs).
    const lock = `${keys(b.namespace).fn('held')}:lock`;
    await redis.set(lock, 'another-request', 'PX', 10_000);
    try {
      const r = await b.req('/functions/held', { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: small(4) });
      expect(r.status).toBe(409);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('CONFLICT');
      expect(r.headers.get('retry-after')).toBe('1');
    } finally {
      await redis.del(lock);
    }
    expect((await b.put('held', small(4))).status).toBe(201);
  });

  it('the same bytes under two names share one stored file, which stays until neither needs it', async () => {
    const bytes = small(3);
    const a = await b.put('twin-a', bytes);
    const c = await b.put('twin-b', bytes);
    expect(a.body.sha256).toBe(c.body.sha256);
    await b.json('DELETE', '/functions/twin-a');
    expect(await b.store.has(a.body.sha256)).toBe(true);
    expect((await b.invoke('twin-b', x)).status).toBe(200);
    await b.json('DELETE', '/functions/twin-b');
    expect(await b.store.has(a.body.sha256)).toBe(false);
  });

  it('a deleted name registered again starts with fresh counts', async () => {
    await b.put('reborn', small(4));
    for (let i = 0; i < 3; i++) await b.invoke('reborn', x);
    await b.json('DELETE', '/functions/reborn');
    await b.put('reborn', small(4));
    const fn = (await b.json('GET', '/functions/reborn')).body;
    expect(fn.version).toBe(1);
    expect(fn.stats).toMatchObject({ invocations: 0, loads: 0, evictions: 0 });
    expect(fn.stats.execMs.samples).toBe(0);
  });

  it('an invocation that outlives its timeout is a 504, and a queued one past its deadline is skipped, not run', async () => {
    // One worker slot: the slow call holds it while the quick one waits in the queue.
    // Its own timeout is long: only the quick one's is meant to run out, however loaded the machine.
    // It holds the slot by waiting 1 s for a batch partner, which leaves the event loop free, and the
    // quick call is sent once it does: a large model's run blocked the loop (the quick call was
    // then accepted only after it, and ran), and a fixed 20 ms pause let the quick call get there
    // first under CI's load.
    await b.put('slow', small(5), 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000');
    await b.put('quick', small(6), 'timeoutMs=50');
    const slow = b.invoke('slow', x);
    await until('the slow call to hold the slot', async () => b.node!.here.running === 1, 10_000);
    const quick = await b.invoke('quick', x);
    expect(quick.status).toBe(504);
    expect(quick.body.error.code).toBe('TIMEOUT');
    expect((await slow).status).toBe(200);
    // The quick job was either taken back before a node saw it, or skipped when reached.
    await new Promise((r) => setTimeout(r, 200));
    const stats = (await b.json('GET', '/functions/quick')).body.stats;
    expect(stats.warmHits + stats.coldStarts).toBe(0);
    expect(stats.loads).toBe(0);
    const depth = (await b.json('GET', '/stats')).body.queue;
    expect(depth).toMatchObject({ waiting: 0, active: 0 });
  });

  it('large outputs come back whole, without growing the event stream', async () => {
    await b.put('wide', mlpModel({ inputSize: 4, hidden: [8], outputSize: 30_000, seed: 7 }));
    const r = await b.invoke('wide', x);
    expect(r.status).toBe(200);
    expect(r.body.outputs.y.dims).toEqual([1, 30_000]);
    expect(r.body.outputs.y.data).toHaveLength(30_000);
    const k = keys(b.namespace);
    const events = `${k.bullPrefix}:${k.nodeQueue(b.node!.id)}:events`;
    const entries = (await redis.xrange(events, '-', '+')) as Array<[string, string[]]>;
    const biggest = Math.max(...entries.map(([, fields]) => fields.join('').length));
    expect(biggest).toBeLessThan(64 * 1024);
    // The parked result was taken by the caller.
    expect(await redis.keys(`${b.namespace}:result:*`)).toEqual([]);
  });

  it('pinning more than the budget is refused', async () => {
    await b.put('pin1', small(8), 'pinned=true&memoryBytes=150MB');
    const r = await b.put('pin2', small(9), 'pinned=true&memoryBytes=100MB');
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/would pin 250000000 bytes, more than all node budgets together \(200000000 bytes\)/);
    expect((await b.put('pin2', small(9), 'memoryBytes=100MB')).status).toBe(201);
  });
});

describe('shutdown', () => {
  it('close with a drain answers requests still being read or checked, not only calls already queued', async () => {
    const c = await startBrulee();
    try {
      expect((await c.put('drained', small(40))).status).toBe(201);
      const want = await directJson(small(40), x);
      expect((await c.invoke('drained', x)).status).toBe(200);
      // The handlers have started but none has reached the queue yet when the drain begins.
      const calls = Array.from({ length: 5 }, () => c.invoke('drained', x));
      const closed = c.close({ drainMs: 10_000 });
      const answered = await within(15_000, 'close dropped requests that were in flight (never answered)', Promise.all(calls));
      expect(answered.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      for (const r of answered) expect(asFloat32(r.body.outputs)).toEqual(want);
      await closed;
    } finally {
      await c.destroy();
    }
  });
});
