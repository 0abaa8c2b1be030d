import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { WARMUP_KEY } from '../../runtime/warmup';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { asFloat32, directJson } from '../support/models';

let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
});

const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 7 });
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const metricLines = async () => (await (await b.req('/metrics')).text()).split('\n').filter((l) => !l.startsWith('#'));

describe("a node's warm-up at start (runtime/warmup.ts)", () => {
  it('loads, runs and releases a model of its own, and nothing of it is counted, resident or measured', async () => {
    const node = b.node!;
    expect(node.warmed).toMatchObject({ form: 'ort', loads: 2 });
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
});
