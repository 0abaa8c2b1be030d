/**
 * What each hop of a call costs after the bench's 150 ms pause, on bare servers (never part of
 * `npm test`): a node:http server in its own process that answers a few bytes (`plain`), or first
 * sends one PING to a redis-server of its own over a raw socket and waits for the reply (`redis`:
 * the hop a brulee call's one script makes, without the script), or two in turn (`redis x2`), or
 * first sends a message to a worker thread and waits for its echo (`thread`: a session host's
 * hop). Each round takes, for each mode in turn (the order rotating by round), a call that warms
 * the socket, the pause and a timed call ("paused"), and a timed call right after ("unpaused").
 * A mode's cost over `plain` is the median of its difference within a round.
 *
 *   flock /work/heavy.lock npx tsx bench/wake-floors.ts [rounds]      # ~1 min at 60
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer } from '../queue/redis-server';
import { leanClient, median } from './support';

const K = Number(process.argv[2] ?? 60);
const PAUSE_MS = 150;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const MODES = ['plain', 'redis', 'redis x2', 'thread'] as const;

const SERVER = `
const http = require('node:http');
const net = require('node:net');
const { Worker } = require('node:worker_threads');
const port = Number(process.argv[1]);
const r = net.connect(port, '127.0.0.1');
r.setNoDelay(true);
const waiting = [];
r.on('data', (d) => { for (let i = 0; i < d.toString().split('\\r\\n').length - 1; i++) waiting.shift()(); });
const ping = () => new Promise((res) => { waiting.push(res); r.write('PING\\r\\n'); });
const w = new Worker('const { parentPort } = require("node:worker_threads"); parentPort.on("message", (m) => parentPort.postMessage(m));', { eval: true });
let echo;
w.on('message', () => echo());
const thread = () => new Promise((res) => { echo = res; w.postMessage(1); });
const body = Buffer.alloc(200, 'x');
const s = http.createServer(async (req, res) => {
  req.resume();
  await new Promise((ok) => req.on('end', ok));
  if (req.url === '/redis') await ping();
  else if (req.url === '/redis%20x2') { await ping(); await ping(); }
  else if (req.url === '/thread') await thread();
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});
r.once('connect', () => s.listen(0, '127.0.0.1', () => console.log('ready ' + s.address().port)));
`;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-wake-floors-'));
  const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
  const child = spawn(process.execPath, ['-e', SERVER, String(new URL(redis.url).port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        const m = /ready (\d+)/.exec((out += d.toString()));
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (c) => reject(new Error(`the floor server exited ${c}`)));
    });
    const c = leanClient(`http://127.0.0.1:${port}`, { maxSockets: 1 });
    const call = (mode: string) => c.call('POST', `/${encodeURIComponent(mode)}`, 'x'.repeat(300), { 'content-type': 'application/octet-stream' });
    for (let i = 0; i < 50; i++) for (const m of MODES) await call(m);
    const paused: Record<string, number[]> = {};
    const unpaused: Record<string, number[]> = {};
    const before = loadavg();
    for (let i = 0; i < K; i++) {
      const order = MODES.map((_, j) => MODES[(i + j) % MODES.length]!);
      for (const m of order) {
        await call(m);
        await sleep(PAUSE_MS);
        let t = performance.now();
        await call(m);
        (paused[m] ??= []).push(performance.now() - t);
        t = performance.now();
        await call(m);
        (unpaused[m] ??= []).push(performance.now() - t);
      }
    }
    console.log(`bare servers, ${K} rounds, load average ${before} -> ${loadavg()}; ms to the answer's last byte, medians`);
    console.log(`  ${'mode'.padEnd(10)}${'paused'.padStart(9)}${'unpaused'.padStart(10)}   paused - plain's in a round   unpaused - plain's`);
    for (const m of MODES) {
      const dp = paused[m]!.map((v, i) => v - paused.plain![i]!);
      const du = unpaused[m]!.map((v, i) => v - unpaused.plain![i]!);
      console.log(`  ${m.padEnd(10)}${median(paused[m]!).toFixed(3).padStart(9)}${median(unpaused[m]!).toFixed(3).padStart(10)}   ${median(dp).toFixed(3).padStart(27)}   ${median(du).toFixed(3).padStart(17)}`);
    }
    c.close();
  } finally {
    child.kill('SIGTERM');
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
