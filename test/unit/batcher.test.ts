import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { mlpModel } from '../../models/generate';
import { encodeModel, type ModelSpec } from '../../models/onnx-builder';
import { Batcher, batchability } from '../../runtime/batcher';
import { loadModel, type LoadedModel } from '../../runtime/onnx';
import type { Tensor } from '../../queue/wire';
import { floats, readModel, REAL_MODELS } from '../support/models';

/**
 * Every caller of a batched run must get exactly what onnxruntime gives on its input alone: the
 * expected values come from a separate onnxruntime session run on each caller's input by itself.
 */

const MLP = mlpModel({ inputSize: 8, hidden: [16], outputSize: 3, seed: 7 });

/** x [batch, 4] → y = ReduceMean over axis 0 (keepdims): one row, whatever the batch. */
function reduceSpec(declared: 'fixed' | 'batch'): ModelSpec {
  return {
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
    outputs: [{ name: 'y', type: 'float32', shape: [declared === 'fixed' ? 1 : 'batch', 4] }],
    nodes: [{ op: 'ReduceMean', name: 'mean', inputs: ['x'], outputs: ['y'], attrs: { axes: [0], keepdims: 1 } }],
    opset: 13,
    irVersion: 7,
  };
}

const STRINGS: ModelSpec = {
  inputs: [{ name: 's', type: 'string', shape: ['batch', 2] }],
  outputs: [{ name: 't', type: 'string', shape: ['batch', 2] }],
  nodes: [{ op: 'Identity', name: 'id', inputs: ['s'], outputs: ['t'] }],
  opset: 13,
  irVersion: 7,
};

function f32(rows: number, width: number, seed: number): Tensor {
  return { type: 'float32', dims: [rows, width], data: Float32Array.from(floats(rows * width, seed)) };
}

async function direct(model: Uint8Array | string, inputs: Record<string, Tensor>): Promise<Record<string, { dims: number[]; data: unknown[] }>> {
  const s = await ort.InferenceSession.create(model as Uint8Array);
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, t] of Object.entries(inputs)) feeds[k] = new ort.Tensor(t.type, t.data as ort.Tensor.DataType, t.dims);
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { dims: [...t.dims], data: Array.from(t.data as ArrayLike<unknown>) }]));
  } finally {
    await s.release();
  }
}

const plain = (o: Record<string, Tensor>) => Object.fromEntries(Object.entries(o).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as ArrayLike<unknown>) }]));

/** Counts runs of the model the batcher is given (each onnxruntime run, with its rows). */
function counting(m: LoadedModel): { model: LoadedModel; runs: number[] } {
  const runs: number[] = [];
  return {
    runs,
    model: {
      signature: m.signature,
      dispose: () => m.dispose(),
      run: (inputs, outputs) => {
        runs.push(Object.values(inputs)[0]!.dims[0]!);
        return m.run(inputs, outputs);
      },
    },
  };
}

const FAR = () => Date.now() + 60_000;

describe('batchability from the signature', () => {
  it('batches a named dynamic first axis, and PP-OCR cls whose output names its batch axis otherwise', async () => {
    const mlp = await loadModel(MLP);
    const cls = await loadModel(REAL_MODELS.ocrCls);
    expect(batchability(mlp.signature)).toEqual({ batchable: true, axis: 'batch' });
    expect(batchability(cls.signature).batchable).toBe(true);
    await mlp.dispose();
    await cls.dispose();
  });

  it('refuses an output whose first axis is fixed, or is another axis of the inputs', async () => {
    const fixed = await loadModel(encodeModel(reduceSpec('fixed')));
    expect(batchability(fixed.signature)).toEqual({ batchable: false, reason: 'the first axis of output "y" is fixed at 1, not a dynamic batch axis' });
    await fixed.dispose();
    const other: ModelSpec = { ...reduceSpec('fixed'), inputs: [{ name: 'x', type: 'float32', shape: ['batch', 'n'] }], outputs: [{ name: 'y', type: 'float32', shape: ['n'] }], nodes: [{ op: 'ReduceMean', name: 'mean', inputs: ['x'], outputs: ['y'], attrs: { axes: [0], keepdims: 0 } }] };
    const m = await loadModel(encodeModel(other));
    expect(batchability(m.signature)).toMatchObject({ batchable: false, reason: expect.stringContaining('"n", an inputs\' axis other than the batch axis') });
    await m.dispose();
  });
});

