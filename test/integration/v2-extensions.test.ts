import { gunzipSync, gzipSync, deflateSync, inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStrings } from '../../queue/tensor';
import { halfModel, mlpModel, stringsModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort, runDirect } from '../support/models';

/**
 * The v2 REST extensions: binary tensor data both ways (and the raw whole-body form), FP16, BF16,
 * BOOL and BYTES in binary, BYTES and exact 64-bit integers in JSON, compressed bodies, versions,
 * statistics and config. Every output is compared with onnxruntime run directly.
 */

let b: TestBrulee;
const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 11 });
const types = typesModel();
const half = halfModel();
const strings = stringsModel();

beforeAll(async () => {
  b = await startBrulee();
  for (const [name, m] of [['mlp', mlp], ['types', types], ['half', half], ['strings', strings]] as const) {
    expect((await b.put(name, m)).status).toBe(201);
  }
}, 120_000);
afterAll(async () => {
  await b?.destroy();
});

/** A binary-extension request body: JSON header, then each input's bytes. */
function binaryBody(header: object, ...chunks: Uint8Array[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))]), headerLength: json.byteLength };
}

async function post(path: string, body: Uint8Array | string, headers: Record<string, string> = {}) {
  const res = await b.req(path, { method: 'POST', body, headers });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, bytes };
}

