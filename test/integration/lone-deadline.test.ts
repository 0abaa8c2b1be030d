import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runMs } from '../support/models';
import { until } from '../support/within';

/**
 * A lone call (the only call of a ROLE=all process's gateway, admission on) runs at once and has
 * its admission decided after its run (queue/dispatcher.ts `invokeHere`, `admitAfter`). One whose
 * run outlasts its timeout gets its 504 at its deadline (plus the answer's margin), while the node
 * still runs it, not when the run ends (the gateway waited up to 1 s more for a refusal), and the
 * node counts it as its caller saw it, a timeout, even where admission would have refused it after
 * its run (it was counted nowhere: a 504 that /stats never saw).
 */

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
/** Another gateway: its call holds the node's other slot, and input bytes in admission, while it runs. */
let gw: TestBrulee;

const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };
/**
 * A run of ~0.3 s on this machine, whatever its speed (its MatMuls' repeats sized in `beforeAll`
 * from a short run: 256 repeats took 0.33 s on one session's machine and 0.83 s on another's): past
 * a 20 ms timeout and the gateway's 100 ms answer margin (the node must still run it at the 504),
 * and well under the 1 s the gateway once waited (or the test could not see that wait).
 */
let SLOW: Uint8Array;
/**
 * The same MatMuls 4 times over, run on the node's other slot: it holds its input bytes while the
 * slow call runs, on a loaded machine too, since both runs slow down alike. (A call waiting 1 s for
 * a batch partner held them for a fixed time, which the slow run alone took most of on a slower
 * machine, and outlasted under CI's load.)
 */
let HOLDER: Uint8Array;
const TARGET_MS = 300;

const stats = async () => (await b.json('GET', '/functions/slow')).body.stats;
async function outcomes(): Promise<{ ok: number; error: number }> {
  const text = await (await b.req('/metrics')).text();
  const n = (outcome: string) => Number(new RegExp(`^brulee_invocations_total\\{function="slow",outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { ok: n('ok'), error: n('error') };
}

/**
 * Calls `slow` alone; at its 504 the node must still be running it; then it is counted once, a
 * timeout. `atRunEnd` checks what must still hold when the node has run it.
 */
async function lateLoneCall(atRunEnd?: () => void): Promise<void> {
  const before = { stats: await stats(), metrics: await outcomes() };
  const r = await b.invoke('slow', SLOW_IN);
  const runningAtAnswer = b.node!.here.running;
  expect([r.status, r.body.error?.code]).toEqual([504, 'TIMEOUT']);
  expect(r.body.error.message).toMatch(/did not finish within (18|19|20) ms/);
  expect(runningAtAnswer).toBe(1);
  await until('the node to finish the slow call', async () => b.node!.here.running === 0, 20_000);
  atRunEnd?.();
  await until('its counts', async () => (await stats()).invocations === before.stats.invocations + 1, 5000);
  const after = await stats();
  expect({ timeouts: after.timeouts - before.stats.timeouts, failures: after.failures - before.stats.failures, execSamples: after.execMs.samples - before.stats.execMs.samples }).toEqual({ timeouts: 1, failures: 0, execSamples: 0 });
  const m = await outcomes();
  expect({ ok: m.ok - before.metrics.ok, error: m.error - before.metrics.error }).toEqual({ ok: 0, error: 1 });
}

beforeAll(async () => {
  const x = { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) };
  const CALIBRATE = 32;
  const repeats = Math.ceil((CALIBRATE * TARGET_MS) / (await runMs(slowModel({ rows: 2048, repeats: CALIBRATE }), x)));
  SLOW = slowModel({ rows: 2048, repeats });
  HOLDER = slowModel({ rows: 2048, repeats: 4 * repeats });
  // Deadline (20 ms) + the gateway's answer margin (100 ms) + room: the node must still run it at the 504.
  expect(await runMs(SLOW, x), `the slow model (${repeats} repeats) is too quick`).toBeGreaterThan(150);
  // Input bytes bounded: a call alone in the queue is admitted whatever its size, one beside another's is not.
  b = await startBrulee({ WORKER_CONCURRENCY: '2', MAX_QUEUED_INPUT_BYTES: '100' });
  gw = await startBrulee({ ROLE: 'gateway', MAX_QUEUED_INPUT_BYTES: '100' }, { namespace: b.namespace, dataDir: b.dataDir, nodeId: 'gw' });
  expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(201);
  expect((await b.put('holder', HOLDER, 'timeoutMs=60000')).status).toBe(201);
  expect((await b.invoke('slow', SLOW_IN)).status).toBe(200);
  expect((await b.put('slow', SLOW, 'timeoutMs=20')).status).toBe(200);
}, 180_000);
afterAll(async () => {
  await gw?.destroy();
  await b?.destroy();
  redis.disconnect();
});

describe('a lone call past its deadline', () => {
  it('gets its 504 at the deadline while the node still runs it, and is counted once, a timeout', async () => {
    await lateLoneCall();
  }, 60_000);

  it('one that admission would refuse after its run (another call holds input bytes) is still counted once, a timeout: its caller had its 504', async () => {
    const held = gw.invoke('holder', SLOW_IN);
    await until('the holding call to take a slot', async () => (await redis.llen(keys(b.namespace).laneActive(b.node!.id))) === 1, 10_000);
    expect(b.node!.canStartAlone(false)).toBe(true);
    let heldDone = false;
    void held.then(() => (heldDone = true));
    // Admission refuses the slow call after its run only while the holder holds its bytes (its run).
    await lateLoneCall(() => expect(heldDone, 'the holding call ended before the slow run: a slower machine than this test allows').toBe(false));
    expect((await held).status).toBe(200);
  }, 60_000);
});
