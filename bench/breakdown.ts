/**
 * Where a warm invocation's Redis commands and CPU time go (issue 10 §3), for the small MLP over
 * v1 JSON (never part of `npm test`):
 *
 *   npm run bench:breakdown                     # 300 calls under MONITOR, then 5 s at 64 concurrent under --cpu-prof
 *   npm run bench:breakdown -- --n 500 --seconds 8 --keep-profile /tmp/prof
 *   npm run bench:breakdown -- --checkout /tmp/brulee-today   # another checkout's server (its own node_modules)
 *
 * Redis: MONITOR while `--n` sequential warm calls run; each command is put on the connection that
 * sent it (its CLIENT SETNAME), and a command run inside a Lua script on that script (BullMQ's by
 * name; brulee's by the commands it runs). Background work (heartbeats, BullMQ's lock renewal and
 * stalled-job checks) falls in the same window and is counted too.
 *
 * CPU: the server runs with `node --cpu-prof`; the samples taken while `--concurrency` callers load
 * it for `--seconds` are summed by where the code lives (a project file, an npm package, node's
 * internals, GC, idle). The client runs on the same cores; its share is not in the server's profile.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRedis } from '../queue/connection';
import { mlpModel } from '../models/generate';
import { monitor, type Monitored } from '../test/support/monitor';
import { latencies, median, pct, startServer, throughput } from './support';

const args = parseArgs({
  options: {
    n: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    'keep-profile': { type: 'string' },
    checkout: { type: 'string' },
  },
}).values;
const N = Number(args.n);

/** BullMQ's scripts by the sha1 ioredis runs them under. */
async function bullmqScripts(): Promise<Map<string, string>> {
  const dir = join(dirname(createRequire(import.meta.url).resolve('bullmq')), 'scripts');
  const out = new Map<string, string>();
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'index.js')) {
    const mod = (await import(join(dir, f))) as Record<string, { name?: string; content?: string }>;
    for (const v of Object.values(mod)) if (v?.content && v.name) out.set(createHash('sha1').update(v.content).digest('hex'), `bullmq ${v.name}`);
  }
  return out;
}

