import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import protobuf from 'protobufjs';
import {
  CONV_BIAS,
  CONV_KERNEL,
  convModel,
  mlpForBytes,
  mlpForward,
  mlpModel,
  mlpOptionsForBytes,
  mlpWeights,
  mulberry32,
  typesModel,
  type MlpOptions,
} from '../../models/generate';
import { decodeModel, encodeModel, type ModelSpec } from '../../models/onnx-builder';

// logSeverityLevel 4 (fatal only): the conv failure case would otherwise print an ERROR line.
const QUIET: ort.InferenceSession.SessionOptions = { logSeverityLevel: 4 };

function tensorMeta(session: ort.InferenceSession, which: 'input' | 'output') {
  const meta = which === 'input' ? session.inputMetadata : session.outputMetadata;
  return meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name }));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Top-level field numbers of a protobuf message, in wire order. */
function topLevelFields(bytes: Uint8Array): number[] {
  const r = protobuf.Reader.create(bytes);
  const fields: number[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    fields.push(tag >>> 3);
    r.skipType(tag & 7);
  }
  return fields;
}

describe('onnx-builder', () => {
  it('writes ModelProto with the onnx.proto field numbers', () => {
    const spec: ModelSpec = {
      inputs: [{ name: 'a', type: 'float32', shape: [1] }],
      outputs: [{ name: 'b', type: 'float32', shape: [1] }],
      nodes: [{ op: 'Identity', inputs: ['a'], outputs: ['b'] }],
      docString: 'd',
    };
    // ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8 (protobufjs writes in declaration order)
    expect(new Set(topLevelFields(encodeModel(spec)))).toEqual(new Set([1, 2, 3, 7, 8]));
    const m = decodeModel(encodeModel(spec));
    expect(m.ir_version).toBe(7);
    expect(m.opset_import).toEqual([{ domain: '', version: 13 }]);
    expect(m.graph.doc_string).toBe('d');
  });

  it('stores initializers as little-endian raw_data and rejects mismatched data', () => {
    const spec: ModelSpec = {
      inputs: [],
      outputs: [{ name: 'c', type: 'int64', shape: [2] }],
      nodes: [],
      initializers: [{ name: 'c', type: 'int64', dims: [2], data: new BigInt64Array([1n, -2n]) }],
    };
    const t = decodeModel(encodeModel(spec)).graph.initializer[0];
    expect(t.data_type).toBe(7);
    expect(t.dims).toEqual([2]);
    expect([...t.raw_data]).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

    const bad = (data: Float32Array | Float64Array, dims: number[]): ModelSpec => ({
      ...spec,
      initializers: [{ name: 'w', type: 'float32', dims, data }],
    });
    expect(() => encodeModel(bad(new Float64Array(2), [2]))).toThrow(/Float32Array/);
    expect(() => encodeModel(bad(new Float32Array(3), [2]))).toThrow(/3 elements/);
  });
});

describe('mlpModel', () => {
  const opts: MlpOptions = { inputSize: 5, hidden: [7, 6], outputSize: 3, seed: 42 };

  it('has the declared signature (dynamic batch by default)', async () => {
    const s = await ort.InferenceSession.create(mlpModel(opts));
    expect(tensorMeta(s, 'input')).toEqual([{ name: 'x', type: 'float32', shape: ['batch', 5] }]);
    expect(tensorMeta(s, 'output')).toEqual([{ name: 'y', type: 'float32', shape: ['batch', 3] }]);
    await s.release();

    const fixed = await ort.InferenceSession.create(mlpModel({ ...opts, batch: 4 }));
    expect(tensorMeta(fixed, 'input')).toEqual([{ name: 'x', type: 'float32', shape: [4, 5] }]);
    expect(tensorMeta(fixed, 'output')).toEqual([{ name: 'y', type: 'float32', shape: [4, 3] }]);
    await fixed.release();
  });

  it('computes relu(x W + b)... like a plain-JS forward pass', async () => {
    const s = await ort.InferenceSession.create(mlpModel(opts));
    const batch = 3;
    const rand = mulberry32(7);
    const x = Float32Array.from({ length: batch * opts.inputSize }, () => rand() * 4 - 2);
    const { y } = await s.run({ x: new ort.Tensor('float32', x, [batch, opts.inputSize]) });
    expect(y?.dims).toEqual([batch, opts.outputSize]);
    const got = y?.data as Float32Array;
    const want = mlpForward(mlpWeights(opts), x, batch);
    expect(got.length).toBe(want.length);
    // Not all-zero: the relus must not have killed everything, or the comparison proves little.
    expect(want.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-5);
    await s.release();
  });

  it('stores exactly the mlpWeights values', () => {
    const init = decodeModel(mlpModel(opts)).graph.initializer as { name: string; dims: number[]; raw_data: Buffer }[];
    const layers = mlpWeights(opts);
    expect(init.map((t) => t.name)).toEqual(['W0', 'b0', 'W1', 'b1', 'W2', 'b2']);
    layers.forEach((l, i) => {
      const w = init[2 * i]!;
      const b = init[2 * i + 1]!;
      expect(w.dims).toEqual([l.inSize, l.outSize]);
      expect(bytesEqual(w.raw_data, new Uint8Array(l.w.buffer))).toBe(true);
      expect(bytesEqual(b.raw_data, new Uint8Array(l.b.buffer))).toBe(true);
      for (const v of [...l.w, ...l.b]) expect(Math.abs(v)).toBeLessThanOrEqual(0.1);
    });
  });

  it('is deterministic per seed', () => {
    const a = mlpModel(opts);
    expect(bytesEqual(a, mlpModel({ ...opts }))).toBe(true);
    expect(bytesEqual(a, mlpModel({ ...opts, seed: 43 }))).toBe(false);
    expect(a.length).toBe(mlpModel({ ...opts, seed: 43 }).length);
    expect(bytesEqual(mlpForBytes(200_000, 1), mlpForBytes(200_000, 1))).toBe(true);
    expect(bytesEqual(mlpForBytes(200_000, 1), mlpForBytes(200_000, 2))).toBe(false);
  });

  it.each([10_000, 100_000, 1_000_000, 5_000_000, 20_000_000])('mlpForBytes(%i) is within ±20% of the target', (target) => {
    const bytes = mlpForBytes(target, 3);
    expect(bytes.length).toBeGreaterThan(target * 0.8);
    expect(bytes.length).toBeLessThan(target * 1.2);
  });

  it('mlpForBytes output loads and runs', async () => {
    const o = mlpOptionsForBytes(1_000_000, 5);
    const s = await ort.InferenceSession.create(mlpForBytes(1_000_000, 5));
    const { y } = await s.run({ x: new ort.Tensor('float32', new Float32Array(o.inputSize).fill(0.5), [1, o.inputSize]) });
    expect(y?.dims).toEqual([1, o.outputSize]);
    await s.release();
  });
});

