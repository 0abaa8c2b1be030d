import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { asBruleeError } from '../../functions/http/errors';
import { admit, admitMany, admitSoon, type Admission, type AdmissionRequest } from '../../queue/admission';
import { createRedis, waitForRedis } from '../../queue/connection';
import { startRedisServer } from '../../queue/redis-server';
import { Dispatcher, modelKey, type LocalNode } from '../../queue/dispatcher';
import { RedisClock } from '../../queue/clock';
import { keys } from '../../queue/keys';
import { decodeLaneJob } from '../../queue/lane';
import { claimNodeId, writeHeartbeat, type NodeInfo } from '../../queue/nodes';
import { deliver } from '../../queue/replies';
import { until } from '../support/within';

/*
 * Several calls admitted in one script (queue/admission.ts `admitMany`, `admitSoon`), against a real
 * Redis: the same answers and the same places held as `admit` called once per call, in order
 * (database 1 one by one, database 2 in one script), limits reached inside the batch included; and
 * the calls of one turn on a busy connection decided in one command, a lone call on an idle one at
 * once.
 */

const url = inject('redisUrl');
const one = createRedis(`${url}/1`);
const many = createRedis(`${url}/2`);
const redis = createRedis(url);
const ns = `admitmany${process.pid}`;
afterAll(async () => {
  for (const r of [one, many, redis]) {
    const found = await r.keys(`${ns}*`);
    if (found.length > 0) await r.del(...found);
    r.disconnect();
  }
});

const keysOf = (fn: string) => ({ depth: `${ns}:admitted:${fn}`, bytes: `${ns}:bytes`, bytesTotal: `${ns}:bytes:total` });
const req = (fn: string, member: string, depth: number, bytesLimit: number, bytes: number, holdMs = 60_000): AdmissionRequest => ({
  keys: keysOf(fn),
  member,
  limits: { depth, bytes: bytesLimit },
  bytes,
  holdMs,
});

/** The places held, without their scores (deadlines on each Redis's own clock), and whether each set expires. */
async function places(r: typeof redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await r.keys(`${ns}*`)).sort()) {
    const type = await r.type(key);
    const ttl = await r.pttl(key);
    out[key] = [type === 'zset' ? (await r.zrange(key, 0, -1)).sort() : await r.get(key), ttl > 60_000];
  }
  return out;
}

