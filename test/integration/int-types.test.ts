import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../../models/onnx-builder';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';

/** int8, int16, uint16, uint32 and uint64 end to end, at the edges of their ranges and one past. */
let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
  expect((await b.put('ints', MODEL)).status).toBe(201);
});
afterAll(async () => {
  await b?.destroy();
});

const TYPES = ['int8', 'int16', 'uint16', 'uint32', 'uint64'] as const;
const MODEL = encodeModel({
  inputs: TYPES.map((t) => ({ name: t, type: t, shape: [4] })),
  outputs: TYPES.map((t) => ({ name: `${t}_out`, type: t, shape: [4] })),
  nodes: TYPES.map((t) => ({ op: 'Identity', inputs: [t], outputs: [`${t}_out`] })),
});

/** The edges of each range, as literals (uint64's top as a decimal string: past 2^53). */
const EDGES = {
  int8: [-128, -1, 0, 127],
  int16: [-32768, -1, 0, 32767],
  uint16: [0, 1, 32768, 65535],
  uint32: [0, 1, 2147483648, 4294967295],
  uint64: [0n, 1n, 9007199254740993n, 18446744073709551615n],
} as const;
const ARRAYS = { int8: Int8Array, int16: Int16Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array } as const;
/** As JSON carries it: numbers, and integers past 2^53 as decimal strings. */
const json = (v: number | bigint) => (typeof v === 'bigint' ? (v <= 2n ** 53n ? Number(v) : v.toString()) : v);
const inputs = (over: Partial<Record<(typeof TYPES)[number], unknown[]>> = {}) =>
  Object.fromEntries(TYPES.map((t) => [t, { type: t, dims: [4], data: over[t] ?? EDGES[t].map(json) }]));

describe('integer element types end to end', () => {
  it('every edge value comes back exactly, as onnxruntime run directly returns it', async () => {
    const feeds = Object.fromEntries(
      TYPES.map((t) => [t, new ort.Tensor(t, (ARRAYS[t] as { from(a: readonly (number | bigint)[]): ort.Tensor.DataType }).from(EDGES[t]), [4])]),
    );
    const want = await runDirect(MODEL, feeds);
    const r = await b.invoke('ints', inputs());
    expect(r.status).toBe(200);
    for (const t of TYPES) {
      expect(r.body.outputs[`${t}_out`]).toEqual({ type: t, dims: [4], data: Array.from(want[`${t}_out`]!.data as ArrayLike<number | bigint>, json) });
    }
    // And as literals: nothing wrapped or truncated on the way.
    expect(r.body.outputs.uint32_out.data).toEqual([0, 1, 2147483648, 4294967295]);
    expect(r.body.outputs.uint64_out.data).toEqual([0, 1, '9007199254740993', '18446744073709551615']);
    expect(r.body.outputs.uint64_out.type).toBe('uint64');
    expect(r.body.outputs.int16_out.data).toEqual([-32768, -1, 0, 32767]);
    expect(r.body.outputs.int8_out.data).toEqual([-128, -1, 0, 127]);
    expect(r.body.outputs.uint16_out.data).toEqual([0, 1, 32768, 65535]);
  });

  it.each([
    ['int8', 128, 'an integer from -128 to 127'],
    ['int8', -129, 'an integer from -128 to 127'],
    ['int16', 32768, 'an integer from -32768 to 32767'],
    ['int16', -32769, 'an integer from -32768 to 32767'],
    ['uint16', 65536, 'an integer from 0 to 65535'],
    ['uint16', -1, 'an integer from 0 to 65535'],
    ['uint32', 4294967296, 'an integer from 0 to 4294967295'],
    ['uint32', -1, 'an integer from 0 to 4294967295'],
    ['uint64', '18446744073709551616', 'an integer in uint64 range (a number, or a decimal string)'],
    ['uint64', -1, 'an integer in uint64 range (a number, or a decimal string)'],
  ] as const)('%s: %s, one past the edge, is a 422 that says the range', async (type, bad, range) => {
    const data = [...EDGES[type].map(json)];
    data[2] = bad;
    const r = await b.invoke('ints', inputs({ [type]: data }));
    expect(r.status).toBe(422);
    expect(r.body.error).toEqual({ code: 'INVALID_INPUT', message: `input "${type}": element 2 is ${JSON.stringify(bad)}, but ${type} needs ${range}` });
  });
});
