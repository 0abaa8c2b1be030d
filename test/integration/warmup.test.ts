import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { WARMUP_KEY } from '../../runtime/warmup';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { asFloat32, directJson } from '../support/models';

/** Starts a brulee whose process's temporary folder (TMPDIR, where the warm-up writes) is `tmp` while it starts. */
async function startWithTmp(tmp: string): Promise<TestBrulee> {
  const dataDir = mkdtempSync(join(tmpdir(), 'brulee-test-'));
  const was = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    return await startBrulee({}, { namespace: `t${randomUUID().slice(0, 8)}`, dataDir });
  } finally {
    if (was === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = was;
  }
}

let b: TestBrulee;
/** The warm-up's temporary folder's parent: empty again once the node has started. */
const tmp = mkdtempSync(join(tmpdir(), 'brulee-warmup-test-'));
beforeAll(async () => {
  b = await startWithTmp(tmp);
});
afterAll(async () => {
  await b?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 7 });
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const metricLines = async () => (await (await b.req('/metrics')).text()).split('\n').filter((l) => !l.startsWith('#'));

describe("a node's warm-up at start (runtime/warmup.ts)", () => {
  it('loads, runs and releases a model of its own, and nothing of it is counted, resident or measured', async () => {
    const node = b.node!;
    // Two sessions loaded (a first load, and a reload after its drop), each run once; its files gone.
    expect(node.warmed).toMatchObject({ form: 'ort', loads: 2, runs: 2 });
    expect(readdirSync(tmp).filter((n) => n.startsWith('brulee-warmup-'))).toEqual([]);
    expect(node.pool.list()).toEqual([]);
    expect(node.pool.usedBytes).toBe(0);
    expect(node.footprints.measured(WARMUP_KEY)).toBe(0);
    expect(node.info()).toMatchObject({ loads: 0, evictions: 0, resident: [] });
    const stats = (await b.json('GET', '/stats')).body;
    expect(stats.functions).toEqual({});
    expect(JSON.stringify(stats)).not.toContain(WARMUP_KEY.trim());
    const lines = await metricLines();
    expect(lines.filter((l) => /^brulee_(model_loads|cold_starts|warm_hits|invocations|evictions|prewarms)_total\{/.test(l))).toEqual([]);
    expect(lines.filter((l) => l.includes(WARMUP_KEY.trim()))).toEqual([]);
  });

  it("a model's first cold call after it is counted as one load and one cold start, as without it", async () => {
    expect((await b.put('first', bytes)).status).toBe(201);
    const r = await b.invoke('first', x);
    expect(r.status).toBe(200);
    expect(r.body.coldStart).toBe(true);
    expect(asFloat32(r.body.outputs)).toEqual(await directJson(bytes, x));
    expect((await b.json('GET', '/stats')).body.functions.first).toMatchObject({ invocations: 1, loads: 1, coldStarts: 1, warmHits: 0 });
    const lines = await metricLines();
    expect(lines.filter((l) => l.startsWith('brulee_model_loads_total{'))).toEqual(['brulee_model_loads_total{function="first"} 1']);
    expect(b.node!.info()).toMatchObject({ loads: 1 });
    expect(b.node!.pool.list().map((m) => m.fn)).toEqual(['first']);
  });

  it('where it cannot run (no writable temporary folder), the node still starts and serves; the first call is a cold start, counted once', async () => {
    const c = await startWithTmp(join(tmp, 'missing', 'folder'));
    try {
      expect(c.node!.warmed).toBeUndefined();
      expect(c.node!.info()).toMatchObject({ loads: 0, evictions: 0, resident: [] });
      expect((await c.put('after', bytes)).status).toBe(201);
      const r = await c.invoke('after', x);
      expect(r.status).toBe(200);
      expect(r.body.coldStart).toBe(true);
      expect(asFloat32(r.body.outputs)).toEqual(await directJson(bytes, x));
      expect((await c.json('GET', '/stats')).body.functions.after).toMatchObject({ invocations: 1, loads: 1, coldStarts: 1 });
      expect(c.node!.info()).toMatchObject({ loads: 1 });
    } finally {
      await c.destroy();
    }
  });
});
