import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admit, admitMany, releaseWith, ticketOf, type Admission, type AdmissionRequest } from '../../queue/admission';
import { createRedis, waitForRedis } from '../../queue/connection';
import { keys as keysOf } from '../../queue/keys';
import { startRedisServer, type PrivateRedis } from '../../queue/redis-server';
import { admitAndApply, deliver } from '../../queue/replies';
import { Dispatcher } from '../../queue/dispatcher';
import { decodeLaneJob, pushJob } from '../../queue/lane';
import { claimNodeId, writeHeartbeat, type NodeInfo } from '../../queue/nodes';
import { StatsOps } from '../../queue/writes';

/*
 * An admission script that Redis ran but whose reply its connection lost (the socket dropped right
 * after it was sent) is sent again by ioredis once it has reconnected, so it runs twice, against a
 * real Redis. The second run must find its place and answer admitted without counting its bytes
 * again (a counter given back once would stay over for good: 503 OVERLOADED with nothing queued),
 * refusing (a 429 for a call whose job is queued) or queuing its job twice.
 */

// A Redis of this file's own: its command counts show each script ran twice.
const dir = mkdtempSync(join(tmpdir(), 'brulee-admit-resend-'));
let server: PrivateRedis;
let url: string;
let redis: ReturnType<typeof createRedis>;
const ns = 'admitresend';
beforeAll(async () => {
  server = await startRedisServer({ dir, persist: false });
  url = server.url;
  redis = createRedis(url);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const keys = { depth: `${ns}:admitted:f`, bytes: `${ns}:bytes`, bytesTotal: `${ns}:bytes:total` };
const lane = `${ns}:lane`;
const req = (member: string, depth: number, bytesLimit: number): AdmissionRequest => ({ keys, member, limits: { depth, bytes: bytesLimit }, bytes: 100, holdMs: 60_000 });

/** `send` on a connection whose socket drops as soon as it is written, the script already known there (so Redis runs it). */
async function sentTwice<T>(send: (conn: typeof redis) => Promise<T>): Promise<T> {
  await redis.del(keys.depth, keys.bytes, keys.bytesTotal, lane);
  const conn = createRedis(url, { failFast: true });
  try {
    await waitForRedis(conn);
    await send(conn);
    await redis.del(keys.depth, keys.bytes, keys.bytesTotal, lane);
    const calls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
    const before = await calls();
    const p = send(conn);
    conn.stream.destroy();
    const out = await p;
    // It did run twice (the first run's reply lost).
    expect(await calls()).toBe(before + 2);
    return out;
  } finally {
    conn.disconnect();
  }
}

const verdicts = (as: Admission[]) => as.map((a) => (a.admitted ? 'ok' : a.full));

describe('an admission run again after its reply was lost', () => {
  it('admit with its job (the lane path): admitted at a depth limit it filled itself, its bytes counted once, its job queued once', async () => {
    const job = Buffer.from('job');
    const a = await sentTwice((conn) => admit(conn, req(`m${Math.random()}`, 1, 1000), { lane, job, answered: `${ns}:answered:x` }));
    expect(verdicts([a])).toEqual(['ok']);
    expect([await redis.zcard(keys.depth), await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal), await redis.llen(lane)]).toEqual([1, 1, '100', 1]);
  });

  it('admit (with its job) and admitMany with room to spare: their bytes counted once (the counter would stay 100 over each time), the job queued once', async () => {
    await sentTwice((conn) => admit(conn, req(`m${Math.random()}`, 5, 1000), { lane, job: Buffer.from('job'), answered: `${ns}:answered:x` }));
    expect([await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal), await redis.llen(lane)]).toEqual([1, '100', 1]);
    // Its depth alone limited: the job queued once too.
    await sentTwice((conn) => admit(conn, req(`m${Math.random()}`, 5, 0), { lane, job: Buffer.from('job'), answered: `${ns}:answered:x` }));
    expect([await redis.zcard(keys.depth), await redis.llen(lane)]).toEqual([1, 1]);
    await sentTwice((conn) => admitMany(conn, [req(`a${Math.random()}`, 5, 1000), req(`b${Math.random()}`, 5, 1000)]));
    expect([await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal)]).toEqual([2, '200']);
  });

  it('admit at a bytes limit it filled itself (no depth limit): admitted, counted once', async () => {
    const a = await sentTwice((conn) => admit(conn, req(`m${Math.random()}`, 0, 150)));
    expect(verdicts([a])).toEqual(['ok']);
    expect([await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal)]).toEqual([1, '100']);
  });

  it('admitMany: each call admitted again, its bytes counted once, the limits it filled not turned on itself', async () => {
    const as = await sentTwice((conn) => admitMany(conn, [req(`a${Math.random()}`, 2, 1000), req(`b${Math.random()}`, 2, 1000), req(`c${Math.random()}`, 0, 0)]));
    expect(verdicts(as)).toEqual(['ok', 'ok', 'ok']);
    expect([await redis.zcard(keys.depth), await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal)]).toEqual([2, 2, '200']);
  });
});

