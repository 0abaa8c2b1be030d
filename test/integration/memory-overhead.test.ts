import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { mlpForBytes } from '../../models/generate';
import { floats } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { within } from '../support/within';

/**
 * Issue 12 §4: a worker that is its process's only tenant (server.ts, ROLE=worker) charges its warm
 * pool what the process holds beyond the pool's charges (runtime/footprint.ts ProcessOverhead), so
 * an admission evicts idle models to leave it room. Here the test itself is that overhead: 160 MiB
 * of filled buffers in the worker's process, more than its 100 MB budget.
 */
const MiB = 1024 ** 2;
const started: TestBrulee[] = [];
afterEach(async () => {
  for (const b of started.splice(0).reverse()) await b.destroy();
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mlp = (seed: number) => ({ x: { type: 'float32', dims: [2, 64], data: floats(128, seed) } });

describe('a worker charges its process', () => {
  it('memory the process holds beyond the charges becomes the pool\'s overhead, and the next admission evicts the idle model for it', async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    const w = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '100MB' }, { namespace: gw.namespace, dataDir: gw.dataDir, nodeId: 'w' }, { chargeProcess: true });
    started.push(w);
    const pool = w.node!.pool;
    for (const [fn, seed] of [['mlp-a', 1], ['mlp-b', 2]] as const) expect((await gw.put(fn, mlpForBytes(2 * MiB, seed))).status).toBe(201);
    expect((await gw.invoke('mlp-a', mlp(1))).status).toBe(200);
    expect(pool.list().map((m) => m.fn)).toEqual(['mlp-a']);
    const held = Array.from({ length: 10 }, () => Buffer.alloc(16 * MiB, 1)); // touched: resident
    await within(10_000, 'the overhead seen by the pool', (async () => {
      while (pool.overheadBytes < 120 * MiB) await sleep(20);
    })());
    expect((await gw.invoke('mlp-b', mlp(2))).status).toBe(200);
    // Over 120 MiB of overhead leave no room beside mlp-b: the idle mlp-a went for it.
    expect(pool.list().map((m) => m.fn)).toEqual(['mlp-b']);
    expect(held.length).toBe(10);
  });

  it('a load held back by dead buffers has them collected (a full GC) and goes ahead, not waiting for V8 to get to them', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (o?: { type: 'minor' }) => void;
    gc(); // earlier tests' buffers, which the worker would take for its buffers at rest
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    const w = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '16MB' }, { namespace: gw.namespace, dataDir: gw.dataDir, nodeId: 'w' }, { chargeProcess: true });
    started.push(w);
    const pool = w.node!.pool;
    for (const [fn, seed] of [['mlp-a', 1], ['mlp-b', 2]] as const) expect((await gw.put(fn, mlpForBytes(2 * MiB, seed))).status).toBe(201);
    expect((await gw.invoke('mlp-a', mlp(1))).status).toBe(200);
    // 40 MiB of buffers that survive two scavenges (so only a full collection frees them), then die.
    let held: Buffer[] | undefined = Array.from({ length: 5 }, () => Buffer.alloc(8 * MiB, 1));
    const dead = new WeakRef(held[0]!);
    gc({ type: 'minor' });
    gc({ type: 'minor' });
    held = undefined;
    // The overhead they make, as the pool sees it while they exist (RSS in a test process moves
    // with everything else in it): the node's samples count again once they are gone.
    const setOverhead = pool.setOverhead.bind(pool);
    pool.setOverhead = (n) => setOverhead(dead.deref() === undefined ? n : 30 * MiB);
    pool.setOverhead(0);
    expect(pool.overheadBytes).toBe(30 * MiB);
    // mlp-b's 2 MiB and 30 MiB of overhead do not fit 16 MB: the load waits, and the node collects first.
    expect((await gw.invoke('mlp-b', mlp(2))).status).toBe(200);
    // What it measures after the collection is the test process's real RSS: whether the load then
    // still waited, or went ahead at once, is not this test's point.
    expect({ waited: pool.overheadWaits.loads, collections: w.node!.collections, collected: dead.deref() === undefined, resident: pool.list().map((m) => m.fn) }).toEqual({
      waited: 1,
      collections: 1,
      collected: true,
      resident: ['mlp-b'],
    });
    expect(held).toBeUndefined();
  });
});
