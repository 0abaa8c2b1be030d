/**
 * Where the tiny MLP's cold call after the bench's pause waits, as the scheduler saw it (never part
 * of `npm test`; needs root for `perf`). A server as `npm start` runs it (its own redis-server);
 * each round: an unload, the bench's 150 ms pause, a cold call; a warm call after the same pause;
 * a warm call right after another. `perf record -a` of the scheduler's switches and wake-ups
 * (CLOCK_MONOTONIC, as `process.hrtime` here) runs through the rounds; each call's window, from the
 * client's send to its answer, is then cut out of the trace and summed per call kind (medians):
 *
 * - the wake-ups of the call's processes (client, server, redis-server; any thread), and of those
 *   how many found their CPU idle (on this VM an idle vCPU halts at once: `haltpoll.guest_halt_poll_ns=0`,
 *   so waking it is an exit to the host), with the time from the wake-up to the woken thread on CPU;
 * - the CPU time of each process in the window, and of anything else (another session's load);
 * - the order in which they ran (with `--show N`: the first N calls of each kind, step by step).
 *
 * With `--cpu-prof`, the server's V8 samples (50 µs) inside the windows, per call, by function;
 * `--keep` keeps the trace, the profile and the windows.
 *
 *   flock /work/heavy.lock npx tsx bench/cold-wakes.ts [--rounds 30] [--checkout DIR] [--show 2] [--env K=V,...] [--cpu-prof] [--keep]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mlpModel } from '../models/generate';
import { leanClient, median, startServer } from './support';

const args = parseArgs({ options: { rounds: { type: 'string', default: '30' }, checkout: { type: 'string' }, show: { type: 'string', default: '0' }, env: { type: 'string', default: '' }, 'cpu-prof': { type: 'boolean', default: false }, keep: { type: 'boolean', default: false } } }).values;
const K = Number(args.rounds);
const SHOW = Number(args.show);
const PAUSE_MS = 150;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const bytes = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * 0.5) } } });
const JSON_TYPE = { 'content-type': 'application/json' };
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms, CLOCK_MONOTONIC

type Kind = 'cold' | 'paused warm' | 'warm';
interface Window { kind: Kind; from: number; to: number }

/** The redis-server serving a port: its pid (a private one, started by startServer). */
function redisPid(url: string): number {
  const port = new URL(url).port;
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${p}/comm`, 'utf8').trim() !== 'redis-server') continue;
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(port)) return Number(p);
    } catch {
      // gone
    }
  }
  throw new Error(`no redis-server on port ${port}`);
}

interface Ev { t: number; cpu: number; tid: number; kind: 'switch' | 'wakeup' | 'syscall' | 'fault'; prevTid?: number; nextTid?: number; prevState?: string; wokenTid?: number; targetCpu?: number; nr?: number; a0?: number; a2?: number }

/** x86-64 syscall numbers of what a server and redis-server call (others are shown by number). */
const SYSCALLS: Record<number, string> = { 0: 'read', 1: 'write', 3: 'close', 5: 'fstat', 7: 'poll', 8: 'lseek', 9: 'mmap', 10: 'mprotect', 11: 'munmap', 12: 'brk', 13: 'rt_sigaction', 14: 'rt_sigprocmask', 16: 'ioctl', 17: 'pread64', 20: 'writev', 24: 'sched_yield', 28: 'madvise', 35: 'nanosleep', 39: 'getpid', 44: 'sendto', 45: 'recvfrom', 46: 'sendmsg', 47: 'recvmsg', 72: 'fcntl', 89: 'readlink', 96: 'gettimeofday', 98: 'getrusage', 99: 'sysinfo', 186: 'gettid', 202: 'futex', 228: 'clock_gettime', 230: 'clock_nanosleep', 232: 'epoll_wait', 233: 'epoll_ctl', 257: 'openat', 262: 'newfstatat', 270: 'pselect6', 271: 'ppoll', 281: 'epoll_pwait', 286: 'timerfd_settime', 288: 'accept4', 290: 'eventfd2', 302: 'prlimit64', 318: 'getrandom', 332: 'statx', 441: 'epoll_pwait2' };

function parsePerf(file: string): Ev[] {
  const out = execFileSync('perf', ['script', '-i', file, '-F', 'tid,cpu,time,event,trace'], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const evs: Ev[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+\w+:(\w+):\s+(.*)$/.exec(line);
    if (!m) continue;
    const t = Number(m[3]) * 1000;
    const cpu = Number(m[2]);
    const tid = Number(m[1]);
    const rest = m[5]!;
    if (m[4] === 'sched_switch') {
      const s = /prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)/.exec(rest);
      if (s) evs.push({ t, cpu, tid, kind: 'switch', prevTid: Number(s[1]), prevState: s[2], nextTid: Number(s[3]) });
    } else if (m[4] === 'sys_enter') {
      const n = /NR (\d+) \(([0-9a-f]+), ([0-9a-f]+), ([0-9a-f]+)/.exec(rest);
      if (n) evs.push({ t, cpu, tid, kind: 'syscall', nr: Number(n[1]), a0: parseInt(n[2]!, 16), a2: parseInt(n[4]!, 16) });
    } else if (m[4] === 'page_fault_user' || m[4] === 'page_fault_kernel') {
      evs.push({ t, cpu, tid, kind: 'fault' });
    } else if (m[4] === 'sched_wakeup') {
      const w = /pid=(\d+) .*target_cpu=(\d+)/.exec(rest);
      if (w) evs.push({ t, cpu, tid, kind: 'wakeup', wokenTid: Number(w[1]), targetCpu: Number(w[2]) });
    }
  }
  return evs;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-cold-wakes-'));
  const env: Record<string, string> = { WORKER_CONCURRENCY: '64', MEMORY_BUDGET: '4GiB' };
  for (const kv of args.env.split(',').filter(Boolean)) env[kv.split('=')[0]!] = kv.slice(kv.indexOf('=') + 1);
  const profDir = join(dir, 'prof');
  const s = await startServer(join(dir, 's'), env, args.checkout, args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=50'] : []);
  const c = leanClient(s.url, { maxSockets: 1 });
  const call = async () => (await c.call('POST', '/functions/mlp/invoke', body, JSON_TYPE)).body.toString();
  const windows: Window[] = [];
  const perfFile = join(dir, 'perf.data');
  try {
    const put = await fetch(`${s.url}/functions/mlp`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status}`);
    for (let i = 0; i < 50; i++) await call();
    const rpid = redisPid(s.redisUrl);
    const mine = `common_pid == ${s.pid} || common_pid == ${rpid}`;
    const perf = spawn('perf', ['record', '-q', '-e', 'sched:sched_switch,sched:sched_wakeup', '-e', 'raw_syscalls:sys_enter', '--filter', mine, '-e', 'exceptions:page_fault_user', '--filter', mine, '-e', 'exceptions:page_fault_kernel', '--filter', mine, '-a', '-k', 'CLOCK_MONOTONIC', '-o', perfFile], { stdio: 'ignore' });
    await sleep(1000);
    const before = loadavg();
    const timed = async (kind: Kind) => {
      const from = now();
      const out = await call();
      windows.push({ kind, from, to: now() });
      if (out.includes('"coldStart":true') !== (kind === 'cold')) throw new Error(`expected ${kind}: ${out.slice(0, 200)}`);
    };
    for (let i = 0; i < K; i++) {
      await c.call('POST', '/v2/repository/models/mlp/unload', '', JSON_TYPE);
      await sleep(PAUSE_MS);
      await timed('cold');
      await call();
      await sleep(PAUSE_MS);
      await timed('paused warm');
      await timed('warm');
    }
    const after = loadavg();
    perf.kill('SIGINT');
    await new Promise((r) => perf.once('exit', r));
    report(parsePerf(perfFile), windows, { client: process.pid, server: s.pid, redis: rpid }, `load average ${before} -> ${after}`);
  } finally {
    c.close();
    await s.stop();
    if (args['cpu-prof']) profile(profDir, windows);
    if (args.keep) {
      writeFileSync(join(dir, 'windows.json'), JSON.stringify(windows));
      console.log(`kept ${dir}`);
    } else rmSync(dir, { recursive: true, force: true });
  }
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }

