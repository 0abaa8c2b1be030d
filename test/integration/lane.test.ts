import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createRedis } from '../../queue/connection';
import { startRedisServer } from '../../queue/redis-server';
import { monitor, type Monitored } from '../support/monitor';
import { keys } from '../../queue/keys';
import { decodeLaneJob, encodeLaneJob, LaneWorker, moveJob, takeBack, type LaneJob } from '../../queue/lane';
import { JOB, type InvokeJob } from '../../queue/wire';
import { applyWrites } from '../../queue/replies';
import { StatsOps } from '../../queue/writes';
import { until } from '../support/within';

/*
 * A node's lane (queue/lane.ts) against a real Redis: jobs are taken oldest first and each once,
 * a job taken back is never run, jobs left in the active list by an earlier process with the same
 * node id run again, and a move off a dead node puts a job in exactly one lane.
 */

const redis = createRedis(inject('redisUrl'));
const k = keys(`lane${process.pid}`);
afterAll(async () => {
  const found = await redis.keys(`lane${process.pid}:*`);
  if (found.length > 0) await redis.del(...found);
  redis.disconnect();
});

const job = (n: number): { id: string; frame: Buffer } => {
  const id = randomUUID();
  const data: LaneJob['data'] = {
    model: { fn: `f${n}`, sha256: 'a'.repeat(64), version: 1, sizeBytes: 1, loadMs: 1, execMs: 1, pinned: false },
    inputs: { tensors: { x: { type: 'float32', dims: [1], offset: 0, byteLength: 4 } } },
    acceptedAt: n,
    deadline: n + 1000,
    reply: { id, answerTtlMs: 1000 },
  } satisfies InvokeJob & { reply: unknown };
  return { id, frame: encodeLaneJob(id, JOB.invoke, data, Buffer.from(Float32Array.from([n]).buffer)) };
};

/** A worker that records the jobs it is handed and holds each until `release` (then leaves the active list, as an answer does). */
function recorder(nodeId: string, concurrency: number) {
  const seen: LaneJob[] = [];
  const held: Array<() => void> = [];
  const w = new LaneWorker({
    redisUrl: inject('redisUrl'),
    keys: k,
    nodeId,
    concurrency,
    handle: async (j) => {
      seen.push(j);
      await new Promise<void>((r) => held.push(r));
      await redis.lrem(k.laneActive(nodeId), 1, j.frame);
    },
    onError: (e) => {
      throw e;
    },
  });
  return { w, seen, release: () => held.splice(0).forEach((r) => r()) };
}