/** Splits a binary-extension response into its JSON header and each binary output's bytes, by name. */
function splitResponse(r: { headers: Headers; bytes: Uint8Array }) {
  const len = Number(r.headers.get('inference-header-content-length'));
  const header = JSON.parse(Buffer.from(r.bytes.subarray(0, len)).toString());
  const outputs: Record<string, Uint8Array> = {};
  let at = len;
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    outputs[o.name] = Uint8Array.from(r.bytes.subarray(at, at + size));
    at += size;
  }
  expect(at).toBe(r.bytes.byteLength);
  return { header, outputs };
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('binary tensor data extension', () => {
  it('FP32 in binary, all outputs back in binary (binary_data_output), as tritonclient sends by default', async () => {
    const x = Float32Array.from(floats(8, 3));
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', x, [2, 4]) });
    const { body, headerLength } = binaryBody(
      { id: 'b1', inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } },
      bytesOf(x),
    );
    const r = await post('/v2/models/mlp/infer', body, { 'Inference-Header-Content-Length': String(headerLength) });
    expect(r.status).toBe(200);
    const { header, outputs } = splitResponse(r);
    expect(header).toEqual({ model_name: 'mlp', model_version: '1', id: 'b1', outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 3], parameters: { binary_data_size: 24 } }] });
    expect(new Float32Array(outputs.y!.buffer)).toEqual(want.y!.data);
  });

  it('an output asked twice is answered once, in binary with its first parameters, as Triton does', async () => {
    const x = Float32Array.from(floats(8, 3));
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }, { name: 'y', parameters: { binary_data: false } }] },
      bytesOf(x),
    );
    const r = await post('/v2/models/mlp/infer', body, { 'Inference-Header-Content-Length': String(headerLength) });
    expect(r.status).toBe(200);
    const { header } = splitResponse(r);
    expect(header.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [2, 3], parameters: { binary_data_size: 24 } }]);
  });

  it('an output can ask for JSON while the others are binary, and JSON requests get JSON back', async () => {
    const x = [1, 2, 3, 4];
    const json = await post('/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: x }], outputs: [{ name: 'y', parameters: { binary_data: false } }], parameters: { binary_data_output: true } }));
    expect(json.headers.get('inference-header-content-length')).toBeNull();
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 4]) });
    expect(JSON.parse(Buffer.from(json.bytes).toString()).outputs[0].data).toEqual(Array.from(want.y!.data as Float32Array));
  });

  it('the raw whole-body form (Inference-Header-Content-Length: 0): one input, shape from the model and the byte count', async () => {
    const x = Float32Array.from(floats(12, 9));
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', x, [3, 4]) });
    const r = await post('/v2/models/mlp/infer', Buffer.from(x.buffer), { 'Inference-Header-Content-Length': '0', 'Content-Type': 'application/octet-stream' });
    expect(r.status).toBe(200);
    const body = JSON.parse(Buffer.from(r.bytes).toString());
    expect(body.outputs[0].shape).toEqual([3, 4 - 1]);
    expect(Float32Array.from(body.outputs[0].data)).toEqual(want.y!.data);
    const odd = await post('/v2/models/mlp/infer', Buffer.alloc(10), { 'Inference-Header-Content-Length': '0' });
    expect(odd.status).toBe(400);
    expect(JSON.parse(Buffer.from(odd.bytes).toString()).error).toMatch(/cannot infer the shape of input "x" \(FP32 \["\?",4\]|cannot infer the shape of input "x"/);
    const multi = await post('/v2/models/types/infer', Buffer.alloc(24), { 'Inference-Header-Content-Length': '0' });
    expect(multi.status).toBe(400);
    expect(JSON.parse(Buffer.from(multi.bytes).toString()).error).toContain('needs a model with one input; "types" has 6');
  });

  it('FP16 in and out in binary, bit for bit; BF16 in binary feeds a float32 input exactly', async () => {
    const h = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000); // 1, -2, 65504, smallest subnormal, -0
    const want = await runDirect(half, { h: new ort.Tensor('float16', h, [5]) });
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'h', shape: [5], datatype: 'FP16', parameters: { binary_data_size: 10 } }], outputs: [{ name: 'h_out', parameters: { binary_data: true } }, { name: 'f', parameters: { binary_data: true } }] }, bytesOf(h));
    const r = splitResponse(await post('/v2/models/half/infer', body, { 'Inference-Header-Content-Length': String(headerLength) }));
    expect(r.header.outputs.map((o: { datatype: string }) => o.datatype)).toEqual(['FP16', 'FP32']);
    expect(Array.from(new Uint16Array(r.outputs.h_out!.buffer))).toEqual(Array.from(want.h_out!.data as Uint16Array));
    expect(new Float32Array(r.outputs.f!.buffer)).toEqual(want.f!.data);

    // BF16 bits 0x3f80 (1), 0xc040 (-3), 0x3e20 (0.15625), 0x4b80 (16777216) into the mlp's float32 x.
    const bf = Uint16Array.of(0x3f80, 0xc040, 0x3e20, 0x4b80);
    const asF32 = Float32Array.of(1, -3, 0.15625, 16777216);
    const wantMlp = await runDirect(mlp, { x: new ort.Tensor('float32', asF32, [1, 4]) });
    const bfBody = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'BF16', parameters: { binary_data_size: 8 } }] }, bytesOf(bf));
    const rb = await post('/v2/models/mlp/infer', bfBody.body, { 'Inference-Header-Content-Length': String(bfBody.headerLength) });
    expect(rb.status).toBe(200);
    expect(Float32Array.from(JSON.parse(Buffer.from(rb.bytes).toString()).outputs[0].data)).toEqual(wantMlp.y!.data);
  });

  it('INT64 past 2^53 and BOOL in binary, back in binary, bit for bit', async () => {
    const i64 = BigInt64Array.of(2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, -1n);
    const bool = Uint8Array.of(1, 0, 1);
    const f32 = Float32Array.of(1, 2, 3, 4, 5, 6);
    const f64 = Float64Array.of(0.1);
    const i32 = Int32Array.of(-5);
    const u8 = Uint8Array.of(9, 8, 7, 6);
    const ins = [
      ['f32', [2, 3], 'FP32', f32], ['f64', [1], 'FP64', f64], ['i32', [1, 1], 'INT32', i32],
      ['i64', [4], 'INT64', i64], ['u8', [2, 2], 'UINT8', u8], ['b', [3], 'BOOL', bool],
    ] as const;
    const { body, headerLength } = binaryBody(
      { inputs: ins.map(([name, shape, datatype, d]) => ({ name, shape, datatype, parameters: { binary_data_size: d.byteLength } })), parameters: { binary_data_output: true } },
      ...ins.map(([, , , d]) => bytesOf(d)),
    );
    const r = splitResponse(await post('/v2/models/types/infer', body, { 'Inference-Header-Content-Length': String(headerLength) }));
    expect(Array.from(new BigInt64Array(r.outputs.i64_out!.buffer))).toEqual(Array.from(i64));
    expect(Array.from(r.outputs.b_out!)).toEqual([1, 0, 1]);
    expect(r.header.outputs.find((o: { name: string }) => o.name === 'b_out')).toEqual({ name: 'b_out', datatype: 'BOOL', shape: [3], parameters: { binary_data_size: 3 } });
  });

  it('binary sizes that do not add up are 400s that say so', async () => {
    const x = new Float32Array(4);
    const short = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 20 } }] }, bytesOf(x));
    const r1 = await post('/v2/models/mlp/infer', short.body, { 'Inference-Header-Content-Length': String(short.headerLength) });
    expect(r1.status).toBe(400);
    expect(JSON.parse(Buffer.from(r1.bytes).toString()).error).toContain('binary_data_size 20 runs past the binary data after the JSON header (16 bytes left)');
    const extra = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }, bytesOf(x), Uint8Array.of(1, 2));
    const r2 = await post('/v2/models/mlp/infer', extra.body, { 'Inference-Header-Content-Length': String(extra.headerLength) });
    expect(JSON.parse(Buffer.from(r2.bytes).toString()).error).toContain('2 bytes after the JSON header belong to no input');
    const wrong = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 12 } }] }, new Uint8Array(12));
    const r3 = await post('/v2/models/mlp/infer', wrong.body, { 'Inference-Header-Content-Length': String(wrong.headerLength) });
    expect(r3.status).toBe(422);
    expect(JSON.parse(Buffer.from(r3.bytes).toString()).error).toBe('input "x": 12 bytes of raw data, but float32 with shape [1,4] needs 16 (4 elements of 4 bytes)');
    const toolong = await post('/v2/models/mlp/infer', short.body, { 'Inference-Header-Content-Length': String(short.body.byteLength + 1) });
    expect(toolong.status).toBe(400);
  });
});

