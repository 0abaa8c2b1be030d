import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { sha256Of } from '../../store';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';

/*
 * brulee on five "hosts": Redis, the S3-compatible store, the gateway and two workers, each in its
 * own network namespace (plus one for the client), joined by a bridge in a namespace of their own.
 * Nothing is on a shared loopback, and no process shares a disk with another: each one runs in a
 * private mount namespace where the test's folder is covered by its own tmpfs (TMPDIR included),
 * so a model reaches a worker only through the object store. Needs root and `ip netns`; skips with
 * the reason where they are not permitted. Nothing touches the machine's own network namespace.
 * Addresses are in 198.18.0.0/24 (RFC 2544's range for test networks), on interfaces that exist
 * only inside these namespaces, which have no route anywhere else.
 */

const TAG = `bm${process.pid}`;
const HOSTS = { redis: 2, s3: 3, gw: 4, w1: 5, w2: 6, client: 7 } as const;
type Host = keyof typeof HOSTS;
const ns = (h: Host | 'sw') => `${TAG}-${h}`;
const addr = (h: Host) => `198.18.0.${HOSTS[h]}`;
const created: string[] = [];
const procs: ChildProcess[] = [];
let root = '';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).toString();
}

/** Why this machine cannot run the test, or undefined when it can. */
function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'creating network namespaces (ip netns) needs root';
  for (const tool of ['ip', 'unshare', 'mount', 'redis-server']) {
    try {
      run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return `${tool} is not installed (iproute2, util-linux, redis-server)`;
    }
  }
  const probe = `${TAG}-probe`;
  try {
    run('ip', ['netns', 'add', probe]);
    run('ip', ['netns', 'exec', probe, 'unshare', '--mount', '--propagation', 'private', 'true']);
  } catch (e) {
    return `network or mount namespaces are not permitted here (${String((e as { stderr?: Buffer }).stderr ?? e).trim()})`;
  } finally {
    try {
      run('ip', ['netns', 'del', probe]);
    } catch {
      // it was never made
    }
  }
  return undefined;
}
const skipReason = cannotRun();
if (skipReason) console.warn(`multi-host test skipped: ${skipReason}`);

/** Deletes every namespace this file made (their veths and the bridge go with them). Idempotent. */
function teardownNetwork(): void {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  while (created.length > 0) {
    const n = created.pop()!;
    try {
      run('ip', ['netns', 'del', n]);
    } catch {
      // already gone
    }
  }
}

function setupNetwork(): void {
  process.once('exit', teardownNetwork); // even when the run is cut short
  const sw = ns('sw');
  run('ip', ['netns', 'add', sw]);
  created.push(sw);
  run('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  run('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
  for (const [i, h] of (Object.keys(HOSTS) as Host[]).entries()) {
    run('ip', ['netns', 'add', ns(h)]);
    created.push(ns(h));
    run('ip', ['-n', sw, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(h)]);
    run('ip', ['-n', sw, 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
    run('ip', ['-n', ns(h), 'addr', 'add', `${addr(h)}/24`, 'dev', 'eth0']);
    run('ip', ['-n', ns(h), 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', ns(h), 'link', 'set', 'lo', 'up']);
  }
}

/**
 * Starts `cmd` on host `h`: in its network namespace, in a private mount namespace whose view of
 * the test folder is an empty tmpfs of its own. Resolves once stdout says `readyText`.
 */
function startOn(h: Host, cmd: string, args: string[], env: Record<string, string>, readyText: string, timeoutMs: number): Promise<ChildProcess> {
  const script = 'mount -t tmpfs -o size=1g,mode=0755 brulee "$ROOT" && mkdir -p "$ROOT/tmp" "$ROOT/data" && exec "$@"';
  const p = spawn('ip', ['netns', 'exec', ns(h), 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', cmd, ...args], {
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', ROOT: root, TMPDIR: join(root, 'tmp'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: the test can end it and its children
  });
  procs.push(p);
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${h}: not ready in ${timeoutMs} ms; output:\n${log.slice(-2000)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      log += d.toString();
      if (log.includes(readyText)) {
        clearTimeout(timer);
        resolve(p);
      }
    };
    p.stdout!.on('data', onData);
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    p.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${h} exited (${code ?? sig}) before it was ready; output:\n${log.slice(-2000)}`));
    });
  });
}

function brulee(h: Host, env: Record<string, string>): Promise<ChildProcess> {
  return startOn(h, process.execPath, ['--import', 'tsx', 'server.ts'], {
    REDIS_URL: `redis://${addr('redis')}:6379`,
    MODEL_STORE: 's3://brulee-models/models',
    AWS_ENDPOINT_URL: `http://${addr('s3')}:9000`,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    DATA_DIR: join(root, 'data'),
    HOST: '0.0.0.0', // served to other hosts, as in the manifests (loopback is the default without keys)
    PORT: '8080',
    GRPC_PORT: '8081',
    LOG_LEVEL: 'warn',
    POPULARITY_CRON: '0 0 1 1 *',
    ...env,
  }, 'brulee is ready', 120_000);
}

type Answer = { status: number; body: any };
/** Runs the client on its own host against the gateway; resolves with one entry per step. */
function client(steps: unknown[], timeoutMs = 120_000): Promise<unknown[]> {
  const p = spawn('ip', ['netns', 'exec', ns('client'), process.execPath, '--import', 'tsx', 'test/support/http-client.ts'], {
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  procs.push(p);
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  p.stdin.end(JSON.stringify({ base: `http://${addr('gw')}:8080`, steps }));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`client did not finish in ${timeoutMs} ms: ${err.slice(-1000)}`));
    }, timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`client exited ${code}: ${err.slice(-2000)}`));
      resolve(JSON.parse(out) as unknown[]);
    });
  });
}

