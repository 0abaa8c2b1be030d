import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats } from '../support/models';

/**
 * A worker's memory accounting with its models in the session host (runtime/session-host.ts).
 * On the main thread a run's outputs count in the main thread's ArrayBuffers, which a measured
 * run's growth leaves out; made in the host's thread, they do not.
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

  it("does not charge a model the outputs of its measured runs (made in the host's thread, the main thread's ArrayBuffers do not show them)", async () => {
    // Tiny weights, 8 MiB of outputs a run (500 rows x 4096 floats).
    expect((await gw.put('wide', mlpModel({ inputSize: 8, hidden: [16], outputSize: 4096, seed: 2 }))).status).toBe(201);
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [500, 8], datatype: 'FP32', data: floats(4000, 3) }], parameters: { binary_data_output: true } });
    for (let i = 0; i < 3; i++) {
      const r = await gw.req('/v2/models/wide/infer', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(r.status).toBe(200);
      expect((await r.arrayBuffer()).byteLength).toBeGreaterThan(8_000_000);
    }
    const key = w.node!.pool.list().find((e) => e.fn === 'wide')!.key;
    expect(w.node!.inSessionHost(key)).toBe(true);
    // onnxruntime's arena holds one run's output (~8 MiB); the three outputs themselves were 24 MiB more.
    expect(w.node!.footprints.measured(key)).toBeLessThan(16 * MiB);
  }, 120_000);
});
