import { afterEach, describe, expect, it, vi } from 'vitest';
import { mlpModel } from '../../models/generate';
import type { LoadedModel } from '../../runtime/onnx';
import type { Lease } from '../../runtime/warm-pool';
import type { Tensor } from '../../queue/wire';
import { floats } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';

// Every call of queue/free.ts's freeNow, with what it was given and what it freed.
const freed = vi.hoisted(() => [] as Array<{ sizes: number[]; bytes: number }>);
vi.mock('../../queue/free', async (actual) => {
  const m = await actual<typeof import('../../queue/free')>();
  return {
    ...m,
    freeNow: (views: Iterable<unknown>, minBytes?: number) => {
      const vs = [...views];
      const sizes = vs.map((v) => (ArrayBuffer.isView(v) ? v.byteLength : 0));
      const bytes = m.freeNow(vs, minBytes);
      freed.push({ sizes, bytes });
      return bytes;
    },
  };
});

/**
 * Issue 12 §4: a worker frees a call's output tensors and its answer's frame once the answer is
 * sent (queue/free.ts), not at V8's next collection: dead tensors were up to 0.6x of the budget at
 * the memory bench's peaks.
 */
const OUT = 16_384; // floats a row: 64 KiB
const ROWS = 4;
const started: TestBrulee[] = [];
afterEach(async () => {
  for (const b of started.splice(0).reverse()) await b.destroy();
  freed.length = 0;
});

describe('a worker frees what an answered call leaves', () => {
  it("its outputs (onnxruntime's arrays) and its answer's frame are detached once the answer is sent, and the caller's answer is whole", async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    const w = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '100MB' }, { namespace: gw.namespace, dataDir: gw.dataDir, nodeId: 'w' });
    started.push(w);
    // The outputs each run gives, as the node's model returns them.
    const outputs: Array<Record<string, Tensor>> = [];
    const pool = w.node!.pool;
    const acquire = pool.acquire.bind(pool);
    pool.acquire = async (...a) => {
      const lease: Lease<LoadedModel> = await acquire(...a);
      const model = lease.value;
      return {
        ...lease,
        release: () => lease.release(),
        value: { ...model, run: async (i, o) => { const out = await model.run(i, o); outputs.push(out); return out; } },
      };
    };
    expect((await gw.put('wide', mlpModel({ inputSize: 8, hidden: [], outputSize: OUT, seed: 1 }))).status).toBe(201);
    const r = await gw.invoke('wide', { x: { type: 'float32', dims: [ROWS, 8], data: floats(ROWS * 8, 3) } });
    expect(r.status).toBe(200);
    const y = Object.values(r.body.outputs as Record<string, { dims: number[]; data: number[] }>)[0]!;
    expect(y.dims).toEqual([ROWS, OUT]);
    expect(y.data).toHaveLength(ROWS * OUT);
    expect(y.data.every((v) => Number.isFinite(v))).toBe(true);
    expect(outputs).toHaveLength(1);
    const data = (Object.values(outputs[0]!)[0]!.data as Float32Array);
    // Freed just after the answer went: the caller may have it a moment before.
    await until('the output array detached', async () => data.byteLength === 0, 5000);
    const bytes = ROWS * OUT * 4;
    // The output array, then the frame (its bytes and the answer's JSON before them).
    await until('the frame freed', async () => freed.reduce((a, f) => a + f.bytes, 0) >= 2 * bytes, 5000);
    expect(freed.some((f) => f.sizes.some((s) => s > bytes))).toBe(true);
  });
});