describe("a lone call's admission and counts in one script (admitAndApply), run again after its reply was lost", () => {
  const k = keysOf(ns);
  /** The call's counts: one increment of its own key (`ids` gets its id). */
  const counted = (conn: typeof redis, r: AdmissionRequest, ids: string[]) => {
    const id = `c${Math.random()}`;
    ids.push(id);
    const stats = new StatsOps();
    stats.hincrby(`${ns}:counts:${id}`, 'invocations', 1);
    return admitAndApply(conn, k, id, stats, r);
  };

  it('admitted at the depth and bytes limits it would reach itself, counted once, holding no place', async () => {
    const ids: string[] = [];
    const a = await sentTwice((conn) => counted(conn, req(`m${Math.random()}`, 1, 100), ids));
    expect(verdicts([a])).toEqual(['ok']);
    expect(await redis.hget(`${ns}:counts:${ids.at(-1)!}`, 'invocations')).toBe('1');
    expect([await redis.zcard(keys.depth), await redis.zcard(keys.bytes), await redis.get(keys.bytesTotal)]).toEqual([0, 0, null]);
  });

  it('refused when its function is full, or the bytes are: nothing counted, no marker', async () => {
    await redis.del(keys.depth, keys.bytes, keys.bytesTotal);
    const held = await admit(redis, req('held', 1, 150));
    expect(held.admitted).toBe(true);
    const ids: string[] = [];
    expect(verdicts([await counted(redis, req('m', 1, 0), ids), await counted(redis, req('n', 0, 150), ids), await counted(redis, req('o', 2, 200), ids)])).toEqual(['depth', 'bytes', 'ok']);
    expect(await Promise.all(ids.map((id) => redis.exists(`${ns}:counts:${id}`, k.answered(id))))).toEqual([0, 0, 2]);
    await redis.del(keys.depth, keys.bytes, keys.bytesTotal);
  });
});

