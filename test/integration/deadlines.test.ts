import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { modelRefOf } from '../../functions/registry';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import type { Routed } from '../../queue/dispatcher';
import { readAnswer, type Answer } from '../../queue/replies';
import { JOB, packTensors, type InvokeJob } from '../../queue/wire';
import { mlpModel, slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';
import { until } from '../support/within';

/**
 * Deadlines, each guarded on its own: the gateway's timer (a call that runs past its timeout on
 * the node), the gateway taking back a job nobody waits for (`queue.remove`), and the node
 * skipping a job it reaches past its deadline.
 */

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
/** A gateway of its own process: its calls reach b's node on the node's lane (b's own take no queue). */
let gw: TestBrulee;
// onnxruntime-node runs a model on the calling thread: a run much longer than this one starves
// the node's heartbeat (5 s) on a loaded machine, and the gateway then sees no live node.
// One worker slot: a slow call holds it while others wait in the queue.
beforeAll(async () => {
  b = await startBrulee({ WORKER_CONCURRENCY: '1' });
  gw = await startBrulee({ ROLE: 'gateway' }, { namespace: b.namespace, dataDir: b.dataDir, nodeId: 'gw' });
  expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(201);
  expect((await b.put('quick', QUICK, 'timeoutMs=60000')).status).toBe(201);
  // Warm both, and measure the slow run here, so the tests below know how long it takes.
  expect((await b.invoke('quick', QUICK_IN)).status).toBe(200);
  const t0 = performance.now();
  expect((await b.invoke('slow', SLOW_IN)).status).toBe(200);
  slowMs = performance.now() - t0;
}, 180_000); // registration profiles the slow model: several runs, on a shared machine
afterAll(async () => {
  await gw?.destroy();
  await b?.destroy();
  redis.disconnect();
});

/**
 * ~0.7 s of MatMuls on a quick machine, idle (2048 × 256 × 256 × 512 multiply-adds), from a 260 KB
 * file: well past a 50 ms deadline and the gateway's 100 ms of grace after it, also on a machine
 * twice as quick (64 repeats, ~0.15 s once, took 92 ms on a quicker machine, and the call then
 * ended inside that grace; 256 repeats, ~0.35 s here, would be ~0.17 s there, under the 200 ms the
 * first test asks).
 */
const SLOW = slowModel({ rows: 2048, repeats: 512 });
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };
const QUICK = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 6 });
const QUICK_IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
const HOLDER = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 7 });
const HOLDER_IN = QUICK_IN;
let slowMs = 0;

