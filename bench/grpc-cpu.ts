/**
 * Server CPU per call, gRPC against REST binary (and the bare floors), from clients in processes
 * of their own: grpcio (bench/grpc-load.py) at 1 caller, wrk at 1 connection. For each window the
 * server's CPU time (user + system, /proc) over the calls the client made: µs of server CPU per
 * call, the model's run included (the same in every row of one server). Rounds alternate the rows.
 *
 *   npx tsx bench/grpc-cpu.ts --model ocr-cls --rounds 5 --seconds 2 [--today DIR] [--prof DIR] [--timeline] [--no-rest | --no-grpc] [--concurrency N]
 *
 * `--concurrency N` loads each window with N callers (wrk's connections, grpcio's asyncio stub)
 * instead of 1; each row also gives its server's Redis's CPU per call (redis-server's /proc), its
 * read events per call and its commands per call (INFO commandstats, scripts' inner commands too).
 *
 * `--arm NAME=ARGS` (repeatable) adds a server of this checkout started with node arguments ARGS
 * (space-separated; `--arm semi16=--max-semi-space-size=16`, say), interleaved with the others.
 * Each server's RSS is printed idle after registration (before any load) and idle after the last
 * window (VmRSS, /proc).
 *
 * `--prof DIR` starts "now" with --cpu-prof (profile written to DIR when it stops). `--timeline`
 * starts every server with bench/h2-timeline.cjs, which prints, as each stops, where its gRPC
 * streams' time went (medians, µs from the request's headers).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mlpModel } from '../models/generate';
import { createRedis } from '../queue/connection';
import { readModel, REAL_MODELS } from '../test/support/models';
import { cpuMsOf, grpcRow, median, startServer, untilIdle, v2Binary, wrkRow, type BenchServer, type ExternalRow } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'ocr-cls' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    today: { type: 'string' },
    prof: { type: 'string' },
    'no-rest': { type: 'boolean', default: false },
    'no-grpc': { type: 'boolean', default: false },
    timeline: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '1' },
    arm: { type: 'string', multiple: true, default: [] },
  },
}).values;

const MODELS: Record<string, () => { bytes: Uint8Array; input: string; dims: number[] }> = {
  'ocr-cls': () => ({ bytes: readModel(REAL_MODELS.ocrCls), input: 'x', dims: [1, 3, 48, 192] }),
  mlp: () => ({ bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), input: 'x', dims: [1, 64] }),
};

/** A process's resident memory now, MiB (VmRSS). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function main() {
  const { bytes, input, dims } = MODELS[args.model!]!();
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) / 2);
  const dir = mkdtempSync(join(tmpdir(), 'brulee-grpc-cpu-'));
  const servers: Array<[string, BenchServer]> = [];
  const admins: Array<ReturnType<typeof createRedis>> = [];
  try {
    const timeline = args.timeline ? ['--require', fileURLToPath(new URL('./h2-timeline.cjs', import.meta.url))] : [];
    if (args.today) servers.push(['today', await startServer(join(dir, 'today'), {}, args.today, timeline)]);
    servers.push(['now', await startServer(join(dir, 'now'), {}, undefined, [...timeline, ...(args.prof ? ['--cpu-prof', `--cpu-prof-dir=${args.prof}`] : [])])]);
    for (const arm of args.arm) {
      const [name = '', nodeArgs = ''] = arm.split(/=(.*)/s);
      servers.push([name, await startServer(join(dir, name), {}, undefined, [...timeline, ...nodeArgs.split(' ').filter(Boolean)])]);
    }
    for (const [, s] of servers) {
      const put = await fetch(`${s.url}/functions/bench?threads=1`, { method: 'PUT', body: bytes });
      if (put.status >= 300) throw new Error(`register: ${put.status} ${await put.text()}`);
    }
    for (const [, s] of servers) await untilIdle(s.pid);
    const idleRss = servers.map(([, s]) => rssMiB(s.pid));
    const v2 = v2Binary(input, dims, x);
    type Row = { pid: number; redisPid: number; reads: () => Promise<number>; commands: () => Promise<number>; client: ExternalRow };
    const redisOf = async (s: BenchServer) => {
      const r = createRedis(s.redisUrl);
      admins.push(r);
      const pid = Number(/process_id:(\d+)/.exec(String(await r.info('server')))![1]);
      // Redis's read events: one per socket write that reached it (a batch of commands is one).
      const reads = async () => Number(/total_reads_processed:(\d+)/.exec(String(await r.info('stats')))![1]);
      // Commands run, those inside scripts included (INFO commandstats' calls, summed).
      const commands = async () => [...String(await r.info('commandstats')).matchAll(/:calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      return { redisPid: pid, reads, commands };
    };
    const rows: Row[] = [];
    for (const [label, s] of servers) {
      const rp = await redisOf(s);
      if (!args['no-grpc']) rows.push({ pid: s.pid, ...rp, client: grpcRow(dir, `${label} gRPC`, s.grpcPort, input, dims, x) });
      if (!args['no-rest']) rows.push({ pid: s.pid, ...rp, client: wrkRow(dir, `${label} v2 binary`, `${s.url}/v2/models/bench/infer`, v2.body, v2.headers) });
    }
    const per = rows.map(() => ({ us: [] as number[], redisUs: [] as number[], reads: [] as number[], commands: [] as number[], p50: [] as number[], perS: [] as number[] }));
    const conc = Number(args.concurrency);
    for (let r = 0; r < Number(args.rounds); r++) {
      for (const [i, row] of rows.entries()) {
        await untilIdle(row.pid);
        const c0 = cpuMsOf(row.pid);
        const r0 = cpuMsOf(row.redisPid);
        const n0 = await row.reads();
        const m0 = await row.commands();
        const { calls, p50, perS } = row.client.window(conc, Number(args.seconds));
        await untilIdle(row.pid);
        per[i]!.us.push(((cpuMsOf(row.pid) - c0) * 1000) / calls);
        per[i]!.redisUs.push(((cpuMsOf(row.redisPid) - r0) * 1000) / calls);
        per[i]!.reads.push(((await row.reads()) - n0) / calls);
        // Less this window's own INFO (commandstats counts the one that reads it).
        per[i]!.commands.push(((await row.commands()) - m0 - 2) / calls);
        per[i]!.p50.push(p50);
        per[i]!.perS.push(perS);
      }
    }
    for (const [i, row] of rows.entries()) {
      console.log(`${row.client.name.padEnd(18)} server CPU µs/call median ${median(per[i]!.us).toFixed(0)} [${per[i]!.us.map((v) => v.toFixed(0)).join(' ')}]  Redis µs/call ${median(per[i]!.redisUs).toFixed(0)} [${per[i]!.redisUs.map((v) => v.toFixed(0)).join(' ')}]  Redis reads/call ${median(per[i]!.reads).toFixed(2)}  commands/call ${median(per[i]!.commands).toFixed(1)}  p50 ms ${median(per[i]!.p50).toFixed(3)} [${per[i]!.p50.map((v) => v.toFixed(2)).join(' ')}]  calls/s ${median(per[i]!.perS).toFixed(0)} [${per[i]!.perS.map((v) => v.toFixed(0)).join(' ')}] at ${conc}`);
    }
    for (const [i, [label, s]] of servers.entries()) console.log(`${label.padEnd(18)} RSS MiB idle before the windows ${idleRss[i]!.toFixed(1)}, after ${rssMiB(s.pid).toFixed(1)}`);
  } finally {
    for (const r of admins) r.disconnect();
    for (const [, s] of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
