import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { mlpModel, slowModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { cutProxy, type CutProxy } from '../support/cut-proxy';
import { ort, runMs } from '../support/models';
import { until } from '../support/within';

/**
 * A sync call run in its gateway's own process (ROLE=all; a lone call: admitted and counted after
 * its run, in one script, queue/replies.ts admitAndApply) whose run ended in time, so its node
 * counted it a success, but whose answer came back after its gateway's timer (the deadline plus
 * the 100 ms answer margin: here the counting script's reply held up 400 ms, as a loaded Redis or
 * event loop may) was a 504 counted as a success. Every call must count as what its caller was
 * told: a run that ended in time has its answer promised to its caller, who waits for it past the
 * timer (runtime/node.ts invoke's late check, queue/dispatcher.ts GiveUp.commit), and one its
 * caller gave up first counts as a timeout.
 *
 * Real parts: one brulee process whose Redis connections go through a proxy that holds the
 * counting script of chosen calls; a quick model (150 ms timeout), and a slow one whose runs end
 * far past their 20 ms timeout (a 504 counted as a timeout, as late-failure.test.ts's).
 */

/** ~0.33 s of MatMuls on one thread here: past a 20 ms timeout and the 100 ms margin after it. */
const SLOW = slowModel({ rows: 2048, repeats: 256 });
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };
const QUICK = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 31 });
const IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
/** How long the counting script of a held call waits in the proxy: past the quick call's 150 ms + 100 ms. */
const HOLD_MS = 400;

let b: TestBrulee;
let proxy: CutProxy;
/**
 * Whether the next lone quick call's counting script is held (ADMIT_AND_APPLY: the call's answered
 * marker, then its function's admission places). A call run beside another of its gateway's is
 * answered without waiting for its counts (they are sent first, runtime/node.ts countLater).
 */
let holdNext = false;

beforeAll(async () => {
  expect(await runMs(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) }), 'the slow model is too quick on this machine: raise its repeats').toBeGreaterThan(150);
  proxy = await cutProxy(inject('redisUrl'), (args) => {
    if (!holdNext || !/^eval/i.test(args[0] ?? '') || !/:answered:/.test(args[3] ?? '') || !(args[4] ?? '').endsWith(':admitted:quick')) return undefined;
    holdNext = false;
    setTimeout(() => proxy.release(), HOLD_MS);
    return 'hold';
  });
  // Admission on: a lone call is admitted after its run. Two slots: calls run side by side.
  b = await startBrulee({ REDIS_URL: proxy.url, MAX_QUEUED_PER_FUNCTION: '100', WORKER_CONCURRENCY: '2' });
  expect((await b.put('quick', QUICK, 'timeoutMs=60000')).status).toBe(201);
  expect((await b.put('slow', SLOW, 'timeoutMs=60000')).status).toBe(201);
  // Loaded here, then their timeouts cut.
  expect((await b.invoke('quick', IN)).status).toBe(200);
  expect((await b.invoke('slow', SLOW_IN)).status).toBe(200);
  expect((await b.put('quick', QUICK, 'timeoutMs=150')).status).toBe(200);
  expect((await b.put('slow', SLOW, 'timeoutMs=20')).status).toBe(200);
}, 180_000);

afterAll(async () => {
  await b?.destroy();
  proxy?.close();
});

async function counted(fn: string): Promise<{ invocations: number; timeouts: number; failures: number; ok: number; error: number }> {
  const s = (await b.json('GET', `/functions/${fn}`)).body.stats;
  const text = await (await b.req('/metrics')).text();
  const n = (outcome: string) => Number(new RegExp(`^brulee_invocations_total\\{function="${fn}",outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { invocations: s.invocations, timeouts: s.timeouts, failures: s.failures, ok: n('ok'), error: n('error') };
}

it('N calls, some answered past their deadline, some timed out: /stats and /metrics count what their callers were told', async () => {
  const before = { quick: await counted('quick'), slow: await counted('slow') };
  // Rounds of calls sent together (the first sent is its gateway's lone call; with `hold`, its answer is held up).
  const rounds: Array<{ fns: Array<'quick' | 'slow'>; hold?: true }> = [
    { fns: ['quick'] },
    { fns: ['quick'], hold: true },
    { fns: ['slow'] },
    { fns: ['quick', 'quick'] },
    { fns: ['quick'], hold: true },
    { fns: ['slow', 'quick'] },
    { fns: ['quick', 'quick'], hold: true },
    { fns: ['quick'], hold: true },
  ];
  const told = { quick: { sent: 0, ok: 0, timeout: 0, other: 0 }, slow: { sent: 0, ok: 0, timeout: 0, other: 0 } };
  const seen: string[] = [];
  for (const round of rounds) {
    holdNext = round.hold === true;
    const t0 = Date.now();
    const rs = await Promise.all(round.fns.map((fn) => b.invoke(fn, fn === 'slow' ? SLOW_IN : IN)));
    seen.push(`${round.fns.join('+')}${round.hold ? ' (held)' : ''}: ${rs.map((r) => r.status).join('+')} in ${Date.now() - t0} ms`);
    expect(holdNext, `no counting script was held in round ${seen.at(-1)}`).toBe(false);
    round.fns.forEach((fn, i) => {
      const status = rs[i]!.status;
      told[fn].sent++;
      if (status === 200) told[fn].ok++;
      else if (status === 504) told[fn].timeout++;
      else told[fn].other++;
    });
    // A slow run goes on past its caller's 504: the next round starts once the node is idle.
    await until('the node to finish its runs', () => b.node!.here.running === 0, 10_000);
  }
  await new Promise((r) => setTimeout(r, 500));
  console.log(`[late-answer] ${seen.join('; ')}`);
  expect([told.quick.other, told.slow.other, told.slow.ok]).toEqual([0, 0, 0]);
  const after = { quick: await counted('quick'), slow: await counted('slow') };
  for (const fn of ['quick', 'slow'] as const) {
    const d = { invocations: after[fn].invocations - before[fn].invocations, timeouts: after[fn].timeouts - before[fn].timeouts, failures: after[fn].failures - before[fn].failures, ok: after[fn].ok - before[fn].ok, error: after[fn].error - before[fn].error };
    expect({ fn, ...d }).toEqual({ fn, invocations: told[fn].sent, timeouts: told[fn].timeout, failures: 0, ok: told[fn].ok, error: told[fn].timeout });
  }
}, 120_000);