describe.skipIf(skipReason !== undefined)(`Redis, the store, a gateway and two workers on five hosts (network namespaces), no shared disk${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'brulee-multihost-'));
    setupNetwork();
    await Promise.all([
      startOn('redis', 'redis-server', ['--bind', addr('redis'), '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', join(root, 'data')], {}, 'Ready to accept connections', 30_000),
      startOn('s3', process.execPath, ['--import', 'tsx', 'test/support/s3-server.ts', '--address', addr('s3'), '--port', '9000', '--dir', join(root, 'data'), '--bucket', 'brulee-models'], {}, 'ready http', 60_000),
    ]);
    // Workers first: the gateway's registration checks that some node can hold a model.
    await Promise.all([
      brulee('w1', { ROLE: 'worker', NODE_ID: 'w1', MEMORY_BUDGET: '100MB' }),
      brulee('w2', { ROLE: 'worker', NODE_ID: 'w2', MEMORY_BUDGET: '100MB' }),
    ]);
    await brulee('gw', { ROLE: 'gateway', NODE_ID: 'gw' });
  }, 300_000);

  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) process.kill(-p.pid!, 'SIGTERM');
    // Bounded: up to 10 s for them to drain and exit, then whatever is left is killed.
    const until = Date.now() + 10_000;
    while (procs.some((p) => p.exitCode === null && p.signalCode === null) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    teardownNetwork();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('registers through the gateway and both workers serve calls, fetching the bytes from the store, with outputs equal to onnxruntime', async () => {
    const cls = readModel(REAL_MODELS.ocrCls);
    const mlp = mlpModel({ inputSize: 16, hidden: [32], outputSize: 4, seed: 9 });
    const clsX = floats(3 * 48 * 192, 13);
    const mlpX = floats(2 * 16, 14);
    const clsIn = { x: { type: 'float32', dims: [1, 3, 48, 192], data: clsX } };
    const mlpIn = { x: { type: 'float32', dims: [2, 16], data: mlpX } };
    const invoke = (fn: string, inputs: unknown) => ({ method: 'POST', path: `/functions/${fn}/invoke`, json: { inputs } });
    const N = 12;
    // Each model is declared 60 MB against 100 MB budgets, so no worker holds both: the second
    // model's cold start goes to the worker the first did not take.
    const [ready, puts, first, second, burst, statsStep] = await client([
      { waitReady: { nodes: 2, timeoutMs: 60_000 } },
      { requests: [
        { method: 'PUT', path: '/functions/cls?memoryBytes=60MB', bodyB64: Buffer.from(cls).toString('base64') },
        { method: 'PUT', path: '/functions/mlp?memoryBytes=60MB', bodyB64: Buffer.from(mlp).toString('base64') },
      ] },
      { requests: [invoke('cls', clsIn)] },
      { requests: [invoke('mlp', mlpIn)] },
      { requests: Array.from({ length: N }, (_, i) => (i % 2 === 0 ? invoke('cls', clsIn) : invoke('mlp', mlpIn))), concurrency: 4 },
      { requests: [{ method: 'GET', path: '/stats' }] },
    ]) as [{ ready: boolean }, Answer[], Answer[], Answer[], Answer[], Answer[]];
    expect(ready.ready).toBe(true);
    expect(puts.map((r) => r.status)).toEqual([201, 201]);

    const wantCls = await runDirect(cls, { x: new ort.Tensor('float32', Float32Array.from(clsX), [1, 3, 48, 192]) });
    const wantMlp = await runDirect(mlp, { x: new ort.Tensor('float32', Float32Array.from(mlpX), [2, 16]) });
    const clsOut = Object.keys(wantCls)[0]!;
    const check = (r: Answer, fn: 'cls' | 'mlp') => {
      expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
      const [out, want] = fn === 'cls' ? [clsOut, wantCls[clsOut]!] : ['y', wantMlp.y!];
      expect(Float32Array.from(r.body.outputs[out].data as number[])).toEqual(want.data);
    };
    check(first[0]!, 'cls');
    check(second[0]!, 'mlp');
    expect(first[0]!.body.coldStart).toBe(true);
    expect(second[0]!.body.coldStart).toBe(true);
    const clsNode = first[0]!.body.node as string;
    const mlpNode = second[0]!.body.node as string;
    expect([clsNode, mlpNode].sort()).toEqual(['w1', 'w2']);
    burst.forEach((r, i) => {
      const fn = i % 2 === 0 ? 'cls' : 'mlp';
      check(r, fn);
      expect(r.body).toMatchObject({ coldStart: false, node: fn === 'cls' ? clsNode : mlpNode });
    });

    // Each model was loaded once, by a worker that had to fetch it from the store: no worker could
    // read the gateway's copy (different hosts, different disks).
    const stats = statsStep[0]!.body;
    expect(stats.nodes.map((n: { id: string }) => n.id).sort()).toEqual(['w1', 'w2']);
    for (const fn of ['cls', 'mlp']) {
      expect(stats.functions[fn], fn).toMatchObject({ invocations: 1 + N / 2, loads: 1, fetches: 1, coldStarts: 1, warmHits: N / 2, failures: 0 });
      expect(stats.functions[fn].fetchMs.samples).toBe(1);
    }
    expect(sha256Of(cls)).not.toBe(sha256Of(mlp));
    // Nothing was written where another host could see it: each process's files were on its own tmpfs.
    expect(readdirSync(root)).toEqual([]);
  }, 240_000);
});
