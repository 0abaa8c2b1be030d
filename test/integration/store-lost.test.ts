import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { modelKey } from '../../queue/dispatcher';
import { sha256Of } from '../../store';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { asFloat32, directJson } from '../support/models';

let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
});

const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

it('after DATA_DIR was wiped (Redis kept), registering the same bytes again restores them and calls work', async () => {
  const bytes = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 3 });
  expect((await b.put('kept', bytes)).status).toBe(201);
  const before = await b.invoke('kept', x);
  expect(before.status).toBe(200);

  expect((await b.json('POST', '/v2/repository/models/kept/unload')).status).toBe(200);
  rmSync(join(b.dataDir, 'models'), { recursive: true, force: true });
  rmSync(join(b.dataDir, 'model-cache'), { recursive: true, force: true });
  const lost = await b.invoke('kept', x);
  expect(lost.status).toBeGreaterThanOrEqual(400);
  expect(lost.status).toBeLessThan(500);
  expect(lost.body.error.message).toMatch(/the model store lost them: register it again/);

  const again = await b.put('kept', bytes);
  expect(again.status).toBe(200);
  expect(again.body.newVersion).toBe(false);
  const after = await b.invoke('kept', x);
  expect(after.status).toBe(200);
  // The artifact profiling derived went with the rest, and is there again: loaded, not the original.
  expect(b.node!.loadedFrom(modelKey({ fn: 'kept', sha256: again.body.sha256 }))).toBe('artifact');
  const want = await directJson(bytes, x);
  expect(asFloat32(before.body.outputs)).toEqual(want);
  expect(asFloat32(after.body.outputs)).toEqual(want);
});

it('a damaged copy in a file:// store (same size, other bytes) is refused, and registering the same bytes again repairs it', async () => {
  const bytes = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 4 });
  const sha = sha256Of(bytes);
  const put = await b.put('damaged', bytes);
  expect(put.status).toBe(201);
  expect((await b.json('POST', '/v2/repository/models/damaged/unload')).status).toBe(200);
  rmSync(join(b.dataDir, 'model-cache'), { recursive: true, force: true });
  // A bad copy replaces the stored files (the original's and its artifact's) with other bytes of the same size.
  for (const s of [sha, put.body.profile.artifact.sha256 as string]) {
    const file = join(b.dataDir, 'models', `${s}.onnx`);
    const damaged = readFileSync(file);
    damaged[damaged.length - 1]! ^= 0xff;
    writeFileSync(`${file}.bad`, damaged);
    renameSync(`${file}.bad`, file);
  }
  const refused = await b.invoke('damaged', x);
  expect(refused.body.error.code).toBe('MODEL_BYTES_CORRUPT');
  expect(refused.body.error.message).toContain('register the same model file again');

  const again = await b.put('damaged', bytes);
  expect(again.status).toBe(200);
  expect(again.body.newVersion).toBe(false);
  const after = await b.invoke('damaged', x);
  expect(after.status).toBe(200);
  // The artifact is repaired too (else every load fetches it in vain and falls back to the original).
  expect(b.node!.loadedFrom(modelKey({ fn: 'damaged', sha256: sha }))).toBe('artifact');
  expect(asFloat32(after.body.outputs)).toEqual(await directJson(bytes, x));
});
