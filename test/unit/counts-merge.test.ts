import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ticketOf, releaseWith } from '../../queue/admission';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { applyCounts, applyWrites } from '../../queue/replies';
import { CountsOut, invocationCommands, type InvocationRecord } from '../../runtime/stats';
import { StatsOps } from '../../queue/writes';

/*
 * Several calls' counts merged into one script (queue/writes.ts `StatsOps.merge`, runtime/stats.ts `CountsOut`),
 * against a real Redis: the merged ops leave Redis exactly as applying each call's ops in turn
 * does (database 1 gets them one by one, database 2 merged), and the calls counted in one run of
 * microtasks leave in one script, each caller's promise resolving only once it is written.
 */

const url = inject('redisUrl');
const one = createRedis(`${url}/1`);
const merged = createRedis(`${url}/2`);
const redis = createRedis(url);
const ns = `merge${process.pid}`;
const k = keys(ns);
afterAll(async () => {
  for (const r of [one, merged, redis]) {
    const found = await r.keys(`${ns}*`);
    if (found.length > 0) await r.del(...found);
    r.disconnect();
  }
});

/** Everything under the namespace, by type, as one comparable object; not the markers of counts applied (one per script sent). */
async function dump(r: typeof redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await r.keys(`${ns}*`)).sort()) {
    if (key.startsWith(k.counted(''))) continue;
    const type = await r.type(key);
    if (type === 'hash') out[key] = await r.hgetall(key);
    else if (type === 'list') out[key] = await r.lrange(key, 0, -1);
    else if (type === 'zset') out[key] = await r.zrange(key, 0, -1, 'WITHSCORES');
    else out[key] = [type, await r.get(key)];
  }
  return out;
}

const call = (fn: string, r: Omit<InvocationRecord, 'fn'>, admission?: { depth: boolean; bytes: number }): StatsOps => {
  const o = invocationCommands(new StatsOps(), k, { fn, ...r });
  if (admission) {
    const ticket = ticketOf({
      keys: { depth: k.admitted(fn), bytes: k.queuedBytes, bytesTotal: k.queuedBytesTotal },
      member: randomUUID(),
      limits: { depth: admission.depth ? 10 : 0, bytes: admission.bytes > 0 ? 1000 : 0 },
      bytes: admission.bytes,
      holdMs: 60_000,
    });
    releaseWith(o, ticket);
  }
  return o;
};

describe('StatsOps.merge', () => {
  it('leaves Redis exactly as the calls applied one by one: sums, last sets, pushes in order, trims, guards, removals', async () => {
    const setup = async (r: typeof redis) => {
      await r.set(k.fn('a'), '{}');
      await r.set(k.fn('b'), '{}');
      // 'gone' has no registry record: its counts are skipped, its admission places still given back.
      for (const fn of ['a', 'b', 'gone']) await r.hset(k.fnStats(fn), 'invocations', 5, 'execMsTotal', '1.5');
      // Samples already there, near the cap, so the trims matter.
      await r.lpush(k.fnSamples('a', 'exec'), ...Array.from({ length: 998 }, (_, i) => String(i)));
    };
    await setup(one);
    await setup(merged);
    const calls: StatsOps[] = [];
    const places: Array<[string, string]> = [];
    for (let i = 0; i < 12; i++) {
      const fn = ['a', 'b', 'gone'][i % 3]!;
      const r: Omit<InvocationRecord, 'fn'> =
        i % 5 === 4
          ? { outcome: 'error', loaded: false, loadMs: 0, execMs: 0, totalMs: 1.25 }
          : i % 4 === 0
            ? { outcome: 'ok', coldStart: true, loaded: true, loadMs: 3.125 + i, fetchMs: i % 8 === 0 ? 1.5 : 0, execMs: 0.25 * i, countsRun: true, queueMs: 0.5, totalMs: 4.001 * i }
            : { outcome: 'ok', coldStart: false, loaded: false, loadMs: 0, execMs: 0.1 * i + 0.003, countsRun: i % 2 === 0, queueMs: 0.333, totalMs: 0.777 + i };
      const o = call(fn, r, { depth: i % 2 === 0, bytes: i % 3 === 1 ? 100 + i : 0 });
      calls.push(o);
      for (let at = 0; at < o.args.length; at += 4) if (o.args[at] === 'ZREM' || o.args[at] === 'GIVEBACK') places.push([o.keys[(o.args[at + 1] as number) - 1]!, o.args[at + 2] as string]);
    }
    // The admission places the calls give back are taken first (with their bytes counted).
    for (const r of [one, merged]) {
      for (const [set, member] of places) {
        await r.zadd(set, Date.now() + 60_000, member);
        const bytes = /:(\d+)$/.exec(member);
        if (set === k.queuedBytes && bytes) await r.incrby(k.queuedBytesTotal, Number(bytes[1]));
      }
    }
    for (const o of calls) await applyCounts(one, k, o);
    const m = StatsOps.merge(calls);
    await applyCounts(merged, k, m);
    const [a, b] = [await dump(one), await dump(merged)];
    expect(Object.keys(a).length).toBeGreaterThan(8);
    expect(b).toEqual(a);
    // All places given back, and the exec samples capped.
    expect(a[k.queuedBytesTotal]).toEqual(['string', '0']);
    expect((a[k.fnSamples('a', 'exec')] as string[]).length).toBe(1000);
    // 12 calls' 143 ops are 64 merged (3 functions, cold and warm, errors, places given back).
    expect([calls.reduce((n, o) => n + o.count, 0), m.count]).toEqual([143, 64]);
  });

  it("applies a merge of more calls of one function than Lua's unpack takes at once (~8 000): every count, every place given back", async () => {
    // 8 500 calls of one batched function answered in one turn (16 slots of maxBatch 1 024 allow it).
    await merged.set(k.fn('many'), '{}');
    const calls = Array.from({ length: 8500 }, (_, i) => call('many', { outcome: 'ok', coldStart: false, loaded: false, loadMs: 0, execMs: i, countsRun: true, totalMs: i }, { depth: true, bytes: 0 }));
    const members = calls.map((o) => o.args[o.args.indexOf('ZREM') + 2] as string);
    await merged.zadd(k.admitted('many'), ...members.flatMap((m) => [Date.now() + 60_000, m]));
    await applyWrites(merged, k, randomUUID(), StatsOps.merge(calls));
    expect(await merged.hget(k.fnStats('many'), 'invocations')).toBe('8500');
    expect(await merged.zcard(k.admitted('many'))).toBe(0);
    expect(await merged.lrange(k.fnSamples('many', 'exec'), 0, -1)).toEqual(Array.from({ length: 1000 }, (_, i) => (8499 - i).toFixed(3)));
  });
});

