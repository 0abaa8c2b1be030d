import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runMs } from '../support/models';
import { until } from '../support/within';

/**
 * An async invocation (`?async=true`) is bounded by its function's timeoutMs, as a sync one is:
 * a run that ends past it, or a call a node reaches past it, reads `failed` with TIMEOUT and is
 * counted as a timeout. It once ran to the end and read `completed` whatever it took (its deadline
 * was the hour its result is kept).
 */

let b: TestBrulee;
/**
 * ~0.66 s of MatMuls on one thread of this session's machine (2048 × 256 × 256 × 512
 * multiply-adds), ~0.33 s twice as quick: a run the node starts well inside a 100 ms timeout ends
 * well past it. (64 repeats with a 20 ms timeout: 71 ms here, ~36 ms twice as quick, and a node that
 * reached the call past 20 ms, on a slower or loaded machine, skipped it instead: the test passed
 * without the run it is about.)
 */
const SLOW = slowModel({ rows: 2048, repeats: 512 });
/** The timeout of the late case: the node takes the call before it, and runs it past it. */
const TIMEOUT_MS = 100;
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };

beforeAll(async () => {
  expect(await runMs(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) }), 'the slow model is too quick on this machine: raise its repeats').toBeGreaterThan(2 * TIMEOUT_MS);
  b = await startBrulee();
  expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('slow', SLOW_IN)).status).toBe(200);
}, 120_000);
afterAll(async () => {
  await b?.destroy();
});

async function submit(): Promise<string> {
  const r = await b.json('POST', '/functions/slow/invoke?async=true', { inputs: SLOW_IN });
  expect(r.status).toBe(202);
  return r.body.id as string;
}

async function settled(id: string): Promise<any> {
  let s: any;
  await until(`invocation ${id} to settle`, async () => {
    s = (await b.json('GET', `/invocations/${id}`)).body;
    return s.status === 'completed' || s.status === 'failed';
  });
  return s;
}

const stats = async () => (await b.json('GET', '/functions/slow')).body.stats;

describe('an async invocation and its function\'s timeoutMs', () => {
  it('within it: completed, counted as a success', async () => {
    const before = await stats();
    expect(await settled(await submit())).toMatchObject({ status: 'completed', function: 'slow' });
    const after = await stats();
    expect([after.invocations - before.invocations, after.timeouts - before.timeouts]).toEqual([1, 0]);
  });

  it('run past it: failed with TIMEOUT, counted once as a timeout', async () => {
    expect((await b.put('slow', SLOW, `timeoutMs=${TIMEOUT_MS}`)).status).toBe(200);
    try {
      const before = await stats();
      const s = await settled(await submit());
      expect(s.status).toBe('failed');
      expect(s.error.code).toBe('TIMEOUT');
      // Run, and ended past it (not reached past it: 'waited N ms in the queue, past its deadline; it was not run').
      expect(s.error.message).toMatch(/^the invocation of slow finished \d+ ms past its deadline/);
      const after = await stats();
      expect([after.invocations - before.invocations, after.timeouts - before.timeouts, after.execMs.samples - before.execMs.samples]).toEqual([1, 1, 0]);
    } finally {
      expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(200);
    }
  });
});
