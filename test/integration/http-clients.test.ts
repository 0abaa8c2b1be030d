import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHalf } from '../../functions/float16';
import { halfModel, mlpModel, stringsModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';

/**
 * The v2 REST routes driven over a real socket by a Python client that sends byte for byte what
 * tritonclient.http sends (test/protocols/http_client.py names the behaviour matched), on the
 * libraries tritonclient itself uses: geventhttpclient, python-rapidjson and numpy from Debian
 * (.ci/run installs them). Outputs are compared bit for bit with onnxruntime run directly.
 */

const PY_CLIENT = join(dirname(fileURLToPath(import.meta.url)), '../protocols/http_client.py');
/** Debian's python3, not pyenv's: the Debian packages live there. */
const PYTHON = '/usr/bin/python3';

let b: TestBrulee;
let server: ServerType;
let port: number;
const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 21 });
const types = typesModel();
const cls = readModel(REAL_MODELS.ocrCls);
const half = halfModel();
const strings = stringsModel();

function python(calls: object[]): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, [PY_CLIENT, `127.0.0.1:${port}`], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`the Python HTTP client failed (needs Debian's python3-geventhttpclient, python3-rapidjson, python3-numpy): ${stderr || e.message}`));
      resolve(stdout.trim().split('\n').map((l) => JSON.parse(l)));
    });
    child.stdin!.end(JSON.stringify(calls));
  });
}

const hex = (t: ort.Tensor) => {
  const d = t.data as ArrayBufferView;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('hex');
};