describe('typesModel', () => {
  it('has one input per element type, with fixed and symbolic dims', async () => {
    const s = await ort.InferenceSession.create(typesModel());
    const inputs = [
      { name: 'f32', type: 'float32', shape: [2, 3] },
      { name: 'f64', type: 'float64', shape: ['n'] },
      { name: 'i32', type: 'int32', shape: [1, 'n'] },
      { name: 'i64', type: 'int64', shape: [4] },
      { name: 'u8', type: 'uint8', shape: [2, 2] },
      { name: 'b', type: 'bool', shape: [3] },
    ];
    expect(tensorMeta(s, 'input')).toEqual(inputs);
    expect(tensorMeta(s, 'output')).toEqual(inputs.map((m) => ({ ...m, name: `${m.name}_out` })));

    const feeds = {
      f32: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]),
      f64: new ort.Tensor('float64', Float64Array.from([0.5, 1.5]), [2]),
      i32: new ort.Tensor('int32', Int32Array.from([-1, 2, 3, 4, 5]), [1, 5]),
      i64: new ort.Tensor('int64', BigInt64Array.from([1n, -2n, 3n, 2n ** 40n]), [4]),
      u8: new ort.Tensor('uint8', Uint8Array.from([0, 1, 254, 255]), [2, 2]),
      b: new ort.Tensor('bool', Uint8Array.from([1, 0, 1]), [3]),
    };
    const out = await s.run(feeds);
    for (const [name, t] of Object.entries(feeds)) {
      const o = out[`${name}_out`];
      expect(o?.type).toBe(t.type);
      expect(o?.dims).toEqual(t.dims);
      expect(Array.from(o?.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
    }
    // A wrong element type is rejected by onnxruntime itself.
    await expect(
      s.run({ ...feeds, f32: new ort.Tensor('float64', new Float64Array(6), [2, 3]) }),
    ).rejects.toThrow();
    await s.release();
  });
});

describe('convModel', () => {
  it('declares img [1,1,h,w] and out [1,1,oh,ow]', async () => {
    const s = await ort.InferenceSession.create(convModel(), QUIET);
    expect(tensorMeta(s, 'input')).toEqual([{ name: 'img', type: 'float32', shape: [1, 1, 'h', 'w'] }]);
    expect(tensorMeta(s, 'output')).toEqual([{ name: 'out', type: 'float32', shape: [1, 1, 'oh', 'ow'] }]);
    await s.release();
  });

  it('runs a valid 3x3 convolution for h=w=8 and fails for h=w=1', async () => {
    const s = await ort.InferenceSession.create(convModel(), QUIET);
    const n = 8;
    const img = Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3);
    const { out } = await s.run({ img: new ort.Tensor('float32', img, [1, 1, n, n]) });
    expect(out?.dims).toEqual([1, 1, n - 2, n - 2]);
    const got = out?.data as Float32Array;
    for (let r = 0; r < n - 2; r++) {
      for (let c = 0; c < n - 2; c++) {
        let acc = CONV_BIAS;
        for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) acc += img[(r + i) * n + c + j]! * CONV_KERNEL[i * 3 + j]!;
        expect(Math.abs(got[r * (n - 2) + c]! - acc)).toBeLessThan(1e-5);
      }
    }
    await expect(s.run({ img: new ort.Tensor('float32', new Float32Array(1), [1, 1, 1, 1]) })).rejects.toThrow(
      /Conv|shape/i,
    );
    await s.release();
  });
});
