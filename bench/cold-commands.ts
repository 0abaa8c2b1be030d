/**
 * Redis commands per cold call of the tiny MLP (never part of `npm test`): a server as `npm start`
 * runs it, each round an unload, a pause, INFO commandstats, one call, a 50 ms wait (a load's held
 * heartbeat goes out within 2 ms), INFO again; the same for a warm call after the same pause. The
 * difference, less the INFO commands themselves, is what the call sent (heartbeats of the period
 * fall in both alike).
 *
 *   npx tsx bench/cold-commands.ts [rounds] [checkout]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedis } from '../queue/connection';
import { mlpModel } from '../models/generate';
import { leanClient, startServer } from './support';

const K = Number(process.argv[2] ?? 40);
const cwd = process.argv[3];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * 0.5) } } });
const JSON_TYPE = { 'content-type': 'application/json' };

const dir = mkdtempSync(join(tmpdir(), 'brulee-cold-cmds-'));
const s = await startServer(dir, { WORKER_CONCURRENCY: '64', MEMORY_BUDGET: '4GiB' }, cwd);
const r = createRedis(s.redisUrl);
const c = leanClient(s.url, { maxSockets: 4 });
async function stats(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await r.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}
const call = async () => (await c.call('POST', '/functions/mlp/invoke', body, JSON_TYPE)).body.toString();
try {
  const put = await fetch(`${s.url}/functions/mlp`, { method: 'PUT', body: bytes });
  if (put.status >= 300) throw new Error(`register failed: ${put.status}`);
  for (let i = 0; i < 20; i++) await call();
  const sum = { cold: new Map<string, number>(), warm: new Map<string, number>() };
  for (let i = 0; i < K; i++) {
    for (const kind of ['cold', 'warm'] as const) {
      if (kind === 'cold') await c.call('POST', '/v2/repository/models/mlp/unload', '', JSON_TYPE);
      await sleep(150);
      const a = await stats();
      const out = await call();
      if (out.includes('"coldStart":true') !== (kind === 'cold')) throw new Error(`expected ${kind}`);
      await sleep(50);
      const b = await stats();
      for (const [k, v] of b) if (k !== 'info') sum[kind].set(k, (sum[kind].get(k) ?? 0) + v - (a.get(k) ?? 0));
    }
  }
  for (const kind of ['cold', 'warm'] as const) {
    const rows = [...sum[kind]].filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]);
    const total = rows.reduce((t, [, v]) => t + v, 0);
    console.log(`${kind}: ${(total / K).toFixed(2)} commands a call: ${rows.map(([k, v]) => `${k} ${(v / K).toFixed(2)}`).join(', ')}`);
  }
} finally {
  c.close();
  r.disconnect();
  await s.stop();
  rmSync(dir, { recursive: true, force: true });
}
