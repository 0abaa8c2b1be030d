import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpForBytes, mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

describe('metric series from the start, and memory factors only where they mean something', () => {
  let b: TestBrulee;
  beforeAll(async () => {
    b = await startBrulee();
  });
  afterAll(async () => b?.destroy());

  it('a registered function has its series at zero before its first call', async () => {
    expect((await b.put('quiet', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2 }))).status).toBe(201);
    const text = await (await b.req('/metrics')).text();
    for (const line of [
      'brulee_invocations_total{function="quiet",outcome="ok"} 0',
      'brulee_invocations_total{function="quiet",outcome="error"} 0',
      'brulee_cold_starts_total{function="quiet"} 0',
      'brulee_warm_hits_total{function="quiet"} 0',
      'brulee_model_loads_total{function="quiet"} 0',
      'brulee_prewarms_total{function="quiet",by="policy"} 0',
      'brulee_evictions_total{function="quiet",cause="policy"} 0',
      'brulee_model_load_seconds_count{function="quiet"} 0',
      'brulee_exec_seconds_count{function="quiet"} 0',
    ]) expect(text.split('\n')).toContain(line);
    // ... and counts from there.
    expect((await b.invoke('quiet', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } })).status).toBe(200);
    const after = (await (await b.req('/metrics')).text()).split('\n');
    expect(after).toContain('brulee_cold_starts_total{function="quiet"} 1');
    expect(after).toContain('brulee_invocations_total{function="quiet",outcome="ok"} 1');
  });

  it('tiny files get resident bytes and a note, not a factor; files of 1 MiB and more get the factor', async () => {
    const tiny = (await b.put('tiny', mlpModel({ inputSize: 4, hidden: [16], outputSize: 3 }))).body;
    expect(tiny.profile.fileBytes).toBeLessThan(1024 * 1024);
    expect(tiny.profile.memoryFactor).toBeNull();
    expect(tiny.profile.memoryNote).toMatch(/^the file is under 1 MiB: its \d+ resident bytes are mostly onnxruntime's per-session overhead/);
    expect(tiny.sizeBytes).toBe(tiny.profile.residentBytes);
    const big = (await b.put('big', mlpForBytes(2_000_000))).body;
    expect(big.profile.fileBytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(big.profile.memoryFactor).toBe(Math.round((big.profile.residentBytes / big.profile.fileBytes) * 100) / 100);
    expect(big.profile.memoryNote).toBeUndefined();
  });
});
