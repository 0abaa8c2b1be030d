import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createRedis } from '../../queue/connection';
import { modelKey } from '../../queue/dispatcher';
import { keys } from '../../queue/keys';
import { artifactKey } from '../../runtime/onnx';
import { mlpModel } from '../../models/generate';
import { floats, ort, readModel, REAL_MODELS, runDirect, vadInputs } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
  redis.disconnect();
});

const input = (seed: number) => floats(3 * 48 * 192, seed);

describe('pre-optimized artifacts', () => {
  it('registration derives one; the node loads it; outputs equal a direct run of the original, bit for bit', async () => {
    const bytes = readModel(REAL_MODELS.ocrCls);
    const put = await b.put('cls', bytes, 'threads=1&arena=true');
    expect(put.status).toBe(201);
    const p = put.body.profile;
    expect(p.artifact).toMatchObject({ key: artifactKey(put.body.sha256), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(p.artifact.sha256).not.toBe(put.body.sha256);
    // No tensor over 1 MiB: onnxruntime's own format, not the mapped one.
    expect(p.artifact).toMatchObject({ form: 'ort', formNote: 'no tensor was large enough to be mapped' });
    expect(p.artifactError).toBeNull();
    expect(p.originalLoadMs).toBeGreaterThan(0);
    expect(p.loadMs).toBeGreaterThan(0);
    expect(await b.store.has(p.artifact.sha256)).toBe(true);
    for (const seed of [1, 2]) {
      const x = input(seed);
      const r = await b.invoke('cls', { x: { type: 'float32', dims: [1, 3, 48, 192], data: x } });
      expect(r.status).toBe(200);
      const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3, 48, 192]) });
      expect(r.body.outputs['softmax_0.tmp_0'].data).toEqual(Array.from(want['softmax_0.tmp_0']!.data as Float32Array));
    }
    expect(b.node!.loadedFrom(modelKey({ fn: 'cls', sha256: put.body.sha256 }))).toBe('artifact');
    // Registration left the artifact in this process's cache, as it does the original: its first load fetched nothing.
    expect((await b.json('GET', '/stats')).body.functions.cls).toMatchObject({ invocations: 2, loads: 1, fetches: 0, coldStarts: 1 });
    // Deleting the function removes the artifact's bytes too.
    expect((await b.json('DELETE', '/functions/cls')).status).toBe(200);
    expect(await b.store.has(p.artifact.sha256)).toBe(false);
  });

  it('a model with weights over 1 MiB gets the mapped form; a node loads it and answers bit for bit what onnxruntime gives on the original', async () => {
    // 64 -> 500 -> 1000 -> 16: W1 (2 MB) makes it mapped; W0 and W2 (128 000 and 64 000 bytes, no
    // whole number of pages) are mapped too, laid out on pages again; the biases stay in the graph.
    const bytes = mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 5 });
    const put = await b.put('wide', bytes);
    expect(put.status).toBe(201);
    const p = put.body.profile;
    expect(p.artifactError).toBeNull();
    expect(p.artifact).toMatchObject({ key: artifactKey(put.body.sha256), form: 'mapped' });
    expect(p.artifact.formNote).toBeUndefined();
    // One row and several: MLAS takes other GEMM paths for them, each reading the mapped packed weights.
    for (const rows of [1, 3]) {
      const x = floats(rows * 64, rows);
      const r = await b.invoke('wide', { x: { type: 'float32', dims: [rows, 64], data: x } });
      expect(r.status).toBe(200);
      const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [rows, 64]) });
      expect(r.body.outputs.y.dims).toEqual([rows, 16]);
      expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
    }
    expect(b.node!.loadedFrom(modelKey({ fn: 'wide', sha256: put.body.sha256 }))).toBe('artifact');
    // Unloaded and loaded again (the node reads the artifact's layout once): the same bits, each load a cold start.
    expect((await b.json('POST', '/v2/repository/models/wide/unload')).status).toBe(200);
    const x = floats(64, 7);
    const r = await b.invoke('wide', { x: { type: 'float32', dims: [1, 64], data: x } });
    expect(r.body.coldStart).toBe(true);
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 64]) });
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
    expect(b.node!.loadedFrom(modelKey({ fn: 'wide', sha256: put.body.sha256 }))).toBe('artifact');
    const stats = (await b.json('GET', '/stats')).body.functions.wide;
    expect(stats).toMatchObject({ invocations: 3, loads: 2, coldStarts: 2, warmHits: 1 });
  });

  it('a mapped model with several large prepacked weights (loaded in a load window, runtime/malloc.ts) answers bit for bit, cold and again after an unload', async () => {
    // Three 4 MiB weights that onnxruntime packs again at each load, into buffers the window reuses.
    const bytes = mlpModel({ inputSize: 64, hidden: [1024, 1024, 1024, 1024], outputSize: 16, seed: 8 });
    const put = await b.put('deep', bytes);
    expect(put.status).toBe(201);
    expect(put.body.profile.artifact).toMatchObject({ form: 'mapped' });
    for (const round of [1, 2]) {
      if (round === 2) expect((await b.json('POST', '/v2/repository/models/deep/unload')).status).toBe(200);
      for (const rows of [1, 4]) {
        const x = floats(rows * 64, rows + 10 * round);
        const r = await b.invoke('deep', { x: { type: 'float32', dims: [rows, 64], data: x } });
        expect(r.status).toBe(200);
        expect(r.body.coldStart).toBe(rows === 1);
        const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [rows, 64]) });
        expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
      }
    }
    expect(b.node!.loadedFrom(modelKey({ fn: 'deep', sha256: put.body.sha256 }))).toBe('artifact');
    expect((await b.json('GET', '/stats')).body.functions.deep).toMatchObject({ invocations: 4, loads: 2, coldStarts: 2 });
  });

  it('a node loads the original when the artifact was derived for another onnxruntime or CPU', async () => {
    const bytes = readModel(REAL_MODELS.sileroVad);
    const put = await b.put('vad', bytes);
    expect(put.status).toBe(201);
    // Its ORT format holds ~6 MB less than its optimized ONNX form, past the measure's noise.
    expect(put.body.profile.artifact).toMatchObject({ form: 'ort' });
    // As a registration on another machine (or before an onnxruntime upgrade) would have left it.
    const k = keys(b.namespace);
    const meta = JSON.parse((await redis.get(k.fn('vad')))!);
    meta.profile.artifact.key = artifactKey('0'.repeat(64));
    await redis.multi().set(k.fn('vad'), JSON.stringify(meta)).publish(k.control, JSON.stringify({ type: 'function', name: 'vad' })).exec();
    // The gateway heard it once its copy of the function has the changed key.
    await until('the gateway to drop its copy of the function', async () => (await b.json('GET', '/functions/vad')).body.profile.artifact?.key === meta.profile.artifact.key, 10_000);
    const inputs = vadInputs(3);
    const r = await b.invoke('vad', inputs);
    expect(r.status).toBe(200);
    const want = await runDirect(bytes, {
      input: new ort.Tensor('float32', Float32Array.from(inputs.input.data), [1, 512]),
      state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: new ort.Tensor('int64', BigInt64Array.of(16000n), []),
    });
    expect(r.body.outputs.output.data).toEqual(Array.from(want.output!.data as Float32Array));
    expect(b.node!.loadedFrom(modelKey({ fn: 'vad', sha256: put.body.sha256 }))).toBe('original');
  });
});