/** The server's samples (`--cpu-prof`, 50 µs) inside each kind of call's windows: per call, by function (self) and by the project file up the stack. */
function profile(profDir: string, windows: Window[]) {
  const file = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(profDir, f)).sort((a, b) => readFileSync(b).byteLength - readFileSync(a).byteLength)[0];
  if (!file) return;
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; startTime: number; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const short = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules\/|wt-[^/]+\/|base-[^/]+\/)/, '')}:${n.callFrame.lineNumber + 1}`;
  const projectFrame = (n: ProfileNode): string => {
    for (let m: ProfileNode | undefined = n; m; m = byId.get(parent.get(m.id) ?? -1)) {
      const u = m.callFrame.url;
      if (u && !u.includes('node_modules') && !u.startsWith('node:') && /\/(functions|queue|runtime|store)\//.test(u)) return short(m);
    }
    return '(no project frame)';
  };
  for (const kind of ['cold', 'paused warm', 'warm'] as Kind[]) {
    const ws = windows.filter((w) => w.kind === kind);
    const self = new Map<string, number>();
    const proj = new Map<string, number>();
    let t = p.startTime / 1000;
    let wi = 0;
    let total = 0;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i]! / 1000;
      while (wi < ws.length && ws[wi]!.to < t) wi++;
      if (wi >= ws.length) break;
      if (t < ws[wi]!.from) continue;
      const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
      const n = byId.get(p.samples[i]!)!;
      if (n.callFrame.functionName === '(idle)') continue;
      total += dt;
      self.set(short(n), (self.get(short(n)) ?? 0) + dt);
      const pf = projectFrame(n);
      proj.set(pf, (proj.get(pf) ?? 0) + dt);
    }
    console.log(`\nserver samples in the ${kind} calls: ${(total / ws.length).toFixed(3)} ms a call (not idle); ms a call by function (self), then by the nearest project frame:`);
    for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(v / ws.length).toFixed(3)}  ${k}`);
    console.log('  --');
    for (const [k, v] of [...proj].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(v / ws.length).toFixed(3)}  ${k}`);
  }
}

/** Which of the call's processes a thread is in (by /proc/<pid>/task at the end: threads started since are 'other'). */
function owners(pids: Record<string, number>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [name, pid] of Object.entries(pids)) {
    for (const t of readdirSync(`/proc/${pid}/task`)) m.set(Number(t), Number(t) === pid ? name : `${name} thread`);
  }
  return m;
}

function report(evs: Ev[], windows: Window[], pids: Record<string, number>, load: string) {
  const who = owners(pids);
  const name = (tid: number) => (tid === 0 ? 'idle' : (who.get(tid) ?? 'other'));
  const proc = (tid: number) => name(tid).replace(/ thread$/, '');
  // What each CPU runs, replayed through the trace; per window: CPU time by process, wake-ups.
  const running = new Map<number, number>();
  let i = 0;
  const rows: Record<Kind, Array<Record<string, number>>> = { cold: [], 'paused warm': [], warm: [] };
  const shown: Record<Kind, number> = { cold: 0, 'paused warm': 0, warm: 0 };
  for (const w of windows) {
    for (; i < evs.length && evs[i]!.t < w.from; i++) if (evs[i]!.kind === 'switch') running.set(evs[i]!.cpu, evs[i]!.nextTid!);
    const row: Record<string, number> = { ms: w.to - w.from, wakes: 0, 'idle-CPU wakes': 0, 'wake -> on CPU, idle CPU': 0, 'wake -> on CPU, busy CPU': 0, switches: 0 };
    const since = new Map<number, number>([...running.keys()].map((cpu) => [cpu, w.from]));
    const woken = new Map<number, { t: number; idle: boolean }>();
    const steps: string[] = [];
    const cpuOf = (cpu: number, until: number) => {
      const tid = running.get(cpu) ?? 0;
      const k = `cpu ${proc(tid)}`;
      row[k] = (row[k] ?? 0) + until - (since.get(cpu) ?? w.from);
    };
    for (; i < evs.length && evs[i]!.t <= w.to; i++) {
      const e = evs[i]!;
      const at = (e.t - w.from).toFixed(3);
      if (e.kind === 'syscall' || e.kind === 'fault') {
        const k = e.kind === 'fault' ? `faults ${proc(e.tid)}` : `${proc(e.tid)} ${SYSCALLS[e.nr!] ?? `sys ${e.nr}`}`;
        row[k] = (row[k] ?? 0) + 1;
        if (e.kind === 'syscall' && e.nr !== 15) steps.push(`${at} ${name(e.tid)}: ${SYSCALLS[e.nr!] ?? `sys ${e.nr}`}${[0, 1, 20].includes(e.nr!) ? `(fd ${e.a0}, ${e.a2})` : ''}`);
        continue;
      }
      if (e.kind === 'wakeup') {
        const p = name(e.wokenTid!);
        if (p === 'other') continue;
        const idle = (running.get(e.targetCpu!) ?? 0) === 0;
        row.wakes!++;
        if (idle) row['idle-CPU wakes']!++;
        woken.set(e.wokenTid!, { t: e.t, idle });
        steps.push(`${at} ${name(e.tid)} wakes ${p} on cpu${e.targetCpu}${idle ? ' (idle)' : ` (running ${name(running.get(e.targetCpu!) ?? 0)})`}`);
      } else {
        cpuOf(e.cpu, e.t);
        since.set(e.cpu, e.t);
        running.set(e.cpu, e.nextTid!);
        row.switches!++;
        const wk = woken.get(e.nextTid!);
        if (wk) {
          row[wk.idle ? 'wake -> on CPU, idle CPU' : 'wake -> on CPU, busy CPU']! += e.t - wk.t;
          woken.delete(e.nextTid!);
        }
        if (name(e.prevTid!) !== 'other' || name(e.nextTid!) !== 'other') steps.push(`${at} cpu${e.cpu}: ${name(e.prevTid!)} (${e.prevState}) -> ${name(e.nextTid!)}`);
      }
    }
    for (const cpu of running.keys()) cpuOf(cpu, w.to);
    rows[w.kind].push(row);
    if (shown[w.kind] < SHOW) {
      shown[w.kind]++;
      console.log(`\n${w.kind} call, ${row.ms!.toFixed(3)} ms:`);
      for (const st of steps) console.log(`  ${st}`);
    }
  }
  console.log(`\ntiny MLP, ${windows.length / 3} rounds, ${load}; medians per call (ms; CPU time summed over both vCPUs within the call's window)`);
  const keys = [...new Set(Object.values(rows).flatMap((r) => r.flatMap((x) => Object.keys(x))))];
  console.log(`  ${''.padEnd(28)}${(Object.keys(rows) as Kind[]).map((k) => k.padStart(13)).join('')}`);
  for (const k of keys) console.log(`  ${k.padEnd(28)}${(Object.keys(rows) as Kind[]).map((kind) => median(rows[kind].map((r) => r[k] ?? 0)).toFixed(k.includes('wakes') || k === 'switches' || !k.startsWith('cpu ') && !k.startsWith('wake') && k !== 'ms' ? 1 : 3).padStart(13)).join('')}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
