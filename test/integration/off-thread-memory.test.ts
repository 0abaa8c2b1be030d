import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats } from '../support/models';

/**
 * A worker's memory accounting with its models in the session host (runtime/session-host.ts).
 * On the main thread a run's outputs count in the main thread's ArrayBuffers, which a measured
 * run's growth leaves out, and a load stops the overhead's sampler; in the host's thread neither
 * holds, so the node accounts for both itself.
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

  // First: a measured run's growth is RSS, which the big model's load below would disturb.
  it("does not charge a model the outputs of its measured runs (made in the host's thread, the main thread's ArrayBuffers do not show them)", async () => {
    // Tiny weights, 16 MiB of outputs a run (1000 rows x 4096 floats).
    expect((await gw.put('wide', mlpModel({ inputSize: 8, hidden: [16], outputSize: 4096, seed: 2 }))).status).toBe(201);
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1000, 8], datatype: 'FP32', data: floats(8000, 3) }], parameters: { binary_data_output: true } });
    for (let i = 0; i < 3; i++) {
      const r = await gw.req('/v2/models/wide/infer', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(r.status).toBe(200);
      expect((await r.arrayBuffer()).byteLength).toBeGreaterThan(16_000_000);
    }
    const key = w.node!.pool.list().find((e) => e.fn === 'wide')!.key;
    expect(w.node!.inSessionHost(key)).toBe(true);
    // onnxruntime's arena holds one run's output (~16 MiB); the three outputs themselves were 48 MiB
    // more (RSS in a test process moves by several MiB with everything else in it).
    expect(w.node!.footprints.measured(key)).toBeLessThan(32 * MiB);
  }, 120_000);

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
