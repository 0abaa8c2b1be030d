import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats } from '../support/models';

/**
 * A worker's memory accounting with its models in the session host (runtime/session-host.ts).
 * On the main thread a load stops the overhead's sampler; in the host's thread it does not, so the
 * node counts a load there as held from its start. (A measured run's outputs made in the host:
 * footprint.test.ts, `outside`; RSS in a test process moves too much to see them here reliably.)
 */

describe("a worker's memory accounting with models in the host", () => {
  const MiB = 1024 ** 2;
  let gw: TestBrulee;
  let w: TestBrulee;
  beforeAll(async () => {
    gw = await startBrulee({ ROLE: 'gateway' });
    w = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '600MB', ORT_OFF_THREAD: 'always' }, { namespace: gw.namespace, dataDir: gw.dataDir, nodeId: 'w' }, { chargeProcess: true });
  }, 60_000);
  afterAll(async () => {
    await w?.destroy();
    await gw?.destroy();
  });

  it('counts a model loading in the host as held from the load on (the overhead sampler runs during it)', async () => {
    // 60 weights of 1 MiB: no tensor over 1 MiB, so no mapped artifact: the load copies all ~60 MiB into memory.
    const big = mlpModel({ inputSize: 512, hidden: Array.from({ length: 60 }, () => 512), outputSize: 16, seed: 1 });
    expect((await gw.put('big', big)).status).toBe(201);
    const node = w.node!;
    const atRest = node.heldBytes(0);
    let duringLoad = 0;
    const t = setInterval(() => {
      if (node.pool.list().some((e) => e.fn === 'big' && e.state === 'loading')) duringLoad = Math.max(duringLoad, node.heldBytes(0) - atRest);
    }, 1);
    try {
      const r = await gw.invoke('big', { x: { type: 'float32', dims: [2, 512], data: floats(1024, 1) } });
      expect(r.status).toBe(200);
      expect(r.body.coldStart).toBe(true);
    } finally {
      clearInterval(t);
    }
    const entry = node.pool.list().find((e) => e.fn === 'big')!;
    expect(node.inSessionHost(entry.key)).toBe(true);
    // Seen while it loaded: its charge at admission, near its ~60 MiB of weights (the pool itself
    // counts it only once the load has ended; the node's measurement of its load and first run may
    // raise the charge after).
    expect(duringLoad).toBeGreaterThan(48 * 1024 ** 2);
    expect(duringLoad).toBeLessThanOrEqual(entry.sizeBytes);
  }, 120_000);
});
