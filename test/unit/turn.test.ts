import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRedis, waitForRedis } from '../../queue/connection';
import { startRedisServer } from '../../queue/redis-server';
import { TurnBatch } from '../../queue/turn';

/**
 * The end-of-turn batching that admissions (`admitSoon`) and counts (`CountsOut`) share
 * (queue/turn.ts); admit-many.test.ts and counts-merge.test.ts check each against a real Redis.
 */
describe('TurnBatch', () => {
  it("runs the items of one turn in one batch, in order, each caller getting its own item's result", async () => {
    const runs: number[][] = [];
    const b = new TurnBatch<number, string>((xs) => {
      runs.push(xs);
      return xs.map((x) => `r${x}`);
    });
    const first = [b.add(1, false), b.add(2, true), b.add(3, false)];
    // Added once the batch waits, whatever atOnce says; the run waits for the turn's end.
    expect(runs).toEqual([]);
    expect(await Promise.all(first)).toEqual(['r1', 'r2', 'r3']);
    expect(runs).toEqual([[1, 2, 3]]);
    // A promise of results does the same, in a later turn.
    const later = new TurnBatch<number, number>((xs) => Promise.resolve(xs.map((x) => x * 10)));
    expect(await Promise.all([later.add(4, false), later.add(5, false)])).toEqual([40, 50]);
  });

  it('runs an item alone at once when its caller says nothing else is coming and no batch waits', async () => {
    const runs: number[][] = [];
    const b = new TurnBatch<number, number>((xs) => {
      runs.push(xs);
      return xs;
    });
    const alone = b.add(7, true);
    expect(runs).toEqual([[7]]);
    expect(await alone).toBe(7);
  });

  it('fails every item of a batch whose run throws or rejects, and goes on with the next turn', async () => {
    let fail: 'throw' | 'reject' | undefined = 'throw';
    const b = new TurnBatch<number, number>((xs) => {
      if (fail === 'throw') throw new Error('thrown');
      if (fail === 'reject') return Promise.reject(new Error('rejected'));
      return xs;
    });
    const settled = (ps: Array<Promise<number>>) => Promise.all(ps.map((p) => p.then(String, (e: Error) => e.message)));
    expect(await settled([b.add(1, false), b.add(2, false)])).toEqual(['thrown', 'thrown']);
    expect(await settled([b.add(3, true)])).toEqual(['thrown']);
    fail = 'reject';
    expect(await settled([b.add(4, false), b.add(5, false)])).toEqual(['rejected', 'rejected']);
    fail = undefined;
    expect(await settled([b.add(6, false), b.add(7, false)])).toEqual(['6', '7']);
  });
});

describe('TurnBatch on a Redis connection', () => {
  it("sends the batches of one connection that end in one turn in one socket write (one read event of Redis's)", async () => {
    // A Redis of its own: its read events are this test's alone.
    const dir = mkdtempSync(join(tmpdir(), 'brulee-turn-'));
    const own = await startRedisServer({ dir, persist: false });
    const conn = createRedis(own.url);
    const admin = createRedis(own.url);
    try {
      await Promise.all([waitForRedis(conn, 10_000), waitForRedis(admin, 10_000)]);
      const reads = async () => Number(/total_reads_processed:(\d+)/.exec(await admin.info('stats'))![1]);
      const batch = (key: string) => new TurnBatch<number, unknown>((xs) => conn.incrby(key, xs.reduce((a, b) => a + b, 0)).then(() => xs), () => conn);
      const [a, b] = [batch('turn:a'), batch('turn:b')];
      const before = await reads();
      // The admissions and the counts of one turn, say: two batches, two scripts, one write.
      await Promise.all([a.add(1, false), b.add(2, false), a.add(3, false)]);
      // The batches' write, and the INFO that reads it.
      expect((await reads()) - before).toBe(2);
      expect(await conn.mget('turn:a', 'turn:b')).toEqual(['4', '2']);
    } finally {
      conn.disconnect();
      admin.disconnect();
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
