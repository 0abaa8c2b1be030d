import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convModel, mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';

/** Errors that only a node can find, with the status and code each must reach the caller with. */
let b: TestBrulee;
const MB = 1_000_000;
beforeAll(async () => {
  b = await startBrulee({ MEMORY_BUDGET: '25MB' });
});
afterAll(async () => {
  await b?.destroy();
});

describe('errors from the node keep their status over HTTP', () => {
  it('a model onnxruntime cannot run on valid-looking inputs: 422 INFERENCE_FAILED with onnxruntime\'s own reason', async () => {
    // A 3x3 convolution without padding on a 1x1 image: the signature allows it, onnxruntime does not.
    expect((await b.put('conv', convModel(), 'profileDims=img:1x1x8x8')).status).toBe(201);
    const img = { type: 'float32', dims: [1, 1, 1, 1], data: [0.5] };
    const direct = await runDirect(convModel(), { img: new ort.Tensor('float32', Float32Array.from([0.5]), [1, 1, 1, 1]) }).then(
      () => 'ran',
      (e: Error) => e.message,
    );
    expect(direct).not.toBe('ran');
    const r = await b.invoke('conv', { img });
    expect(r.status).toBe(422);
    expect(r.body.error).toEqual({ code: 'INFERENCE_FAILED', message: `onnxruntime could not run the model on these inputs: ${direct}` });
    const stats = (await b.json('GET', '/functions/conv')).body.stats;
    expect(stats).toMatchObject({ invocations: 1, failures: 1, loads: 1, coldStarts: 1 });
    // v2 carries the same status, in the protocol's error form.
    const v2 = await b.json('POST', '/v2/models/conv/infer', { inputs: [{ name: 'img', shape: [1, 1, 1, 1], datatype: 'FP32', data: [0.5] }] });
    expect(v2.status).toBe(422);
    expect(v2.body).toEqual({ error: `onnxruntime could not run the model on these inputs: ${direct}` });
  });

  it('no room beside pinned models: 503 CACHE_BUSY at once, naming what holds the memory (not a 504 after the timeout)', async () => {
    const small = (seed: number) => mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed });
    const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    expect((await b.put('pinned', small(1), `pinned=true&memoryBytes=${20 * MB}`)).status).toBe(201);
    expect((await b.put('outsider', small(2), `memoryBytes=${10 * MB}&timeoutMs=20000`)).status).toBe(201);
    expect((await b.invoke('pinned', x)).status).toBe(200);
    const t0 = Date.now();
    const r = await b.invoke('outsider', x);
    expect(r.status).toBe(503);
    // The call's own tensors are charged with the model (issue 12 §4): a few hundred bytes here.
    expect(r.body.error.code).toBe('CACHE_BUSY');
    expect(r.body.error.message).toMatch(
      new RegExp(`^no room for outsider \\(${10 * MB} bytes, and \\d{1,4} for the call's tensors\\): pinned models hold ${20 * MB} of ${25 * MB} bytes and nothing else can be evicted; unpin or unload one, or raise MEMORY_BUDGET$`),
    );
    expect(Date.now() - t0, 'answered at once, not after the 20 s timeout').toBeLessThan(10_000);
    // Unpinned (a node learns it with the function's next call), it can be evicted and the call succeeds.
    expect((await b.put('pinned', small(1), `pinned=false&memoryBytes=${20 * MB}`)).status).toBe(200);
    expect((await b.invoke('pinned', x)).status).toBe(200);
    const ok = await b.invoke('outsider', x);
    expect(ok.status).toBe(200);
    expect(b.node!.pool.list().map((m) => m.fn)).toEqual(['outsider']);
  });
});
