import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../../models/onnx-builder';
import { mlpModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * Every JSON answer of the /v2 routes, successes and errors, validates against the Open Inference
 * Protocol's schemas (and, for the Triton extensions, schemas written from Triton's documents):
 * test/protocols/open-inference-rest.schema.json names its sources.
 */

const schema = JSON.parse(readFileSync(new URL('../protocols/open-inference-rest.schema.json', import.meta.url), 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(schema, 'oip');

let b: TestBrulee;
const KEY = 'openapi-key';
const strings = encodeModel({
  inputs: [{ name: 's', type: 'string', shape: ['n'] }],
  outputs: [{ name: 'u', type: 'string', shape: ['n'] }],
  nodes: [{ op: 'Identity', inputs: ['s'], outputs: ['u'] }],
});

beforeAll(async () => {
  b = await startBrulee({ API_KEY: KEY });
  const auth = { authorization: `Bearer ${KEY}` };
  expect((await b.put('mlp', mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 31 }), '', auth)).status).toBe(201);
  expect((await b.put('types', typesModel(), '', auth)).status).toBe(201);
  expect((await b.put('strings', strings, '', auth)).status).toBe(201);
}, 120_000);
afterAll(async () => {
  await b?.destroy();
});

const mlpInput = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
const typesInput = {
  id: 'types-1',
  inputs: [
    { name: 'f32', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] },
    { name: 'f64', shape: [1], datatype: 'FP64', data: [0.5] },
    { name: 'i32', shape: [1, 1], datatype: 'INT32', data: [7] },
    { name: 'i64', shape: [4], datatype: 'INT64', data: [1, 2, 3, 4] },
    { name: 'u8', shape: [2, 2], datatype: 'UINT8', data: [1, 2, 3, 4] },
    { name: 'b', shape: [3], datatype: 'BOOL', data: [true, false, true] },
  ],
};

/** [method, path, body, expected status, schema definition] for every /v2 route with a JSON answer. */
const cases: Array<[string, string, unknown, number, string, Record<string, string>?]> = [
  ['GET', '/v2', undefined, 200, 'metadata_server_response'],
  ['GET', '/v2/health/live', undefined, 200, 'oip_md_live_server_response'],
  ['GET', '/v2/health/ready', undefined, 200, 'oip_md_ready_server_response'],
  ['GET', '/v2/models/mlp', undefined, 200, 'metadata_model_response'],
  ['GET', '/v2/models/mlp/versions/1', undefined, 200, 'metadata_model_response'],
  ['GET', '/v2/models/strings', undefined, 200, 'metadata_model_response'],
  ['GET', '/v2/models/nope', undefined, 404, 'metadata_model_error_response'],
  ['GET', '/v2/models/mlp/versions/7', undefined, 404, 'metadata_model_error_response'],
  ['GET', '/v2/models/mlp/ready', undefined, 200, 'oip_md_ready_model_response'],
  ['GET', '/v2/models/mlp/versions/1/ready', undefined, 200, 'oip_md_ready_model_response'],
  ['GET', '/v2/models/nope/ready', undefined, 404, 'metadata_model_error_response'],
  ['POST', '/v2/models/mlp/infer', mlpInput, 200, 'inference_response'],
  ['POST', '/v2/models/mlp/versions/1/infer', { ...mlpInput, id: 'x', outputs: [] }, 200, 'inference_response'],
  ['POST', '/v2/models/types/infer', typesInput, 200, 'inference_response'],
  ['POST', '/v2/models/strings/infer', { inputs: [{ name: 's', shape: [2], datatype: 'BYTES', data: ['a', 'bé'] }] }, 200, 'inference_response'],
  ['POST', '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] }, 422, 'inference_error_response'],
  ['POST', '/v2/models/mlp/infer', '{"inputs": [', 400, 'inference_error_response'],
  ['POST', '/v2/models/nope/infer', mlpInput, 404, 'inference_error_response'],
  ['GET', '/v2/models/mlp/config', undefined, 200, 'triton_model_config_response'],
  ['GET', '/v2/models/strings/versions/1/config', undefined, 200, 'triton_model_config_response'],
  ['GET', '/v2/models/nope/config', undefined, 404, 'metadata_model_error_response'],
  ['GET', '/v2/models/mlp/stats', undefined, 200, 'triton_statistics_response'],
  ['GET', '/v2/models/mlp/versions/1/stats', undefined, 200, 'triton_statistics_response'],
  ['GET', '/v2/models/stats', undefined, 200, 'triton_statistics_response'],
  ['GET', '/v2/models/nope/stats', undefined, 404, 'metadata_model_error_response'],
  ['POST', '/v2/repository/index', undefined, 200, 'triton_repository_index_response'],
  ['POST', '/v2/repository/index', { ready: true }, 200, 'triton_repository_index_response'],
  ['POST', '/v2/repository/models/mlp/load', {}, 200, 'triton_repository_load_response', { authorization: `Bearer ${KEY}` }],
  ['POST', '/v2/repository/models/mlp/load', {}, 401, 'metadata_server_error_response'],
  ['POST', '/v2/repository/models/mlp/unload', { parameters: { unload_dependents: false } }, 200, 'triton_repository_load_response', { authorization: `Bearer ${KEY}` }],
  ['GET', '/v2/no/such/route', undefined, 404, 'metadata_server_error_response'],
];

describe('the /v2 routes against the Open Inference Protocol schema', () => {
  for (const [method, path, body, status, def, headers] of cases) {
    it(`${method} ${path} ${status} is a ${def}`, async () => {
      const r = await b.json(method, path, body, headers);
      expect(r.status).toBe(status);
      const validate = ajv.getSchema(`oip#/definitions/${def}`)!;
      expect(validate, def).toBeDefined();
      const ok = validate(r.body);
      expect(ok ? [] : validate.errors, JSON.stringify(r.body).slice(0, 300)).toEqual([]);
      // Errors say what went wrong, in the protocol's form.
      if (status >= 400) expect(Object.keys(r.body)).toEqual(['error']);
    });
  }

  it('the schema refuses what the protocol does not allow (the check can fail)', () => {
    const validate = ajv.getSchema('oip#/definitions/inference_response')!;
    expect(validate({ model_name: 'm', outputs: [{ name: 'y', shape: [1], datatype: 'FP32' }] })).toBe(false);
    expect(ajv.getSchema('oip#/definitions/metadata_tensor')!({ name: 'x', datatype: 'FP32', shape: ['?'] })).toBe(false);
    expect(ajv.getSchema('oip#/definitions/triton_statistics_response')!({ model_stats: [{ name: 'm' }] })).toBe(false);
  });
});
