import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import pino from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { createBrulee } from '../../brulee';
import { loadConfig } from '../../config';
import { createRedis, waitForRedis, withRedisRetry } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { startRedisServer } from '../../queue/redis-server';
import { readAnswer } from '../../queue/replies';
import { JOB } from '../../queue/wire';
import { deleteKeys } from '../support/brulee';

describe('an unexpected error on a node', () => {
  it('is logged with the job id, the function and its stack, and the caller gets INTERNAL', async () => {
    const lines: Array<Record<string, any>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const ns = `ne${Date.now()}`;
    const dir = mkdtempSync(join(tmpdir(), 'brulee-node-errors-'));
    const b = await createBrulee(loadConfig({ REDIS_URL: inject('redisUrl'), DATA_DIR: dir, NODE_ID: 'ne', KEY_PREFIX: ns, POPULARITY_CRON: '0 0 1 1 *' }), { log: pino({ level: 'info' }, sink) });
    const k = keys(ns);
    const queue = new Queue(k.nodeQueue('ne'), { connection: createRedis(inject('redisUrl')), prefix: k.bullPrefix });
    const check = createRedis(inject('redisUrl'));
    try {
      // A job whose model reference is not what a gateway sends: a bug as far as the node knows.
      const id = randomUUID();
      const job = await queue.add(
        JOB.invoke,
        { model: { fn: 'ghost', sha256: 'not-a-sha' }, inputs: {}, acceptedAt: Date.now(), deadline: Date.now() + 3_600_000, resultTtlS: 60, reply: { id, answerTtlMs: 60_000 } },
        { jobId: id },
      );
      let answer: Awaited<ReturnType<typeof readAnswer>>;
      for (let i = 0; i < 100 && !(answer = await readAnswer(check, k, id)); i++) await new Promise((r) => setTimeout(r, 50));
      expect(answer!).toMatchObject({ error: expect.stringMatching(/^INTERNAL: /) });
      const logged = lines.find((l) => l.msg === 'job failed');
      expect(logged).toMatchObject({ level: 50, job: job.id, name: 'invoke', fn: 'ghost' });
      expect(logged!.err.stack).toMatch(/at /);
    } finally {
      check.disconnect();
      await queue.close();
      await b.close();
      await deleteKeys(ns);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('transient Redis errors', () => {
  it('are retried with backoff until Redis is back; other errors are not retried', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brulee-retry-'));
    let server = await startRedisServer({ dir, persist: false });
    const redis = createRedis(server.url, { failFast: true });
    try {
      await waitForRedis(redis);
      await redis.set('a', '1');
      await server.stop();
      const port = server.port;
      setTimeout(() => void startRedisServer({ dir, port, persist: false }).then((s) => (server = s)), 700);
      let tries = 0;
      const t0 = Date.now();
      await withRedisRetry(() => {
        tries++;
        return redis.set('a', '2');
      });
      expect(tries).toBeGreaterThan(1);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
      expect(await redis.get('a')).toBe('2');

      let calls = 0;
      await expect(withRedisRetry(async () => {
        calls++;
        throw new Error('not a connection problem');
      })).rejects.toThrow('not a connection problem');
      expect(calls).toBe(1);
    } finally {
      redis.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