async function redisBreakdown(redisUrl: string, invoke: () => Promise<unknown>): Promise<void> {
  const names = new Map<string, string>();
  const admin = createRedis(redisUrl);
  for (const l of String(await admin.call('CLIENT', 'LIST')).split('\n')) {
    const addr = /addr=(\S+)/.exec(l)?.[1];
    const name = /name=(\S*)/.exec(l)?.[1];
    if (addr) names.set(addr, name || '(unnamed)');
  }
  const scripts = await bullmqScripts();
  const lines: Monitored[] = [];
  const mon = await monitor(redisUrl, (c) => lines.push(c));
  await new Promise((r) => setTimeout(r, 200));
  const before = lines.length;
  for (let i = 0; i < N; i++) await invoke();
  await new Promise((r) => setTimeout(r, 200));
  const seen = lines.slice(before);
  mon.stop();
  admin.disconnect();

  // MONITOR shows an EVALSHA, then the commands its script ran (from the client "lua").
  const byConn = new Map<string, number>();
  const byScript = new Map<string, { calls: number; inner: Map<string, number>; conn: string; sha: string }>();
  const plain = new Map<string, number>();
  let current: { inner: Map<string, number>; conn: string } | undefined;
  let total = 0;
  for (const { source, args: [name = '', ...rest] } of seen) {
    const l = { client: source, cmd: name.toLowerCase(), args: rest };
    total++;
    if (l.client === 'lua') {
      if (current) {
        current.inner.set(l.cmd, (current.inner.get(l.cmd) ?? 0) + 1);
        byConn.set(current.conn, (byConn.get(current.conn) ?? 0) + 1);
      }
      continue;
    }
    const conn = names.get(l.client) ?? l.client;
    byConn.set(conn, (byConn.get(conn) ?? 0) + 1);
    if (l.cmd === 'evalsha' || l.cmd === 'eval') {
      const sha = l.cmd === 'eval' ? createHash('sha1').update(l.args[0] ?? '').digest('hex') : (l.args[0] ?? '');
      const label = `${scripts.get(sha) ?? `brulee script ${sha.slice(0, 8)}`} (from ${conn})`;
      const s = byScript.get(label) ?? { calls: 0, inner: new Map(), conn, sha };
      s.calls++;
      byScript.set(label, s);
      current = s;
    } else {
      current = undefined;
      plain.set(`${conn}: ${l.cmd}`, (plain.get(`${conn}: ${l.cmd}`) ?? 0) + 1);
    }
  }
  const per = (x: number) => (x / N).toFixed(2);
  console.log(`\nRedis, per warm invocation (MONITOR over ${N} sequential calls; commands inside scripts counted one by one): ${per(total)} commands`);
  console.log('  by connection:');
  for (const [k, v] of [...byConn].sort((a, b) => b[1] - a[1])) console.log(`    ${per(v).padStart(7)}  ${k}`);
  console.log('  scripts (calls per invocation, commands inside):');
  for (const [k, v] of [...byScript].sort((a, b) => b[1].calls - a[1].calls)) {
    const inner = [...v.inner].sort((a, b) => b[1] - a[1]).map(([c, x]) => `${c} ${per(x)}`).join(', ');
    console.log(`    ${per(v.calls).padStart(7)}  ${k}: ${per([...v.inner.values()].reduce((a, b) => a + b, 0))} inside (${inner})`);
  }
  console.log('  commands outside scripts:');
  for (const [k, v] of [...plain].sort((a, b) => b[1] - a[1])) console.log(`    ${per(v).padStart(7)}  ${k}`);
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

function where(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  if (url.startsWith('node:')) return url.replace(/^node:internal\/(\w+).*$/, 'node:$1').replace(/^node:(\w+).*$/, 'node:$1');
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const own = /\/((?:functions|queue|runtime|store|cli)\/[^?]+|[^/]+\.ts)$/.exec(url);
  return own ? own[1]! : url;
}

function cpuBreakdown(file: string, from: number, to: number): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** Native code (socket writes, JSON, onnxruntime's run) charged to the JS that called it. */
  const owner = (n: ProfileNode): string => {
    for (let m: ProfileNode | undefined = n; m; m = byId.get(parent.get(m.id) ?? -1)) if (m.callFrame.url) return where(m.callFrame.url, m.callFrame.functionName);
    return where('', n.callFrame.functionName);
  };
  const byOwner = new Map<string, number>();
  const bySite = new Map<string, number>();
  const byFn = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (t < from || t > to) continue;
    const n = byId.get(p.samples[i]!)!;
    const site = where(n.callFrame.url, n.callFrame.functionName);
    bySite.set(site, (bySite.get(site) ?? 0) + dt);
    const own = owner(n);
    byOwner.set(own, (byOwner.get(own) ?? 0) + dt);
    const fname = `${n.callFrame.functionName || '(anonymous)'} ${site}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fname, (byFn.get(fname) ?? 0) + dt);
    total += dt;
  }
  if (total === 0) {
    console.log(`\nCPU: no samples in the window (profile ${p.startTime}-${p.endTime} µs, window ${from}-${to} µs)`);
    return;
  }
  const idle = bySite.get('(idle)') ?? 0;
  const busy = total - idle;
  console.log(`\nServer CPU while loaded (${(total / 1e6).toFixed(2)} s of samples, ${((100 * busy) / total).toFixed(0)} % busy); share of the busy time by where the code lives:`);
  for (const [k, v] of [...bySite].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((100 * v) / busy).toFixed(1).padStart(5)} %  ${k}`);
  console.log('  the same, native code charged to the JS that called it:');
  for (const [k, v] of [...byOwner].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((100 * v) / busy).toFixed(1).padStart(5)} %  ${k}`);
  console.log('  top functions (self time):');
  for (const [k, v] of [...byFn].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((100 * v) / busy).toFixed(1).padStart(5)} %  ${k}`);
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-breakdown-'));
  const profDir = args['keep-profile'] ?? join(dir, 'prof');
  try {
    const s = await startServer(join(dir, 's'), { WORKER_CONCURRENCY: '64', MEMORY_BUDGET: '1GiB' }, args.checkout, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    let window: [number, number];
    try {
      const put = await fetch(`${s.url}/functions/mlp`, { method: 'PUT', body: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }) });
      if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
      const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i)) } } });
      const invoke = async () => {
        const r = await fetch(`${s.url}/functions/mlp/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        if (r.status !== 200) throw new Error(`invoke failed: ${r.status} ${await r.text()}`);
        return r.json();
      };
      const warm = await latencies(N, invoke);
      console.log(`load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; warm p50 ${median(warm).toFixed(3)} ms, p99 ${pct(warm, 99).toFixed(3)} ms (v1 JSON, small MLP, ${N} sequential calls)`);
      await redisBreakdown(s.redisUrl, invoke);
      // The profile's clock is the monotonic one process.hrtime reads, in µs.
      const from = Number(process.hrtime.bigint() / 1000n);
      const tput = await throughput(Number(args.concurrency), Number(args.seconds), invoke);
      window = [from, Number(process.hrtime.bigint() / 1000n)];
      console.log(`\nthroughput ${tput.toFixed(0)} /s at ${args.concurrency} concurrent`);
    } finally {
      await s.stop();
    }
    const prof = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
    const largest = prof.map((f) => join(profDir, f)).sort((a, b) => readFileSync(b).byteLength - readFileSync(a).byteLength)[0];
    if (largest) cpuBreakdown(largest, window[0], window[1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
