import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * A function name that a route takes for itself as a fixed path segment would be shadowed there:
 * GET /v2/models/stats is the statistics of every model (Triton's statistics extension), so a
 * function named "stats" could never be described through the Open Inference Protocol. Such names
 * are refused at registration (400 INVALID_NAME, saying which route), found here from the app's
 * own routes, so a route added later is checked too.
 */

let b: TestBrulee;
const m = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 });

beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
  await b?.destroy();
});

/** Names a fixed segment of one route takes where another route of the same method has `:name`. */
function shadowedNames(routes: ReadonlyArray<{ method: string; path: string }>): Map<string, string> {
  const out = new Map<string, string>();
  const real = routes.filter((r) => r.method !== 'ALL' && !r.path.includes('*'));
  for (const a of real) {
    const as = a.path.split('/');
    const at = as.indexOf(':name');
    if (at < 0) continue;
    for (const o of real) {
      const os = o.path.split('/');
      if (o === a || o.method !== a.method || os.length !== as.length || os[at]!.startsWith(':')) continue;
      if (os.every((s, i) => i === at || s === as[i] || s.startsWith(':') || as[i]!.startsWith(':'))) out.set(os[at]!, `${o.method} ${o.path}`);
    }
  }
  return out;
}

describe('function names that a route shadows', () => {
  it('are refused at registration with 400 INVALID_NAME naming the route; every such name the routes make', async () => {
    const shadowed = shadowedNames(b.app.routes);
    expect([...shadowed.keys()]).toContain('stats');
    for (const [name, route] of shadowed) {
      const r = await b.put(name, m);
      expect([name, r.status, r.body.error?.code]).toEqual([name, 400, 'INVALID_NAME']);
      expect(r.body.error.message).toContain(route.split(' ')[1]!.replace(/\/:.*$/, ''));
    }
    expect((await b.json('GET', '/functions')).body.functions).toEqual([]);
  });

  it('names that only look like one (other case, longer) register, and their routes reach them', async () => {
    for (const name of ['Stats', 'stats2', 'example', 'invoke', 'ready', 'config', 'versions', 'infer']) {
      expect([name, (await b.put(name, m)).status]).toEqual([name, 201]);
    }
    expect((await b.json('GET', '/v2/models/Stats')).body).toMatchObject({ name: 'Stats', platform: 'onnxruntime_onnx' });
    expect((await b.json('GET', '/v2/models/versions')).body).toMatchObject({ name: 'versions' });
    expect((await b.json('GET', '/functions/example/example')).body).toMatchObject({ function: 'example' });
    expect((await b.json('GET', '/v2/models/stats')).body.model_stats.map((s: { name: string }) => s.name).sort()).toEqual(['Stats', 'config', 'example', 'infer', 'invoke', 'ready', 'stats2', 'versions']);
  });
});
