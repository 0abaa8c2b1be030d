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
});
