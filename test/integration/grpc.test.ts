import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLOW_CONTROL_WINDOW, startGrpcServer, type GrpcServer } from '../../functions/grpc/server';
import { mlpModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { until } from '../support/within';

const PROTO_DIR = fileURLToPath(new URL('../../functions/grpc/', import.meta.url));
const PY_CLIENT = join(dirname(fileURLToPath(import.meta.url)), '../protocols/grpc_client.py');
/** Debian's python3 (python3-grpcio, python3-numpy, python3-grpc-tools; .ci/run installs them). */
const PYTHON = '/usr/bin/python3';
const KEY = 'grpc-admin-key';

let b: TestBrulee;
let server: GrpcServer;
let client: grpc.Client & Record<string, (req: object, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: any) => void) => void>;
const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 7 });
const types = typesModel();
const cls = readModel(REAL_MODELS.ocrCls);

/** One unary call through @grpc/grpc-js; resolves to the response or the ServiceError. */
function call(method: string, req: object, headers: Record<string, string> = {}): Promise<{ res?: any; err?: grpc.ServiceError }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((resolve) => client[method]!(req, md, (err, res) => resolve(err ? { err } : { res })));
}

/** Runs the Python client (tritonclient.grpc's request shapes) over a list of calls. */
function python(calls: object[]): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, [PY_CLIENT, PROTO_DIR, `127.0.0.1:${server.port}`], { timeout: 60_000 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`the Python gRPC client failed (needs Debian's python3-grpcio, python3-numpy, python3-grpc-tools): ${stderr || e.message}`));
      resolve(stdout.trim().split('\n').map((l) => JSON.parse(l)));
    });
    child.stdin!.end(JSON.stringify(calls));
  });
}

