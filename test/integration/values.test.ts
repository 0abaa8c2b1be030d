import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHalf, toHalf } from '../../functions/float16';
import { encodeModel } from '../../models/onnx-builder';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';

let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
});

/** y = log(x) (NaN and -Infinity for x < 0 and x = 0), h passed through in float16, i64 passed through. */
const valuesModel = encodeModel({
  inputs: [
    { name: 'x', type: 'float32', shape: [3] },
    { name: 'h', type: 'float16', shape: [4] },
    { name: 'i', type: 'int64', shape: [2] },
  ],
  outputs: [
    { name: 'y', type: 'float32', shape: [3] },
    { name: 'h_out', type: 'float16', shape: [4] },
    { name: 'i_out', type: 'int64', shape: [2] },
  ],
  nodes: [
    { op: 'Log', inputs: ['x'], outputs: ['y'] },
    { op: 'Identity', inputs: ['h'], outputs: ['h_out'] },
    { op: 'Identity', inputs: ['i'], outputs: ['i_out'] },
  ],
});
const inputs = {
  x: { type: 'float32', dims: [3], data: [-1, 0, 1] },
  h: { type: 'float16', dims: [4], data: [1.5, -0.333, 65504, 'Infinity'] },
  i: { type: 'int64', dims: [2], data: ['9007199254740993', -5] },
};

describe('values JSON cannot write plainly', () => {
  it('NaN and infinities travel as strings; float16 as numbers; int64 past 2^53 as decimal strings (v1)', async () => {
    expect((await b.put('values', valuesModel)).status).toBe(201);
    const r = await b.invoke('values', inputs);
    expect(r.status).toBe(200);
    expect(r.body.outputs.y.data).toEqual(['NaN', '-Infinity', 0]);
    const want = await runDirect(valuesModel, {
      x: new ort.Tensor('float32', Float32Array.from([-1, 0, 1]), [3]),
      h: new ort.Tensor('float16', Uint16Array.from([1.5, -0.333, 65504, Infinity].map(toHalf)), [4]),
      i: new ort.Tensor('int64', BigInt64Array.from([9007199254740993n, -5n]), [2]),
    });
    expect(r.body.outputs.h_out).toEqual({ type: 'float16', dims: [4], data: Array.from(want.h_out!.data as Uint16Array, fromHalf).map((v) => (Number.isFinite(v) ? v : String(v))) });
    expect(r.body.outputs.h_out.data).toEqual([1.5, -0.3330078125, 65504, 'Infinity']); // -0.333 to the nearest half
    expect(r.body.outputs.i_out.data).toEqual(['9007199254740993', -5]);
  });

  it('v2 writes INT64 past 2^53 as a JSON number and FP16 as numbers', async () => {
    const res = await b.req('/v2/models/values/infer', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'x', shape: [3], datatype: 'FP32', data: [1, 2, 3] },
          { name: 'h', shape: [4], datatype: 'FP16', data: [1, 2, 3, 4] },
          { name: 'i', shape: [2], datatype: 'INT64', data: ['9007199254740993', 7] },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"data":[9007199254740993,7]');
    expect(text).toContain('"datatype":"FP16","shape":[4],"data":[1,2,3,4]');
  });

  it('rejects data nested deeper than the dims with a 422, not a crash', async () => {
    for (const depth of [5_000, 200_000]) {
      const deep = `${'['.repeat(depth)}1${']'.repeat(depth)}`;
      const body = JSON.stringify({ inputs: { ...inputs, x: { type: 'float32', dims: [3], data: '@' } } }).replace('"@"', deep);
      const r = await b.json('POST', '/functions/values/invoke', body);
      // Read without recursion at any depth: the same 422, naming the input.
      expect(r.status).toBe(422);
      expect(r.body.error.code).toBe('INVALID_INPUT');
      expect(r.body.error.message).toMatch(/^input "x": data is nested deeper than the input's 1 dims/);
    }
    const ok = await b.invoke('values', { ...inputs, x: { type: 'float32', dims: [3], data: [[1, 2, 3]] } });
    expect(ok.status).toBe(422); // [[...]] is two levels for a rank-1 input
    expect((await b.invoke('values', inputs)).status).toBe(200);
  });

  it('carries string tensors: a model with a string output registers, and v1 JSON returns its strings', async () => {
    const strings = encodeModel({
      inputs: [{ name: 'x', type: 'float32', shape: [2] }],
      outputs: [{ name: 's', type: 'string', shape: [2] }],
      nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['s'], attrs: { to: 8 } }],
    });
    const x = Float32Array.of(1.5, -0.25);
    const want = await runDirect(strings, { x: new ort.Tensor('float32', x, [2]) });
    expect((await b.put('strings', strings)).status).toBe(201);
    const r = await b.invoke('strings', { x: { type: 'float32', dims: [2], data: Array.from(x) } });
    expect(r.status).toBe(200);
    expect(r.body.outputs.s).toEqual({ type: 'string', dims: [2], data: want.s!.data });
    expect(want.s!.data).toEqual(['1.5', '-0.25']);
  });
});

describe('float16 conversion', () => {
  it('round-trips every half-precision value', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = fromHalf(h);
      if (Number.isNaN(x)) expect(Number.isNaN(fromHalf(toHalf(x)))).toBe(true);
      else expect(toHalf(x), `0x${h.toString(16)}`).toBe(h);
    }
  });
  it('rounds to nearest, ties to even, and overflows to infinity', () => {
    expect(fromHalf(toHalf(1 + 2 ** -11))).toBe(1); // tie: to even
    expect(fromHalf(toHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(fromHalf(toHalf(70000))).toBe(Infinity);
    expect(fromHalf(toHalf(2 ** -25))).toBe(0);
    expect(fromHalf(toHalf(2 ** -24))).toBe(2 ** -24);
  });
});