describe('an admission run again after its call was answered', () => {
  it('admit with its job (the lane path): the answered call is neither queued nor counted again, and its place stays given back', async () => {
    const k = keysOf(ns);
    const id = `c${Math.random()}`;
    const r: AdmissionRequest = { keys: { depth: k.admitted('f'), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member: id, limits: { depth: 5, bytes: 1000 }, bytes: 100, holdMs: 60_000 };
    const push = { lane, job: Buffer.from('job'), answered: k.answered(id) };
    const clean = () => redis.del(r.keys.depth, r.keys.bytes, r.keys.bytesTotal, lane, k.answered(id), k.cluster, k.replies('g'));
    await clean();
    const conn = createRedis(url, { failFast: true });
    try {
      await waitForRedis(conn);
      // The script known on the connection (so Redis runs it as sent).
      await admit(conn, { ...r, member: 'warm' }, { ...push, answered: k.answered('warm') });
      await clean();
      const calls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
      // The reconnect (and so the resend) waits until a node has run the job and answered it.
      let answered!: () => void;
      const done = new Promise<void>((resolve) => (answered = resolve));
      const connect = conn.connect.bind(conn);
      conn.connect = async (...a: Parameters<typeof conn.connect>) => {
        await done;
        return connect(...a);
      };
      const p = admit(conn, r, push);
      conn.stream.destroy();
      // A node takes the job and answers it, giving its place back in the answer's script.
      expect(await redis.brpop(lane, 10)).toEqual([lane, 'job']);
      const stats = new StatsOps();
      releaseWith(stats, ticketOf(r));
      expect(await deliver(redis, k, { id, replyTo: k.replies('g'), answerTtlMs: 60_000 }, { ok: {} }, stats)).toBe(true);
      expect([await redis.zcard(r.keys.depth), await redis.zcard(r.keys.bytes), await redis.get(r.keys.bytesTotal)]).toEqual([0, 0, '0']);
      const before = await calls();
      answered();
      expect(verdicts([await p])).toEqual(['ok']);
      // It did run again.
      expect(await calls()).toBe(before + 1);
      // Not queued again (a second run of the job, counted twice), its place not taken again (held to its deadline).
      expect([await redis.llen(lane), await redis.zcard(r.keys.depth), await redis.zcard(r.keys.bytes), await redis.get(r.keys.bytesTotal)]).toEqual([0, 0, 0, '0']);
    } finally {
      conn.disconnect();
    }
  });
});

describe('a lane job queued with admission off, sent again after a reconnect', () => {
  /**
   * A dispatcher (no limits: the job goes on the lane alone) on a connection whose socket drops
   * right after the job was written, and whose reconnect (the resend) waits for `reconnect`; the
   * test is the node: it takes the job off the lane and answers it with `deliver`.
   */
  async function dropped(node: string, reconnect: Promise<void>) {
    const k = keysOf(`${ns}off${Math.random().toString(36).slice(2, 8)}`);
    const conn = createRedis(url, { name: 'brulee', failFast: true });
    await waitForRedis(conn);
    const info: NodeInfo = { id: node, policy: 'lru', budgetBytes: 1e9, usedBytes: 0, concurrency: 1, resident: [], loads: 0, evictions: 0, startedAt: 0, heartbeatAt: 0 };
    await claimNodeId(redis, k, node, 'tok', 10_000);
    await writeHeartbeat(redis, k, info, 'tok');
    const dispatcher = new Dispatcher({ redisUrl: url, redis: conn, keys: k, deadAfterMs: 60_000 });
    await dispatcher.nodes();
    // The push script known to Redis, so the command written before the drop runs as sent (unknown,
    // it would be refused NOSCRIPT, and only its EVAL after the reconnect would run).
    await pushJob(redis, k, 'warm', Buffer.from('warm'), k.answered('warm'), 1000);
    const evalshas = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
    const before = await evalshas();
    // The socket drops right after the command that queues the job was written (Redis runs it, its reply is lost).
    const send = conn.sendCommand.bind(conn);
    let armed = true;
    conn.sendCommand = ((cmd: Parameters<typeof send>[0], ...rest: unknown[]) => {
      const out = (send as (...a: unknown[]) => unknown)(cmd, ...rest);
      if (armed && cmd.args.some((a) => String(a) === k.lane(node))) {
        armed = false;
        conn.stream.destroy();
      }
      return out;
    }) as typeof conn.sendCommand;
    const connect = conn.connect.bind(conn);
    conn.connect = async (...a: Parameters<typeof conn.connect>) => {
      await reconnect;
      return connect(...a);
    };
    let queued!: () => void;
    const added = new Promise<void>((resolve) => (queued = resolve));
    const req = { model: { fn: 'f', sha256: 'a'.repeat(64), version: 1, sizeBytes: 1, loadMs: 1, execMs: 1, pinned: false }, inputs: { x: { type: 'float32' as const, dims: [1], data: Float32Array.from([1]) } }, acceptedAt: Date.now() };
    const call = dispatcher.invoke(req, 30_000, { onQueued: queued });
    call.catch(() => undefined);
    /** Takes the oldest job off the lane and answers it, as a node does. */
    const answerOne = async () => {
      const [, frame] = (await redis.brpopBuffer(k.lane(node), 10))!;
      const job = decodeLaneJob(frame);
      const reply = { outputs: { tensors: {} }, coldStart: false, node, timings: { queueMs: 0, loadMs: 0, execMs: 0 }, fn: 'f', version: 1 };
      return deliver(redis, k, job.data.reply, { ok: reply });
    };
    const close = async () => {
      await dispatcher.close();
      conn.disconnect();
    };
    /** The push script ran twice: as sent before the drop and as sent again after the reconnect. */
    const ranTwice = async () => expect(await evalshas()).toBeGreaterThanOrEqual(before + 2);
    return { k, added, call, answerOne, close, ranTwice };
  }

  it('resent before a node took it: the job is on the lane once (not run twice)', async () => {
    const d = await dropped('n1', Promise.resolve());
    try {
      await d.added;
      await d.ranTwice();
      expect(await redis.llen(d.k.lane('n1'))).toBe(1);
      expect(await d.answerOne()).toBe(true);
      expect((await d.call).node).toBe('n1');
      expect(await redis.llen(d.k.lane('n1'))).toBe(0);
    } finally {
      await d.close();
    }
  });

  it('resent after its job was answered: not queued again (a second run, counted as a duplicate)', async () => {
    let reconnect!: () => void;
    const d = await dropped('n2', new Promise<void>((resolve) => (reconnect = resolve)));
    try {
      expect(await d.answerOne()).toBe(true);
      reconnect();
      await d.added;
      expect((await d.call).node).toBe('n2');
      expect(await redis.llen(d.k.lane('n2'))).toBe(0);
    } finally {
      await d.close();
    }
  });
});