describe('BYTES (string tensors)', () => {
  it('in JSON and in binary (length-prefixed), out both ways, as onnxruntime returns them', async () => {
    const s = ['1.5', '-2e3', '7', 'é'];
    const direct = await runDirect(strings, { s: new ort.Tensor('string', s.slice(0, 3), [3]) });
    const json = await b.json('POST', '/v2/models/strings/infer', { inputs: [{ name: 's', shape: [3], datatype: 'BYTES', data: s.slice(0, 3) }] });
    expect(json.status).toBe(200);
    expect(json.body.outputs).toEqual([
      { name: 'u', datatype: 'BYTES', shape: [3], data: direct.u!.data },
      { name: 'f', datatype: 'FP32', shape: [3], data: Array.from(direct.f!.data as Float32Array) },
    ]);
    const raw = encodeStrings(s.slice(0, 3));
    const { body, headerLength } = binaryBody({ inputs: [{ name: 's', shape: [3], datatype: 'BYTES', parameters: { binary_data_size: raw.byteLength } }], outputs: [{ name: 'u', parameters: { binary_data: true } }] }, raw);
    const r = splitResponse(await post('/v2/models/strings/infer', body, { 'Inference-Header-Content-Length': String(headerLength) }));
    expect(Buffer.from(r.outputs.u!).equals(Buffer.from(raw))).toBe(true);
    // Identity on text that onnxruntime cannot parse as a number still passes through; the Cast fails.
    const bad = await b.json('POST', '/v2/models/strings/infer', { inputs: [{ name: 's', shape: [1], datatype: 'BYTES', data: [s[3]] }], outputs: [{ name: 'u' }] });
    expect(bad.status).toBe(422);
  });
});

describe('JSON: exact 64-bit integers, all outputs, compression', () => {
  it('INT64 and UINT64 sent as JSON numbers past 2^53 arrive and return exact', async () => {
    const text = '{"inputs":[{"name":"f32","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]},{"name":"f64","shape":[1],"datatype":"FP64","data":[0.30000001192092896]},{"name":"i32","shape":[1,1],"datatype":"INT32","data":[7]},' +
      '{"name":"i64","shape":[4],"datatype":"INT64","data":[9223372036854775807,-9223372036854775808,9007199254740993,-9007199254740993]},{"name":"u8","shape":[2,2],"datatype":"UINT8","data":[1,2,3,4]},{"name":"b","shape":[3],"datatype":"BOOL","data":[true,false,true]}],"outputs":[]}';
    const r = await post('/v2/models/types/infer', text, { 'content-type': 'application/json' });
    expect(r.status).toBe(200);
    const out = Buffer.from(r.bytes).toString();
    expect(out).toContain('"name":"i64_out","datatype":"INT64","shape":[4],"data":[9223372036854775807,-9223372036854775808,9007199254740993,-9007199254740993]');
    // outputs: [] means all of them, in the model's order.
    expect(JSON.parse(out).outputs.map((o: { name: string }) => o.name)).toEqual(['f32_out', 'f64_out', 'i32_out', 'i64_out', 'u8_out', 'b_out']);
    expect(JSON.parse(out).outputs[1].data).toEqual([0.30000001192092896]);
  });

  it('gzip and deflate request bodies; gzip or deflate responses when Accept-Encoding asks', async () => {
    const x = Float32Array.from(floats(4, 5));
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', x, [1, 4]) });
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }], parameters: { binary_data_output: true } }, bytesOf(x));
    const gz = await post('/v2/models/mlp/infer', gzipSync(body), { 'Inference-Header-Content-Length': String(headerLength), 'Content-Encoding': 'gzip', 'Accept-Encoding': 'gzip' });
    expect(gz.status).toBe(200);
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    const unzipped = splitResponse({ headers: gz.headers, bytes: gunzipSync(gz.bytes) });
    expect(new Float32Array(unzipped.outputs.y!.buffer)).toEqual(want.y!.data);
    const df = await post('/v2/models/mlp/infer', deflateSync(body), { 'Inference-Header-Content-Length': String(headerLength), 'Content-Encoding': 'deflate', 'Accept-Encoding': 'deflate' });
    expect(df.headers.get('content-encoding')).toBe('deflate');
    expect(new Float32Array(splitResponse({ headers: df.headers, bytes: inflateSync(df.bytes) }).outputs.y!.buffer)).toEqual(want.y!.data);
    const plain = await post('/v2/models/mlp/infer', body, { 'Inference-Header-Content-Length': String(headerLength), 'Accept-Encoding': 'br' });
    expect(plain.headers.get('content-encoding')).toBeNull();
    const broken = await post('/v2/models/mlp/infer', Buffer.from('not gzip'), { 'Content-Encoding': 'gzip' });
    expect(broken.status).toBe(400);
    expect(JSON.parse(Buffer.from(broken.bytes).toString()).error).toContain('not valid gzip data');
  });
});

