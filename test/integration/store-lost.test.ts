import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
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
  const want = await directJson(bytes, x);
  expect(asFloat32(before.body.outputs)).toEqual(want);
  expect(asFloat32(after.body.outputs)).toEqual(want);
});
