import { afterAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

const started: TestBrulee[] = [];
afterAll(async () => {
  for (const b of started.reverse()) await b.destroy();
});
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

describe('the only node able to hold a model is down', () => {
  it('answers 503 NO_NODE_AVAILABLE (retry later), not 422 MODEL_TOO_LARGE (fix the model); it serves again once such a node is back', async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    const shared = { namespace: gw.namespace, dataDir: gw.dataDir };
    const big = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '100MB' }, { ...shared, nodeId: 'big' });
    const small = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '30MB' }, { ...shared, nodeId: 'small' });
    started.push(small);
    expect((await gw.put('wide', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }), 'memoryBytes=50MB')).status).toBe(201);
    expect((await gw.invoke('wide', x)).body.node).toBe('big');

    await big.close();
    await new Promise((r) => setTimeout(r, 600)); // the gateway reads the node list at most every 500 ms
    const r = await gw.invoke('wide', x);
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('NO_NODE_AVAILABLE');
    expect(r.body.error.message).toMatch(/needs 50000000 bytes.*largest live node budget is 30000000 bytes/);

    const back = await startBrulee({ ROLE: 'worker', MEMORY_BUDGET: '100MB' }, { ...shared, nodeId: 'big' });
    started.push(back);
    await new Promise((r) => setTimeout(r, 600));
    const again = await gw.invoke('wide', x);
    expect(again.body).toMatchObject({ node: "big" });
    expect(again.status).toBe(200);
    expect(again.body.node).toBe('big');
  });
});
