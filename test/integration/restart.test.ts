import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { createBrulee } from '../../brulee';
import { loadConfig } from '../../config';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { ensureRedis, freePort, INSTALL_REDIS_HINT, startRedisServer } from '../../queue/redis-server';
import { mlpForBytes, mlpModel } from '../../models/generate';
import { deleteKeys } from '../support/brulee';
import { READY_LINE } from '../support/procs';
import { asFloat32, directJson } from '../support/models';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'brulee-restart-'));
  dirs.push(d);
  return d;
};

const model = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 21 });
const inputs = { inputs: { x: { type: 'float32', dims: [1, 4], data: [4, 3, 2, 1] } } };
const post = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('restart', () => {
  it('with nothing on the Redis port, starts a private redis-server whose append-only file keeps functions across a restart', async () => {
    const dataDir = tmp();
    const probe = { host: '127.0.0.1', port: await freePort() }; // nothing answers there
    const start = async () => {
      const r = await ensureRedis({ dataDir, probe });
      expect(r.private).toBeDefined();
      const b = await createBrulee(loadConfig({ REDIS_URL: r.url, DATA_DIR: dataDir, NODE_ID: 'restart-node', LOG_LEVEL: 'silent' }), { log: pino({ level: 'silent' }) });
      return { b, stop: async () => { await b.close(); await r.private!.stop(); } };
    };

    const first = await start();
    const put = await first.b.app.request('/functions/survivor', { method: 'PUT', body: model, headers: { 'content-type': 'application/octet-stream' } });
    expect(put.status).toBe(201);
    const before = (await (await first.b.app.request('/functions/survivor/invoke', post(inputs))).json()) as any;
    await first.stop();

    const second = await start();
    try {
      const fn = (await (await second.b.app.request('/functions/survivor')).json()) as any;
      expect(fn).toMatchObject({ name: 'survivor', version: 1 });
      const after = await second.b.app.request('/functions/survivor/invoke', post(inputs));
      expect(after.status).toBe(200);
      const body = (await after.json()) as any;
      expect(body.coldStart).toBe(true);
      const want = await directJson(model, inputs.inputs);
      expect(asFloat32(before.outputs)).toEqual(want);
      expect(asFloat32(body.outputs)).toEqual(want);
      // Counts persisted too.
      const stats = (await (await second.b.app.request('/stats')).json()) as any;
      expect(stats.functions.survivor.invocations).toBe(2);
    } finally {
      await second.stop();
    }
  });

  it("a private redis-server whose port another Redis holds fails, rather than hand back the other one", async () => {
    const other = await startRedisServer({ dir: tmp(), persist: false });
    try {
      for (let i = 0; i < 5; i++) await expect(startRedisServer({ dir: tmp(), port: other.port, persist: false })).rejects.toThrow();
    } finally {
      await other.stop();
    }
  });

  it('stopping a private redis-server that a signal already killed (the OOM killer, say) returns at once', async () => {
    const r = await startRedisServer({ dir: tmp(), persist: false });
    const probe = createRedis(r.url);
    const pid = Number(/process_id:(\d+)/.exec(await probe.info('server'))![1]);
    probe.disconnect();
    process.kill(pid, 'SIGKILL');
    await new Promise((done) => setTimeout(done, 500));
    // server.ts's SIGTERM awaits it: before, it waited for an exit that had come, until its 30 s backstop.
    expect(await Promise.race([r.stop().then(() => 'stopped'), new Promise((done) => setTimeout(done, 5000, 'hung'))])).toBe('stopped');
  });

  it('without redis-server on PATH, says how to install one', async () => {
    const path = process.env.PATH;
    process.env.PATH = tmp();
    try {
      await expect(ensureRedis({ dataDir: tmp(), probe: { host: '127.0.0.1', port: await freePort() } })).rejects.toThrow(INSTALL_REDIS_HINT);
    } finally {
      process.env.PATH = path;
    }
  });

  it('npm start serves, and on SIGTERM answers the calls in flight, then exits 0', async () => {
    // Any free ports (0), bound by the server itself: not the default gRPC 8081 another server on
    // the machine may hold, nor one picked here that another process could take before the server binds it.
    const prefix = `npmstart${process.pid}`;
    const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
      env: { ...process.env, PORT: '0', GRPC_PORT: '0', REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, DATA_DIR: tmp(), NODE_ID: 'npm-start', LOG_LEVEL: 'warn', WORKER_CONCURRENCY: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    onTestFinished(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
    // Until it says it serves or exits: tsx's first transform of server.ts alone took over 10 s
    // on a machine at load 12.
    let gone = false;
    void exited.then(() => (gone = true));
    for (const end = Date.now() + 45_000; !READY_LINE.test(out) && !gone && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    const port = READY_LINE.exec(out)?.[1];
    expect(port, out).toBeDefined();
    expect(out).toContain('curl');
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/functions/viahttp`, { method: 'PUT', body: model })).status).toBe(201);
    const inv = await fetch(`${base}/functions/viahttp/invoke`, post(inputs));
    expect(inv.status).toBe(200);
    expect(((await inv.json()) as any).outputs.y.dims).toEqual([1, 2]);
    // SIGTERM while calls wait in the node's queue (one slot, ~20+ ms a call): they are still
    // run and answered, then the process exits 0.
    expect((await fetch(`${base}/functions/slowish`, { method: 'PUT', body: mlpForBytes(20_000_000, 3) })).status).toBe(201);
    const batch = { inputs: { x: { type: 'float32', dims: [256, 64], data: new Array(256 * 64).fill(0.5) } } };
    const burst = Array.from({ length: 12 }, () => fetch(`${base}/functions/slowish/invoke`, post(batch)).then((r) => ({ status: r.status, at: Date.now() })));
    // SIGTERM once the server has read and admitted all 12 (answered, running or waiting): a
    // connection it has not read a request from yet is closed at SIGTERM, which a client sees as a
    // reset, not an answer. Read from Redis here, not through the server: its event loop is held
    // by the runs, and calls answered in its own process take no queue hop between them, so a
    // /stats poll came back only once all were answered.
    const k = keys(prefix);
    const redis = createRedis(inject('redisUrl'));
    const seen = async () => (await redis.zcard(k.admitted('slowish'))) + Number((await redis.hget(k.fnStats('slowish'), 'invocations')) ?? 0);
    try {
      for (let i = 0; i < 500 && (await seen()) < 12; i++) await new Promise((r) => setTimeout(r, 5));
    } finally {
      redis.disconnect();
    }
    const killedAt = Date.now();
    child.kill('SIGTERM');
    const answered = await Promise.all(burst);
    expect(answered.map((r) => r.status).join(",")).toEqual(new Array(12).fill(200).join(","));
    expect(answered.filter((r) => r.at > killedAt).length).toBeGreaterThan(0); // the drain had work to do
    expect(await exited).toBe(0);
    await deleteKeys(prefix);
  }, 120_000);

  it('on a port already taken, says so and exits 1 without leaving its node behind', async () => {
    const blocker = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const port = (blocker.address() as { port: number }).port;
    const prefix = `taken${port}`;
    const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
      env: { ...process.env, PORT: String(port), GRPC_PORT: '0', HOST: '127.0.0.1', REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, DATA_DIR: tmp(), NODE_ID: 'taken', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    blocker.close();
    expect(code).toBe(1);
    expect(err).toMatch(new RegExp(`port ${port} is taken; set PORT`));
    const redis = createRedis(inject('redisUrl'));
    expect(await redis.hkeys(keys(prefix).nodes)).toEqual([]);
    redis.disconnect();
    await deleteKeys(prefix);
  });

  it('refuses to start on a bad MEMORY_BUDGET, saying what to fix', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], { env: { ...process.env, MEMORY_BUDGET: 'plenty' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(err).toMatch(/MEMORY_BUDGET must be a positive byte count like 2GiB.*"plenty"/);
  });
});
