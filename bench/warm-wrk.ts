/**
 * One checkout's server (`npm start`'s, ROLE=all, its own redis-server) under wrk, small MLP, v1
 * JSON (never part of `npm test`): per window of `wrk -t1 -cN` after a warm-up (WARM s, default 6:
 * V8's JIT and GC threads settle), p50/p99 and calls/s from wrk, the server's and redis-server's
 * CPU a call from /proc, and Redis commands a call from INFO commandstats. Run it per arm, A B B A:
 *
 *   npx tsx bench/warm-wrk.ts DIR [CONC,CONC..] [SECONDS] [CPU_PROFILE_DIR]   # TASKS=1: per-thread CPU
 */
import { mkdtempSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedis } from '../queue/connection';
import { mlpModel } from '../models/generate';
import { cpuMsOf, startServer } from './support';

const cwd = process.argv[2] ?? process.cwd();
const concs = (process.argv[3] ?? '1').split(',').map(Number);
const secs = Number(process.argv[4] ?? 5);
const prof = process.argv[5];
const dir = mkdtempSync(join(tmpdir(), 'qprof-'));
const server = await startServer(dir, { WORKER_CONCURRENCY: '64' }, cwd, prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []);
try {
  const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
  const put = await fetch(`${server.url}/functions/bench?threads=1`, { method: 'PUT', body: bytes });
  if (put.status >= 300) throw new Error(await put.text());
  const x = Array.from({ length: 64 }, (_, i) => Math.sin(i) / 2);
  const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: x } } });
  writeFileSync(join(dir, 'b.json'), body);
  writeFileSync(join(dir, 's.lua'), `local f = io.open(${JSON.stringify(join(dir, 'b.json'))}, "rb"); wrk.method = "POST"; wrk.body = f:read("*all"); f:close()
wrk.headers["content-type"] = "application/json"
done = function(s, latency)
  io.write(string.format("RESULT %d %d %d %d %d\\n", latency:percentile(50), latency:percentile(99), s.requests, s.duration, s.errors.status))
end`);
  const url = `${server.url}/functions/bench/invoke`;
  const label = process.env.LABEL ?? cwd;
  const r = createRedis(server.redisUrl);
  for (const conc of concs) {
    execFileSync('wrk', ['-t1', `-c${conc}`, `-d${process.env.WARM ?? 6}s`, '-s', join(dir, 's.lua'), url]);
      const stats = async () => {
      const s = String(await r.info('commandstats'));
      const m = new Map<string, number>();
      for (const l of s.split('\n')) { const k = /cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l); if (k) m.set(k[1]!, Number(k[2])); }
      return m;
    };
    const before = await stats();
    const rpid = Number(/process_id:(\d+)/.exec(String(await r.info('server')))![1]);
    const tasks = () => new Map(readdirSync(`/proc/${server.pid}/task`).map((t) => { try { const f = readFileSync(`/proc/${server.pid}/task/${t}/stat`, 'utf8').replace(/^.*\) /, '').split(' '); return [`${t}:${readFileSync(`/proc/${server.pid}/task/${t}/comm`, 'utf8').trim()}`, (Number(f[11]) + Number(f[12])) * 10]; } catch { return [t, 0]; } }));
    const t0 = tasks();
    const c0 = cpuMsOf(server.pid), r0 = cpuMsOf(rpid);
    const out = execFileSync('wrk', ['-t1', `-c${conc}`, `-d${secs}s`, '-s', join(dir, 's.lua'), url], { encoding: 'utf8' });
    const c1 = cpuMsOf(server.pid), r1 = cpuMsOf(rpid);
    if (process.env.TASKS) console.log([...tasks()].map(([k, v]) => [k, v - (t0.get(k) ?? 0)] as const).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', '));
    const after = await stats();
    const [p50, p99, n, us, errs] = out.split('\n').find((l) => l.startsWith('RESULT'))!.split(' ').slice(1).map(Number) as number[];
    console.log(`${label} conc ${conc}: p50 ${(p50! / 1000).toFixed(3)} ms p99 ${(p99! / 1000).toFixed(3)} ms ${(n! / (us! / 1e6)).toFixed(0)}/s errors ${errs}; server CPU ${((1000 * (c1 - c0)) / n!).toFixed(1)} us/call, redis ${((1000 * (r1 - r0)) / n!).toFixed(1)} us/call`);
    const per: string[] = [];
    let tot = 0;
    for (const [k, v] of after) { const d = (v - (before.get(k) ?? 0)) / n!; if (d > 0.005) { per.push(`${k} ${d.toFixed(2)}`); tot += d; } }
    console.log(`redis commands/call ${tot.toFixed(2)}: ${per.join(', ')}`);
  }
  const st = await (await fetch(`${server.url}/stats`)).json() as any;
  console.log('stats invocations', JSON.stringify(st.functions?.bench?.invocations ?? st.functions?.[0]?.invocations ?? Object.keys(st)));
  r.disconnect();
} finally {
  await server.stop();
}
