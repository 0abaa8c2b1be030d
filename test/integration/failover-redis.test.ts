import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedisServer, type PrivateRedis } from '../../queue/redis-server';
import { buildWorkload, register, stream, tally } from '../support/failover-drill';
import { startProc, stopAll, type Proc } from '../support/procs';

/*
 * Redis restarted (append-only file) under traffic, with a gateway and two workers as their own
 * processes: registered functions survive, calls in flight fail fast with 503 or complete, none
 * hangs, and the service is back within 5 s of Redis.
 */
const dir = mkdtempSync(join(tmpdir(), 'brulee-redis-restart-'));
let redis: PrivateRedis | undefined;
const procs: Proc[] = [];
afterAll(async () => {
  await stopAll(procs);
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis restarted under traffic', () => {
  it('functions survive; in-flight calls fail fast with 503 or complete; service back within 5 s', async () => {
    redis = await startRedisServer({ dir: join(dir, 'redis'), persist: true });
    const port = redis.port;
    // One file:// model store for all three processes (each has its own DATA_DIR).
    const env = { REDIS_URL: redis.url, KEY_PREFIX: 'rr', POPULARITY_CRON: '0 0 1 1 *', MODEL_STORE: pathToFileURL(join(dir, 'store')).href };
    procs.push(...(await Promise.all([startProc('gw', 'gateway', env), startProc('w1', 'worker', { ...env, NODE_ID: 'w1' }), startProc('w2', 'worker', { ...env, NODE_ID: 'w2' })])));
    const gw = procs[0]!;
    const wl = await buildWorkload(2);
    const mlps = wl.models.filter((m) => m.fn.startsWith('mlp') || m.fn === 'vad');
    const cases = wl.cases.filter((c) => c.fn.startsWith('mlp') || c.fn === 'vad');
    await register(gw.base, mlps);

    // A bounded stream of calls; Redis stops (SHUTDOWN writes the AOF) a third of the way in and
    // comes back 1 s later on the same port and files.
    let downAt = 0;
    let upAt = 0;
    const restart = (async () => {
      while (downAt === 0) await new Promise((r) => setTimeout(r, 10));
      await redis!.stop();
      await new Promise((r) => setTimeout(r, 1000));
      redis = await startRedisServer({ dir: join(dir, 'redis'), port, persist: true });
      upAt = Date.now();
    })();
    const rs = await stream({
      base: gw.base,
      cases,
      total: 400,
      concurrency: 4,
      pauseMs: 40,
      giveUpMs: 20_000,
      onAnswer: (done) => {
        if (done === 100) downAt = Date.now();
      },
    });
    await restart;
    const t = tally(rs);
    const failed = rs.filter((r) => r.status !== 200);
    // The first call sent after Redis was back and answered 200 from then on.
    const firstOk = rs.filter((r) => r.sentAt >= upAt && r.status === 200).sort((a, b) => a.doneAt - b.doneAt)[0];
    const slowest503 = Math.max(0, ...failed.map((r) => r.doneAt - r.sentAt));
    console.log(`[failover] redis restart: ${JSON.stringify({ ...t, downMs: upAt - downAt, backAfterMs: firstOk ? firstOk.doneAt - upAt : null, slowestFailureMs: slowest503, codes: [...new Set(failed.map((r) => r.code))] })}`);
    expect(t.lost).toBe(0);
    expect(t.wrong).toBe(0);
    expect(t.duplicated).toBe(0);
    // Every call either completed right or failed fast with 503 (Redis away): no 504, no hang.
    for (const r of failed) expect(r.status, JSON.stringify(r)).toBe(503);
    expect(slowest503).toBeLessThan(5000);
    expect(t.right + failed.length).toBe(400);
    expect(firstOk, 'served again after Redis came back').toBeDefined();
    expect(firstOk!.doneAt - upAt).toBeLessThan(5000);
    // Registered functions survived in the append-only file.
    const fns = (await (await fetch(`${gw.base}/functions`)).json()) as { functions: Array<{ name: string }> };
    expect(fns.functions.map((f) => f.name).sort()).toEqual(mlps.map((m) => m.fn).sort());
    // And they still answer right.
    const after = tally(await stream({ base: gw.base, cases, total: 20, concurrency: 4 }));
    expect(after).toMatchObject({ sent: 20, right: 20 });
  }, 120_000);
});