const stats = async (name: string) => (await b.json('GET', `/functions/${name}`)).body.stats;
const setTimeoutMs = async (name: string, bytes: Uint8Array, ms: number) => expect((await b.put(name, bytes, `timeoutMs=${ms}`)).status).toBe(200);
const timeoutMessage = (fn: string, ms = 50) =>
  new RegExp(`^invocation of ${fn} did not finish within (${ms - 2}|${ms - 1}|${ms}) ms \\(node ${b.node!.id}\\); raise the function's timeoutMs or add nodes$`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** brulee_invocations_total of a function on b's node, by outcome (timeouts are outcome="error", as failures). */
async function outcomes(fn: string): Promise<{ ok: number; error: number }> {
  const text = await (await b.req('/metrics')).text();
  const n = (outcome: string) => Number(new RegExp(`^brulee_invocations_total\\{function="${fn}",outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { ok: n('ok'), error: n('error') };
}

describe('deadlines', () => {
  it('the slow model is slow enough for these tests, and right', async () => {
    // The timeout test below needs the run still going at deadline (50 ms) + grace (100 ms).
    expect(slowMs).toBeGreaterThan(200);
    const want = await runDirect(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) });
    const r = await b.invoke('slow', SLOW_IN);
    expect(r.body.error).toBeUndefined();
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  });

  it('a call still running on the node at its deadline is a 504 from the gateway at the deadline; the node finishes it and counts it as its caller saw it, a timeout, in /stats and /metrics', async () => {
    await setTimeoutMs('slow', SLOW, 50);
    try {
      const before = { stats: await stats('slow'), metrics: await outcomes('slow') };
      const r = await b.invoke('slow', SLOW_IN);
      expect(r.status).toBe(504);
      expect(r.body.error.code).toBe('TIMEOUT');
      // The timer starts a millisecond or so after the deadline is set: it may say 49.
      expect(r.body.error.message).toMatch(timeoutMessage('slow'));
      // It was not skipped: the node ran it to the end (a warm hit), and counted it once, as a
      // timeout (it once counted a success its caller never had): no exec sample, no failure.
      await until('the node to finish the slow call', async () => (await stats('slow')).invocations === before.stats.invocations + 1);
      const after = await stats('slow');
      expect(after.warmHits + after.coldStarts - before.stats.warmHits - before.stats.coldStarts).toBe(1);
      expect(after.execMs.samples - before.stats.execMs.samples).toBe(0);
      expect(after.timeouts - before.stats.timeouts).toBe(1);
      expect(after.failures - before.stats.failures).toBe(0);
      const m = await outcomes('slow');
      expect({ ok: m.ok - before.metrics.ok, error: m.error - before.metrics.error }).toEqual({ ok: 0, error: 1 });
    } finally {
      await setTimeoutMs('slow', SLOW, 60_000);
    }
  });

  it('a call that times out while queued is taken back: the node never sees it (no skip, no run)', async () => {
    await setTimeoutMs('quick', QUICK, 50);
    const before = await stats('quick');
    const k = keys(b.namespace);
    const lane = k.lane(b.node!.id);
    const active = k.laneActive(b.node!.id);
    try {
      // The node's one slot is held by a call that waits 1 s for others to batch with (without
      // blocking the process, as a slow run would), so the quick call waits in the node's lane.
      expect((await b.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBeLessThan(300);
      const held = gw.invoke('holder', HOLDER_IN);
      await until('the holding call to be taken', async () => (await redis.llen(active)) === 1, 10_000);
      const quick = await gw.invoke('quick', QUICK_IN);
      expect(quick.status).toBe(504);
      expect(quick.body.error.code).toBe('TIMEOUT');
      expect(quick.body.error.message).toMatch(timeoutMessage('quick'));
      // Taken back at once: not in the lane, while the holding call still has the slot.
      expect(await redis.llen(lane)).toBe(0);
      expect(await redis.llen(active)).toBe(1);
      expect((await held).status).toBe(200);
      await sleep(300);
      // Had it stayed queued, the node would have reached it past its deadline and counted a skip.
      expect(await stats('quick')).toMatchObject({ invocations: before.invocations, timeouts: before.timeouts, warmHits: before.warmHits });
      expect([await redis.llen(lane), await redis.llen(active)]).toEqual([0, 0]);
    } finally {
      await setTimeoutMs('quick', QUICK, 60_000);
    }
  });

  it("a call of the node's own process that times out waiting for a slot is dropped: never run, never counted", async () => {
    // Long enough for the checks below to see it waiting on a loaded machine (50 ms was not, once
    // in a parallel run at load 4), well short of the holder's 1 s wait for a batch partner.
    await setTimeoutMs('quick', QUICK, 400);
    const before = await stats('quick');
    const k = keys(b.namespace);
    try {
      expect((await b.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBeLessThan(300);
      // Both calls are b's own: they reach its node in the process, not on its lane.
      const held = b.invoke('holder', HOLDER_IN);
      await until('the holding call to run', async () => b.node!.here.running === 1, 10_000);
      const quick = b.invoke('quick', QUICK_IN);
      await until('the quick call to wait for the slot', async () => b.node!.here.waiting === 1, 10_000);
      expect((await b.dataPlane.stats()).queue).toMatchObject({ waiting: 1, active: 1 });
      const r = await quick;
      expect(r.status).toBe(504);
      expect(r.body.error.code).toBe('TIMEOUT');
      expect(r.body.error.message).toMatch(timeoutMessage('quick', 400));
      // Given up, it leaves the count at once, as a lane job taken back does.
      expect(b.node!.here).toEqual({ waiting: 0, running: 1 });
      expect((await b.dataPlane.stats()).queue).toMatchObject({ waiting: 0, active: 1 });
      expect([await redis.llen(k.lane(b.node!.id)), await redis.llen(k.laneActive(b.node!.id))]).toEqual([0, 0]);
      expect((await held).status).toBe(200);
      await until('the slot to be free', async () => b.node!.here.running + b.node!.here.waiting === 0, 10_000);
      // Had it run when the slot came free, the node would have counted it as a skip (a timeout).
      expect(await stats('quick')).toMatchObject({ invocations: before.invocations, timeouts: before.timeouts, warmHits: before.warmHits });
    } finally {
      await setTimeoutMs('quick', QUICK, 60_000);
    }
  });

  // This test and the next have a brulee of their own and spend their time in 1 s batch waits: they run at once.
  it.concurrent("another gateway sees the calls a node runs for its own process (in no Redis list) in the queue depth, from the node's heartbeat", async ({ expect }) => {
    // A pair of its own, beating every 200 ms: a 1 s hold spans several beats.
    const c = await startBrulee({ WORKER_CONCURRENCY: '1', HEARTBEAT_MS: '200' });
    const g = await startBrulee({ ROLE: 'gateway', HEARTBEAT_MS: '200' }, { namespace: c.namespace, dataDir: c.dataDir, nodeId: 'g' });
    try {
      expect((await c.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBe(201);
      // Three calls that wait 1 s each for a batch partner, one slot: held for 3 s, one after another.
      const held = [1, 2, 3].map(() => c.invoke('holder', HOLDER_IN));
      await until('the calls to run or wait here', async () => c.node!.here.running + c.node!.here.waiting === 3, 10_000);
      const depth = async () => (await g.dataPlane.stats()).queueByNode[c.node!.id];
      // The other gateway counts them as active (it knows their number, not their state).
      await until("the other gateway to see them at the node's next beat", async () => ((await depth())?.active ?? 0) >= 2, 10_000);
      expect((await depth())?.waiting).toBe(0);
      expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200]);
      await until('the other gateway to see it done', async () => (await depth())?.active === 0, 5000);
    } finally {
      await g.destroy();
      await c.destroy();
    }
  });

  it.concurrent("a drain that runs out of time starts none of the calls still waiting here: 503 NO_NODE_AVAILABLE, not run on a node whose models are freed", async ({ expect }) => {
    const c = await startBrulee({ WORKER_CONCURRENCY: '1' });
    try {
      expect((await c.put('holder', HOLDER, 'maxBatch=2&maxDelayMs=1000&timeoutMs=60000')).status).toBe(201);
      expect((await c.put('quick', QUICK, 'timeoutMs=60000')).status).toBe(201);
      // Two calls hold the one slot for 2 s, one after the other; quick waits behind them.
      const holders = [1, 2].map(() => c.invoke('holder', HOLDER_IN));
      await until('both holders to be here', async () => c.node!.here.running + c.node!.here.waiting === 2, 10_000);
      const quick = c.invoke('quick', QUICK_IN);
      await until('quick to wait here', async () => c.node!.here.waiting === 2, 10_000);
      const before = (await c.json('GET', '/functions/quick')).body.stats;
      // No time to drain: the close gives the running call 1 s, then stops.
      await c.node!.close({ drainMs: 0 });
      const r = await quick;
      expect([r.status, r.body.error?.code]).toEqual([503, 'NO_NODE_AVAILABLE']);
      await Promise.all(holders);
      expect(c.node!.pool.list()).toEqual([]);
      const after = (await c.json('GET', '/functions/quick')).body.stats;
      expect([after.invocations, after.loads]).toEqual([before.invocations, before.loads]);
    } finally {
      await c.destroy();
    }
  });

  it('a node skips an invocation it reaches past its deadline: TIMEOUT, counted as a timeout, not run', async () => {
    const k = keys(b.namespace);
    const queue = new Queue(k.nodeQueue(b.node!.id), { connection: redis, prefix: k.bullPrefix });
    // This process's /metrics, which counts each invocation /stats counts (by outcome: ok or error).
    const counted = async () => {
      const text = await (await b.req('/metrics')).text();
      const n = (outcome: string) => Number(new RegExp(`^brulee_invocations_total\\{function="quick",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
      return { ok: n('ok'), error: n('error') };
    };
    try {
      const before = await stats('quick');
      const metricsBefore = await counted();
      const fn = await b.dataPlane.get('quick');
      const now = Date.now();
      const id = randomUUID();
      // As the dispatcher enqueues an async call, but with a deadline already past.
      const job: Routed<InvokeJob> = {
        model: modelRefOf(fn),
        inputs: ((p) => ({ tensors: p.tensors, b64: p.blob.toString('base64') }))(packTensors({ x: { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } })),
        acceptedAt: now - 2000,
        deadline: now - 1000,
        reply: { id, answerTtlMs: 60_000 },
      };
      await queue.add(JOB.invoke, job, { jobId: id, attempts: 1, removeOnComplete: true, removeOnFail: true });
      let answer: Answer | undefined;
      await until('the node to answer the late job', async () => (answer = await readAnswer(redis, k, id)) !== undefined);
      // An answer with outputs (the job was run) fails here with the answer shown, not a TypeError.
      expect(answer).toMatchObject({ error: expect.stringMatching(/^TIMEOUT: the invocation waited \d+(\.\d+)? ms in the queue, past its deadline; it was not run$/) });
      const after = await stats('quick');
      expect(after.timeouts - before.timeouts).toBe(1);
      expect(after.invocations - before.invocations).toBe(1);
      // Not run: no cold start, no warm hit, no exec sample, no failure.
      expect(after.warmHits - before.warmHits).toBe(0);
      expect(after.coldStarts - before.coldStarts).toBe(0);
      expect(after.failures - before.failures).toBe(0);
      expect(after.execMs.samples - before.execMs.samples).toBe(0);
      // In /metrics too, as the invocation that failed (it was in /stats' invocations, not in brulee_invocations_total).
      expect(await counted()).toEqual({ ok: metricsBefore.ok, error: metricsBefore.error + 1 });
    } finally {
      await queue.close();
    }
  });
});
