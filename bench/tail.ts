/**
 * Where the p99 of ONE sequential caller goes (issues 8 §5 and 10 §3): each call's latency from
 * an external caller (bench/tail-client.py: raw socket, keep-alive, TCP_NODELAY), on the same
 * clock as what the server's main thread did then (bench/tail-probe.mjs, preloaded: its GC pauses,
 * timer callbacks over 50 µs, and the gaps of a 1 ms ticker, each split into the main thread's CPU
 * time and its wait for a CPU from /proc schedstat). Every call at or above the p99 is put in the
 * first class that fits: a GC pause overlapped it; the server's main thread waited > 1 ms for a
 * CPU (runnable, not running); it ran > 1 ms of its own in a ticker gap; a timer callback > 0.2 ms
 * overlapped it; it was inside the server with the loop idle (waiting for Redis's reply); or the
 * time was outside the server (client, kernel, sockets). A bare node:http server in its own
 * process (the http floor) answers the same request in alternation, as the transport's own tail.
 * Never part of `npm test`.
 *
 *   npx tsx bench/tail.ts                               # small MLP, v2 binary, 3 rounds of 1000 calls
 *   npx tsx bench/tail.ts --model ocr-cls --path v1 --n 500 --rounds 4
 *   npx tsx bench/tail.ts --today /tmp/brulee-today     # another checkout's server in alternation
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { pct, startHttpFloor, startServer, v2Binary, type BenchServer } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'mlp' },
    path: { type: 'string', default: 'v2' },
    n: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    today: { type: 'string' },
    keep: { type: 'string' },
  },
}).values;
const N = Number(args.n);
const ROUNDS = Number(args.rounds);
const V1 = args.path === 'v1';

type Ev = [kind: string, start: number, ms: number, a?: unknown, b?: unknown];
type Call = [start: number, ms: number];
const probe = join(import.meta.dirname, 'tail-probe.mjs');
const client = join(import.meta.dirname, 'tail-client.py');
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function classify(calls: Call[], ev: Ev[]): { classes: Record<string, number>; gcs: number; gcMs: number; stallMs: number; cpuMs: number; waitMs: number; timers: Map<string, number[]> } {
  const p99 = pct(calls.map((c) => c[1]), 99);
  const over = (e: Ev, t: number, d: number) => e[1] < t + d && e[1] + e[2] > t;
  const classes: Record<string, number> = {};
  for (const [t, d] of calls) {
    if (d < p99) continue;
    const near = ev.filter((e) => over(e, t, d));
    const stalls = near.filter((e) => e[0] === 'stall');
    const wait = stalls.reduce((a, e) => a + (e[4] as number), 0);
    const cpu = stalls.reduce((a, e) => a + (e[3] as number), 0);
    const req = ev.find((e) => e[0] === 'req' && e[1] >= t - 0.3 && e[1] < t + d);
    const k = near.some((e) => e[0] === 'gc')
      ? 'GC pause'
      : wait > 1
        ? 'main thread waiting for a CPU'
        : cpu > 1
          ? 'main thread running'
          : near.some((e) => e[0] === 'timer' && e[2] > 0.2)
            ? 'timer callback'
            : req && req[2] > 0.6 * d
              ? 'in the server, loop idle'
              : 'outside the server';
    classes[k] = (classes[k] ?? 0) + 1;
  }
  const t0 = calls[0]![0];
  const t1 = calls.at(-1)![0] + calls.at(-1)![1];
  const inside = ev.filter((e) => e[1] >= t0 && e[1] < t1);
  const sum = (xs: Ev[], f: (e: Ev) => number) => xs.reduce((a, e) => a + f(e), 0);
  const stalls = inside.filter((e) => e[0] === 'stall');
  const gcs = inside.filter((e) => e[0] === 'gc');
  const timers = new Map<string, number[]>();
  for (const e of inside) if (e[0] === 'timer') timers.set(e[3] as string, [...(timers.get(e[3] as string) ?? []), e[2]]);
  return { classes, gcs: gcs.length, gcMs: sum(gcs, (e) => e[2]), stallMs: sum(stalls, (e) => e[2]), cpuMs: sum(stalls, (e) => e[3] as number), waitMs: sum(stalls, (e) => e[4] as number), timers };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-tail-'));
  const { bytes, dims } = args.model === 'ocr-cls' ? { bytes: readModel(REAL_MODELS.ocrCls), dims: [1, 3, 48, 192] } : { bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), dims: [1, 64] };
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) / 2);
  const { header, body: binary } = v2Binary('x', dims, x);
  writeFileSync(join(dir, 'v2'), binary);
  writeFileSync(join(dir, 'v1'), JSON.stringify({ inputs: { x: { type: 'float32', dims, data: Array.from(x) } } }));

  const servers: Array<{ label: string; server: BenchServer; probeFile: string }> = [];
  for (const [label, cwd] of [...(args.today ? [['today', args.today]] : []), ['now', undefined]] as Array<[string, string | undefined]>) {
    const probeFile = join(dir, `${label}.probe.json`);
    const server = await startServer(join(dir, label), { TAIL_PROBE: probeFile }, cwd, ['--import', probe]);
    const put = await fetch(`${server.url}/functions/bench?threads=1`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
    servers.push({ label, server, probeFile });
  }
  const floor = await startHttpFloor(binary.length);
  const run = (url: string, brulee: boolean): Call[] => {
    const u = new URL(url);
    const path = brulee && V1 ? '/functions/bench/invoke' : '/v2/models/bench/infer';
    const body = brulee && V1 ? 'v1' : 'v2';
    const r = spawnSync('/usr/bin/python3', [client, u.hostname, u.port, String(N), path, join(dir, body), body === 'v1' ? '-' : String(Buffer.byteLength(header))], { maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`tail-client: ${r.stderr.toString()}`);
    return JSON.parse(r.stdout.toString()) as Call[];
  };
  const rows = new Map<string, Call[][]>();
  const push = (k: string, c: Call[]) => rows.set(k, [...(rows.get(k) ?? []), c]);
  const loads = [loadavg()];
  for (let r = 0; r < ROUNDS; r++) {
    push('http floor', run(floor.url, false));
    for (const s of servers) push(s.label, run(s.server.url, true));
  }
  loads.push(loadavg());
  await floor.stop();
  for (const s of servers) await s.server.stop();

  console.log(`${args.model}, ${V1 ? 'v1 JSON' : 'v2 binary'} (floor: v2 binary), ${ROUNDS} rounds of ${N} sequential calls per row; load average ${loads.join(' -> ')}`);
  console.log('| row | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 / p50 |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [k, rs] of rows) {
    const d = rs.flat().map((c) => c[1]);
    const p50 = pct(d, 50);
    console.log(`| ${k} | ${p50.toFixed(3)} | ${pct(d, 90).toFixed(3)} | ${pct(d, 99).toFixed(2)} | ${pct(d, 99.9).toFixed(2)} | ${Math.max(...d).toFixed(1)} | ${(pct(d, 99) / p50).toFixed(1)} |`);
  }
  for (const s of servers) {
    const ev = JSON.parse(readFileSync(s.probeFile, 'utf8')) as Ev[];
    const total: Record<string, number> = {};
    let [gcs, gcMs, stallMs, cpuMs, waitMs, ms, calls] = [0, 0, 0, 0, 0, 0, 0];
    const timers = new Map<string, number[]>();
    for (const round of rows.get(s.label)!) {
      const c = classify(round, ev);
      for (const [k, v] of Object.entries(c.classes)) total[k] = (total[k] ?? 0) + v;
      gcs += c.gcs;
      gcMs += c.gcMs;
      stallMs += c.stallMs;
      cpuMs += c.cpuMs;
      waitMs += c.waitMs;
      calls += round.length;
      ms += round.at(-1)![0] + round.at(-1)![1] - round[0]![0];
      for (const [k, v] of c.timers) timers.set(k, [...(timers.get(k) ?? []), ...v]);
    }
    console.log(`\n${s.label}: calls at or above each round's p99, by what overlapped them: ${JSON.stringify(total)}`);
    console.log(`  in ${ms.toFixed(0)} ms of calls: ${gcs} GC pauses (${gcMs.toFixed(1)} ms, one per ${(calls / Math.max(1, gcs)).toFixed(0)} calls); main-thread gaps > 2 ms: ${stallMs.toFixed(1)} ms, of which ${cpuMs.toFixed(1)} ms running and ${waitMs.toFixed(1)} ms waiting for a CPU`);
    for (const [k, v] of [...timers].sort((a, b) => b[1].length - a[1].length)) console.log(`  timer > 50 µs: ${v.length}x, max ${Math.max(...v).toFixed(2)} ms, ${k === '?' ? "the probe's own 1 ms ticker (its /proc read)" : k}`);
  }
  if (args.keep) writeFileSync(args.keep, JSON.stringify({ rows: Object.fromEntries(rows), probes: servers.map((s) => readFileSync(s.probeFile, 'utf8')) }));
  rmSync(dir, { recursive: true, force: true });
}

await main();
