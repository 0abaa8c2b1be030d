import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../config';
import { halfModel, mlpModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

let b: TestBrulee;
const KEY = 's3cret-key';
const auth = { authorization: `Bearer ${KEY}` };
const small = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 });
const good = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

beforeAll(async () => {
  b = await startBrulee({ API_KEY: KEY, MAX_MODEL_BYTES: '100KiB', MAX_REQUEST_BYTES: '64KiB' });
  expect((await b.put('m', small, '', auth)).status).toBe(201);
  expect((await b.put('types', typesModel(), '', auth)).status).toBe(201);
});
afterAll(async () => {
  await b?.destroy();
});

/** After every bad request the server still serves a good one. */
async function stillServes() {
  const r = await b.invoke('m', good);
  expect(r.status).toBe(200);
}

async function expectError(p: Promise<{ status: number; body: any }>, status: number, code: string, message: RegExp) {
  const r = await p;
  expect(r.status).toBe(status);
  expect(r.body.error.code).toBe(code);
  expect(r.body.error.message).toMatch(message);
  await stillServes();
}

describe('bad input gets a clear 4xx error and the server keeps serving', () => {
  it('malformed JSON', () => expectError(b.json('POST', '/functions/m/invoke', '{"inputs": {'), 400, 'MALFORMED_JSON', /not valid JSON/));
  it('empty body', () => expectError(b.json('POST', '/functions/m/invoke', ''), 400, 'MALFORMED_JSON', /empty/));
  it('body without inputs', () => expectError(b.json('POST', '/functions/m/invoke', { x: 1 }), 400, 'BAD_REQUEST', /inputs/));
  it('unknown function', () => expectError(b.invoke('nope', good), 404, 'FUNCTION_NOT_FOUND', /PUT \/functions\/nope/));
  // Run as a sync call before: a client that asked for an id got an answer it did not expect, late.
  it('invoke with a misspelt or bad query parameter', async () => {
    await expectError(b.json('POST', '/functions/m/invoke?asnyc=true', { inputs: good }), 400, 'INVALID_OPTION', /asnyc/);
    await expectError(b.json('POST', '/functions/m/invoke?async=yes', { inputs: good }), 400, 'INVALID_OPTION', /async/);
    expect((await b.json('POST', '/functions/m/invoke?async=true', { inputs: good })).status).toBe(202);
    expect((await b.json('POST', '/functions/m/invoke?async=0', { inputs: good })).status).toBe(200);
  });
  it('wrong input name', () =>
    expectError(b.invoke('m', { y: good.x }), 422, 'INVALID_INPUT', /unknown input "y".*inputs are "x"/));
  it('missing input', () => expectError(b.invoke('types', { f32: { type: 'float32', dims: [2, 3], data: [1, 2, 3, 4, 5, 6] } }), 422, 'INVALID_INPUT', /missing input "f64"/));
  it('wrong type', () =>
    expectError(b.invoke('m', { x: { ...good.x, type: 'int32' } }), 422, 'INVALID_INPUT', /type "int32".*expects float32/));
  it('wrong rank', () =>
    expectError(b.invoke('m', { x: { type: 'float32', dims: [4], data: [1, 2, 3, 4] } }), 422, 'INVALID_INPUT', /rank 1.*expects rank 2/));
  it('wrong fixed dim', () =>
    expectError(b.invoke('m', { x: { type: 'float32', dims: [1, 5], data: [1, 2, 3, 4, 5] } }), 422, 'INVALID_INPUT', /dim 1 is 5.*fixes it at 4/));
  it('element count does not match dims', () =>
    expectError(b.invoke('m', { x: { type: 'float32', dims: [2, 4], data: [1, 2, 3, 4] } }), 422, 'INVALID_INPUT', /4 elements.*need 8/));
  it('a value that is not of the type', () =>
    expectError(b.invoke('m', { x: { type: 'float32', dims: [1, 4], data: [1, 'a', 3, 4] } }), 422, 'INVALID_INPUT', /element 1.*needs a number/));
  it('an int out of range', () =>
    expectError(
      b.invoke('types', {
        f32: { type: 'float32', dims: [2, 3], data: [1, 2, 3, 4, 5, 6] }, f64: { type: 'float64', dims: [1], data: [1] },
        i32: { type: 'int32', dims: [1, 1], data: [1] }, i64: { type: 'int64', dims: [4], data: [1, 2, 3, 4] },
        u8: { type: 'uint8', dims: [2, 2], data: [0, 1, 2, 256] }, b: { type: 'bool', dims: [3], data: [true, false, true] },
      }),
      422, 'INVALID_INPUT', /"u8": element 3 is 256.*0 to 255/,
    ));
  it('a float past its type\'s range, on v1 and v2 alike (it became an infinity)', async () => {
    await expectError(b.invoke('m', { x: { type: 'float32', dims: [1, 4], data: [1, 1e300, 3, 4] } }), 422, 'INVALID_INPUT', /^input "x": element 1 is 1e\+300, past float32's range \(finite values are at most ±3\.4028234663852886e\+38\)/);
    expect((await b.put('half', halfModel(), '', auth)).status).toBe(201);
    await expectError(b.invoke('half', { h: { type: 'float16', dims: [2], data: [1, 70000] } }), 422, 'INVALID_INPUT', /^input "h": element 1 is 70000, past float16's range \(finite values are at most ±65504\)/);
    const infer = (name: string, datatype: string, data: number[]) => b.json('POST', `/v2/models/${name}/infer`, { inputs: [{ name: name === 'm' ? 'x' : 'h', shape: [data.length / (name === 'm' ? 4 : 1), ...(name === 'm' ? [4] : [])], datatype, data }] });
    expect(await infer('half', 'FP16', [70000])).toEqual({ status: 422, body: { error: 'input "h": element 0 is 70000, past float16\'s range (finite values are at most ±65504); send "Infinity" or "-Infinity" if an infinity is meant' } });
    expect(await infer('m', 'FP32', [1, 2, -1e300, 4])).toEqual({ status: 422, body: { error: 'input "x": element 2 is -1e+300, past float32\'s range (finite values are at most ±3.4028234663852886e+38); send "Infinity" or "-Infinity" if an infinity is meant' } });
    // In range, and the infinities the protocol spells as strings, still pass.
    expect((await b.invoke('half', { h: { type: 'float16', dims: [3], data: [65504, 'Infinity', -2] } })).body.outputs.h_out.data).toEqual([65504, 'Infinity', -2]);
    await stillServes();
  });
  it('a request body past the limit', () =>
    expectError(b.invoke('m', { x: { type: 'float32', dims: [1, 4], data: new Array(20_000).fill(1.2345) } }), 413, 'PAYLOAD_TOO_LARGE', /limit of 65536 bytes \(MAX_REQUEST_BYTES\)/));
  it('a model upload past the limit', () => expectError(b.put('big', new Uint8Array(200_000), '', auth), 413, 'PAYLOAD_TOO_LARGE', /model upload.*102400 bytes \(MAX_MODEL_BYTES\)/));
  it('a non-ONNX upload', () =>
    expectError(b.put('junk', new TextEncoder().encode('this is not a model at all'), '', auth), 422, 'INVALID_MODEL', /not an ONNX model/));
  it('a truncated ONNX file', () => expectError(b.put('cut', small.slice(0, Math.floor(small.length / 2)), '', auth), 422, 'INVALID_MODEL', /not an ONNX model|onnxruntime/));
  it('an empty upload', () => expectError(b.put('empty', new Uint8Array(0), '', auth), 422, 'INVALID_MODEL', /empty/));
  it('an invalid name', async () => {
    await expectError(b.put('.hidden', small, '', auth), 400, 'INVALID_NAME', /letters, digits/);
    await expectError(b.put('a..b', small, '', auth), 400, 'INVALID_NAME', /without '\.\.'/);
    await expectError(b.put('a%2F..%2Fetc', small, '', auth), 400, 'INVALID_NAME', /letters, digits/);
    await expectError(b.put('semi;colon', small, '', auth), 400, 'INVALID_NAME', /letters, digits/);
    await expectError(b.put('x'.repeat(200), small, '', auth), 400, 'INVALID_NAME', /1-128/);
  });
  it('an invalid registration option', () => expectError(b.put('m2', small, 'memoryBytes=lots', auth), 400, 'INVALID_OPTION', /memoryBytes/));
  it('an unknown registration option', () => expectError(b.put('m2', small, 'colour=blue', auth), 400, 'INVALID_OPTION', /colour/));
  it('an unknown output asked for', async () => {
    const r = await b.json('POST', '/functions/m/invoke', { inputs: good, outputs: ['z'] });
    expect(r.status).toBe(422);
    expect(r.body.error.message).toMatch(/unknown output "z"/);
  });
  it('an unknown route', () => expectError(b.json('GET', '/nowhere'), 404, 'NOT_FOUND', /no route/));
  it('a wrong method on a route: 405 with Allow, in each protocol\'s error form', async () => {
    const wrong = async (method: string, path: string) => {
      const res = await b.req(path, { method, headers: auth });
      return [method, path, res.status, res.headers.get('allow'), await res.json()];
    };
    expect(await wrong('GET', '/functions/m/invoke')).toEqual([
      'GET', '/functions/m/invoke', 405, 'POST',
      { error: { code: 'METHOD_NOT_ALLOWED', message: 'GET is not allowed on /functions/m/invoke; it takes POST (see README for the API)', details: { allow: ['POST'] } } },
    ]);
    expect(await wrong('POST', '/functions/m')).toEqual([
      'POST', '/functions/m', 405, 'DELETE, GET, HEAD, PUT',
      { error: { code: 'METHOD_NOT_ALLOWED', message: 'POST is not allowed on /functions/m; it takes DELETE, GET, HEAD, PUT (see README for the API)', details: { allow: ['DELETE', 'GET', 'HEAD', 'PUT'] } } },
    ]);
    expect(await wrong('GET', '/v2/models/m/infer')).toEqual(['GET', '/v2/models/m/infer', 405, 'POST', { error: 'GET is not allowed on /v2/models/m/infer; it takes POST (see README for the API)' }]);
    expect(await wrong('PUT', '/v2/models/m/versions/1/infer')).toEqual(['PUT', '/v2/models/m/versions/1/infer', 405, 'POST', { error: 'PUT is not allowed on /v2/models/m/versions/1/infer; it takes POST (see README for the API)' }]);
    expect(await wrong('DELETE', '/v2/health/ready')).toEqual(['DELETE', '/v2/health/ready', 405, 'GET, HEAD', { error: 'DELETE is not allowed on /v2/health/ready; it takes GET, HEAD (see README for the API)' }]);
    // A path that no method has stays a 404.
    expect((await wrong('POST', '/v2/models/m/nowhere')).slice(2, 4)).toEqual([404, null]);
    await stillServes();
  });
  it('an unknown file under bull-board\'s /queues: the same 404, and nothing printed (its Hono would print it and answer 500)', async () => {
    const printed = vi.spyOn(console, 'error');
    try {
      await expectError(b.json('GET', '/queues/static/nowhere.js'), 404, 'NOT_FOUND', /no route GET \/queues\/static\/nowhere\.js/);
      expect(printed).not.toHaveBeenCalled();
    } finally {
      printed.mockRestore();
    }
  });
  it('an unknown invocation id', () => expectError(b.json('GET', '/invocations/abc'), 404, 'INVOCATION_NOT_FOUND', /async=true/));
  it('nothing bad was queued: no failures counted', async () => {
    const stats = (await b.json('GET', '/stats')).body;
    expect(stats.functions.m.failures).toBe(0);
    expect(stats.queue.failed).toBe(0);
  });
});

describe('API key', () => {
  it('calls that change state need the key: 401 without, 403 with a wrong one', async () => {
    await expectError(b.put('m3', small), 401, 'UNAUTHORIZED', /Authorization: Bearer/);
    await expectError(b.put('m3', small, '', { authorization: 'Bearer wrong' }), 403, 'FORBIDDEN', /wrong/);
    await expectError(b.json('DELETE', '/functions/m'), 401, 'UNAUTHORIZED', /Bearer/);
    const load = await b.json('POST', '/v2/repository/models/m/load');
    expect(load.status).toBe(401);
    expect(typeof load.body.error).toBe('string');
    expect((await b.json('POST', '/v2/repository/models/m/unload', undefined, { authorization: 'Bearer nope' })).status).toBe(403);
    expect((await b.json('POST', '/v2/repository/models/m/load', undefined, auth)).status).toBe(200);
  });
  it('reads and invocations need no key', async () => {
    expect((await b.json('GET', '/functions')).status).toBe(200);
    await stillServes();
  });
});

describe('configuration', () => {
  it('rejects an invalid MEMORY_BUDGET (and other bad values) with a message that says what to fix', () => {
    expect(() => loadConfig({ MEMORY_BUDGET: 'lots' })).toThrow(/MEMORY_BUDGET must be a positive byte count like 2GiB.*"lots"/);
    expect(() => loadConfig({ MEMORY_BUDGET: '-5MB' })).toThrow(/MEMORY_BUDGET/);
    expect(() => loadConfig({ EVICTION_POLICY: 'fifo' })).toThrow(/EVICTION_POLICY must be one of cremebrulee.*lru/);
    expect(() => loadConfig({ PORT: '99999' })).toThrow(/PORT must be an integer from 0 to 65535/);
    expect(() => loadConfig({ POPULARITY_CRON: 'every minute' })).toThrow(/POPULARITY_CRON must be a node-cron expression/);
    expect(() => loadConfig({ REDIS_URL: 'localhost' })).toThrow(/REDIS_URL must be a URL/);
  });
  it('parses units and defaults', () => {
    const c = loadConfig({ MEMORY_BUDGET: '512MiB' });
    expect(c.memoryBudget).toBe(512 * 1024 * 1024);
    expect(loadConfig({ MEMORY_BUDGET: '2GB' }).memoryBudget).toBe(2e9);
    expect(loadConfig({ MEMORY_BUDGET: '1073741824' }).memoryBudget).toBe(1073741824);
    expect(c).toMatchObject({ port: 8080, evictionPolicy: 'cremebrulee', role: 'all', popularityCron: '*/10 * * * * *' });
  });
});
