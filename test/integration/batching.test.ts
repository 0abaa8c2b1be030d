import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { encodeModel, type ModelSpec } from '../../models/onnx-builder';
import { withoutPaths } from '../../runtime/onnx';
import { floats, ort, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * Dynamic batching through a whole brulee (gateway, BullMQ, a real node, real onnxruntime): callers
 * of one function sent together are merged into fewer onnxruntime runs (the node's
 * `brulee_batch_size` histogram says how many callers each run held), and each caller's answer
 * equals onnxruntime run directly on that caller's input alone, in a session of its own.
 */

const MLP = mlpModel({ inputSize: 16, hidden: [32], outputSize: 5, seed: 11 });

/**
 * x float32 [batch, n] + C (4 floats), then GatherElements along axis 1 with i int64 [batch, 2]:
 * y float32 [batch, 2]. A row of x that is not 4 wide fails the Add (a non-batch dim the signature
 * leaves open); an index past 3 fails the gather (a value no signature can check).
 */
const GATHER: ModelSpec = {
  inputs: [
    { name: 'x', type: 'float32', shape: ['batch', 'n'] },
    { name: 'i', type: 'int64', shape: ['batch', 2] },
  ],
  outputs: [{ name: 'y', type: 'float32', shape: ['batch', 2] }],
  initializers: [{ name: 'c', type: 'float32', dims: [4], data: Float32Array.of(0.5, -1, 2, 0.25) }],
  nodes: [
    { op: 'Add', name: 'add', inputs: ['x', 'c'], outputs: ['s'] },
    { op: 'GatherElements', name: 'gather', inputs: ['s', 'i'], outputs: ['y'], attrs: { axis: 1 } },
  ],
  opset: 13,
  irVersion: 7,
};
const GATHER_BYTES = encodeModel(GATHER);

let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee({ WORKER_CONCURRENCY: '32' });
});
afterAll(async () => {
  await b?.destroy();
});

/** The node's batch-size histogram for one function: runs, callers over all runs, and runs per `le` bucket. */
async function batchRuns(fn: string): Promise<{ runs: number; callers: number; le: Record<string, number> }> {
  const text = await (await b.req('/metrics')).text();
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  const le: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^brulee_batch_size_bucket\\{le="([^"]+)",function="${fn}"\\} (\\d+)$`, 'gm'))) le[m[1]!] = Number(m[2]);
  return {
    runs: value(new RegExp(`^brulee_batch_size_count\\{function="${fn}"\\} (\\d+)$`, 'm')),
    callers: value(new RegExp(`^brulee_batch_size_sum\\{function="${fn}"\\} (\\d+)$`, 'm')),
    le,
  };
}

const mlpInput = (rows: number, seed: number) => ({ x: { type: 'float32', dims: [rows, 16], data: floats(rows * 16, seed) } });

async function mlpDirect(rows: number, seed: number): Promise<number[]> {
  const out = await runDirect(MLP, { x: new ort.Tensor('float32', Float32Array.from(floats(rows * 16, seed)), [rows, 16]) });
  expect(out.y!.dims).toEqual([rows, 5]);
  return Array.from(out.y!.data as Float32Array);
}

