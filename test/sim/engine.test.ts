import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { simulate } from '../../sim/engine';
import { createSimPolicy, isOracle, SIM_POLICIES } from '../../sim/policies';
import { readCatalog, readPlainTrace } from '../../sim/trace';
import { modelsOf, randomTrace } from './helpers';

/** Temp folders made here, removed after the file's tests. */
const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-sim-'));
  made.push(dir);
  return dir;
}

describe('Belady against online policies', () => {
  // Belady's MIN is optimal for demand loading with one size; hybrid-histogram pre-warms (loads
  // ahead of demand), which MIN's optimality does not cover, so it is left out.
  const online = SIM_POLICIES.filter((p) => !isOracle(p) && p !== 'hybrid-histogram');
  for (const seed of [1, 2, 3, 4]) {
    it(`never more misses when all models have one size (seed ${seed})`, () => {
      const t = randomTrace(seed, 3000, 30);
      const models = modelsOf(t, {});
      const budget = 4 + seed * 2;
      const opt = simulate(t, models, createSimPolicy('belady'), { budgetBytes: budget, future: true }).coldStarts;
      for (const p of online) {
        const r = simulate(t, models, createSimPolicy(p, { seed }), { budgetBytes: budget });
        expect(opt, `belady vs ${p}`).toBeLessThanOrEqual(r.coldStarts);
      }
    });
  }
});

/** LRU over a sequence with a byte budget, counted by hand (no simulator). */
function lruMisses(seq: readonly string[], size: Record<string, number>, budget: number): number {
  const cache: string[] = []; // most recent last
  let used = 0;
  let misses = 0;
  for (const f of seq) {
    const at = cache.indexOf(f);
    if (at >= 0) {
      cache.splice(at, 1);
      cache.push(f);
      continue;
    }
    misses++;
    while (used + size[f]! > budget) used -= size[cache.shift()!]!;
    cache.push(f);
    used += size[f]!;
  }
  return misses;
}

describe('one serial node follows the invocation sequence', () => {
  it('on a plain trace, LRU cold starts = LRU misses over the sequence (byte budget)', () => {
    const dir = tempDir();
    const sizes: Record<string, number> = {};
    const catalog: Record<string, { sizeBytes: number; loadMs: number; execMs: number }> = {};
    for (let k = 0; k < 12; k++) {
      sizes[`m${k}`] = 100 + 37 * k;
      catalog[`m${k}`] = { sizeBytes: 100 + 37 * k, loadMs: 50 + k, execMs: 5 };
    }
    const src = randomTrace(7, 5000, 12);
    // Epoch times, as the runtime records them: the reader shifts them to the first invocation.
    const lines = ['time_ms,function', ...Array.from(src.times, (t, i) => `${1_700_000_000_000 + t},m${src.fns[i]}`)];
    writeFileSync(join(dir, 'invocations.csv'), lines.join('\n') + '\n');
    writeFileSync(join(dir, 'catalog.json'), JSON.stringify(catalog));
    const trace = readPlainTrace(join(dir, 'invocations.csv'));
    expect(trace.times[0]).toBe(0);
    const models = readCatalog(join(dir, 'catalog.json'), trace);
    const seq = Array.from(trace.fns, (f) => trace.functions[f]!);
    for (const budget of [600, 1000, 1500]) {
      const r = simulate(trace, models, createSimPolicy('lru'), { budgetBytes: budget });
      expect(r.coldStarts).toBe(lruMisses(seq, sizes, budget));
      expect(r.peakUsedBytes).toBeLessThanOrEqual(budget);
    }
  });

  it('load delay is the time spent waiting for loads; with k slots, a call joining a load waits and is cold', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 't.csv'), 'time_ms,function\n0,A\n10,A\n20,B\n');
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ A: { sizeBytes: 1, loadMs: 100, execMs: 5 }, B: { sizeBytes: 1, loadMs: 40, execMs: 5 } }));
    const t = readPlainTrace(join(dir, 't.csv'));
    const m = readCatalog(join(dir, 'c.json'), t);
    // Serial: A loads 0..100, runs to 105; the second A is warm (105..110); B loads 110..150.
    const serial = simulate(t, m, createSimPolicy('lru'), { budgetBytes: 10 });
    expect([serial.coldStarts, serial.loadDelayMs, serial.loads]).toEqual([2, 140, 2]);
    expect(serial.meanLatencyMs).toBeCloseTo((105 + 100 + (155 - 20)) / 3);
    // Two slots: the second A joins A's load (waits 90 ms, cold), B loads in the other... after A's slot frees.
    const two = simulate(t, m, createSimPolicy('lru'), { budgetBytes: 10, slots: 2 });
    expect([two.coldStarts, two.loads]).toEqual([3, 2]);
    expect(two.loadDelayMs).toBe(100 + 90 + 40);
  });

  it('refuses a policy instance that has run before (its hints set it up for one run), naming it', () => {
    // Run again, cremebrulee's kept order (share-order.ts) started from the first run's lists and
    // could loop for ever on fewer models; each run takes a new instance.
    const t = randomTrace(7, 500, 12);
    const m = modelsOf(t, {});
    const p = createSimPolicy('cremebrulee');
    const first = simulate(t, m, p, { budgetBytes: 6 });
    expect(() => simulate(t, m, p, { budgetBytes: 6 })).toThrow(/this cremebrulee instance has run before; each run needs a new one/);
    expect(simulate(t, m, createSimPolicy('cremebrulee'), { budgetBytes: 6 })).toEqual({ ...first, wallMs: expect.any(Number) });
  });

  it('rejects a catalogue that misses a function of the trace', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 't.csv'), 'time_ms,function\n0,A\n');
    writeFileSync(join(dir, 'c.json'), '{}');
    expect(() => readCatalog(join(dir, 'c.json'), readPlainTrace(join(dir, 't.csv')))).toThrow(/"A" of the trace is not in the catalogue/);
    writeFileSync(join(dir, 'bad.csv'), 'time_ms,function\n0,A\nx,B\n');
    expect(() => readPlainTrace(join(dir, 'bad.csv'))).toThrow(/row 3/);
  });
});
