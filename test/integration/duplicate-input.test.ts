import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type GrpcServer } from '../../functions/grpc/server';
import { mlpModel } from '../../models/generate';
import { encodeModel } from '../../models/onnx-builder';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * An input named twice in one request is a malformed request, whatever the protocol: 400
 * DUPLICATE_INPUT on v1 and on the Open Inference Protocol's REST routes (KServe v2 answers a
 * malformed request 400; Triton's "input 'x' already exists in request" is INVALID_ARG, its 400),
 * INVALID_ARGUMENT on gRPC, with one message. v1 once ran such a call on the last copy (JSON.parse
 * keeps the last of two equal keys) and v2 REST answered 422, the status of an input that does not
 * match the model.
 */

const PROTO_DIR = fileURLToPath(new URL('../../functions/grpc/', import.meta.url));
const x = { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] };
const v2x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
let b: TestBrulee;
let server: GrpcServer;

beforeAll(async () => {
  b = await startBrulee();
  expect((await b.put('m', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
  // An input named like a field of the v1 tensor form.
  const data = encodeModel({ inputs: [{ name: 'data', type: 'float32', shape: ['a', 'b'] }], outputs: [{ name: 'y', type: 'float32', shape: ['a', 'b'] }], nodes: [{ op: 'Identity', inputs: ['data'], outputs: ['y'] }], graphName: 'data' });
  expect((await b.put('data', data)).status).toBe(201);
  server = await startGrpcServer({ dataPlane: b.dataPlane, authorize: b.authorize, log: b.log, host: '127.0.0.1', port: 0, maxRequestBytes: 1 << 20 });
});
afterAll(async () => {
  await server?.close(1000);
  await b?.destroy();
});

async function post(path: string, body: string) {
  const res = await b.req(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, body: (await res.json()) as any };
}

describe('an input given twice', () => {
  it('v1: 400 DUPLICATE_INPUT, not a run of its last copy', async () => {
    const r = await post('/functions/m/invoke', `{"inputs":{"x":${JSON.stringify(x)},"x":${JSON.stringify({ ...x, data: [5, 6, 7, 8] })}}}`);
    expect(r.body).toEqual({ error: { code: 'DUPLICATE_INPUT', message: 'input "x" is given twice' } });
    expect(r.status).toBe(400);
    // Written with an escape, or named like a field of the tensors ("data"), it is still found.
    expect((await post('/functions/m/invoke', `{"inputs":{"x":${JSON.stringify(x)},"\\u0078":${JSON.stringify(x)}}}`)).status).toBe(400);
    const d = JSON.stringify(x);
    expect((await post('/functions/data/invoke', `{"inputs":{"data":${d},"data":${d}}}`)).body.error.code).toBe('DUPLICATE_INPUT');
    // Equal names elsewhere are no duplicates: a tensor's own fields, a name in "outputs".
    const ok = await post('/functions/data/invoke', `{"inputs":{"data":${d}},"outputs":["y"]}`);
    expect(ok.status).toBe(200);
    expect((await post('/functions/m/invoke', `{"inputs":{"x":${d}}}`)).status).toBe(200);
  });

  it('v2 REST, JSON and binary: 400 with the protocol\'s error form', async () => {
    const r = await b.json('POST', '/v2/models/m/infer', { inputs: [v2x, v2x] });
    expect(r).toEqual({ status: 400, body: { error: 'input "x" is given twice' } });
    const raw = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const head = Buffer.from(JSON.stringify({ inputs: [0, 1].map(() => ({ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } })) }));
    const res = await b.req('/v2/models/m/infer', { method: 'POST', headers: { 'inference-header-content-length': String(head.byteLength) }, body: Buffer.concat([head, raw, raw]) });
    expect(res.status).toBe(400);
  });

  it('gRPC: INVALID_ARGUMENT with the error code DUPLICATE_INPUT', async () => {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(PROTO_DIR, 'inference.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })) as any;
    const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const raw = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const input = { name: 'x', datatype: 'FP32', shape: [1, 4] };
    const err = await new Promise<grpc.ServiceError | null>((resolve) => client.ModelInfer({ model_name: 'm', inputs: [input, input], raw_input_contents: [raw, raw] }, (e: grpc.ServiceError | null) => resolve(e)));
    client.close();
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toBe('input "x" is given twice');
    expect(err?.metadata.get('brulee-error-code')).toEqual(['DUPLICATE_INPUT']);
  });
});
