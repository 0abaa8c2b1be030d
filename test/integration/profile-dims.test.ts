import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convModel, mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * `?profileDims=`: the dims registration profiles a model with (README: "A model whose profiling
 * run fails on the default dims is still registered; the profile says why (execError) ...
 * `?profileDims=img:1x1x32x32` profiles with other dims"). The conv model (img: [1, 1, h, w], a
 * 3x3 convolution without padding) cannot run on the default dims 1x1x1x1.
 */
let b: TestBrulee;
beforeAll(async () => {
  // Calls of at most 1 MiB: profileDims asking for more are refused.
  b = await startBrulee({ MAX_REQUEST_BYTES: '1MiB' });
});
afterAll(async () => {
  await b?.destroy();
});

const conv = convModel();
const img8 = { img: { type: 'float32', dims: [1, 1, 8, 8], data: Array.from({ length: 64 }, (_, i) => i / 64) } };

describe('profileDims', () => {
  it('the same bytes registered again with profileDims are profiled on them (the execError goes), same version', async () => {
    const first = await b.put('conv-later', conv);
    expect(first.status).toBe(201);
    expect(first.body.profile.execError).toMatch(/Invalid input shape/);
    expect(first.body.profile.execMs).toBeNull();

    const again = await b.put('conv-later', conv, 'profileDims=img:1x1x8x8');
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ version: 1, newVersion: false, created: false });
    expect(again.body.profile.profiledDims).toEqual({ img: [1, 1, 8, 8] });
    expect(again.body.profile.execError).toBeNull();
    expect(again.body.profile.execMs).toEqual(expect.any(Number));
    // The example (what `brulee invoke --example` sends) now runs.
    const ex = (await b.json('GET', '/functions/conv-later/example')).body;
    expect(ex.inputs.img.dims).toEqual([1, 1, 8, 8]);
    expect((await b.invoke('conv-later', ex.inputs)).status).toBe(200);
    // Asked again with the same dims: nothing to profile, the options only.
    const same = await b.put('conv-later', conv, 'profileDims=img:1x1x8x8&pinned=true');
    expect(same.status).toBe(200);
    expect(same.body.profile.loadSamplesMs).toEqual(again.body.profile.loadSamplesMs);
    expect(same.body.options.pinned).toBe(true);
  });

  it('profiled again for other session options, the same bytes keep the dims they were profiled with', async () => {
    expect((await b.put('conv-dims', conv, 'profileDims=img:1x1x8x8')).status).toBe(201);
    const r = await b.put('conv-dims', conv, 'threads=2');
    expect(r.status).toBe(200);
    expect(r.body.options.threads).toBe(2);
    expect(r.body.profile.profiledDims).toEqual({ img: [1, 1, 8, 8] });
    expect(r.body.profile.execError).toBeNull();
    expect((await b.json('GET', '/functions/conv-dims/example')).body.inputs.img.dims).toEqual([1, 1, 8, 8]);
    expect((await b.invoke('conv-dims', img8)).status).toBe(200);
  });

  it('dims the model cannot take are a 400 INVALID_OPTION that says what the model has, and nothing is registered', async () => {
    const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2 });
    const cases: Array<[string, RegExp]> = [
      ['profileDims=y:1x4', /profileDims names input "y", which the model does not have; its inputs are "x" \["batch", 4\]/],
      ['profileDims=x:1x4x1', /profileDims gives "x:1x4x1" \(rank 3\), but input "x" has rank 2: \["batch", 4\]/],
      ['profileDims=x:2x5', /profileDims gives "x:2x5", but input "x" fixes dim 1 at 4: \["batch", 4\]/],
    ];
    for (const [query, message] of cases) {
      const r = await b.put('mlp-dims', mlp, query);
      expect(r.status, query).toBe(400);
      expect(r.body.error.code, query).toBe('INVALID_OPTION');
      expect(r.body.error.message, query).toMatch(message);
      expect((await b.json('GET', '/functions/mlp-dims')).status, query).toBe(404);
    }
    // On a registered function the same: the current version stays as it was.
    expect((await b.put('mlp-dims', mlp, 'profileDims=x:3x4')).status).toBe(201);
    const r = await b.put('mlp-dims', mlp, 'profileDims=z:1x4');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('INVALID_OPTION');
    expect((await b.json('GET', '/functions/mlp-dims')).body.profile.profiledDims).toEqual({ x: [3, 4] });
  });

  it('dims whose inputs take more bytes than a call may send (MAX_REQUEST_BYTES) are a 400, before any run on them', async () => {
    const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 4 });
    // 100 000 x 4 float32: 1.6 MB, past the 1 MiB limit (a typo of a few digits more would hold a core for the profiling timeout).
    const r = await b.put('mlp-huge', mlp, 'profileDims=x:100000x4');
    expect(r.status).toBe(400);
    expect(r.body.error).toEqual({
      code: 'INVALID_OPTION',
      message: 'profileDims x:100000x4 asks for 1600000 bytes of inputs, more than one call may send (MAX_REQUEST_BYTES, 1048576 bytes): profile with the dims calls will send',
    });
    expect((await b.put('mlp-huge', mlp, 'profileDims=x:1000x4')).status).toBe(201);
  });
});
