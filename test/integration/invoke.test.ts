import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convModel, mlpModel, typesModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';

let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
});

/** JSON has no negative zero (JSON.stringify(-0) is "0"): the one value JSON cannot carry. */
const noNegZero = (xs: ArrayLike<number>) => Array.from(xs, (v) => (Object.is(v, -0) ? 0 : v));

/** brulee's JSON output equals onnxruntime's own output for the same input, bit for bit (but for -0). */
function expectSameTensor(got: { type: string; dims: number[]; data: unknown[] }, want: ort.Tensor) {
  expect(got.type).toBe(want.type);
  expect(got.dims).toEqual([...want.dims]);
  const data = want.data as ArrayLike<number | bigint>;
  if (want.type === 'float32') expect(noNegZero(Float32Array.from(got.data as number[]))).toEqual(noNegZero(data as ArrayLike<number>));
  else if (want.type === 'int64') expect((got.data as number[]).map(BigInt)).toEqual(Array.from(data as BigInt64Array));
  else if (want.type === 'bool') expect(got.data).toEqual(Array.from(data as Uint8Array, (v) => v !== 0));
  else expect(got.data).toEqual(Array.from(data as ArrayLike<number>));
}

/**
 * The profiler's input for a model (runtime's profile-child.ts, worked out from its rule): each
 * dynamic dim 1, floats ((i * 7919) % 1000) / 1000 - 0.5, integers 0.
 */
function profilerFeeds(s: ort.InferenceSession): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of s.inputMetadata) {
    if (!m.isTensor) throw new Error(`input ${m.name} is not a tensor`);
    const dims = m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    if (m.type === 'float32') feeds[m.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5), dims);
    else if (m.type === 'int64') feeds[m.name] = new ort.Tensor('int64', new BigInt64Array(n), dims);
    else throw new Error(`input ${m.name}: type ${m.type} not handled here`);
  }
  return feeds;
}

/** onnxruntime's own message when it runs `model` on the profiler's input: the run must fail. */
async function directRunError(model: Uint8Array): Promise<string> {
  const s = await ort.InferenceSession.create(model);
  try {
    await s.run(profilerFeeds(s));
  } catch (e) {
    return (e as Error).message;
  } finally {
    await s.release();
  }
  throw new Error('onnxruntime ran the model on the profiler input; the test expects it to fail');
}

