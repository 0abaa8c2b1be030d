/**
 * The long fuzz run (not part of `npm test`):
 *
 *   npm run fuzz                         # 20 000 cases, seed from the clock
 *   npm run fuzz -- --cases 50000 --seed 7 --concurrency 8
 *
 * Starts brulee (ROLE=all) against a private redis-server, registers the fuzz models, sends the
 * cases over HTTP and prints the answers by status and by kind of case, then every 5xx, hang
 * (no answer in 5 s) and reset with the request that caused it. Exits 1 if there was any.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { serve, type ServerType } from '@hono/node-server';
import pino from 'pino';
import { createBrulee } from '../../brulee';
import { loadConfig } from '../../config';
import { startRedisServer } from '../../queue/redis-server';
import { FUZZ_MODELS, generate, run } from './requests';

const args = parseArgs({
  options: {
    cases: { type: 'string', default: '20000' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '4' },
    'onnx-weight': { type: 'string', default: '3' },
  },
}).values;
const cases = Number(args.cases);
const seed = args.seed !== undefined ? Number(args.seed) : Date.now() % 2 ** 31;
const KEY = 'fuzz-key';

const dir = mkdtempSync(join(tmpdir(), 'brulee-fuzz-'));
const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
const b = await createBrulee(loadConfig({ REDIS_URL: redis.url, DATA_DIR: dir, NODE_ID: 'fuzz', API_KEY: KEY, MAX_REQUEST_BYTES: '4MiB', MAX_MODEL_BYTES: '1MiB', LOG_LEVEL: 'silent' }), {
  log: pino({ level: 'silent' }),
});
let server: ServerType | undefined;
let failed = true;
try {
  for (const [name, bytes] of Object.entries(FUZZ_MODELS)) {
    const r = await b.app.request(`/functions/${name}`, { method: 'PUT', body: bytes, headers: { authorization: `Bearer ${KEY}` } });
    if (r.status !== 201) throw new Error(`registering ${name}: ${r.status} ${await r.text()}`);
  }
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: b.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const t0 = performance.now();
  const requests = generate(b.app.routes, KEY, cases, seed, { onnxWeight: Number(args['onnx-weight']) });
  const t = await run(base, requests, Number(args.concurrency), (n) => process.stderr.write(`\r${n} / ${cases}`));
  process.stderr.write('\n');
  console.log(JSON.stringify({ seed, cases: t.cases, seconds: Math.round((performance.now() - t0) / 1000), byStatus: t.byStatus, byKind: t.byKind, slowestMs: Math.round(t.slowestMs), slowestRegistrationMs: Math.round(t.slowestRegistrationMs), bad: t.bad.length }, null, 1));
  for (const x of t.bad) console.log(JSON.stringify(x));
  failed = t.bad.length > 0;
} finally {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  await b.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
