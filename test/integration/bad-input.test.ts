import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../../models/onnx-builder';
import { convModel, mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * Input that once gave a 500: values nested 20 000 levels deep (a stack overflow when an error
 * message rendered them), and dims past 2^53 hidden by a zero dim (onnxruntime refused the tensor
 * on the node). Each must be a 4xx that names the problem in a short message.
 */

let b: TestBrulee;
const DEEP = 20_000;
const deepArray = (leaf: string) => '['.repeat(DEEP) + leaf + ']'.repeat(DEEP);
const deepObject = (leaf: string) => '{"a":'.repeat(DEEP) + leaf + '}'.repeat(DEEP);
const identity4 = encodeModel({
  inputs: [{ name: 'x', type: 'float32', shape: ['a', 'b', 'c', 'd'] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['a', 'b', 'c', 'd'] }],
  nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  graphName: 'identity4',
});

beforeAll(async () => {
  b = await startBrulee();
  expect((await b.put('m', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
  expect((await b.put('conv', convModel())).status).toBe(201);
  expect((await b.put('id4', identity4)).status).toBe(201);
});
afterAll(async () => {
  await b?.destroy();
});

async function post(path: string, body: string) {
  const res = await b.req(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as any };
}

describe('deeply nested JSON is a 4xx, not a stack overflow', () => {
  it('nested 20 000 levels in "type" (v1)', async () => {
    const r = await post('/functions/m/invoke', `{"inputs":{"x":{"type":${deepArray('"float32"')},"dims":[1,4],"data":[1,2,3,4]}}}`);
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe('INVALID_INPUT');
    expect(r.body.error.message).toMatch(/input "x": type \[\[\[.*is not an element type brulee carries/);
    expect(r.text.length).toBeLessThan(500);
  });
  it('nested 20 000 levels in a data element (v1)', async () => {
    const r = await post('/functions/m/invoke', `{"inputs":{"x":{"type":"float32","dims":[1,4],"data":[1,2,3,${deepObject('1')}]}}}`);
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/element 3 is \{"a": \{"a": .*needs a number/);
    expect(r.text.length).toBeLessThan(500);
  });
  it('nested 20 000 levels as data (v1): deeper than the rank', async () => {
    const r = await post('/functions/m/invoke', `{"inputs":{"x":{"type":"float32","dims":[1,4],"data":${deepArray('1')}}}}`);
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/nested deeper than the input's 2 dims/);
  });
  it('nested 20 000 levels on /v2/.../infer (a data element, the datatype, the parameters)', async () => {
    const elem = await post('/v2/models/m/infer', `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,${deepObject('1')}]}]}`);
    expect(elem.status).toBe(422);
    expect(elem.body.error).toMatch(/element 3 is \{"a": .*needs a number/);
    const dt = await post('/v2/models/m/infer', `{"inputs":[{"name":"x","shape":[1,4],"datatype":${deepArray('"FP32"')},"data":[1,2,3,4]}]}`);
    expect(dt.status).toBe(400);
    const params = await post('/v2/models/m/infer', `{"parameters":${deepObject('1')},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`);
    expect(params.status).toBe(200);
    expect(params.body.outputs[0].shape).toEqual([1, 2]);
  });
});

describe('dims JavaScript calls integers but no tensor can have', () => {
  it('a non-safe-integer dim next to a zero dim is a 422 on v1, as on v2', async () => {
    const r = await post('/functions/conv/invoke', JSON.stringify({ inputs: { img: { type: 'float32', dims: [1, 1, 0, 1e300], data: [] } } }));
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/input "img": dims must be a list of non-negative integers/);
    const v2 = await post('/v2/models/conv/infer', JSON.stringify({ inputs: [{ name: 'img', shape: [1, 1, 0, 1e300], datatype: 'FP32', data: [] }] }));
    expect(v2.status).toBe(400);
  });
  it('safe dims whose product passes 2^53 beside a zero dim are a 422', async () => {
    const r = await post('/functions/id4/invoke', JSON.stringify({ inputs: { x: { type: 'float32', dims: [0, 3, 2 ** 52, 2 ** 20], data: [] } } }));
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/more than 2\^53 elements/);
  });
  it('an empty tensor with large but sane dims runs and comes back empty', async () => {
    const r = await post('/functions/id4/invoke', JSON.stringify({ inputs: { x: { type: 'float32', dims: [0, 3, 1e6, 1], data: [] } } }));
    expect(r.status).toBe(200);
    expect(r.body.outputs.y).toEqual({ type: 'float32', dims: [0, 3, 1e6, 1], data: [] });
  });
});

describe('error messages do not echo megabytes of the request', () => {
  it('a 3 MB string element is cut in the message', async () => {
    const big = '9'.repeat(3_000_000);
    const r = await post('/functions/m/invoke', JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, big] } } }));
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/element 3 is "9999.*…, but float32 needs a number/);
    expect(r.text.length).toBeLessThan(500);
  });
  it('a thousand unknown input names of 10 KB each are not all listed', async () => {
    const inputs = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${i}`.padEnd(10_000, 'z'), { type: 'float32', dims: [1], data: [1] }]));
    const r = await post('/functions/m/invoke', JSON.stringify({ inputs }));
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/unknown input .*and 995 more: the model's inputs are "x"/);
    expect(r.text.length).toBeLessThan(1000);
  });
  it('a 1 MB v2 datatype is cut in the message', async () => {
    const r = await post('/v2/models/m/infer', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'F'.repeat(1e6), data: [1, 2, 3, 4] }] }));
    expect(r.status).toBe(422);
    expect(r.body.error).toMatch(/datatype "FFFF.*… is not supported/);
    expect(r.text.length).toBeLessThan(500);
  });
});

describe('uploads that are not ONNX at all', () => {
  it('are refused before any profiling process starts, in milliseconds, with what to send', async () => {
    for (const body of [new TextEncoder().encode('{"inputs": 1}'), new Uint8Array(4096).fill(0xff), new TextEncoder().encode('<html>')]) {
      const t0 = performance.now();
      const r = await b.put('junk', body);
      expect(r.status).toBe(422);
      expect(r.body.error.message).toMatch(/this is not an ONNX model \(.*\); send the \.onnx file as the raw request body/);
      expect(performance.now() - t0).toBeLessThan(300); // a profiling process takes a second or more
    }
  });
});