describe('versions, statistics, config', () => {
  it('lists only the served version; older ones are 404, the listed one answers', async () => {
    const v2 = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 12 });
    expect((await b.put('ver', mlp)).status).toBe(201);
    expect((await b.put('ver', v2)).body.version).toBe(2);
    const meta = await b.json('GET', '/v2/models/ver');
    expect(meta.body.versions).toEqual(['2']);
    const input = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    const old = await b.json('POST', '/v2/models/ver/versions/1/infer', input);
    expect(old.status).toBe(404);
    expect(old.body.error).toContain('version 1 is no longer served; the current version is 2');
    for (const v of meta.body.versions) expect((await b.json('POST', `/v2/models/ver/versions/${v}/infer`, input)).status).toBe(200);
    expect((await b.json('GET', '/v2/models/ver/versions/1/stats')).status).toBe(404);
  });

  it('statistics in Triton\'s format count successes, failures, cold starts and their time', async () => {
    expect((await b.put('counted', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 13 }))).status).toBe(201);
    const ok = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
    const before = Date.now();
    for (let i = 0; i < 3; i++) expect((await b.json('POST', '/v2/models/counted/infer', ok)).status).toBe(200);
    const s = await b.json('GET', '/v2/models/counted/stats');
    expect(s.status).toBe(200);
    expect(s.body.model_stats).toHaveLength(1);
    const m = s.body.model_stats[0];
    expect(m).toMatchObject({ name: 'counted', version: '1', inference_count: 3, execution_count: 3, batch_stats: [] });
    expect(m.last_inference).toBeGreaterThanOrEqual(before);
    const st = m.inference_stats;
    expect(st.success.count).toBe(3);
    expect(st.fail).toEqual({ count: 0, ns: 0 });
    expect(st.cold_start.count).toBe(1);
    expect(st.cold_start.ns).toBeGreaterThan(0);
    expect(st.compute_infer.count).toBe(3);
    expect(st.compute_infer.ns).toBeGreaterThan(0);
    expect(st.success.ns).toBeGreaterThanOrEqual(st.compute_infer.ns);
    for (const k of ['success', 'fail', 'queue', 'compute_input', 'compute_infer', 'compute_output', 'cache_hit', 'cache_miss']) {
      expect(Number.isInteger(st[k].ns) && Number.isInteger(st[k].count), k).toBe(true);
    }
    const all = await b.json('GET', '/v2/models/stats');
    expect(all.body.model_stats.map((x: { name: string }) => x.name)).toEqual(expect.arrayContaining(['counted', 'mlp', 'types']));
    expect(all.body.model_stats.find((x: { name: string }) => x.name === 'counted')).toEqual(m);
    expect((await b.json('GET', '/v2/models/counted/versions/1/stats')).body).toEqual(s.body);
    expect((await b.json('GET', '/v2/models/nope/stats')).status).toBe(404);
  });

  it('config in Triton\'s shape, derived from the signature', async () => {
    const c = await b.json('GET', '/v2/models/types/config');
    expect(c.status).toBe(200);
    expect(c.body).toEqual({
      name: 'types', platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: 0,
      input: [
        { name: 'f32', data_type: 'TYPE_FP32', dims: [2, 3] }, { name: 'f64', data_type: 'TYPE_FP64', dims: [-1] },
        { name: 'i32', data_type: 'TYPE_INT32', dims: [1, -1] }, { name: 'i64', data_type: 'TYPE_INT64', dims: [4] },
        { name: 'u8', data_type: 'TYPE_UINT8', dims: [2, 2] }, { name: 'b', data_type: 'TYPE_BOOL', dims: [3] },
      ],
      output: expect.arrayContaining([{ name: 'i64_out', data_type: 'TYPE_INT64', dims: [4] }]),
    });
    expect((await b.json('GET', '/v2/models/strings/config')).body.input).toEqual([{ name: 's', data_type: 'TYPE_STRING', dims: [-1] }]);
    const ext = (await b.json('GET', '/v2')).body.extensions;
    expect(ext).toEqual(expect.arrayContaining(['binary_tensor_data', 'statistics', 'model_configuration', 'model_repository']));
  });
});
