import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel, slowModel } from '../../models/generate';
import { ort, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * Admission by a function's queue depth (issue 12 §1): with MAX_QUEUED_PER_FUNCTION=5 and a node
 * that runs one call at a time, a burst of 20 calls of a slow function is 5 accepted (each answered,
 * right) and 15 refused with 429 QUEUE_FULL and Retry-After, while another function keeps being
 * served; the count comes back to zero on every path (answered, timed out, async), so the next
 * burst is admitted the same way.
 */
const LIMIT = 5;
const SLOW = slowModel({ rows: 2048, repeats: 64 });
const SLOW_IN = { x: { type: 'float32', dims: [1, 256], data: new Array(256).fill(0.5) } };
const QUICK = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 6 });
const QUICK_IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
let b: TestBrulee;
let want: number[];
beforeAll(async () => {
  b = await startBrulee({ MAX_QUEUED_PER_FUNCTION: String(LIMIT), WORKER_CONCURRENCY: '1', TRACE_RECORD: '1' });
  expect((await b.put('slow', SLOW)).status).toBe(201);
  expect((await b.put('quick', QUICK)).status).toBe(201);
  const direct = await runDirect(SLOW, { x: new ort.Tensor('float32', new Float32Array(256).fill(0.5), [1, 256]) });
  want = Array.from(direct.y!.data as Float32Array);
}, 60_000);
afterAll(() => b?.destroy());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, f: () => Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}
const invoke = (fn: string, inputs: unknown, query = '') =>
  b.req(`/functions/${fn}/invoke${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs }) });

async function burst(n: number) {
  const rs = await Promise.all(Array.from({ length: n }, () => invoke('slow', SLOW_IN)));
  return Promise.all(rs.map(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as any })));
}

describe('admission by a function queue depth', () => {
  it('a burst of 20 is exactly 5 accepted and answered right, 15 refused 429 QUEUE_FULL with Retry-After; another function is served meanwhile; then the count is 0 again', async () => {
    for (let round = 0; round < 2; round++) {
      const slow = burst(20);
      // While slow is full, quick is admitted and answered (its own count).
      const quick = await Promise.all(Array.from({ length: 3 }, () => b.invoke('quick', QUICK_IN)));
      const rs = await slow;
      expect(quick.map((r) => r.status)).toEqual([200, 200, 200]);
      const ok = rs.filter((r) => r.status === 200);
      const refused = rs.filter((r) => r.status === 429);
      expect([ok.length, refused.length]).toEqual([LIMIT, 20 - LIMIT]);
      for (const r of ok) expect(r.body.outputs.y.data).toEqual(want);
      for (const r of refused) {
        expect(r.retryAfter).toBe('1');
        expect(r.body.error.code).toBe('QUEUE_FULL');
        expect(r.body.error.message).toMatch(/^function "slow" already has 5 invocations waiting or running, its limit \(MAX_QUEUED_PER_FUNCTION=5\)/);
      }
      // Each answer gave its place back before it was sent.
      expect(await b.dataPlane.queued('slow')).toBe(0);
      expect(await b.dataPlane.queued('quick')).toBe(0);
    }
    // The recorded trace (TRACE_RECORD) holds the calls admitted, not the refused ones: a replay
    // must not see load that never reached a node.
    const recorded = async () => {
      const rows = readFileSync(join(b.dataDir, 'traces', 'invocations.csv'), 'utf8').trim().split('\n').slice(1);
      return { slow: rows.filter((r) => r.endsWith(',slow')).length, quick: rows.filter((r) => r.endsWith(',quick')).length };
    };
    await until('the trace file to hold 16 rows', async () => { const r = await recorded(); return r.slow + r.quick >= 16; }, 5000);
    expect(await recorded()).toEqual({ slow: 2 * LIMIT, quick: 6 });
  }, 120_000);

  it('calls that time out at the gateway give their places back', async () => {
    expect((await b.put('slow', SLOW, 'timeoutMs=30')).status).toBe(200);
    try {
      const rs = await burst(8);
      const statuses = rs.map((r) => r.status).sort();
      expect(statuses).toEqual([...Array(8 - LIMIT).fill(429), ...Array(LIMIT).fill(504)]);
      await until('the timed-out places to be given back', async () => (await b.dataPlane.queued('slow')) === 0, 5000);
    } finally {
      expect((await b.put('slow', SLOW, 'timeoutMs=30000')).status).toBe(200);
    }
  }, 60_000);

  it('async calls hold their places until answered: of 8 at once, 5 are accepted and 3 refused, and after the answers there is room again', async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, () => invoke('slow', SLOW_IN, '?async=true')));
    expect(rs.map((r) => r.status).sort()).toEqual([202, 202, 202, 202, 202, 429, 429, 429]);
    const ids = await Promise.all(rs.filter((r) => r.status === 202).map(async (r) => ((await r.json()) as { id: string }).id));
    for (const id of ids) {
      await until(`async ${id} to complete`, async () => (await b.json('GET', `/invocations/${id}`)).body.status === 'completed', 60_000);
      expect((await b.json('GET', `/invocations/${id}`)).body.outputs.y.data).toEqual(want);
    }
    expect(await b.dataPlane.queued('slow')).toBe(0);
    expect((await invoke('slow', SLOW_IN, '?async=true')).status).toBe(202);
  }, 120_000);
});