describe('admitMany', () => {
  it('answers and holds exactly what admit does one call at a time, in order: limits reached inside the batch, expired places cleaned first', async () => {
    for (const r of [one, many]) {
      // Expired places (a gateway that died): cleaned before counting, their bytes given back.
      await r.zadd(keysOf('a').depth, 1, 'old1', 2, 'old2');
      await r.zadd(keysOf('a').bytes, 1, 'old1:500');
      await r.set(keysOf('a').bytesTotal, 500);
      // A live place of 'b' and its bytes.
      await r.zadd(keysOf('b').depth, Date.now() + 600_000, 'live');
      await r.zadd(keysOf('b').bytes, Date.now() + 600_000, 'live:100');
      await r.incrby(keysOf('b').bytesTotal, 100);
    }
    const rs: AdmissionRequest[] = [
      req('a', 'a1', 2, 1000, 300),
      req('b', 'b1', 2, 1000, 200),
      req('a', 'a2', 2, 1000, 300),
      req('a', 'a3', 2, 1000, 10), // 'a' is full (2): refused on depth, its bytes not counted
      req('c', 'c1', 0, 1000, 500), // 100 + 300 + 200 + 300 + 500 > 1000: refused on bytes
      req('b', 'b2', 2, 1000, 50), // 'b' has 'live' and b1: full
      req('c', 'c2', 0, 1000, 40),
      req('d', 'd1', 3, 0, 10_000), // bytes not limited
      req('d', 'd2', 0, 0, 5), // nothing limited
    ];
    const singly: Admission[] = [];
    for (const r of rs) singly.push(await admit(one, r));
    const together = await admitMany(many, rs);
    expect(together).toEqual(singly);
    expect(together.map((a) => (a.admitted ? 'ok' : a.full))).toEqual(['ok', 'ok', 'ok', 'depth', 'bytes', 'depth', 'ok', 'ok', 'ok']);
    expect(await places(many)).toEqual(await places(one));
    expect(await many.get(keysOf('a').bytesTotal)).toBe('940');
  });

  it('cleans expired places as admit does one call at a time when more than one clean-up (1 000) has expired', async () => {
    // 2 500 expired places of 1 byte each (a gateway that died with them in flight); a limit of 2 000.
    for (const r of [one, many]) {
      await r.del(keysOf('g').bytes, keysOf('g').bytesTotal);
      const old = Array.from({ length: 2500 }, (_, i) => [1, `gone${i}:1`]).flat();
      await r.zadd(keysOf('g').bytes, ...(old as Array<string | number>));
      await r.set(keysOf('g').bytesTotal, 2500);
    }
    // Alone, each call cleans up to 1 000: g1 finds 1 500 (admitted), g2 500 expired and g1's 100
    // (refused), g3 only g1's (the rest cleaned: admitted), g4 g1's and g3's (nothing to clean).
    const rs = [req('g', 'g1', 0, 2000, 100), req('g', 'g2', 0, 2000, 1450), req('g', 'g3', 0, 2000, 1450), req('g', 'g4', 0, 2000, 1450)];
    const singly: Admission[] = [];
    for (const r of rs) singly.push(await admit(one, r));
    expect(singly.map((a) => (a.admitted ? 'ok' : a.full === 'bytes' ? a.queuedBytes : a.full))).toEqual(['ok', 600, 'ok', 1550]);
    expect(await admitMany(many, rs)).toEqual(singly);
    expect(await places(many)).toEqual(await places(one));
    expect(await many.get(keysOf('g').bytesTotal)).toBe('1550');
  });

  it('admits a call alone in the queue whatever its bytes, and keeps each set for the longest hold of the batch, as admit does', async () => {
    const keysK = (k: string) => ({ depth: `${ns}:admitted:${k}`, bytes: `${ns}:bytes:${k}`, bytesTotal: `${ns}:bytes:${k}:total` });
    const at = (k: string, member: string, bytes: number, holdMs: number): AdmissionRequest => ({ keys: keysK(k), member, limits: { depth: 5, bytes: 1000 }, bytes, holdMs });
    // k1 is over the limit but alone in its queue (admitted); k2 then finds it there. Of l's three
    // calls, all admitted, the longest hold comes first.
    const batches = [
      [at('k', 'k1', 5000, 60_000), at('k', 'k2', 10, 60_000)],
      [at('l', 'l1', 10, 600_000), at('l', 'l2', 10, 1_000), at('l', 'l3', 10, 2_000)],
    ];
    const answers: string[][] = [];
    for (const rs of batches) {
      const singly: Admission[] = [];
      for (const r of rs) singly.push(await admit(one, r));
      expect(await admitMany(many, rs)).toEqual(singly);
      answers.push(singly.map((a) => (a.admitted ? 'ok' : a.full)));
    }
    expect(answers).toEqual([['ok', 'bytes'], ['ok', 'ok', 'ok']]);
    for (const key of Object.values(keysK('l'))) {
      const [ttlOne, ttlMany] = [await one.pttl(key), await many.pttl(key)];
      expect(ttlOne, key).toBeGreaterThan(600_000);
      expect(Math.abs(ttlMany - ttlOne), key).toBeLessThan(10_000);
    }
  });
});