describe('a node lane', () => {
  it('hands over jobs oldest first, each once, no more at a time than the slots, with their inline bytes', async () => {
    const node = 'n1';
    const jobs = [1, 2, 3, 4, 5].map(job);
    for (const j of jobs) await redis.lpush(k.lane(node), j.frame);
    const r = recorder(node, 2);
    try {
      await until('two jobs', () => r.seen.length === 2);
      await new Promise((res) => setTimeout(res, 50));
      expect(r.seen.map((j) => j.id)).toEqual([jobs[0]!.id, jobs[1]!.id]);
      expect([await redis.llen(k.lane(node)), await redis.llen(k.laneActive(node))]).toEqual([3, 2]);
      expect(Array.from(new Float32Array(r.seen[1]!.inline!.buffer.slice(r.seen[1]!.inline!.byteOffset, r.seen[1]!.inline!.byteOffset + 4)))).toEqual([2]);
      r.release();
      await until('four jobs', () => r.seen.length === 4);
      r.release();
      await until('the last job', () => r.seen.length === 5);
      r.release();
      await until('an empty active list', async () => (await redis.llen(k.laneActive(node))) === 0);
      expect(r.seen.map((j) => j.id)).toEqual(jobs.map((j) => j.id));
      expect(await redis.llen(k.lane(node))).toBe(0);
    } finally {
      r.release();
      await r.w.close();
    }
  });

  it('a job taken back before any node took it is never handed over; one already taken is not taken back', async () => {
    const node = 'n2';
    const r = recorder(node, 1);
    try {
      const [a, b, c] = [job(1), job(2), job(3)];
      await redis.lpush(k.lane(node), a.frame);
      await until('the first job', () => r.seen.length === 1);
      // The one slot is held: b and c wait in the lane.
      await redis.lpush(k.lane(node), b.frame, c.frame);
      expect(await takeBack(redis, k, node, b.frame)).toBe(true);
      expect(await takeBack(redis, k, node, a.frame)).toBe(false);
      r.release();
      await until('the next job', () => r.seen.length === 2);
      r.release();
      await new Promise((res) => setTimeout(res, 100));
      expect(r.seen.map((j) => j.id)).toEqual([a.id, c.id]);
    } finally {
      r.release();
      await r.w.close();
    }
  });

  it('jobs an earlier process with this node id took and never answered run again first', async () => {
    const node = 'n3';
    const [old1, old2, queued] = [job(1), job(2), job(3)];
    // As the earlier process left them: taken (active, newest at the head), and one still queued.
    await redis.lpush(k.laneActive(node), old1.frame, old2.frame);
    await redis.lpush(k.lane(node), queued.frame);
    const r = recorder(node, 1);
    try {
      for (let n = 1; n <= 3; n++) {
        await until(`job ${n}`, () => r.seen.length === n);
        r.release();
      }
      expect(r.seen.map((j) => j.id)).toEqual([old1.id, old2.id, queued.id]);
    } finally {
      r.release();
      await r.w.close();
    }
  });

  it('an entry that is not a job is dropped with an error, and the jobs behind it still run', async () => {
    const node = 'n4';
    const good = job(1);
    await redis.lpush(k.lane(node), Buffer.from('not a job'), good.frame);
    const errors: string[] = [];
    const seen: string[] = [];
    const w = new LaneWorker({
      redisUrl: inject('redisUrl'),
      keys: k,
      nodeId: node,
      concurrency: 4,
      handle: async (j) => {
        seen.push(j.id);
        await redis.lrem(k.laneActive(node), 1, j.frame);
      },
      onError: (e) => errors.push(String(e)),
    });
    try {
      await until('the good job', () => seen.length === 1);
      await until('an empty active list', async () => (await redis.llen(k.laneActive(node))) === 0);
      expect(seen).toEqual([good.id]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/a lane entry that is not a job was dropped/);
    } finally {
      await w.close();
    }
  });

  it("the node's other jobs share the lane's slots: one waits while the lane's job holds the only slot, and the lane waits for it", async () => {
    const node = 'n5';
    const r = recorder(node, 1);
    try {
      const [a, b] = [job(1), job(2)];
      await redis.lpush(k.lane(node), a.frame);
      await until('the lane job', () => r.seen.length === 1);
      const order: string[] = [];
      let releaseOther!: () => void;
      const other = r.w.slot(async () => {
        order.push('other starts');
        await new Promise<void>((res) => (releaseOther = res));
        order.push('other ends');
      });
      await redis.lpush(k.lane(node), b.frame);
      await new Promise((res) => setTimeout(res, 100));
      expect(order).toEqual([]);
      r.release();
      await until('the other job', () => order.length === 1);
      await new Promise((res) => setTimeout(res, 100));
      // The one slot is the other job's: the lane's next job waits.
      expect(r.seen.map((j) => j.id)).toEqual([a.id]);
      releaseOther();
      await other;
      await until('the next lane job', () => r.seen.length === 2);
      expect(order).toEqual(['other starts', 'other ends']);
    } finally {
      r.release();
      await r.w.close();
    }
  });

  it('a move off a dead node puts a job in exactly one lane, at the end taken next', async () => {
    const [a, b] = [job(1), job(2)];
    await redis.lpush(k.lane('live'), a.frame);
    await redis.lpush(k.laneActive('dead'), b.frame);
    expect(await moveJob(redis, k.laneActive('dead'), k.lane('live'), b.frame)).toBe(true);
    expect(await moveJob(redis, k.laneActive('dead'), k.lane('live'), b.frame)).toBe(false);
    expect(await redis.llen(k.laneActive('dead'))).toBe(0);
    const order = (await redis.lrangeBuffer(k.lane('live'), 0, -1)).map((f) => decodeLaneJob(f).id);
    // Taken from the tail: the moved job (it waited longest) goes first.
    expect(order).toEqual([a.id, b.id]);
  });
});

