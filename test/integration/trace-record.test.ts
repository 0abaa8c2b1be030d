import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPolicy } from '../../runtime/policies';
import { simulate } from '../../sim/engine';
import { readCatalog, readPlainTrace } from '../../sim/trace';
import { mlpModel } from '../../models/generate';
import { startBrulee } from '../support/brulee';

describe('trace recording (TRACE_RECORD=1)', () => {
  it('records every accepted invocation and the measured catalogue, and the simulator replays them', async () => {
    const b = await startBrulee({ TRACE_RECORD: '1' });
    let live: Record<string, { execMsTotal: number; loadWaitMsTotal: number; coldStarts: number; warmHits: number }> = {};
    const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    try {
      await b.put('r1', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }));
      await b.put('r2', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 2 }));
      for (const fn of ['r1', 'r1', 'r2', 'r1', 'r2']) expect((await b.invoke(fn, x)).status).toBe(200);
      // A function called, then deleted while recording: its calls stay in the trace, so its entry stays in the catalogue.
      await b.put('gone', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 3 }));
      expect((await b.invoke('gone', x)).status).toBe(200);
      expect((await b.json('DELETE', '/functions/gone')).status).toBe(200);
      // A rejected request is not an invocation.
      expect((await b.invoke('r1', { x: { ...x.x, dims: [2, 4] } })).status).toBe(422);
      live = (await b.json('GET', '/stats')).body.functions;
    } finally {
      await b.close();
    }
    const dir = join(b.dataDir, 'traces');
    const lines = readFileSync(join(dir, 'invocations.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe('time_ms,function');
    expect(lines.slice(1).map((l) => l.split(',')[1])).toEqual(['r1', 'r1', 'r2', 'r1', 'r2', 'gone']);
    const catalog = JSON.parse(readFileSync(join(dir, 'catalog.json'), 'utf8'));
    expect(Object.keys(catalog).sort()).toEqual(['gone', 'r1', 'r2']);
    expect(catalog.gone.sizeBytes).toBeGreaterThan(0);
    expect(catalog.r1.sizeBytes).toBeGreaterThan(0);
    expect(catalog.r1.loadMs).toBeGreaterThan(0);
    // On close the catalogue takes the times the live invocations measured (not the registration
    // profile, whose exec time is 0 for a model whose profile run failed).
    for (const fn of ['r1', 'r2']) {
      const s = live[fn]!;
      expect(s.coldStarts).toBeGreaterThan(0);
      expect(catalog[fn].execMs).toBeCloseTo(s.execMsTotal / (s.coldStarts + s.warmHits), 6);
      expect(catalog[fn].loadMs).toBeCloseTo(s.loadWaitMsTotal / s.coldStarts, 6);
    }

    const trace = readPlainTrace(join(dir, 'invocations.csv'));
    const models = readCatalog(join(dir, 'catalog.json'), trace);
    const budget = Math.max(catalog.r1.sizeBytes, catalog.r2.sizeBytes, catalog.gone.sizeBytes); // room for one at a time
    const r = simulate(trace, models, createPolicy('lru'), { budgetBytes: budget });
    expect(r.invocations).toBe(6);
    expect(r.coldStarts).toBe(5); // r1 miss, hit, r2 miss, r1 miss, r2 miss, gone miss
    rmSync(b.dataDir, { recursive: true, force: true });
  });
});
