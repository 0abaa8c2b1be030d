import { afterAll, beforeAll, expect, it } from 'vitest';
import { slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runMs } from '../support/models';

/**
 * A sync call whose run ends past its deadline is counted as its caller saw it, a timeout (its
 * caller had its 504), whether the run succeeded (05a945a) or failed: a failure found once the run
 * is over (here OUTPUT_TOO_LARGE, under a tiny MAX_OUTPUT_BYTES) ~130 ms past a 20 ms timeout was
 * counted as a failure, not a timeout, though no caller saw that error.
 */

let b: TestBrulee;
/**
 * ~0.33 s of MatMuls on one thread of this session's machine (2048 × 256 × 256 × 256
 * multiply-adds): past a 20 ms timeout and the gateway's 100 ms answer margin after it, so the
 * caller has the gateway's 504 while the node still runs, also on a machine twice as quick. (64
 * repeats ran in 71 ms here: a machine twice as quick ended it inside the margin.)
 */
const SLOW = slowModel({ rows: 2048, repeats: 256 });
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };

beforeAll(async () => {
  // Deadline (20 ms) + the gateway's answer margin (100 ms) + room: what the test below needs.
  expect(await runMs(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) }), 'the slow model is too quick on this machine: raise its repeats').toBeGreaterThan(150);
  b = await startBrulee({ MAX_OUTPUT_BYTES: '16' });
  expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(201);
  // Loaded here (its outputs are over the limit: 413).
  expect((await b.json('POST', '/functions/slow/invoke', { inputs: SLOW_IN })).body.error.code).toBe('OUTPUT_TOO_LARGE');
}, 120_000);
afterAll(async () => {
  await b?.destroy();
});

const stats = async () => (await b.json('GET', '/functions/slow')).body.stats;

it('a run that fails past its deadline (its caller had its 504) is counted as a timeout, not a failure', async () => {
  expect((await b.put('slow', SLOW, 'timeoutMs=20')).status).toBe(200);
  const before = await stats();
  const r = await b.json('POST', '/functions/slow/invoke', { inputs: SLOW_IN });
  expect([r.status, r.body.error.code]).toEqual([504, 'TIMEOUT']);
  // The node answers once its run is over: its counts are in by then, or soon after.
  let after = await stats();
  for (let i = 0; i < 50 && after.invocations === before.invocations; i++) {
    await new Promise((res) => setTimeout(res, 50));
    after = await stats();
  }
  expect({ invocations: after.invocations - before.invocations, timeouts: after.timeouts - before.timeouts, failures: after.failures - before.failures }).toEqual({ invocations: 1, timeouts: 1, failures: 0 });
});