describe('admitSoon', () => {
  it('decides the calls of one turn on a busy connection in one script; a lone call on an idle one at once', async () => {
    const sent: string[] = [];
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((...args: Parameters<typeof redis.sendCommand>) => {
      sent.push(args[0].name);
      return send(...args);
    }) as typeof redis.sendCommand;
    try {
      await redis.ping();
      sent.length = 0;
      // Idle: sent at once.
      const alone = admitSoon(redis, req('e', 'e1', 5, 0, 1));
      expect(sent).toEqual(['evalsha']);
      expect((await alone).admitted).toBe(true);
      // Busy (a reply pending): the three wait for the end of the turn, then go as one script.
      sent.length = 0;
      const pending = redis.ping();
      const three = [admitSoon(redis, req('e', 'e2', 2, 0, 1)), admitSoon(redis, req('e', 'e3', 2, 0, 1)), admitSoon(redis, req('f', 'f1', 2, 0, 1))];
      expect(sent).toEqual(['ping']);
      const answers = await Promise.all(three);
      await pending;
      expect(sent).toEqual(['ping', 'evalsha']);
      // e1 was held already: e2 is the 2nd of 2, e3 refused, f1 of another function admitted.
      expect(answers.map((a) => a.admitted)).toEqual([true, false, true]);
      expect(await redis.zcard(keysOf('e').depth)).toBe(2);
      // Idle, but other calls running (the gateway waits on them): held to the turn's end too, the
      // first of the turn with the rest (under load it was a write of its own, ahead of the batch).
      sent.length = 0;
      const two = [admitSoon(redis, req('g', 'g1', 5, 0, 1), true), admitSoon(redis, req('g', 'g2', 5, 0, 1))];
      expect(sent).toEqual([]);
      expect((await Promise.all(two)).map((a) => a.admitted)).toEqual([true, true]);
      expect(sent).toEqual(['evalsha']);
    } finally {
      redis.sendCommand = send;
    }
  });
});

