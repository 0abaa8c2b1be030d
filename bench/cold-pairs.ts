/**
 * The tiny MLP's cold call, two checkouts in pairs (never part of `npm test`): each as `npm start`
 * runs it (its own private redis-server), called through bench:speed's lean client; each round
 * takes one cold call (unload, the bench's 150 ms pause, invoke) and one warm call after the same
 * pause of each, in alternating order. A round's difference (today - now) is taken within the
 * round, a second or two apart, so the drift of a shared machine's load, which moves the medians
 * of bench:speed's rows by 0.3-0.8 ms between runs, mostly cancels: the median of those
 * differences, and in how many rounds now was the faster, say whether a change of a few tenths of
 * a millisecond is real.
 *
 *   npx tsx bench/cold-pairs.ts /tmp/brulee-today 80      # ~1.5 min
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mlpModel } from '../models/generate';
import { leanClient, median, startServer } from './support';

const today = process.argv[2];
const K = Number(process.argv[3] ?? 80);
if (!today) throw new Error('usage: npx tsx bench/cold-pairs.ts <today checkout> [rounds]');
const PAUSE_MS = 150;
const pause = () => new Promise((r) => setTimeout(r, PAUSE_MS));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * 0.5) } } });
const rssMiB = (pid: number) => (Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024).toFixed(1);
const JSON_TYPE = { 'content-type': 'application/json' };

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-cold-pairs-'));
  const servers: Array<{ label: string; pid: number; stop: () => Promise<void>; close: () => void; call: () => Promise<string>; unload: () => Promise<unknown>; cold: number[]; paused: number[] }> = [];
  try {
    for (const [label, cwd] of [['today', today], ['now', undefined]] as const) {
      const s = await startServer(join(dir, label), { WORKER_CONCURRENCY: '64', MEMORY_BUDGET: '4GiB' }, cwd);
      const c = leanClient(s.url, { maxSockets: 4 });
      servers.push({ label, pid: s.pid, stop: s.stop, close: c.close, cold: [], paused: [],
        call: async () => (await c.call('POST', '/functions/mlp/invoke', body, JSON_TYPE)).body.toString(),
        unload: () => c.call('POST', '/v2/repository/models/mlp/unload', '', JSON_TYPE) });
      const put = await fetch(`${s.url}/functions/mlp`, { method: 'PUT', body: bytes });
      if (put.status >= 300) throw new Error(`register failed: ${put.status}`);
      for (let i = 0; i < 20; i++) await servers.at(-1)!.call();
    }
    const before = loadavg();
    for (let i = 0; i < K; i++) {
      for (const s of i % 2 === 0 ? servers : [...servers].reverse()) {
        await s.unload();
        await pause();
        let t = performance.now();
        if (!(await s.call()).includes('"coldStart":true')) throw new Error('expected a cold start after unload');
        s.cold.push(performance.now() - t);
        await s.call();
        await pause();
        t = performance.now();
        await s.call();
        s.paused.push(performance.now() - t);
      }
    }
    const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
    console.log(`tiny MLP, ${K} rounds, load average ${before} -> ${loadavg()}; ms, to the answer's last byte`);
    for (const k of ['cold', 'paused'] as const) {
      const d = a[k].map((v, i) => v - b[k][i]!);
      console.log(`  ${(k === 'cold' ? 'cold call' : 'paused warm').padEnd(12)} today ${median(a[k]).toFixed(2)}  now ${median(b[k]).toFixed(2)}  median of today - now in a round ${median(d).toFixed(2)}; now faster in ${d.filter((v) => v > 0).length} of ${K}`);
    }
    console.log(`  server RSS after the rounds: today ${rssMiB(a.pid)} MiB, now ${rssMiB(b.pid)} MiB`);
  } finally {
    for (const s of servers) {
      s.close();
      await s.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
