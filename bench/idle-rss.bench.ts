/**
 * The fixed memory of a brulee process, for container requests/limits (deploy/kubernetes/):
 * the RSS of an idle gateway and an idle worker, each `node --import tsx server.ts` as in the
 * image, against a private redis-server and an s3rver model store. The worker is measured right
 * after start, and again after it has fetched a model from S3 (the AWS SDK is then loaded), run
 * it once and unloaded it: the second figure is the overhead to add to MEMORY_BUDGET.
 *
 *   npx tsx bench/idle-rss.bench.ts
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer } from '../queue/redis-server';
import { mlpModel } from '../models/generate';
import { startS3 } from '../test/support/s3';
import { readyPort } from './support';

const MiB = 1024 ** 2;
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settled(pid: number): Promise<number> {
  // The median of 5 samples a second apart, after a pause for start-up garbage to go.
  await sleep(3000);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    xs.push(rss(pid));
    await sleep(1000);
  }
  return xs.sort((a, b) => a - b)[2]!;
}

const dir = mkdtempSync(join(tmpdir(), 'brulee-rss-'));
const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
const s3 = await startS3();
const procs: ChildProcess[] = [];

async function start(role: 'gateway' | 'worker', name: string): Promise<{ p: ChildProcess; url: string }> {
  const p = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { ...process.env, ...s3.env(), ROLE: role, NODE_ID: name, PORT: '0', GRPC_PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, DATA_DIR: join(dir, name), LOG_LEVEL: 'warn', MEMORY_BUDGET: '1GiB' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(p);
  return { p, url: `http://127.0.0.1:${await readyPort(p, name)}` };
}

try {
  const gw = await start('gateway', 'gw');
  const w = await start('worker', 'w1');
  const workerIdle = await settled(w.p.pid!);
  const put = await fetch(`${gw.url}/functions/m`, { method: 'PUT', body: mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }) });
  if (put.status !== 201) throw new Error(`register: ${put.status} ${await put.text()}`);
  const inv = await fetch(`${gw.url}/functions/m/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } }) });
  const body = (await inv.json()) as { node?: string };
  if (inv.status !== 200 || body.node !== 'w1') throw new Error(`invoke: ${inv.status} ${JSON.stringify(body)}`);
  await fetch(`${gw.url}/v2/repository/models/m/unload`, { method: 'POST' });
  const workerAfter = await settled(w.p.pid!);
  const gatewayIdle = await settled(gw.p.pid!);
  console.log(`node ${process.version}, ${new Date().toISOString()} (machine shared with other work)`);
  console.log(`worker RSS idle after start:                       ${(workerIdle / MiB).toFixed(0)} MiB`);
  console.log(`worker RSS after an S3 fetch, a load and an unload: ${(workerAfter / MiB).toFixed(0)} MiB  <- fixed overhead`);
  console.log(`gateway RSS idle (after a registration):           ${(gatewayIdle / MiB).toFixed(0)} MiB`);
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
  await s3.stop();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
