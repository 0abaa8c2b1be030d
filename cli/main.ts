/**
 * `brulee`: drive a brulee server from a terminal. Every command but `serve`, `sim`, `bench` and
 * `model` (which run locally) talks to a server over HTTP only (`--url` / `BRULEE_URL`).
 *
 * Exit codes: 0 ok, 1 the server answered with an error, 2 bad usage, 3 no server answered.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { modelCli } from '../models/cli';
import { CliError, Client, EXIT } from './client';
import { age, bar, bytes, ms, pct, table } from './format';
import { topFrame, type Totals } from './top';
import type { StatsSnapshot } from '../functions/dataplane';
import { runAgainForMalloc, withMallocTunables } from '../runtime/malloc';
import type { FunctionDetailJson, FunctionJson, InvokeJson } from '../functions/http/app';

interface Globals {
  url: string;
  apiKey?: string;
  json?: boolean;
}

const root = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));

function readJsonArg(text: string, what: string): unknown {
  let src = text;
  if (text.startsWith('@')) {
    try {
      src = readFileSync(text.slice(1), 'utf8');
    } catch (e) {
      throw new CliError(`${what}: cannot read ${text.slice(1)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, EXIT.USAGE);
    }
  }
  try {
    return JSON.parse(src) as unknown;
  } catch (e) {
    throw new CliError(`${what} is not valid JSON: ${(e as Error).message}`, EXIT.USAGE);
  }
}

/** Runs a TypeScript entry point of this package in a child node (with tsx), passing the exit code on. */
function runScript(path: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), path, ...args], { stdio: 'inherit' });
    const forward = (s: NodeJS.Signals) => child.kill(s);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward).off('SIGTERM', forward);
      resolve(code ?? (signal ? 128 + 2 : 1));
    });
  });
}

function out(g: Globals, value: unknown, human: () => string): void {
  console.log(g.json ? JSON.stringify(value, null, 2) : human());
}

function describeText(fn: FunctionJson & Partial<Pick<FunctionDetailJson, 'stats' | 'residentOn'>>): string {
  const sig = (xs: FunctionJson['signature']['inputs']) => xs.map((x) => `    ${x.name}: ${x.type}[${x.dims.join(', ')}]`).join('\n');
  const p = fn.profile;
  const lines = [
    `${fn.name}  version ${fn.version}  sha256 ${fn.sha256.slice(0, 12)}`,
    `  inputs:\n${sig(fn.signature.inputs)}`,
    `  outputs:\n${sig(fn.signature.outputs)}`,
    `  profile: load ${ms(p.loadMs)}, exec ${p.execMs === null ? `unknown (${p.execError ?? 'not run'})` : ms(p.execMs)}, file ${bytes(p.fileBytes)}, resident ${bytes(p.residentBytes)}${p.memoryFactor === null ? ' (file under 1 MiB: resident bytes are mostly onnxruntime overhead, no memory factor)' : ` (${p.memoryFactor.toFixed(2)}x the file)`}`,
    `  cache charges: ${bytes(fn.sizeBytes)}${fn.options.pinned ? ', pinned' : ''}${fn.options.timeoutMs ? `, timeout ${fn.options.timeoutMs} ms` : ''}`,
    `  versions: ${fn.versions.map((v) => `${v.version} (${v.createdAt})`).join(', ')}`,
  ];
  if (fn.stats) {
    const s = fn.stats;
    lines.push(
      `  invocations ${s.invocations} (cold ${s.coldStarts}, warm ${s.warmHits}, failed ${s.failures}), loads ${s.loads}, evictions ${s.evictions}`,
      `  load p50/p95 ${ms(s.loadMs.p50)} / ${ms(s.loadMs.p95)}, exec p50/p95 ${ms(s.execMs.p50)} / ${ms(s.execMs.p95)}`,
    );
  }
  if (fn.residentOn) lines.push(`  resident on: ${fn.residentOn.length ? fn.residentOn.join(', ') : 'no node'}`);
  return lines.join('\n');
}

/** Outputs and timings of an invocation, as `invoke` and `status` print them. */
function resultText(r: Pick<InvokeJson, 'outputs' | 'coldStart' | 'node'> & { timings: Omit<InvokeJson['timings'], 'totalMs'> & { totalMs?: number } }): string {
  const t = r.timings;
  const outputs = Object.entries(r.outputs).map(([k, v]) => `${k}: ${v.type}[${v.dims.join(', ')}] ${JSON.stringify(v.data)}`);
  const total = t.totalMs === undefined ? '' : `total ${ms(t.totalMs)} `;
  return [...outputs, `${r.coldStart ? 'cold' : 'warm'} on ${r.node}: ${total}(queue ${ms(t.queueMs)}, load ${ms(t.loadMs)}, exec ${ms(t.execMs)})`].join('\n');
}