describe('the counts of a call answered in its own process (applyWrites)', () => {
  it('are applied once per invocation id: a retry after a lost reply does not count the call twice', async () => {
    const id = randomUUID();
    const ops = () => {
      const o = new StatsOps();
      o.hincrby(`${k.cluster}:counted`, 'invocations', 1);
      return o;
    };
    await applyWrites(redis, k, id, ops());
    await applyWrites(redis, k, id, ops());
    await applyWrites(redis, k, randomUUID(), ops());
    expect(await redis.hget(`${k.cluster}:counted`, 'invocations')).toBe('2');
    expect(await redis.pttl(k.answered(id))).toBeGreaterThan(0);
  });

  // A Redis of its own: these flush its scripts and kill its connections.
  async function ownRedis<T>(f: (url: string) => Promise<T>): Promise<T> {
    const dir = mkdtempSync(join(tmpdir(), 'brulee-applywrites-'));
    const server = await startRedisServer({ dir, persist: false });
    try {
      return await f(server.url);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const counted = (o: { n: number }) => {
    const s = new StatsOps();
    s.hincrby(`${k.cluster}:counted`, 'invocations', 1);
    o.n++;
    return s;
  };

  /** What the client `c` sends (MONITOR, Lua's own calls left out) while it applies 5 calls' counts; each must be counted. */
  async function sentFor5Calls(url: string, c: Redis): Promise<string[]> {
    await c.ping();
    const seen: Monitored[] = [];
    const mon = await monitor(url, (m) => seen.push(m));
    const o = { n: 0 };
    for (let i = 0; i < 5; i++) await applyWrites(c, k, randomUUID(), counted(o));
    await c.set('applywrites:end', '1'); // its echo marks the end
    for (let i = 0; i < 200 && !seen.some((m) => m.args[0] === 'set' && m.args[1] === 'applywrites:end'); i++) await new Promise((r) => setTimeout(r, 5));
    mon.stop();
    expect(await c.hget(`${k.cluster}:counted`, 'invocations')).toBe('5');
    return seen.filter((m) => m.source !== 'lua').map((m) => m.args[0]!.toLowerCase() + (m.args[0]!.toLowerCase() === 'script' ? ` ${m.args[1]!.toLowerCase()}` : ''));
  }

  it("send the script's text once per connection (SCRIPT LOAD), then only its sha (EVALSHA)", async () => {
    await ownRedis(async (url) => {
      const c = createRedis(url);
      try {
        expect(await sentFor5Calls(url, c)).toEqual(['script load', 'evalsha', 'evalsha', 'evalsha', 'evalsha', 'evalsha', 'set']);
      } finally {
        c.disconnect();
      }
    });
  });

  it('go by EVAL alone, one command a call, on a connection whose Redis refuses SCRIPT LOAD (an ACL)', async () => {
    await ownRedis(async (url) => {
      const admin = createRedis(url);
      await admin.acl('SETUSER', 'noload', 'on', '>pw', '~*', '&*', '+@all', '-script|load');
      const u = new URL(url);
      u.username = 'noload';
      u.password = 'pw';
      const c = createRedis(u.toString());
      try {
        // Redis does not show a command its ACL refused: the LOAD is not among them.
        expect(await sentFor5Calls(url, c)).toEqual(['evalsha', 'eval', 'eval', 'eval', 'eval', 'eval', 'set']);
      } finally {
        c.disconnect();
        admin.disconnect();
      }
    });
  });

  it('are seen by the next command on the same connection without being waited for: on a Redis that never had the script, and after it lost its scripts and the connection was made again', async () => {
    await ownRedis(async (url) => {
      const c = createRedis(url);
      const admin = createRedis(url);
      try {
        await Promise.all([c.ping(), admin.ping()]);
        const o = { n: 0 };
        const sent: Array<Promise<void>> = [];
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < 3; i++) {
            sent.push(applyWrites(c, k, randomUUID(), counted(o)));
            expect(await c.hget(`${k.cluster}:counted`, 'invocations')).toBe(String(o.n));
          }
          // Redis forgets its scripts (as a restart does) and this connection is made again.
          await admin.script('FLUSH');
          const id = (await c.client('ID')) as number;
          await admin.client('KILL', 'ID', String(id));
          for (let i = 0; i < 200 && (c.status !== 'ready' || ((await c.client('ID').catch(() => id)) as number) === id); i++) await new Promise((r) => setTimeout(r, 10));
          expect(c.status).toBe('ready');
        }
        await Promise.all(sent);
      } finally {
        c.disconnect();
        admin.disconnect();
      }
    });
  });
});