describe('register and invoke', () => {
  it('registers a model with its signature and a measured profile, cold then warm, outputs equal to onnxruntime', async () => {
    const bytes = mlpModel({ inputSize: 16, hidden: [32], outputSize: 4, seed: 7 });
    const put = await b.put('mlp', bytes);
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ name: 'mlp', version: 1, created: true, newVersion: true });
    expect(put.body.signature).toEqual({
      inputs: [{ name: 'x', type: 'float32', dims: ['batch', 16] }],
      outputs: [{ name: 'y', type: 'float32', dims: ['batch', 4] }],
    });
    const p = put.body.profile;
    expect(p.loadMs).toBeGreaterThan(0);
    expect(p.loadSamplesMs).toHaveLength(3);
    expect(p.execMs).toBeGreaterThan(0);
    expect(p.fileBytes).toBe(bytes.byteLength);
    expect(p.residentBytes).toBeGreaterThanOrEqual(bytes.byteLength);
    expect(put.body.sizeBytes).toBe(p.residentBytes);

    const x = floats(2 * 16, 3);
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [2, 16]) });
    const cold = await b.invoke('mlp', { x: { type: 'float32', dims: [2, 16], data: x } });
    expect(cold.status).toBe(200);
    expect(cold.body.coldStart).toBe(true);
    expect(cold.body.node).toBe(b.node!.id);
    expect(cold.body.timings.loadMs).toBeGreaterThan(0);
    expectSameTensor(cold.body.outputs.y, want.y!);
    for (const k of ['queueMs', 'loadMs', 'execMs', 'totalMs']) expect(typeof cold.body.timings[k]).toBe('number');

    const warm = await b.invoke('mlp', { x: { type: 'float32', dims: [2, 16], data: x } });
    expect(warm.body.coldStart).toBe(false);
    expect(warm.body.timings.loadMs).toBe(0);
    expectSameTensor(warm.body.outputs.y, want.y!);

    // Nested data is accepted too.
    const nested = await b.invoke('mlp', { x: { type: 'float32', dims: [2, 16], data: [x.slice(0, 16), x.slice(16)] } });
    expectSameTensor(nested.body.outputs.y, want.y!);

    const got = await b.json('GET', '/functions/mlp');
    expect(got.body.stats).toMatchObject({ invocations: 3, loads: 1, coldStarts: 1, warmHits: 2 });
    expect(got.body.residentOn).toEqual([b.node!.id]);
  });

  it('runs every supported element type exactly (types model)', async () => {
    const bytes = typesModel();
    expect((await b.put('types', bytes)).status).toBe(201);
    const inputs = {
      f32: { type: 'float32', dims: [2, 3], data: [0.1, -2.5, 3e-8, 1e30, -0, 7] },
      f64: { type: 'float64', dims: [3], data: [Math.PI, -1e-300, 2 ** 60] },
      i32: { type: 'int32', dims: [1, 2], data: [-2147483648, 2147483647] },
      i64: { type: 'int64', dims: [4], data: [1, -1, '9007199254740993', '-9223372036854775808'] },
      u8: { type: 'uint8', dims: [2, 2], data: [0, 1, 128, 255] },
      b: { type: 'bool', dims: [3], data: [true, false, true] },
    };
    const r = await b.invoke('types', inputs);
    expect(r.status).toBe(200);
    const o = r.body.outputs;
    expect(Float32Array.from(o.f32_out.data)).toEqual(Float32Array.from([0.1, -2.5, 3e-8, 1e30, 0, 7]));
    expect(o.f64_out.data).toEqual([Math.PI, -1e-300, 2 ** 60]);
    expect(o.i32_out.data).toEqual([-2147483648, 2147483647]);
    expect(o.i64_out).toEqual({ type: 'int64', dims: [4], data: [1, -1, '9007199254740993', '-9223372036854775808'] });
    expect(o.u8_out.data).toEqual([0, 1, 128, 255]);
    expect(o.b_out).toEqual({ type: 'bool', dims: [3], data: [true, false, true] });
  });

  it('serves real models from npm packages: Silero VAD and PP-OCR, equal to onnxruntime', async () => {
    const vad = readModel(REAL_MODELS.sileroVad);
    const reg = await b.put('vad', vad);
    expect(reg.status).toBe(201);
    // Silero's graph fails on the profiler's default dims: registration still succeeds, and says
    // so with onnxruntime's own message for that run.
    expect(reg.body.profile.execError).toBe(`onnxruntime could not run the model on these inputs: ${await directRunError(vad)}`);
    expect(reg.body.profile.execMs).toBeNull();
    expect(reg.body.profile.residentBytes).toBeGreaterThan(vad.byteLength);
    const audio = floats(512, 11).map((v) => v * 0.1);
    const state = new Array(2 * 128).fill(0);
    const want = await runDirect(vad, {
      input: new ort.Tensor('float32', Float32Array.from(audio), [1, 512]),
      state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
    });
    const r = await b.invoke('vad', {
      input: { type: 'float32', dims: [1, 512], data: audio },
      state: { type: 'float32', dims: [2, 1, 128], data: state },
      sr: { type: 'int64', dims: [], data: [16000] },
    });
    expect(r.status).toBe(200);
    expectSameTensor(r.body.outputs.output, want.output!);
    expectSameTensor(r.body.outputs.stateN, want.stateN!);

    const cls = readModel(REAL_MODELS.ocrCls);
    expect((await b.put('ocr-cls', cls)).status).toBe(201);
    const img = floats(3 * 48 * 192, 5);
    const wantCls = await runDirect(cls, { x: new ort.Tensor('float32', Float32Array.from(img), [1, 3, 48, 192]) });
    const rc = await b.invoke('ocr-cls', { x: { type: 'float32', dims: [1, 3, 48, 192], data: img } });
    expect(rc.status).toBe(200);
    const [outName] = Object.keys(wantCls);
    expectSameTensor(rc.body.outputs[outName!], wantCls[outName!]!);
  });

  it('keeps a model whose profiling run fails, and runs it on valid dims', async () => {
    const r = await b.put('conv', convModel());
    expect(r.status).toBe(201);
    expect(r.body.profile.execMs).toBeNull();
    const ortMessage = await directRunError(convModel());
    expect(r.body.profile.execError).toBe(`onnxruntime could not run the model on these inputs: ${ortMessage}`);
    // A call with those dims fits the signature, and fails in onnxruntime: 422 INFERENCE_FAILED, same words.
    const bad = await b.invoke('conv', { img: { type: 'float32', dims: [1, 1, 1, 1], data: [-0.5] } });
    expect([bad.status, bad.body]).toEqual([422, { error: { code: 'INFERENCE_FAILED', message: `onnxruntime could not run the model on these inputs: ${ortMessage}` } }]);
    // With dims the request names, the profile run succeeds.
    const r2 = await b.put('conv2', convModel(), 'profileDims=img:1x1x8x8');
    expect(r2.body.profile.execMs).toBeGreaterThan(0);
    expect(r2.body.profile.profiledDims).toEqual({ img: [1, 1, 8, 8] });
    const img = floats(64, 2);
    const want = await runDirect(convModel(), { img: new ort.Tensor('float32', Float32Array.from(img), [1, 1, 8, 8]) });
    const inv = await b.invoke('conv', { img: { type: 'float32', dims: [1, 1, 8, 8], data: img } });
    expect(inv.status).toBe(200);
    expectSameTensor(inv.body.outputs.out, want.out!);
  });

  it('same bytes again: 200 and no new version; other bytes: version 2, old version retired', async () => {
    const v1 = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 });
    const v2 = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 2 });
    expect((await b.put('versioned', v1)).status).toBe(201);
    const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    const out1 = await b.invoke('versioned', x);
    const again = await b.put('versioned', v1);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ version: 1, newVersion: false, created: false });
    const second = await b.put('versioned', v2);
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ version: 2, newVersion: true, created: false });
    expect(second.body.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    // Registering v2 retires v1 on the nodes at once, before any v2 invocation.
    for (let i = 0; i < 50 && b.node!.pool.list().some((m) => m.fn === 'versioned'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(b.node!.pool.list().filter((m) => m.fn === 'versioned')).toEqual([]);
    const out2 = await b.invoke('versioned', x);
    expect(out2.body.version).toBe(2);
    expect(out2.body.coldStart).toBe(true);
    const want2 = await runDirect(v2, { x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
    expectSameTensor(out2.body.outputs.y, want2.y!);
    expect(out2.body.outputs.y.data).not.toEqual(out1.body.outputs.y.data);
    // Only the new version stays resident.
    const keys = b.node!.pool.list().filter((m) => m.fn === 'versioned').map((m) => m.key);
    expect(keys).toEqual([`versioned@${second.body.sha256.slice(0, 16)}`]);
  });

  it('async invocation: 202 with an id, then the result', async () => {
    const asyncBytes = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 9 });
    await b.put('asyncfn', asyncBytes);
    const r = await b.json('POST', '/functions/asyncfn/invoke?async=true', { inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 0, 0, 1] } } });
    expect(r.status).toBe(202);
    expect(r.body.id).toMatch(/^[0-9a-f-]{36}$/);
    let s: any;
    for (let i = 0; i < 100; i++) {
      s = (await b.json('GET', `/invocations/${r.body.id}`)).body;
      if (s.status === 'completed' || s.status === 'failed') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(s.status).toBe('completed');
    // Against onnxruntime run directly, not against brulee's own sync answer.
    const want = await runDirect(asyncBytes, { x: new ort.Tensor('float32', Float32Array.from([1, 0, 0, 1]), [1, 4]) });
    expectSameTensor(s.outputs.y, want.y!);
    expect((await b.json('GET', '/invocations/00000000-0000-0000-0000-000000000000')).status).toBe(404);
  });

  it('lists and deletes functions; deleting unloads it and drops its bytes', async () => {
    await b.put('todelete', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 33 }));
    await b.invoke('todelete', { x: { type: 'float32', dims: [1, 4], data: [1, 1, 1, 1] } });
    expect(b.node!.pool.list().some((m) => m.fn === 'todelete')).toBe(true);
    const list = await b.json('GET', '/functions');
    expect(list.body.functions.map((f: { name: string }) => f.name)).toContain('todelete');
    const sha = list.body.functions.find((f: { name: string }) => f.name === 'todelete').sha256;
    const del = await b.json('DELETE', '/functions/todelete');
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ deleted: 'todelete', unloaded: 1 });
    expect(b.node!.pool.list().some((m) => m.fn === 'todelete')).toBe(false);
    expect(await b.store.has(sha)).toBe(false);
    expect((await b.json('GET', '/functions/todelete')).status).toBe(404);
  });
});