describe('CountsOut', () => {
  it('with other calls running, sends those counted until the end of the turn in one script, resolving each once it is written', async () => {
    const sent: Array<{ id: string; count: number; writing: number }> = [];
    const running = 4;
    const out = new CountsOut(
      (id, writes) => {
        void applyWrites(redis, k, id, writes);
        sent.push({ id, count: writes.count, writing: redis.stream.writableLength });
      },
      (n) => running > n,
    );
    await redis.ping();
    const op = (n: number) => {
      const o = new StatsOps();
      o.hincrby(`${ns}:counted`, 'n', n);
      return o;
    };
    const ids = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    // Runs ending in immediates of one turn (onnxruntime ends each run in one of its own): two
    // calls counted in the first, one a microtask later, one in the next: one script, after the last.
    const added: Array<Promise<void>> = [];
    await new Promise<void>((resolve) => {
      setImmediate(() => {
        added.push(out.add(ids[0]!, op(1)), out.add(ids[1]!, op(2)));
        void Promise.resolve().then(() => added.push(out.add(ids[2]!, op(4))));
      });
      setImmediate(() => {
        added.push(out.add(ids[3]!, op(8)));
        resolve();
      });
    });
    expect(sent).toEqual([]);
    await Promise.all(added);
    // Written (handed to the socket, nothing left in this process) before any caller went on.
    expect(sent).toEqual([{ id: ids[0], count: 1, writing: 0 }]);
    expect(await redis.hget(`${ns}:counted`, 'n')).toBe('15');
    // Once per batch id: the marker of the first call's id keeps a resent batch from counting twice.
    await applyWrites(redis, k, ids[0]!, op(100));
    expect(await redis.hget(`${ns}:counted`, 'n')).toBe('15');
  });

  it('sends a call with no other running at once (a lone caller, a cold start: before its heartbeat)', async () => {
    const sent: string[] = [];
    const out = new CountsOut(
      (id, writes) => {
        void applyWrites(redis, k, id, writes);
        sent.push(id);
      },
      (n) => 1 > n,
    );
    await redis.ping();
    const o = new StatsOps();
    o.hincrby(`${ns}:alone`, 'n', 1);
    const id = randomUUID();
    const alone = out.add(id, o);
    expect(sent).toEqual([id]);
    expect(redis.stream.writableLength).toBe(0);
    await alone;
    expect(await redis.hget(`${ns}:alone`, 'n')).toBe('1');
  });
});
