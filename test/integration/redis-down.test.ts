import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createBrulee } from '../../brulee';
import { loadConfig } from '../../config';
import { startRedisServer } from '../../queue/redis-server';
import { mlpModel } from '../../models/generate';
import { readModel, REAL_MODELS, vadInputs } from '../support/models';
import { within } from '../support/within';

const post = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const inputs = { inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } };

type Brulee = Awaited<ReturnType<typeof createBrulee>>;

/**
 * Runs `body` against a brulee (settings `env`) on a private redis-server, stopped (SIGSTOP: its
 * connections stay open, and nothing answers on them) while `whileHung` runs, then resumed.
 */
async function withHungRedis(name: string, env: Record<string, string>, before: (b: Brulee) => Promise<void>, whileHung: (b: Brulee) => Promise<void>, after: (b: Brulee) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `brulee-${name}-`));
  const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
  const b = await createBrulee(loadConfig({ REDIS_URL: redis.url, DATA_DIR: dir, LOG_LEVEL: 'silent', ...env }), { log: pino({ level: 'silent' }) });
  try {
    await before(b);
    process.kill(redis.pid, 'SIGSTOP');
    try {
      await whileHung(b);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await after(b);
  } finally {
    await b.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Redis goes away', () => {
  it('answers 503 at once while Redis is down, and serves again when it is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brulee-redis-down-'));
    let redis = await startRedisServer({ dir: join(dir, 'redis'), persist: true });
    const b = await createBrulee(loadConfig({ REDIS_URL: redis.url, DATA_DIR: dir, NODE_ID: 'rd', LOG_LEVEL: 'silent' }), { log: pino({ level: 'silent' }) });
    try {
      expect((await b.app.request('/functions/m', { method: 'PUT', body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) })).status).toBe(201);
      expect((await b.app.request('/functions/m/invoke', post(inputs))).status).toBe(200);

      await redis.stop();
      const t0 = Date.now();
      const down = await b.app.request('/functions/m/invoke', post(inputs));
      expect(down.status).toBe(503);
      expect(((await down.json()) as any).error.code).toBe('REDIS_UNAVAILABLE');
      expect((await b.app.request('/healthz')).status).toBe(503);
      for (const [method, path] of [['GET', '/functions'], ['GET', '/stats'], ['GET', '/invocations/00000000-0000-0000-0000-000000000000'], ['POST', '/v2/repository/index']] as const) {
        const r = await b.app.request(path, { method });
        expect(r.status, `${method} ${path}`).toBe(503);
      }
      expect(Date.now() - t0).toBeLessThan(3000);

      redis = await startRedisServer({ dir: join(dir, 'redis'), port: redis.port, persist: true });
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = (await b.app.request('/functions/m/invoke', post(inputs))).status;
      }
      expect(status).toBe(200);
    } finally {
      await b.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('readiness answers not ready (/healthz 503, /v2/health/ready 400) in bounded time while Redis hangs (stopped, not gone), and 200 when it answers again', async () => {
    await withHungRedis(
      'redis-hung',
      { NODE_ID: 'rh' },
      async (b) => expect((await b.app.request('/healthz')).status).toBe(200),
      async (b) => {
        const t0 = Date.now();
        const [healthz, ready] = await within(10_000, 'readiness with Redis stopped', Promise.all([b.app.request('/healthz'), b.app.request('/v2/health/ready')]));
        expect(Date.now() - t0).toBeLessThan(4000);
        expect([healthz.status, await healthz.json()]).toEqual([503, { status: 'redis unreachable', redis: 'unreachable', nodes: 0 }]);
        expect([ready.status, await ready.json()]).toEqual([400, { ready: false }]);
      },
      async (b) => expect.poll(async () => (await b.app.request('/healthz')).status, { timeout: 10_000 }).toBe(200),
    );
  });

  it('a call while Redis hangs gets its 504 at its deadline, not an answer never; the process serves again once Redis answers', async () => {
    await withHungRedis(
      'redis-hung-call',
      { NODE_ID: 'rc', INVOKE_TIMEOUT_MS: '3000' },
      async (b) => {
        expect((await b.app.request('/functions/m?timeoutMs=1000', { method: 'PUT', body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) })).status).toBe(201);
        expect((await b.app.request('/functions/m/invoke', post(inputs))).status).toBe(200);
        // Past the gateway's cache of the live nodes (500 ms): the next call reads them from Redis.
        await new Promise((r) => setTimeout(r, 600));
      },
      async (b) => {
        // m's record is known here: the wait for the live nodes is bounded by its timeout (1 s),
        // or 2 s (REDIS_HUNG_MS) if longer. Another function's record must be read: within
        // INVOKE_TIMEOUT_MS (3 s).
        // An async call's writes (its admission, its job) within INVOKE_TIMEOUT_MS too.
        for (const [path, ms] of [['/functions/m/invoke', 2000], ['/v2/models/m/infer', 2000], ['/functions/other/invoke', 3000], ['/functions/m/invoke?async=true', 3000]] as const) {
          const body = path.startsWith('/v2') ? { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] } : inputs;
          const t0 = Date.now();
          const r = await within(20_000, `${path} with Redis stopped`, Promise.resolve(b.app.request(path, post(body))));
          const took = Date.now() - t0;
          const text = await r.text();
          expect([r.status, took >= ms, took < ms + 5000], `${path} after ${took} ms: ${text}`).toEqual([504, true, true]);
          expect(text).toContain(`within ${ms} ms`);
          expect(text).toContain('check that Redis is up and reachable');
        }
      },
      async (b) => expect.poll(async () => (await b.app.request('/functions/m/invoke', post(inputs))).status, { timeout: 20_000 }).toBe(200),
    );
  });

  it("a call of a function whose profile run failed (its exec time learned from live calls) gets its 504 too while Redis hangs, not an answer never", async () => {
    // Silero VAD's profile run fails (execMs null): each call reads the exec time learned so far
    // from Redis (execEstimate), which waited as long as Redis hung before it was bounded.
    const vad = { inputs: vadInputs() };
    await withHungRedis(
      'redis-hung-vad',
      { NODE_ID: 'rv', INVOKE_TIMEOUT_MS: '3000' },
      async (b) => {
        const put = await b.app.request('/functions/vad?timeoutMs=1000', { method: 'PUT', body: readModel(REAL_MODELS.sileroVad) });
        expect(put.status).toBe(201);
        expect(((await put.json()) as any).profile.execMs).toBeNull();
        // Its record read once (so the gateway has it, with no Redis read at the call), no exec
        // time learned yet (no call), and past the gateway's cache of the live nodes (500 ms).
        expect((await b.app.request('/functions/vad')).status).toBe(200);
        await new Promise((r) => setTimeout(r, 600));
      },
      async (b) => {
        // The estimate's read gives up after 2 s (REDIS_HUNG_MS), then the wait for the live nodes
        // is bounded by 2 s (the timeout, 1 s, or REDIS_HUNG_MS if longer).
        const t0 = Date.now();
        const r = await within(20_000, 'a vad call with Redis stopped', Promise.resolve(b.app.request('/functions/vad/invoke', post(vad))));
        const took = Date.now() - t0;
        const text = await r.text();
        expect([r.status, took >= 2000, took < 4000 + 5000], `after ${took} ms: ${text}`).toEqual([504, true, true]);
        expect(text).toContain('check that Redis is up and reachable');
      },
      async (b) => {
        // Served again once Redis answers, with outputs.
        await expect.poll(async () => (await b.app.request('/functions/vad/invoke', post(vad))).status, { timeout: 20_000 }).toBe(200);
        const r = (await (await b.app.request('/functions/vad/invoke', post(vad))).json()) as any;
        expect(Object.keys(r.outputs).length).toBeGreaterThan(0);
      },
    );
  });
});
