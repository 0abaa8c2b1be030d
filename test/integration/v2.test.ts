import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort, runDirect } from '../support/models';

let b: TestBrulee;
const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3, seed: 5 });
beforeAll(async () => {
  b = await startBrulee();
  await b.put('mlp', mlp);
  await b.put('types', typesModel());
});
afterAll(async () => {
  await b?.destroy();
});

describe('Open Inference Protocol (KServe v2 REST)', () => {
  it('server metadata and health', async () => {
    const meta = await b.json('GET', '/v2');
    expect(meta.status).toBe(200);
    expect(meta.body).toEqual({ name: 'brulee', version: expect.any(String), extensions: expect.arrayContaining(['model_repository']) });
    expect((await b.json('GET', '/v2/health/live')).status).toBe(200);
    expect((await b.json('GET', '/v2/health/ready')).status).toBe(200);
  });

  it('model metadata and readiness', async () => {
    const m = await b.json('GET', '/v2/models/mlp');
    expect(m.body).toEqual({
      name: 'mlp',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }],
    });
    expect((await b.json('GET', '/v2/models/mlp/versions/1')).status).toBe(200);
    expect((await b.json('GET', '/v2/models/mlp/ready')).status).toBe(200);
    const missing = await b.json('GET', '/v2/models/nope/ready');
    expect(missing.status).toBe(404);
    expect(typeof missing.body.error).toBe('string');
    const t = await b.json('GET', '/v2/models/types');
    expect(t.body.inputs.map((i: { datatype: string }) => i.datatype)).toEqual(['FP32', 'FP64', 'INT32', 'INT64', 'UINT8', 'BOOL']);
  });

  it('infer: echoes the id, takes nested or flat data, returns what onnxruntime returns', async () => {
    const x = floats(8, 4);
    const want = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(x), [2, 4]) });
    const r = await b.json('POST', '/v2/models/mlp/infer', {
      id: 'req-42',
      inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [x.slice(0, 4), x.slice(4)] }],
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ model_name: 'mlp', model_version: '1', id: 'req-42' });
    expect(r.body.outputs).toHaveLength(1);
    expect(r.body.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP32', shape: [2, 3] });
    expect(Float32Array.from(r.body.outputs[0].data)).toEqual(want.y!.data);
    const flat = await b.json('POST', '/v2/models/mlp/versions/1/infer', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: x }] });
    expect(flat.body.outputs[0].data).toEqual(r.body.outputs[0].data);
    expect(flat.body.id).toBeUndefined();
  });

  it('infer: the outputs list selects outputs', async () => {
    const inputs = [
      { name: 'f32', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] },
      { name: 'f64', shape: [1], datatype: 'FP64', data: [0.5] },
      { name: 'i32', shape: [1, 1], datatype: 'INT32', data: [7] },
      { name: 'i64', shape: [4], datatype: 'INT64', data: [1, 2, 3, 4] },
      { name: 'u8', shape: [2, 2], datatype: 'UINT8', data: [[1, 2], [3, 4]] },
      { name: 'b', shape: [3], datatype: 'BOOL', data: [true, false, true] },
    ];
    const r = await b.json('POST', '/v2/models/types/infer', { inputs, outputs: [{ name: 'b_out' }, { name: 'i64_out' }] });
    expect(r.status).toBe(200);
    expect(r.body.outputs).toEqual([
      { name: 'b_out', datatype: 'BOOL', shape: [3], data: [true, false, true] },
      { name: 'i64_out', datatype: 'INT64', shape: [4], data: [1, 2, 3, 4] },
    ]);
    // A name asked twice is answered once, at its first place (Triton's requested outputs are a set).
    const twice = await b.json('POST', '/v2/models/types/infer', { inputs, outputs: [{ name: 'b_out' }, { name: 'i64_out' }, { name: 'b_out' }] });
    expect(twice.status).toBe(200);
    expect(twice.body.outputs).toEqual(r.body.outputs);
  });

  it('errors take the protocol form {"error": "<message>"}', async () => {
    const cases = [
      b.json('POST', '/v2/models/nope/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
      b.json('POST', '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT8', data: [1, 2, 3, 4] }] }),
      b.json('POST', '/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'BYTES', data: ['a'] }] }),
      b.json('POST', '/v2/models/mlp/infer', '{not json'),
      b.json('POST', '/v2/models/mlp/infer', { inputs: 'x' }),
      b.json('GET', '/v2/models/mlp/versions/9'),
    ];
    const res = await Promise.all(cases);
    expect(res.map((r) => r.status)).toEqual([404, 422, 422, 400, 400, 404]);
    for (const r of res) expect(typeof r.body.error).toBe('string');
    expect(res[1]!.body.error).toMatch(/"x".*expects float32/);
  });

  it('outputs asked as top-k labels or into shared memory are a 400, not the plain tensor with a 200', async () => {
    const x = [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
    const top = await b.json('POST', '/v2/models/mlp/infer', { inputs: x, outputs: [{ name: 'y', parameters: { classification: 2 } }] });
    expect(top.status).toBe(400);
    expect(top.body.error).toMatch(/^output "y": classification \(Triton's top-k class labels\) is not supported; ask for the output itself/);
    const shm = await b.json('POST', '/v2/models/mlp/infer', { inputs: x, outputs: [{ name: 'y', parameters: { shared_memory_region: 'out0', shared_memory_byte_size: 12 } }] });
    expect(shm.status).toBe(400);
    expect(shm.body.error).toMatch(/^output "y": shared memory outputs are not supported/);
    expect((await b.json('POST', '/v2/models/mlp/infer', { inputs: x, outputs: [{ name: 'y', parameters: { binary_data: false } }] })).status).toBe(200);
  });

  it('repository extension: index, load (prewarm) and unload (evict)', async () => {
    await b.json('POST', '/v2/repository/models/mlp/unload');
    await b.json('POST', '/v2/repository/models/types/unload');
    let index = (await b.json('POST', '/v2/repository/index', {})).body;
    expect(index.find((m: { name: string }) => m.name === 'mlp')).toMatchObject({ version: '1', state: 'UNAVAILABLE' });
    const loadsBefore = (await b.json('GET', '/stats')).body.functions.mlp.loads;
    expect((await b.json('POST', '/v2/repository/models/mlp/load')).status).toBe(200);
    index = (await b.json('POST', '/v2/repository/index', { ready: true })).body;
    expect(index).toEqual([{ name: 'mlp', version: '1', state: 'READY', reason: '' }]);
    // The prewarmed model serves warm.
    const r = await b.invoke('mlp', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } });
    expect(r.body.coldStart).toBe(false);
    expect((await b.json('POST', '/v2/repository/models/mlp/unload')).status).toBe(200);
    expect(b.node!.pool.list().some((m) => m.fn === 'mlp')).toBe(false);
    const stats = (await b.json('GET', '/stats')).body;
    expect(stats.functions.mlp.loads).toBe(loadsBefore + 1);
    expect(stats.recentEvictions[0]).toMatchObject({ fn: 'mlp', cause: 'unload' });
  });
});