beforeAll(async () => {
  b = await startBrulee();
  for (const [name, m] of [['mlp', mlp], ['types', types], ['cls', cls], ['half', half], ['strings', strings]] as const) {
    expect((await b.put(name, m)).status).toBe(201);
  }
  server = serve({ fetch: b.app.fetch, hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
  port = (server.address() as AddressInfo).port;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await b?.destroy();
});

describe('tritonclient.http behaviour, on geventhttpclient + rapidjson + numpy', () => {
  it('FP32 binary in, every output binary (the defaults), the real PP-OCR cls model and the MLP', async () => {
    const x = floats(3 * 48 * 192, 2);
    const xm = floats(8, 6);
    const [r, m, json] = await python([
      { op: 'infer', model: 'cls', request_id: 'cls-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 192], data: x }] },
      { op: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: xm }] },
      // binary_data=False both ways: JSON in, JSON out.
      { op: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: xm, binary: false }], outputs: [{ name: 'y', binary: false }] },
    ]);
    const clsName = (await b.json('GET', '/v2/models/cls')).body.outputs[0].name;
    const want = await runDirect(cls, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3, 48, 192]) });
    expect(r).toMatchObject({ status: 200, id: 'cls-1', model_name: 'cls', model_version: '1' });
    expect(r.outputs[clsName]).toEqual({ datatype: 'FP32', shape: [...want[clsName]!.dims], binary: true, values: null, hex: hex(want[clsName]!) });
    const wantM = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(xm), [2, 4]) });
    expect(m.outputs.y).toMatchObject({ binary: true, shape: [2, 3], hex: hex(wantM.y!) });
    expect(json.outputs.y).toMatchObject({ binary: false, shape: [2, 3], hex: hex(wantM.y!) });
  });

  it('FP16 binary both ways; BF16 binary (truncated by the client) into a float32 input', async () => {
    const h = [1, -2, 65504, 0.333, -0.0001];
    const [r, bf] = await python([
      { op: 'infer', model: 'half', inputs: [{ name: 'h', datatype: 'FP16', shape: [5], data: h }] },
      { op: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'BF16', shape: [1, 4], data: [1.0, -3.3, 0.15625, 1234.5] }] },
    ]);
    // numpy rounds to half precision to nearest even, as toHalf does: these are the bits sent.
    const want = await runDirect(half, { h: new ort.Tensor('float16', Uint16Array.from(h, toHalf), [5]) });
    expect(r.outputs.h_out).toMatchObject({ datatype: 'FP16', binary: true, hex: hex(want.h_out!) });
    expect(r.outputs.f).toMatchObject({ datatype: 'FP32', hex: hex(want.f!) });
    // tritonclient keeps the high 16 bits of each float32: these are the floats brulee must see.
    const trunc = Float32Array.from([1.0, -3.3, 0.15625, 1234.5], (v) => {
      const u = new Uint32Array(Float32Array.of(v).buffer);
      u[0] = u[0]! & 0xffff0000;
      return new Float32Array(u.buffer)[0]!;
    });
    const wantBf = await runDirect(mlp, { x: new ort.Tensor('float32', trunc, [1, 4]) });
    expect(bf.outputs.y.hex).toBe(hex(wantBf.y!));
  });

  it('INT64 past 2^53 and BOOL, in binary and as JSON numbers, come back exact', async () => {
    const i64 = ['9223372036854775807', '-9223372036854775808', '9007199254740993', '-1'];
    const inputs = (binary: boolean) => [
      { name: 'f32', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6], binary },
      { name: 'f64', datatype: 'FP64', shape: [1], data: [0.1], binary },
      { name: 'i32', datatype: 'INT32', shape: [1, 1], data: [-7], binary },
      { name: 'i64', datatype: 'INT64', shape: [4], data: i64, binary },
      { name: 'u8', datatype: 'UINT8', shape: [2, 2], data: [1, 2, 3, 255], binary },
      { name: 'b', datatype: 'BOOL', shape: [3], data: [true, false, true], binary },
    ];
    const [bin, json] = await python([
      { op: 'infer', model: 'types', inputs: inputs(true) },
      { op: 'infer', model: 'types', inputs: inputs(false), outputs: [{ name: 'i64_out', binary: false }, { name: 'b_out', binary: false }] },
    ]);
    const i64hex = Buffer.from(BigInt64Array.from(i64, BigInt).buffer).toString('hex');
    expect(bin.outputs.i64_out).toMatchObject({ datatype: 'INT64', binary: true, hex: i64hex });
    expect(bin.outputs.b_out).toMatchObject({ datatype: 'BOOL', binary: true, hex: '010001' });
    expect(Object.keys(bin.outputs)).toEqual(['f32_out', 'f64_out', 'i32_out', 'i64_out', 'u8_out', 'b_out']);
    expect(json.outputs.i64_out).toMatchObject({ binary: false, hex: i64hex });
    expect(json.outputs.b_out).toMatchObject({ binary: false, hex: '010001' });
    expect(Object.keys(json.outputs)).toEqual(['i64_out', 'b_out']);
  });

  it('BYTES in binary (length-prefixed) and in JSON, out both ways', async () => {
    const s = ['1.5', '-2e3', '7'];
    const want = await runDirect(strings, { s: new ort.Tensor('string', s, [3]) });
    const [bin, json] = await python([
      { op: 'infer', model: 'strings', inputs: [{ name: 's', datatype: 'BYTES', shape: [3], data: s }] },
      { op: 'infer', model: 'strings', inputs: [{ name: 's', datatype: 'BYTES', shape: [3], data: s, binary: false }], outputs: [{ name: 'u', binary: false }, { name: 'f', binary: true }] },
    ]);
    for (const r of [bin, json]) {
      expect(r.outputs.u).toMatchObject({ datatype: 'BYTES', values: want.u!.data });
      expect(r.outputs.f.hex).toBe(hex(want.f!));
    }
    expect(bin.outputs.u.binary).toBe(true);
    expect(json.outputs.u.binary).toBe(false);
  });

  it('gzip and deflate request bodies, compressed responses (request_/response_compression_algorithm)', async () => {
    const x = floats(4, 8);
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 4]) });
    const call = (c: string) => ({ op: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }], request_compression: c, response_compression: c });
    const [gz, df] = await python([call('gzip'), call('deflate')]);
    expect(gz).toMatchObject({ status: 200, content_encoding: 'gzip' });
    expect(df).toMatchObject({ status: 200, content_encoding: 'deflate' });
    expect(gz.outputs.y.hex).toBe(hex(want.y!));
    expect(df.outputs.y.hex).toBe(hex(want.y!));
  });

  it("KServe's InferenceRESTClient: model_name in the body, FP16 always binary, octet-stream, JSON answers; errors it can read", async () => {
    const h = [0.5, -1.25, 3];
    const x = floats(4, 12);
    const [fp16, json, err] = await python([
      { op: 'infer', client: 'kserve', model: 'half', inputs: [{ name: 'h', datatype: 'FP16', shape: [3], data: h }] },
      { op: 'infer', client: 'kserve', model: 'mlp', request_id: 'k-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] },
      { op: 'infer', client: 'kserve', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] },
    ]);
    const wantH = await runDirect(half, { h: new ort.Tensor('float16', Uint16Array.from(h, toHalf), [3]) });
    expect(fp16.status).toBe(200);
    // No binary output asked for: JSON data, FP16 as numbers (exact for these values).
    expect(fp16.outputs.h_out).toMatchObject({ binary: false, hex: hex(wantH.h_out!) });
    const wantM = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 4]) });
    expect(json).toMatchObject({ status: 200, id: 'k-1' });
    expect(json.outputs.y).toMatchObject({ binary: false, hex: hex(wantM.y!) });
    expect(err).toMatchObject({ status: 422, content_type: 'application/json' });
    expect(err.error).toContain('input "x": dim 1 is 3, but the model fixes it at 4');
  });

  it('errors come back as {"error": ...}, which tritonclient raises', async () => {
    const [r] = await python([{ op: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], data: [1, 2, 3, 4, 5] }] }]);
    expect(r.status).toBe(422);
    expect(r.error).toContain('input "x": dim 1 is 5, but the model fixes it at 4');
  });

  it('metadata, readiness, config, statistics and the repository index as tritonclient reads them', async () => {
    const [live, meta, ready, server_, config, stats, all, index] = await python([
      { op: 'live' }, { op: 'metadata', model: 'mlp' }, { op: 'model_ready', model: 'mlp' }, { op: 'server_metadata' },
      { op: 'config', model: 'mlp' }, { op: 'stats', model: 'mlp' }, { op: 'stats' }, { op: 'index' },
    ]);
    expect(live.status).toBe(200);
    expect(meta.body).toEqual({ name: 'mlp', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }] });
    expect(ready.status).toBe(200);
    expect(server_.body.extensions).toEqual(expect.arrayContaining(['binary_tensor_data', 'statistics', 'model_configuration']));
    expect(config.body).toMatchObject({ name: 'mlp', max_batch_size: 0, input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [-1, 4] }] });
    const m = stats.body.model_stats[0];
    // The MLP ran in the tests above: 2 in the first, 1 with BF16, 2 compressed, 1 from KServe's
    // client; the 422s are refused before the queue and not counted.
    expect(m.name).toBe('mlp');
    expect(m.inference_stats.success.count).toBe(m.inference_count);
    expect(m.inference_count).toBe(6);
    expect(m.inference_stats.cold_start.count).toBe(1);
    expect(all.body.model_stats.map((s: { name: string }) => s.name).sort()).toEqual(['cls', 'half', 'mlp', 'strings', 'types']);
    expect(index.body.map((r: { name: string }) => r.name).sort()).toEqual(['cls', 'half', 'mlp', 'strings', 'types']);
  });
});
