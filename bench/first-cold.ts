/**
 * The first cold call of a fresh server, two checkouts in pairs (never part of `npm test`): each
 * round starts each checkout's server as `npm start` runs it (its own private redis-server),
 * registers the tiny MLP, waits the bench's 150 ms and times its first call (the process's first
 * load of a real model), then 20 warm calls, an unload, the pause and a second cold call (a reload,
 * as `bench:speed` and `cold-pairs.ts` time). Which checkout goes first alternates by round; a
 * round's differences are taken within it.
 *
 *   npx tsx bench/first-cold.ts /tmp/brulee-today 10      # ~2 min
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mlpModel } from '../models/generate';
import { leanClient, median, startServer } from './support';

const today = process.argv[2];
const K = Number(process.argv[3] ?? 10);
if (!today) throw new Error('usage: npx tsx bench/first-cold.ts <today checkout> [rounds]');
const pause = () => new Promise((r) => setTimeout(r, 150));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * 0.5) } } });
const JSON_TYPE = { 'content-type': 'application/json' };

async function once(label: string, cwd: string | undefined, dir: string): Promise<{ first: number; firstLoad: number; second: number; secondLoad: number }> {
  const s = await startServer(join(dir, label), { WORKER_CONCURRENCY: '64', MEMORY_BUDGET: '4GiB' }, cwd);
  const c = leanClient(s.url, { maxSockets: 4 });
  try {
    const put = await fetch(`${s.url}/functions/mlp`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status}`);
    const timed = async () => {
      await pause();
      const t = performance.now();
      const out = (await c.call('POST', '/functions/mlp/invoke', body, JSON_TYPE)).body.toString();
      const ms = performance.now() - t;
      const a = JSON.parse(out) as { coldStart?: boolean; timings?: { loadMs?: number } };
      if (a.coldStart !== true) throw new Error(`expected a cold start: ${out.slice(0, 200)}`);
      return { ms, load: a.timings?.loadMs ?? NaN };
    };
    // The unload's round trip warms the client's socket, as before the second cold call.
    await c.call('GET', '/v2/health/ready', '', JSON_TYPE);
    const first = await timed();
    for (let i = 0; i < 20; i++) await c.call('POST', '/functions/mlp/invoke', body, JSON_TYPE);
    await c.call('POST', '/v2/repository/models/mlp/unload', '', JSON_TYPE);
    const second = await timed();
    return { first: first.ms, firstLoad: first.load, second: second.ms, secondLoad: second.load };
  } finally {
    c.close();
    await s.stop();
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-first-cold-'));
  const trees = [['today', today], ['now', undefined]] as const;
  const res: Record<string, Array<Awaited<ReturnType<typeof once>>>> = { today: [], now: [] };
  try {
    const before = loadavg();
    for (let i = 0; i < K; i++) {
      for (const [label, cwd] of i % 2 === 0 ? trees : [...trees].reverse()) res[label]!.push(await once(`${label}-${i}`, cwd, dir));
    }
    console.log(`tiny MLP, ${K} rounds, load average ${before} -> ${loadavg()}; ms to the answer's last byte (the node's load ms)`);
    for (const label of ['today', 'now']) {
      const r = res[label]!;
      console.log(`  ${label.padEnd(6)} first cold call ${median(r.map((x) => x.first)).toFixed(2)} (${median(r.map((x) => x.firstLoad)).toFixed(2)})  second ${median(r.map((x) => x.second)).toFixed(2)} (${median(r.map((x) => x.secondLoad)).toFixed(2)})`);
    }
    for (const k of ['first', 'second'] as const) {
      const d = res.today!.map((v, i) => v[k] - res.now![i]![k]);
      console.log(`  ${k}: median of today - now in a round ${median(d).toFixed(2)}; now faster in ${d.filter((v) => v > 0).length} of ${K}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