/** `GET /invocations/{id}`. */
type InvocationJson =
  | ({ id: string; status: 'completed' } & Pick<InvokeJson, 'outputs' | 'coldStart' | 'node'> & { timings: Omit<InvokeJson['timings'], 'totalMs'> })
  | { id: string; status: 'failed'; error: { code: string; message: string } }
  | { id: string; status: 'waiting' | 'active' | 'delayed' };

function statsText(s: StatsSnapshot): string {
  const q = Object.entries(s.queue).map(([k, v]) => `${k} ${v}`).join(', ');
  const fns = Object.entries(s.functions).map(([name, f]) => [
    name,
    f.version,
    f.invocations,
    f.coldStarts,
    f.warmHits,
    f.loads,
    f.evictions,
    pct(f.invocations ? f.warmHits / f.invocations : null),
    ms(f.loadMs.p50),
    ms(f.execMs.p50),
    bytes(f.sizeBytes),
    f.residentOn.join(',') || '-',
  ]);
  const nodes = s.nodes.map((n) => [n.id, n.policy, `${bytes(n.usedBytes)} / ${bytes(n.budgetBytes)}`, n.residentModels.length, n.loads, n.evictions, age(n.heartbeatAt)]);
  const ev = s.recentEvictions.slice(0, 10).map((e) => [e.at.slice(11, 19), e.node, e.fn, e.cause, e.reason]);
  return [
    `queue: ${q}`,
    '',
    table(['function', 'ver', 'calls', 'cold', 'warm', 'loads', 'evict', 'hit', 'load p50', 'exec p50', 'size', 'resident on'], fns),
    '',
    table(['node', 'policy', 'used / budget', 'models', 'loads', 'evict', 'heartbeat'], nodes),
    ...(ev.length ? ['', 'recent evictions:', table(['time', 'node', 'function', 'cause', 'reason'], ev)] : []),
  ].join('\n');
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('brulee')
    .description('drive a brulee server: register ONNX models as functions, invoke them, watch the cache')
    .addOption(new Option('--url <url>', 'server URL').env('BRULEE_URL').default('http://127.0.0.1:8080'))
    .addOption(new Option('--api-key <key>', 'bearer key (API_KEY for changes, INVOKE_API_KEY for reads and invocations)').env('BRULEE_API_KEY'))
    .option('--json', 'print the server\'s JSON (for scripts); errors as {"error": {"code", "message"}} on stderr')
    .showHelpAfterError()
    .exitOverride()
    // With --json, a usage error is written by main() as JSON, not by commander as text (subcommands share this).
    .configureOutput({ writeErr: (s) => (program.opts<Globals>().json ? undefined : process.stderr.write(s)) });

  const client = () => {
    const g = program.opts<Globals>();
    return { g, c: new Client({ url: g.url, apiKey: g.apiKey }) };
  };

  program
    .command('serve')
    .description('run a brulee server in this process (same as npm start; configured by environment variables, see README)')
    .option('--port <port>', 'PORT')
    .option('--host <host>', 'HOST')
    .action(async (o: { port?: string; host?: string }) => {
      if (o.port) process.env.PORT = o.port;
      if (o.host) process.env.HOST = o.host;
      if (runAgainForMalloc()) {
        // glibc reads GLIBC_TUNABLES only when a process starts: run this same command again with
        // brulee's setting, as npm start does (runtime/malloc.ts), and pass signals on to it. A
        // GLIBC_TUNABLES of one's own (an empty one too) is kept, as npm start keeps it: run here.
        const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: withMallocTunables(process.env) });
        for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig));
        const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1))));
        process.exit(code);
      }
      // As npm start runs it: the server bundled once (start.mjs), not through this command's tsx loader.
      await import(new URL('../start.mjs', import.meta.url).href);
      await new Promise(() => {}); // the server owns the process from here (it exits on SIGTERM/SIGINT)
    });

  program
    .command('register')
    .description('register an ONNX file as a function (a new version when the bytes differ)')
    .argument('<name>', 'function name')
    .argument('<file>', 'ONNX model file')
    .option('--pin', 'never evict it')
    .option('--timeout <ms>', 'invocation timeout, ms')
    .option('--memory <bytes>', 'bytes the cache charges instead of the measured size (e.g. 200MiB)')
    .option('--profile-dims <spec>', 'dims to profile with, e.g. img:1x3x32x32')
    .action(async (name: string, file: string, o: { pin?: boolean; timeout?: string; memory?: string; profileDims?: string }) => {
      const { g, c } = client();
      let data: Uint8Array;
      try {
        data = new Uint8Array(readFileSync(file));
      } catch (e) {
        throw new CliError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, EXIT.USAGE);
      }
      const q = new URLSearchParams();
      if (o.pin) q.set('pinned', 'true');
      if (o.timeout) q.set('timeoutMs', o.timeout);
      if (o.memory) q.set('memoryBytes', o.memory);
      if (o.profileDims) q.set('profileDims', o.profileDims);
      const tty = process.stderr.isTTY && !g.json;
      let spin: NodeJS.Timeout | undefined;
      let said: NodeJS.Timeout | undefined;
      const t0 = Date.now();
      const progress = (sent: number, total: number) => {
        if (tty) process.stderr.write(`\ruploading ${bar(sent / total)} ${bytes(sent)} / ${bytes(total)}   `);
        if (sent >= total) {
          if (tty) {
            spin = setInterval(() => process.stderr.write(`\rprofiling (load, run, measure memory) ${((Date.now() - t0) / 1000).toFixed(1)} s ${'|/-\\'[Math.floor(Date.now() / 150) % 4]}   `), 150);
          } else if (!g.json) {
            // Said once the answer is slow to come, as a profile's is: a refusal (a missing or wrong
            // key, a bad name) comes at once, and a line saying "profiling" before it would be false.
            said = setTimeout(() => process.stderr.write(`uploaded ${bytes(total)}; profiling\n`), 1000);
          }
        }
      };
      try {
        const fn = await c.upload<FunctionJson & { created: boolean; newVersion: boolean }>(`/functions/${encodeURIComponent(name)}${q.size ? `?${q}` : ''}`, data, progress);
        if (tty) process.stderr.write('\r\x1b[K');
        out(g, fn, () => `${fn.created ? 'registered' : fn.newVersion ? 'new version of' : 'unchanged (same bytes; options updated):'} ${describeText(fn)}`);
      } finally {
        if (spin) clearInterval(spin);
        if (said) clearTimeout(said);
        if (tty) process.stderr.write('\r\x1b[K');
      }
    });

  program
    .command('ls')
    .description('list functions')
    .action(async () => {
      const { g, c } = client();
      const [{ functions }, stats] = await Promise.all([c.get<{ functions: FunctionJson[] }>('/functions'), c.get<StatsSnapshot>('/stats')]);
      out(g, { functions }, () =>
        functions.length === 0
          ? 'no functions; register one with `brulee register NAME FILE`'
          : table(
              ['name', 'ver', 'inputs', 'size', 'load', 'exec', 'calls', 'resident on', 'pinned'],
              functions.map((f) => {
                const s = stats.functions[f.name];
                return [
                  f.name,
                  f.version,
                  f.signature.inputs.map((i) => `${i.name}:${i.type}[${i.dims.join(',')}]`).join(' '),
                  bytes(f.sizeBytes),
                  ms(f.profile.loadMs),
                  ms(f.profile.execMs),
                  s?.invocations ?? 0,
                  s?.residentOn.join(',') || '-',
                  f.options.pinned ? 'yes' : '',
                ];
              }),
            ),
      );
    });

  program
    .command('describe')
    .description('a function: signature, measured profile, versions, counts, where it is resident')
    .argument('<name>')
    .action(async (name: string) => {
      const { g, c } = client();
      const fn = await c.get<FunctionDetailJson>(`/functions/${encodeURIComponent(name)}`);
      out(g, fn, () => describeText(fn));
    });

  program
    .command('invoke')
    .description('invoke a function and print its outputs and timings')
    .argument('<name>')
    .option('--input <json>', 'inputs: {"x": {"type": "float32", "dims": [1, 4], "data": [...]}} or @file.json (the object, or {"inputs": ...})')
    .option('--example', 'send a generated valid input (from the signature and the dims profiling ran with)')
    .option('--outputs <names>', 'comma list of outputs to return')
    .option('--async', 'queue it and print the invocation id')
    .action(async (name: string, o: { input?: string; example?: boolean; outputs?: string; async?: boolean }) => {
      const { g, c } = client();
      if (!o.input === !o.example) throw new CliError('give one of --input JSON|@file or --example', EXIT.USAGE);
      let inputs: unknown;
      if (o.example) {
        inputs = (await c.get<{ inputs: unknown }>(`/functions/${encodeURIComponent(name)}/example`)).inputs;
      } else {
        const v = readJsonArg(o.input!, '--input') as Record<string, unknown>;
        inputs = v && typeof v === 'object' && 'inputs' in v ? v.inputs : v;
      }
      const body = JSON.stringify({ inputs, ...(o.outputs ? { outputs: o.outputs.split(',').filter(Boolean) } : {}) });
      const path = `/functions/${encodeURIComponent(name)}/invoke${o.async ? '?async=true' : ''}`;
      const r = await c.request<InvokeJson | { id: string }>('POST', path, { body, headers: { 'content-type': 'application/json' } });
      if ('id' in r) {
        out(g, r, () => `queued: ${r.id} (brulee --json status ${r.id}, or GET /invocations/${r.id})`);
        return;
      }
      out(g, r, () => resultText(r));
    });

  program
    .command('status')
    .description('status, then result, of an async invocation')
    .argument('<id>')
    .action(async (id: string) => {
      const { g, c } = client();
      const r = await c.get<InvocationJson>(`/invocations/${encodeURIComponent(id)}`);
      // A failed invocation is the server's answer of an error, as a sync invoke's is: exit 1 with it.
      if (r.status === 'failed') {
        if (g.json) out(g, r, () => '');
        throw new CliError(r.error.message, EXIT.SERVER_ERROR, r.error.code);
      }
      out(g, r, () => (r.status === 'completed' ? resultText(r) : `${r.id}: ${r.status}`));
    });

  program
    .command('rm')
    .description('delete a function (it is unloaded everywhere)')
    .argument('<name>')
    .action(async (name: string) => {
      const { g, c } = client();
      const r = await c.request<{ deleted: string; versions: number; unloaded: number }>('DELETE', `/functions/${encodeURIComponent(name)}`);
      out(g, r, () => `deleted ${r.deleted} (${r.versions} version${r.versions === 1 ? '' : 's'}; unloaded from ${r.unloaded} node${r.unloaded === 1 ? '' : 's'})`);
    });

  program
    .command('stats')
    .description('queue depth, per-function counts, nodes, recent evictions')
    .action(async () => {
      const { g, c } = client();
      const s = await c.get<StatsSnapshot>('/stats');
      out(g, s, () => statsText(s));
    });

  program
    .command('top')
    .description('live view of queue depth, invocations and cold starts per second, node memory (Ctrl-C quits)')
    .option('--interval <ms>', 'refresh period', '1000')
    .option('--iterations <n>', 'stop after n frames (default: until Ctrl-C)')
    .action(async (o: { interval: string; iterations?: string }) => {
      const { c } = client();
      const every = Math.max(100, Number(o.interval) || 1000);
      const max = o.iterations ? Number(o.iterations) : Infinity;
      let prev: Totals | undefined;
      let stop = false;
      const quit = () => {
        stop = true;
      };
      process.once('SIGINT', quit);
      const tty = process.stdout.isTTY;
      if (tty) process.stdout.write('\x1b[?25l');
      try {
        for (let i = 0; i < max && !stop; i++) {
          const t = Date.now();
          const s = await c.get<StatsSnapshot>('/stats');
          const { text, totals } = topFrame(s, prev, { url: c.base, width: process.stdout.columns || 100 });
          prev = totals;
          process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n\n`);
          const wait = every - (Date.now() - t);
          for (let w = 0; w < wait && !stop; w += 50) await new Promise((r) => setTimeout(r, Math.min(50, wait - w)));
        }
      } finally {
        if (tty) process.stdout.write('\x1b[?25h');
        process.off('SIGINT', quit);
      }
    });

  program
    .command('sim')
    .description('the trace-driven simulator (brulee sim --help)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runScript(root('sim/cli.ts'), args);
    });

  program
    .command('bench')
    .description("benchmark npm start's server against raw onnxruntime in one run: --model-bytes 20MB | --model FILE --input JSON|@file, --n, --concurrency, --seconds, --cold (README, Benchmark)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await runScript(root('bench/invoke.bench.ts'), args);
    });

  program
    .command('model')
    .description('write a synthetic ONNX model: brulee model mlp --input 4 --hidden 16 --output 3 --out m.onnx (brulee model --help)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await modelCli(args);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError && e.exitCode === 0) return 0;
    const err =
      e instanceof CliError ? e
      : e instanceof CommanderError ? new CliError(e.message.replace(/^error: /, ''), EXIT.USAGE)
      : new CliError(e instanceof Error ? e.message : String(e), EXIT.SERVER_ERROR);
    // With --json, errors are JSON too (on stderr, as text errors go; stdout holds only answers).
    if (program.opts<Globals>().json) console.error(JSON.stringify(err, null, 2));
    else if (!(e instanceof CommanderError)) console.error(`brulee: ${err.text}`);
    return err.exitCode;
  }
}