// Each test has a function of its own and waits for batches to fill (maxDelayMs 1 s): they run at once.
describe.concurrent('dynamic batching through a node', () => {
  it('merges concurrent callers of one model into fewer runs; each gets exactly its own rows, equal to onnxruntime on its input alone', async ({ expect }) => {
    expect((await b.put('mlp', MLP, 'maxBatch=64&maxDelayMs=1000')).status).toBe(201);
    // Loaded once, so the callers below meet at the batcher rather than behind a cold start.
    expect((await b.invoke('mlp', mlpInput(1, 1))).status).toBe(200);
    const before = await batchRuns('mlp');
    const rows = [1, 2, 1, 3, 1, 1, 2, 1, 1, 1];
    const got = await Promise.all(rows.map((r, k) => b.invoke('mlp', mlpInput(r, 100 + k))));
    for (let k = 0; k < rows.length; k++) {
      expect(got[k]!.status).toBe(200);
      expect(got[k]!.body.outputs.y.dims).toEqual([rows[k], 5]);
      expect(got[k]!.body.outputs.y.data).toEqual(await mlpDirect(rows[k]!, 100 + k));
    }
    const after = await batchRuns('mlp');
    expect(after.callers - before.callers).toBe(rows.length);
    // Merged: fewer runs than callers, so some run held more than one caller.
    expect(after.runs - before.runs).toBeLessThan(rows.length);
    expect(after.runs - before.runs).toBeGreaterThanOrEqual(1);
    expect((after.le['1'] ?? 0) - (before.le['1'] ?? 0)).toBeLessThan(after.runs - before.runs);
  });

  it('with more rows waiting than maxBatch, sends the full batch and starts the next: no run holds more than maxBatch rows', async ({ expect }) => {
    // Callers of 2 rows, maxBatch 5: two callers (4 rows) wait; a third would make 6, so the two
    // are sent and the third starts the next batch. Six callers: three runs of two callers each.
    expect((await b.put('mlp5', MLP, 'maxBatch=5&maxDelayMs=1000')).status).toBe(201);
    expect((await b.invoke('mlp5', mlpInput(1, 2))).status).toBe(200);
    const before = await batchRuns('mlp5');
    const seeds = [200, 201, 202, 203, 204, 205];
    const got = await Promise.all(seeds.map((s) => b.invoke('mlp5', mlpInput(2, s))));
    for (let k = 0; k < seeds.length; k++) {
      expect(got[k]!.status).toBe(200);
      expect(got[k]!.body.outputs.y.data).toEqual(await mlpDirect(2, seeds[k]!));
    }
    const after = await batchRuns('mlp5');
    const d = (le: string) => (after.le[le] ?? 0) - (before.le[le] ?? 0);
    expect({ runs: after.runs - before.runs, callers: after.callers - before.callers, alone: d('1'), pairs: d('2') - d('1'), more: d('+Inf') - d('2') }).toEqual({ runs: 3, callers: 6, alone: 0, pairs: 3, more: 0 });
    // The statistics extension counts the same: 7 successful inferences in all (the warm-up
    // call ran alone), 4 onnxruntime runs.
    const stats = (await b.json('GET', '/v2/models/mlp5/stats')).body.model_stats[0];
    expect({ inference_count: stats.inference_count, execution_count: stats.execution_count }).toEqual({ inference_count: 7, execution_count: 4 });
  });

  it('a caller whose input the model refuses (a non-batch dim, an index out of range) gets its own 422; the callers batched with it get their answers', async ({ expect }) => {
    expect((await b.put('gather', GATHER_BYTES, 'maxBatch=32&maxDelayMs=1000&profileDims=x:1x4;i:1x2')).status).toBe(201);
    const call = (x: number[], width: number, idx: number[]) => b.invoke('gather', {
      x: { type: 'float32', dims: [1, width], data: x },
      i: { type: 'int64', dims: [1, 2], data: idx },
    });
    const direct = async (x: number[], width: number, idx: number[]) => {
      try {
        const out = await runDirect(GATHER_BYTES, {
          x: new ort.Tensor('float32', Float32Array.from(x), [1, width]),
          i: new ort.Tensor('int64', BigInt64Array.from(idx.map(BigInt)), [1, 2]),
        });
        return { data: Array.from(out.y!.data as Float32Array) };
      } catch (e) {
        return { error: withoutPaths((e as Error).message) }; // as brulee words it: no server paths
      }
    };
    expect((await call(floats(4, 1), 4, [0, 1])).status).toBe(200);
    const good = [0, 1, 2, 3, 4].map((k) => ({ x: floats(4, 300 + k), width: 4, idx: [k % 4, (k + 2) % 4] }));
    const wide = { x: floats(5, 9), width: 5, idx: [0, 1] }; // a row 5 wide: the Add cannot broadcast it
    const outOfRange = { x: floats(4, 10), width: 4, idx: [1, 7] }; // same shapes as the good ones: in their batch
    const all = [...good.slice(0, 2), wide, ...good.slice(2, 4), outOfRange, good[4]!];
    const got = await Promise.all(all.map((c) => call(c.x, c.width, c.idx)));
    for (let k = 0; k < all.length; k++) {
      const want = await direct(all[k]!.x, all[k]!.width, all[k]!.idx);
      if ('error' in want) {
        expect([got[k]!.status, got[k]!.body]).toEqual([422, { error: { code: 'INFERENCE_FAILED', message: `onnxruntime could not run the model on these inputs: ${want.error}` } }]);
      } else {
        expect([got[k]!.status, got[k]!.body.outputs.y.data]).toEqual([200, want.data]);
      }
    }
    expect(got.map((g) => g.status)).toEqual([200, 200, 422, 200, 200, 422, 200]);
  });

  it('a caller whose non-batch dim differs waits apart: it does not break the batch of the others, which still share one run', async ({ expect }) => {
    expect((await b.put('gather3', GATHER_BYTES, 'maxBatch=3&maxDelayMs=1000&profileDims=x:1x4;i:1x2')).status).toBe(201);
    const call = (x: number[], width: number) => b.invoke('gather3', { x: { type: 'float32', dims: [1, width], data: x }, i: { type: 'int64', dims: [1, 2], data: [0, 3] } });
    expect((await call(floats(4, 1), 4)).status).toBe(200);
    const before = await batchRuns('gather3');
    const xs = [0, 1, 2].map((k) => floats(4, 400 + k));
    const [a, wide, c, d] = await Promise.all([call(xs[0]!, 4), call(floats(5, 11), 5), call(xs[1]!, 4), call(xs[2]!, 4)]);
    expect([wide!.status, wide!.body.error.code]).toEqual([422, 'INFERENCE_FAILED']);
    for (const [k, r] of [a!, c!, d!].entries()) {
      const want = await runDirect(GATHER_BYTES, { x: new ort.Tensor('float32', Float32Array.from(xs[k]!), [1, 4]), i: new ort.Tensor('int64', BigInt64Array.of(0n, 3n), [1, 2]) });
      expect([r.status, r.body.outputs?.y.data]).toEqual([200, Array.from(want.y!.data as Float32Array)]);
    }
    // The three 4-wide callers fill maxBatch and go as one run; the 5-wide one ran alone and failed (no run counted).
    const after = await batchRuns('gather3');
    expect({ runs: after.runs - before.runs, callers: after.callers - before.callers }).toEqual({ runs: 1, callers: 3 });
  });
});