describe('admitSoon, turn after turn and when Redis goes away', () => {
  const sleep = (ms: number) => new Promise<'hung'>((r) => setTimeout(r, ms, 'hung'));

  it('a busy turn after a batch was sent makes a batch of its own, answered too', async () => {
    await redis.ping();
    for (let turn = 0; turn < 3; turn++) {
      const pending = redis.ping();
      const two = Promise.all([admitSoon(redis, req('h', `h${turn}a`, 0, 0, 1)), admitSoon(redis, req('h', `h${turn}b`, 0, 0, 1))]);
      const answers = await Promise.race([two, sleep(3000)]);
      expect(answers, `turn ${turn}`).not.toBe('hung');
      await pending;
    }
  });

  it("every call of a batch whose connection is lost gets Redis's 503 (the one error mapping), none waits for ever", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brulee-admitsoon-'));
    const own = await startRedisServer({ dir, persist: false });
    // As the gateway's connection: commands fail rather than wait while Redis is away.
    const conn = createRedis(own.url, { failFast: true });
    try {
      await waitForRedis(conn);
      // Lost before the batch is sent: its socket is gone, the connection still says 'ready'.
      let pending = conn.ping().catch(() => undefined);
      let calls = [admitSoon(conn, req('i', 'i1', 2, 0, 1)), admitSoon(conn, req('j', 'j1', 2, 0, 1))];
      conn.stream.destroy();
      let outcomes = await Promise.race([Promise.allSettled(calls), sleep(5000)]);
      expect(outcomes).not.toBe('hung');
      expect((outcomes as PromiseSettledResult<Admission>[]).map((o) => (o.status === 'rejected' ? asBruleeError(o.reason).status : o.status))).toEqual([503, 503]);
      await pending;
      await waitForRedis(conn);
      // Lost with the batch sent (to a Redis stopped before it could run it), and Redis gone for good.
      const pid = Number(/process_id:(\d+)/.exec(await conn.info('server'))![1]);
      process.kill(pid, 'SIGSTOP');
      pending = conn.ping().catch(() => undefined);
      calls = [admitSoon(conn, req('i', 'i2', 2, 0, 1)), admitSoon(conn, req('j', 'j2', 2, 0, 1)), admitSoon(conn, req('j', 'j3', 2, 0, 1))];
      await new Promise((r) => setImmediate(r));
      expect(conn.commandQueue.length).toBe(2);
      process.kill(pid, 'SIGKILL');
      outcomes = await Promise.race([Promise.allSettled(calls), sleep(10_000)]);
      expect(outcomes).not.toBe('hung');
      expect((outcomes as PromiseSettledResult<Admission>[]).map((o) => (o.status === 'rejected' ? asBruleeError(o.reason).status : o.status))).toEqual([503, 503, 503]);
      await pending;
    } finally {
      conn.disconnect();
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("the dispatcher's othersRunning", () => {
  it('counts every call the gateway waits on, those bound for another node too: two calls for its own node in one turn then share one admission script; with nothing else pending the first goes alone', async () => {
    const k = keys(`${ns}or`);
    const conn = createRedis(url, { failFast: true });
    await waitForRedis(conn);
    const model = (fn: string) => ({ fn, sha256: fn.repeat(64).slice(0, 64), version: 1, sizeBytes: 1, loadMs: 1, execMs: 1, pinned: false });
    const beat = async (id: string, fn: string) => {
      const m = model(fn);
      const info: NodeInfo = { id, policy: 'lru', budgetBytes: 1e9, usedBytes: 1, concurrency: 4, resident: [{ key: modelKey(m), fn, sizeBytes: 1, state: 'resident', pinned: false, inFlight: 0 }], loads: 0, evictions: 0, startedAt: 0, heartbeatAt: 0 };
      await claimNodeId(redis, k, id, `tok-${id}`, 60_000);
      await writeHeartbeat(redis, k, info, `tok-${id}`);
    };
    // 'a' is warm on this process's node, 'b' on another one only.
    await beat('here', 'a');
    await beat('far', 'b');
    // This process's node, as far as the gateway sees it: it runs a call once it is admitted.
    const local: LocalNode = {
      id: 'here',
      accepting: true,
      here: { waiting: 0, running: 0 },
      canRunNow: () => false,
      canStartAlone: () => false,
      invokeHere: async () => ({ outputs: {}, coldStart: false, node: 'here', timings: { queueMs: 0, loadMs: 0, execMs: 0 }, fn: 'a', version: 1 }),
    };
    // Its clock on another connection: nothing of its own is pending on `conn` when a call is admitted.
    const dispatcher = new Dispatcher({ redisUrl: url, redis: conn, keys: k, local, deadAfterMs: 60_000, clock: new RedisClock(redis) });
    const admission = (fn: string): AdmissionRequest => ({ keys: { depth: k.admitted(fn), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal }, member: randomUUID(), limits: { depth: 100, bytes: 0 }, bytes: 0, holdMs: 60_000 });
    const call = (fn: string) => dispatcher.invoke({ model: model(fn), inputs: {}, acceptedAt: Date.now() }, 30_000, { admission: admission(fn) });
    // Both admission scripts known to Redis first (else each is sent twice: EVALSHA, then EVAL).
    await admit(conn, admission('warm'));
    await admitMany(conn, [admission('warm'), admission('warm')]);
    // The admission scripts sent, by their first key: a call's own set (`admit`), or the bytes set (`admitMany`, several calls).
    const scripts: string[] = [];
    const send = conn.sendCommand.bind(conn);
    conn.sendCommand = ((...args: Parameters<typeof conn.sendCommand>) => {
      const c = args[0];
      const first = String(c.args[2]);
      if ((c.name === 'evalsha' || c.name === 'eval') && (first === k.queuedBytes || first.startsWith(k.admitted('')))) scripts.push(first);
      return send(...args);
    }) as typeof conn.sendCommand;
    try {
      await dispatcher.nodes(true);
      // The gateway waits on a call bound for 'far' (queued on its lane, its admission answered; no node answers it yet).
      const far = call('b');
      far.catch(() => undefined);
      await until('the call for the other node is on its lane', async () => (await redis.llen(k.lane('far'))) === 1);
      expect(dispatcher.pending).toBe(1);
      scripts.length = 0;
      expect((await Promise.all([call('a'), call('a')])).map((r) => r.node)).toEqual(['here', 'here']);
      expect(scripts).toEqual([k.queuedBytes]);
      // Its answer given, nothing else pending: the first of two calls in a turn goes alone at once, the second after it.
      const [, frame] = (await redis.brpopBuffer(k.lane('far'), 5))!;
      await deliver(redis, k, decodeLaneJob(frame).data.reply, { ok: { outputs: { tensors: {} }, coldStart: false, node: 'far', timings: { queueMs: 0, loadMs: 0, execMs: 0 }, fn: 'b', version: 1 } });
      expect((await far).node).toBe('far');
      expect(dispatcher.pending).toBe(0);
      scripts.length = 0;
      expect((await Promise.all([call('a'), call('a')])).map((r) => r.node)).toEqual(['here', 'here']);
      expect(scripts).toEqual([k.admitted('a'), k.admitted('a')]);
    } finally {
      conn.sendCommand = send;
      await dispatcher.close();
      conn.disconnect();
      const found = await redis.keys(`${ns}or:*`);
      if (found.length > 0) await redis.del(...found);
    }
  });
});