describe('Batcher with onnxruntime', () => {
  it('gives each caller (of 1, 3, 2 and 1 rows) exactly its own rows, in one run, equal to a run of its input alone', async () => {
    const { model, runs } = counting(await loadModel(MLP));
    const seen: Array<{ callers: number; rows: number }> = [];
    const b = new Batcher({ onRun: (r) => seen.push({ callers: r.callers, rows: r.rows }) });
    const inputs = [1, 3, 2, 1].map((rows, i) => ({ x: f32(rows, 8, 100 + i) }));
    const got = await Promise.all(inputs.map((x) => b.run(model, x, undefined, { maxBatch: 16, maxDelayMs: 30 }, FAR(), 'mlp')));
    expect(runs).toEqual([7]);
    expect(seen).toEqual([{ callers: 4, rows: 7 }]);
    for (let i = 0; i < inputs.length; i++) {
      expect(got[i]!.batchCallers).toBe(4);
      expect(plain(got[i]!.outputs)).toEqual(await direct(MLP, inputs[i]!));
    }
    await model.dispose();
  });

  it('batches PP-OCR cls callers (1x3x48x192 each) to the same bits as each alone', async () => {
    const { model, runs } = counting(await loadModel(REAL_MODELS.ocrCls));
    const b = new Batcher();
    const inputs = [1, 2, 1].map((rows, i) => ({ x: { type: 'float32', dims: [rows, 3, 48, 192], data: Float32Array.from(floats(rows * 3 * 48 * 192, 7 + i)) } as Tensor }));
    const got = await Promise.all(inputs.map((x) => b.run(model, x, undefined, { maxBatch: 8, maxDelayMs: 50 }, FAR())));
    expect(runs).toEqual([4]);
    const bytes = readModel(REAL_MODELS.ocrCls);
    for (let i = 0; i < inputs.length; i++) expect(plain(got[i]!.outputs)).toEqual(await direct(bytes, inputs[i]!));
    await model.dispose();
  });

  it('takes a call that arrives while the batch waits, and sends the next batch for one that arrives while it runs', async () => {
    const { model, runs } = counting(await loadModel(MLP));
    const b = new Batcher();
    const opts = { maxBatch: 4, maxDelayMs: 40 };
    const x = (s: number, rows = 1) => ({ x: f32(rows, 8, s) });
    const a = b.run(model, x(1), undefined, opts, FAR());
    await new Promise((r) => setTimeout(r, 10));
    const late = b.run(model, x(2, 2), undefined, opts, FAR()); // mid-wait: joins
    const c = b.run(model, x(3), undefined, opts, FAR()); // fills 4 rows: sent at once
    const next = b.run(model, x(4), undefined, opts, FAR()); // the batch is full: waits for the next
    const got = await Promise.all([a, late, c, next]);
    expect(runs).toEqual([4, 1]);
    expect(got.map((g) => g.batchCallers)).toEqual([3, 3, 3, 1]);
    // Each run is counted by exactly one of its callers (Triton's execution_count).
    expect(got.map((g) => g.countsRun)).toEqual([true, false, false, true]);
    for (const [i, seed, rows] of [[0, 1, 1], [1, 2, 2], [2, 3, 1], [3, 4, 1]] as const) expect(plain(got[i]!.outputs)).toEqual(await direct(MLP, x(seed, rows)));
    await model.dispose();
  });

  it('never waits past a caller\'s deadline', async () => {
    const { model, runs } = counting(await loadModel(MLP));
    const b = new Batcher();
    const t0 = Date.now();
    const r = await b.run(model, { x: f32(1, 8, 5) }, undefined, { maxBatch: 8, maxDelayMs: 5000 }, t0 + 30);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(runs).toEqual([1]);
    expect(plain(r.outputs)).toEqual(await direct(MLP, { x: f32(1, 8, 5) }));
    await model.dispose();
  });

  it('runs a model whose output is not per row one call at a time (from its signature, and when a run gives other rows than it was given)', async () => {
    for (const declared of ['fixed'] as const) {
      const bytes = encodeModel(reduceSpec(declared));
      const { model, runs } = counting(await loadModel(bytes));
      const b = new Batcher();
      const inputs = [2, 1, 3].map((rows, i) => ({ x: f32(rows, 4, 40 + i) }));
      const got = await Promise.all(inputs.map((x) => b.run(model, x, undefined, { maxBatch: 16, maxDelayMs: 20 }, FAR())));
      // 'batch' lies about its output: the batched run answers 1 row for 6, so each runs again alone.
      expect(runs).toEqual(declared === 'fixed' ? [2, 1, 3] : [6, 2, 1, 3]);
      for (let i = 0; i < inputs.length; i++) expect(plain(got[i]!.outputs)).toEqual(await direct(bytes, inputs[i]!));
      await model.dispose();
    }
  });

  it('concatenates string tensors', async () => {
    const bytes = encodeModel(STRINGS);
    const { model, runs } = counting(await loadModel(bytes));
    const b = new Batcher();
    const inputs = [['a', 'bé'], ['', 'c', 'd', 'e']].map((data) => ({ s: { type: 'string', dims: [data.length / 2, 2], data } as Tensor }));
    const got = await Promise.all(inputs.map((s) => b.run(model, s, undefined, { maxBatch: 8, maxDelayMs: 20 }, FAR())));
    expect(runs).toEqual([3]);
    for (let i = 0; i < inputs.length; i++) expect(plain(got[i]!.outputs)).toEqual(await direct(bytes, inputs[i]!));
    await model.dispose();
  });

  it('keeps calls asking for other outputs or other trailing dims apart, and runs alone without batching options', async () => {
    const { model, runs } = counting(await loadModel(MLP));
    const b = new Batcher();
    await Promise.all([b.run(model, { x: f32(1, 8, 1) }, undefined, undefined, FAR()), b.run(model, { x: f32(1, 8, 2) }, undefined, undefined, FAR())]);
    expect(runs).toEqual([1, 1]);
    await model.dispose();
  });
});
