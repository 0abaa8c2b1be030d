import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/*
 * A call answered in its own process (ROLE=all) sends its counts and its admission place given back
 * with its answer, not waited for, and (after a load) the heartbeat that publishes its model just
 * after it (queue/held-writes.ts). Whatever this process or another reads next still sees them: its
 * `/stats` and `/metrics` agree with what was sent right after each answer, a cold start included,
 * and with a depth limit of 1 a caller's next call, through this gateway or another, is admitted
 * (the place of the one before is back first).
 */
const MLP = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 11 });
const IN = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee({ MAX_QUEUED_PER_FUNCTION: '1', WORKER_CONCURRENCY: '1' });
  expect((await b.put('held', MLP)).status).toBe(201);
}, 60_000);
afterAll(() => b?.destroy());

const unload = () => b.req('/v2/repository/models/held/unload', { method: 'POST' });

describe('counts sent with the answer, not waited for', () => {
  it("are seen by this process's next read: /stats = /metrics = what was sent, cold starts too; a depth limit of 1 admits each next call", async () => {
    let cold = 0;
    const url = await b.listen();
    for (let i = 1; i <= 8; i++) {
      if (i % 3 === 1) expect((await unload()).status).toBe(200);
      // In process (app.request: the reads below run in the answer's own chain of promises) and over a socket.
      const r = i % 2 === 0 ? await b.invoke('held', IN) : await (async () => {
        const res = await fetch(`${url}/functions/held/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: IN }) });
        return { status: res.status, body: (await res.json()) as { coldStart: boolean } };
      })();
      expect(r.status).toBe(200);
      if (r.body.coldStart) cold++;
      const fn = (await b.json('GET', '/stats')).body.functions.held;
      expect(fn).toMatchObject({ invocations: i, coldStarts: cold, warmHits: i - cold });
      expect(await b.dataPlane.queued('held')).toBe(0);
      const metrics = await (await b.req('/metrics')).text();
      const metric = (line: string) => Number(metrics.split('\n').find((l) => l.startsWith(line))?.split(' ').pop() ?? 0);
      expect(metric('brulee_invocations_total{function="held",outcome="ok"}')).toBe(i);
      expect(metric('brulee_cold_starts_total{function="held"}')).toBe(cold);
      // The node's heartbeat after the load is out too: this process routes and reports it resident.
      if (r.body.coldStart) expect((await b.json('GET', '/functions/held')).body.residentOn).toEqual([b.node!.id]);
    }
    expect(cold).toBe(3);
  });

  it("give the place back by the time the caller has its answer: its next call through another gateway is admitted at a depth limit of 1", async () => {
    const other = await startBrulee({ MAX_QUEUED_PER_FUNCTION: '1', ROLE: 'gateway' }, { namespace: b.namespace, dataDir: b.dataDir, nodeId: 'other-gateway' });
    try {
      const [here, there] = [await b.listen(), await other.listen()];
      const call = async (url: string) => (await fetch(`${url}/functions/held/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: IN }) })).status;
      const seen: number[] = [];
      // Answered in this process (ROLE=all), then at once the next call through the other gateway.
      for (let i = 0; i < 20; i++) {
        expect(await call(here)).toBe(200);
        seen.push(await call(there));
      }
      expect(seen).toEqual(seen.map(() => 200));
    } finally {
      await other.close();
    }
  });

  it("are seen by a read this process starts in the same turn as the answer (the data plane's own caller)", async () => {
    const x = { x: { type: 'float32' as const, dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) } };
    for (const cold of [true, false, false]) {
      if (cold) expect((await unload()).status).toBe(200);
      const before = await b.dataPlane.functionStats('held');
      const r = await b.dataPlane.invoke('held', x);
      // No turn of the event loop between the answer and these reads.
      const [queued, after] = await Promise.all([b.dataPlane.queued('held'), b.dataPlane.functionStats('held')]);
      expect(r.coldStart).toBe(cold);
      expect(queued).toBe(0);
      expect([after.invocations - before.invocations, after.coldStarts - before.coldStarts]).toEqual([1, cold ? 1 : 0]);
    }
  });
});
