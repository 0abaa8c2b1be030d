import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * brulee processes, each an OS process of its own as `npm start` runs them (here `server.ts`
 * through tsx by default: the same code as npm start's bundle, start.mjs), each with its own
 * DATA_DIR and port, for tests whose processes really die (kill -9).
 */
export interface Proc {
  name: string;
  role: 'gateway' | 'worker' | 'all';
  /** NODE_ID of a worker. */
  nodeId?: string;
  base: string;
  dataDir: string;
  child: ChildProcess;
  /** Last output (stdout + stderr), for a failure message. */
  output(): string;
  exited: Promise<number | null>;
  /** kill -9: no drain, no goodbye to Redis. */
  kill9(): void;
  /** SIGTERM, then SIGKILL after `ms`. */
  stop(ms?: number): Promise<void>;
}

const ROOT = resolve(import.meta.dirname, '../..');

/** The line `server.ts` prints once it serves, with the HTTP port it bound (any free one with PORT=0). */
export const READY_LINE = /brulee is ready on http:\/\/127\.0\.0\.1:(\d+)/;

export async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * `opts.cwd`: another checkout to run (a bench's before/after); this one by default. `opts.argv`:
 * what node runs (`server.ts` through tsx by default; the `brulee serve` command, say).
 * `opts.onSpawn`: called with the process and its DATA_DIR as soon as it is spawned (before it is ready).
 */
export async function startProc(name: string, role: Proc['role'], env: Record<string, string>, opts: { readyTimeoutMs?: number; cwd?: string; argv?: string[]; onSpawn?: (child: ChildProcess, dataDir: string) => void } = {}): Promise<Proc> {
  const dataDir = mkdtempSync(join(tmpdir(), `brulee-${name}-`));
  // Ports 0: the server binds free ones itself and says which (one picked here first could be taken
  // by another process before the server binds it).
  const child = spawn(process.execPath, opts.argv ?? ['--import', 'tsx', 'server.ts'], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, PORT: '0', GRPC_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, ROLE: role, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  opts.onSpawn?.(child, dataDir);
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  let gone = false;
  void exited.then(() => (gone = true));
  // Until the line with the port: at LOG_LEVEL=info the JSON log line ("msg":"brulee is ready")
  // comes first, and the plain line can arrive in a later chunk.
  while (!READY_LINE.test(out) && !gone && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const port = READY_LINE.exec(out)?.[1];
  if (port === undefined) {
    child.kill('SIGKILL');
    throw new Error(`${name} did not start:\n${out}`);
  }
  const p: Proc = {
    name,
    role,
    ...(env.NODE_ID ? { nodeId: env.NODE_ID } : {}),
    base: `http://127.0.0.1:${port}`,
    dataDir,
    child,
    output: () => out,
    exited,
    kill9: () => void child.kill('SIGKILL'),
    async stop(ms = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), ms);
      await exited;
      clearTimeout(t);
    },
  };
  return p;
}

/** Stops every process, then removes their data dirs. */
export async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop(5000)));
  for (const p of procs) rmSync(p.dataDir, { recursive: true, force: true });
}