beforeAll(async () => {
  b = await startBrulee({ API_KEY: KEY });
  expect((await b.put('mlp', mlp, '', { authorization: `Bearer ${KEY}` })).status).toBe(201);
  expect((await b.put('types', types, '', { authorization: `Bearer ${KEY}` })).status).toBe(201);
  expect((await b.put('cls', cls, '', { authorization: `Bearer ${KEY}` })).status).toBe(201);
  server = await startGrpcServer({ dataPlane: b.dataPlane, authorize: b.authorize, log: b.log, host: '127.0.0.1', port: 0, maxRequestBytes: 64 * 1024 * 1024 });
  const def = protoLoader.loadSync(join(PROTO_DIR, 'inference.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
}, 120_000);

afterAll(async () => {
  client?.close();
  await server?.close(1000);
  await b?.destroy();
});

describe('the KServe v2 gRPC service', () => {
  it('answers ModelInfer with raw contents equal to onnxruntime run directly (FP32, PP-OCR cls)', async () => {
    const x = Float32Array.from(floats(3 * 48 * 192, 5));
    const want = await runDirect(cls, { x: new ort.Tensor('float32', x, [1, 3, 48, 192]) });
    const { res, err } = await call('ModelInfer', {
      model_name: 'cls',
      id: 'req-1',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 48, 192] }],
      raw_input_contents: [Buffer.from(x.buffer)],
    });
    expect(err).toBeUndefined();
    expect(res.id).toBe('req-1');
    expect(res.model_name).toBe('cls');
    expect(res.model_version).toBe('1');
    const [name] = Object.keys(want);
    expect(res.outputs.map((o: any) => [o.name, o.datatype, o.shape.map(Number)])).toEqual([[name, 'FP32', [...want[name!]!.dims]]]);
    const got = new Float32Array(new Uint8Array(res.raw_output_contents[0]).slice().buffer);
    expect(Buffer.from(got.buffer)).toEqual(Buffer.from((want[name!]!.data as Float32Array).buffer));
  });

  it('grants each connection and stream a window larger than a PP-OCR cls request, so the client never waits mid-request', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      // The server's SETTINGS with the larger window (and its connection WINDOW_UPDATE) follow its
      // first (grpc-js's) at once: waited for, up to 10 s, and checked below either way.
      await until('the server to grant its window', () => session.remoteSettings.initialWindowSize === FLOW_CONTROL_WINDOW && session.state.remoteWindowSize === FLOW_CONTROL_WINDOW, 10_000).catch(() => undefined);
      expect(FLOW_CONTROL_WINDOW).toBeGreaterThan(3 * 48 * 192 * 4 + 1024);
      expect(session.remoteSettings.initialWindowSize).toBe(FLOW_CONTROL_WINDOW);
      // The connection's window too (what the client may send before any update).
      expect(session.state.remoteWindowSize).toBe(FLOW_CONTROL_WINDOW);
    } finally {
      session.close();
    }
  });

  it('takes typed contents too, keeping INT64 past 2^53 and BOOL exact', async () => {
    const i64 = ['9007199254740993', '-9223372036854775808', '9223372036854775807', '0'];
    const { res, err } = await call('ModelInfer', {
      model_name: 'types',
      inputs: [
        { name: 'f32', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: [1.5, -2, 3.25, 0, 1e-7, 7] } },
        { name: 'f64', datatype: 'FP64', shape: [2], contents: { fp64_contents: [0.1, -1e300] } },
        { name: 'i32', datatype: 'INT32', shape: [1, 2], contents: { int_contents: [-2147483648, 2147483647] } },
        { name: 'i64', datatype: 'INT64', shape: [4], contents: { int64_contents: i64 } },
        { name: 'u8', datatype: 'UINT8', shape: [2, 2], contents: { uint_contents: [0, 1, 254, 255] } },
        { name: 'b', datatype: 'BOOL', shape: [3], contents: { bool_contents: [true, false, true] } },
      ],
      outputs: [{ name: 'i64_out' }, { name: 'b_out' }],
    });
    expect(err).toBeUndefined();
    expect(res.outputs.map((o: any) => o.name)).toEqual(['i64_out', 'b_out']);
    const i64Out = new BigInt64Array(new Uint8Array(res.raw_output_contents[0]).slice().buffer);
    expect([...i64Out].map(String)).toEqual(i64);
    expect([...new Uint8Array(res.raw_output_contents[1])]).toEqual([1, 0, 1]);
  });

  it('maps errors to gRPC codes with a message that says what to fix', async () => {
    const unknown = await call('ModelInfer', { model_name: 'nope', inputs: [] });
    expect(unknown.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.err?.details).toMatch(/no function named "nope"/);
    const shape = await call('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [Buffer.alloc(12)],
    });
    expect(shape.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(shape.err?.details).toBe('input "x": 12 bytes of raw data, but float32 with shape [1,4] needs 16 (4 elements of 4 bytes)');
    const wrongType = await call('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }] });
    expect(wrongType.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(wrongType.err?.details).toMatch(/type "int32" does not match the model, which expects float32/);
    const version = await call('ModelMetadata', { name: 'mlp', version: '7' });
    expect(version.err?.code).toBe(grpc.status.NOT_FOUND);
    const range = await call('ModelInfer', { model_name: 'types', inputs: [{ name: 'u8', datatype: 'UINT8', shape: [2, 2], contents: { uint_contents: [0, 1, 2, 256] } }] });
    expect(range.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(range.err?.details).toMatch(/element 3 is 256, out of uint8's range 0 to 255/);
    // Data that would be ignored: typed contents beside raw contents, or in another type's field.
    const both = await call('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [9, 9, 9, 9] } }],
      raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)],
    });
    expect(both.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(both.err?.details).toBe('input "x": data in both raw_input_contents and contents.fp32_contents; send it in one of them');
    const field = await call('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { int64_contents: ['1', '2', '3', '4'] } }] });
    expect(field.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(field.err?.details).toBe('input "x": FP32 data goes in contents.fp32_contents, not contents.int64_contents');
    // Outputs asked in a form brulee does not give (top-k labels, shared memory): refused, not answered as the plain tensor.
    const x = { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)] };
    const top = await call('ModelInfer', { ...x, outputs: [{ name: 'y', parameters: { classification: { int64_param: '2' } } }] });
    expect(top.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(top.err?.details).toMatch(/^output "y": classification \(Triton's top-k class labels\) is not supported/);
    const shm = await call('ModelInfer', { ...x, outputs: [{ name: 'y', parameters: { shared_memory_region: { string_param: 'r' } } }] });
    expect(shm.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(shm.err?.details).toMatch(/^output "y": shared memory outputs are not supported/);
    expect((await call('ModelInfer', { ...x, outputs: [{ name: 'y' }] })).res?.outputs[0].shape).toEqual(['1', '3']);
    // An output asked twice is answered once (as Triton does: its requested outputs are a set), one raw content for it.
    const twice = (await call('ModelInfer', { ...x, outputs: [{ name: 'y' }, { name: 'y' }] })).res;
    expect(twice?.outputs.map((o: any) => o.name)).toEqual(['y']);
    expect(twice?.raw_output_contents).toHaveLength(1);
    // An input given twice is refused, as Triton does ("input 'x' already exists in request").
    const dupIn = await call('ModelInfer', { ...x, inputs: [...x.inputs, ...x.inputs], raw_input_contents: [...x.raw_input_contents, ...x.raw_input_contents] });
    expect(dupIn.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(dupIn.err?.details).toBe('input "x" is given twice');
  });

  it('refuses a message over MAX_REQUEST_BYTES as REST does: RESOURCE_EXHAUSTED naming the limit, the size and the setting, with the error-code trailer', async () => {
    // grpc-js refuses it before any handler, with its own text and no trailer, unless rewritten.
    const small = await startGrpcServer({ dataPlane: b.dataPlane, authorize: b.authorize, log: b.log, host: '127.0.0.1', port: 0, maxRequestBytes: 4096 });
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(PROTO_DIR, 'inference.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })) as any;
    const c = new pkg.inference.GRPCInferenceService(`127.0.0.1:${small.port}`, grpc.credentials.createInsecure());
    const infer = (bytes: number) =>
      new Promise<{ res?: any; err?: grpc.ServiceError }>((resolve) =>
        c.ModelInfer({ model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, bytes / 4] }], raw_input_contents: [Buffer.alloc(bytes)] }, new grpc.Metadata(), (err: grpc.ServiceError | null, res: any) => resolve(err ? { err } : { res })),
      );
    try {
      const big = await infer(8192);
      expect(big.err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(big.err?.details).toMatch(/^the ModelInfer message \(\d+ bytes\) is larger than the limit of 4096 bytes \(MAX_REQUEST_BYTES\)$/);
      expect(Number(/\((\d+) bytes\)/.exec(big.err!.details)![1])).toBeGreaterThan(8192);
      expect(big.err?.metadata.get('brulee-error-code')).toEqual(['PAYLOAD_TOO_LARGE']);
      // Compressed under the limit, larger once inflated: refused the same way (grpc-js does not say the inflated size).
      const gz = new pkg.inference.GRPCInferenceService(`127.0.0.1:${small.port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
      const inflated = await new Promise<grpc.ServiceError | null>((resolve) =>
        gz.ModelInfer({ model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2048] }], raw_input_contents: [Buffer.alloc(8192)] }, new grpc.Metadata(), (err: grpc.ServiceError | null) => resolve(err)),
      );
      gz.close();
      expect(inflated?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(inflated?.details).toBe('the ModelInfer message is larger than the limit of 4096 bytes (MAX_REQUEST_BYTES)');
      expect(inflated?.metadata.get('brulee-error-code')).toEqual(['PAYLOAD_TOO_LARGE']);
      // Under the limit, the same server answers (here INVALID_ARGUMENT: mlp takes 4 columns, with its trailer).
      const fits = await infer(16);
      expect(fits.err).toBeUndefined();
      const wrong = await infer(32);
      expect(wrong.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(wrong.err?.metadata.get('brulee-error-code')).toEqual(['INVALID_INPUT']);
    } finally {
      c.close();
      await small.close(1000);
    }
  });

  it('refuses a message it cannot decode or inflate as a bad request (INVALID_ARGUMENT, with its trailer), not INTERNAL, and keeps serving', async () => {
    // Bytes that are no ModelInferRequest (field 13 with wire type 6, which protobuf does not have), through grpc-js with no serializer.
    const raw = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const garbage = await new Promise<grpc.ServiceError | null>((resolve) =>
      raw.makeUnaryRequest('/inference.GRPCInferenceService/ModelInfer', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('not a protobuf'), new grpc.Metadata(), (err) => resolve(err)),
    );
    raw.close();
    expect(garbage?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(garbage?.details).toBe('the ModelInfer message is not a protobuf of its request type in inference.proto (KServe v2 / Triton GRPCInferenceService); build it from that file');
    expect(garbage?.metadata.get('brulee-error-code')).toEqual(['BAD_REQUEST']);

    // A message flagged compressed (grpc-encoding gzip) whose bytes are not gzip, on a plain HTTP/2 stream.
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const body = Buffer.from('not gzip at all');
      const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, body.length]), body]);
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelInfer', 'content-type': 'application/grpc', te: 'trailers', 'grpc-encoding': 'gzip' });
        let headers: http2.IncomingHttpHeaders = {};
        req.on('response', (h) => (headers = h));
        req.on('trailers', (t) => resolve(t));
        req.on('end', () => resolve(headers)); // (a trailers-only answer puts the status in the headers)
        req.on('error', reject);
        req.resume();
        req.end(frame);
      });
      expect(Number(trailers['grpc-status'])).toBe(grpc.status.INVALID_ARGUMENT);
      expect(decodeURIComponent(String(trailers['grpc-message']))).toMatch(/^the ModelInfer message could not be decompressed/);
      expect(trailers['brulee-error-code']).toBe('BAD_REQUEST');
    } finally {
      session.close();
    }

    // The server goes on answering: a well-formed call right after gets mlp's outputs.
    const ok = await call('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)] });
    expect(ok.err).toBeUndefined();
    expect(ok.res.raw_output_contents).toHaveLength(1);
  });

  it('reports statistics in Triton\'s format, with cold starts, equal to what was sent', async () => {
    const before = (await call('ModelStatistics', { name: 'types' })).res.model_stats[0];
    const ok = { name: 'i64', datatype: 'INT64', shape: [4], contents: { int64_contents: ['1', '2', '3', '4'] } };
    const rest = [
      { name: 'f32', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: [1, 2, 3, 4, 5, 6] } },
      { name: 'f64', datatype: 'FP64', shape: [1], contents: { fp64_contents: [1] } },
      { name: 'i32', datatype: 'INT32', shape: [1, 1], contents: { int_contents: [1] } },
      { name: 'u8', datatype: 'UINT8', shape: [2, 2], contents: { uint_contents: [1, 2, 3, 4] } },
      { name: 'b', datatype: 'BOOL', shape: [3], contents: { bool_contents: [true, true, false] } },
    ];
    for (let i = 0; i < 3; i++) expect((await call('ModelInfer', { model_name: 'types', inputs: [ok, ...rest] })).err).toBeUndefined();
    const { res, err } = await call('ModelStatistics', { name: 'types' });
    expect(err).toBeUndefined();
    const s = res.model_stats[0];
    expect(s.name).toBe('types');
    expect(s.version).toBe('1');
    expect(Number(s.inference_count) - Number(before.inference_count)).toBe(3);
    expect(Number(s.inference_stats.success.count) - Number(before.inference_stats.success.count)).toBe(3);
    expect(Number(s.inference_stats.cold_start.count)).toBe(1);
    expect(Number(s.last_inference)).toBeGreaterThan(Date.now() - 60_000);
    const all = (await call('ModelStatistics', {})).res.model_stats.map((m: any) => m.name).sort();
    expect(all).toEqual(['cls', 'mlp', 'types']);
    expect((await call('ModelStatistics', { name: 'nope' })).err?.code).toBe(grpc.status.NOT_FOUND);
  });

  it('guards repository changes with the same key as REST', async () => {
    expect((await call('RepositoryModelLoad', { model_name: 'mlp' })).err?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await call('RepositoryModelLoad', { model_name: 'mlp' }, { authorization: 'Bearer wrong' })).err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call('RepositoryModelLoad', { model_name: 'mlp' }, { authorization: `Bearer ${KEY}` })).err).toBeUndefined();
    const index = await call('RepositoryIndex', { ready: true });
    expect(index.res.models.map((m: any) => [m.name, m.state])).toContainEqual(['mlp', 'READY']);
    expect((await call('RepositoryModelUnload', { model_name: 'mlp' }, { authorization: `Bearer ${KEY}` })).err).toBeUndefined();
    expect(b.node!.pool.list().some((m) => m.fn === 'mlp')).toBe(false);
  });

  it('serves what Python tritonclient-style code sends, through real grpcio and numpy', async () => {
    const x = floats(8, 3);
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(x), [2, 4]) });
    const i64 = ['9007199254740993', '-9007199254740993', '123', '-1'];
    const out = await python([
      { rpc: 'live' },
      { rpc: 'server_metadata' },
      { rpc: 'ready', model: 'mlp' },
      { rpc: 'metadata', model: 'types' },
      { rpc: 'config', model: 'mlp' },
      { rpc: 'infer', model: 'mlp', id: 'py', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: x }] },
      { rpc: 'infer', model: 'types', inputs: [
        { name: 'f32', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
        { name: 'f64', datatype: 'FP64', shape: [1], data: [0.1] },
        { name: 'i32', datatype: 'INT32', shape: [1, 1], data: [-5] },
        { name: 'i64', datatype: 'INT64', shape: [4], data: i64 },
        { name: 'u8', datatype: 'UINT8', shape: [2, 2], data: [0, 9, 200, 255] },
        { name: 'b', datatype: 'BOOL', shape: [3], data: [false, true, true] },
      ], outputs: ['i64_out', 'b_out', 'u8_out'] },
      { rpc: 'infer', model: 'mlp', inputs: [{ name: 'x', datatype: 'FP64', shape: [1, 4], data: [1, 2, 3, 4] }] },
      { rpc: 'load', model: 'types' },
      { rpc: 'load', model: 'types', metadata: { authorization: `Bearer ${KEY}` } },
    ]);
    expect(out[0]).toEqual({ ok: true, live: true });
    expect(out[1]).toMatchObject({ ok: true, name: 'brulee' });
    expect(out[2]).toEqual({ ok: true, ready: true });
    expect(out[3].inputs).toContainEqual({ name: 'f64', datatype: 'FP64', shape: [-1] });
    expect(out[4]).toEqual({ ok: true, name: 'mlp', platform: 'onnxruntime_onnx', input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [-1, 4] }] });
    const [yName] = Object.keys(want);
    expect(out[5].id).toBe('py');
    expect(out[5].outputs[yName!].shape).toEqual([2, 3]);
    expect(out[5].outputs[yName!].data).toEqual([...(want[yName!]!.data as Float32Array)]);
    expect(out[6].outputs.i64_out.data).toEqual(i64);
    expect(out[6].outputs.b_out.data).toEqual([false, true, true]);
    expect(out[6].outputs.u8_out.data).toEqual([0, 9, 200, 255]);
    expect(out[7]).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(out[8]).toMatchObject({ ok: false, code: 'UNAUTHENTICATED' });
    expect(out[9]).toEqual({ ok: true });
  }, 90_000);
});
