import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ort, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { FUZZ_MODELS, generate, run } from './requests';

/**
 * A few thousand fuzzed requests over every route (random JSON, mutated valid requests, nesting
 * 30 000 deep, random bytes, wrong content types and encodings), over a real socket: no answer is
 * a 5xx, none takes 5 s, no connection is dropped, and the server still answers a valid call with
 * onnxruntime's own outputs. `FUZZ_CASES` and `FUZZ_SEED` change the run; `npm run fuzz` is the
 * long one.
 */

const CASES = Number(process.env.FUZZ_CASES ?? 2500);
const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
const KEY = 'fuzz-key';
let b: TestBrulee;
let server: ServerType;
let base: string;

beforeAll(async () => {
  b = await startBrulee({ API_KEY: KEY, MAX_REQUEST_BYTES: '4MiB', MAX_MODEL_BYTES: '1MiB' });
  for (const [name, bytes] of Object.entries(FUZZ_MODELS)) {
    expect((await b.put(name, bytes, '', { authorization: `Bearer ${KEY}` })).status).toBe(201);
  }
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: b.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await b?.destroy();
});

it(`${CASES} fuzzed requests: no 5xx, no hang over 5 s (30 s for a registration), no reset`, { timeout: 300_000 }, async () => {
  const requests = generate(b.app.routes, KEY, CASES, SEED, { onnxWeight: 1 });
  const t = await run(base, requests, 4);
  console.log(`fuzz (seed ${SEED}): ${t.cases} cases, by status ${JSON.stringify(t.byStatus)}, by kind ${JSON.stringify(t.byKind)}, slowest ${Math.round(t.slowestMs)} ms (registrations: ${Math.round(t.slowestRegistrationMs)} ms)`);
  if (t.bad.length > 0) console.log(JSON.stringify(t.bad, null, 1));
  expect(t.bad).toEqual([]);
  expect(t.cases).toBe(CASES);
  // Every kind of case was sent, and most were answered with a 4xx that says why.
  expect(Object.keys(t.byKind).sort()).toEqual(['bytes', 'damaged-json', 'empty', 'mutated', 'nested', 'no-body', 'onnx', 'random-json']);
  expect((t.byStatus['200'] ?? 0) + (t.byStatus['202'] ?? 0)).toBeGreaterThan(CASES * 0.05);

  const x = new Float32Array([1, 2, 3, 4]);
  const ok = await b.invoke('m', { x: { type: 'float32', dims: [1, 4], data: [...x] } });
  const want = await runDirect(FUZZ_MODELS.m!, { x: new ort.Tensor('float32', x, [1, 4]) });
  expect(ok.status).toBe(200);
  expect(ok.body.outputs.y.data).toEqual([...(want.y!.data as Float32Array)]);
});
