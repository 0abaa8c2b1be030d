import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedisServer, type PrivateRedis } from '../../queue/redis-server';
import { mlpModel } from '../../models/generate';
import { until } from '../support/within';

/**
 * Stopping, with real processes and real signals: `server.ts` as `npm start` runs it, against a
 * private redis-server that the tests kill when they need Redis gone.
 */

const dirs: string[] = [];
const procs: ChildProcess[] = [];
const redises: PrivateRedis[] = [];
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const r of redises) await r.stop().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Server {
  proc: ChildProcess;
  port: number;
  base: string;
  log: string[];
  exited: Promise<{ code: number | null; at: number }>;
}

async function startServer(env: Record<string, string>): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-drain-'));
  dirs.push(dir);
  // Ports 0: the server binds free ones itself and says which (a port picked here first could be
  // taken by another process before the server binds it).
  const proc = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { ...process.env, PORT: '0', GRPC_PORT: '0', DATA_DIR: dir, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  const log: string[] = [];
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => proc.once('exit', (code) => resolve({ code, at: Date.now() })));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log.join('')}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      const ready = /brulee is ready on http:\/\/127\.0\.0\.1:(\d+)/.exec((out += d.toString()));
      if (ready) {
        clearTimeout(timer);
        resolve(Number(ready[1]));
      }
    });
    void exited.then(() => reject(new Error(`server exited: ${log.join('')}`)));
  });
  return { proc, port, base: `http://127.0.0.1:${port}`, log, exited };
}

async function redisServer(): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-drain-redis-'));
  dirs.push(dir);
  const r = await startRedisServer({ dir, persist: false });
  redises.push(r);
  return r;
}

/** SIGTERM, and how long until the process is gone. */
async function stopTime(s: Server): Promise<{ ms: number; code: number | null }> {
  const t0 = Date.now();
  s.proc.kill('SIGTERM');
  const e = await s.exited;
  return { ms: e.at - t0, code: e.code };
}

const x = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } });
const DRAIN = { DRAIN_TIMEOUT_MS: '3000' };

// Every test here has its own Redis and server process and spends its time waiting (for a drain to
// run out, for a read timeout): the tests of this describe and of 'read timeouts' run at once.
describe.concurrent('SIGTERM ends the process in bounded time in every state', () => {
  it('ROLE=all with Redis up: at once', async ({ expect }) => {
    const redis = await redisServer();
    const s = await startServer({ REDIS_URL: redis.url, NODE_ID: 'all-up', ...DRAIN });
    const r = await stopTime(s);
    console.log(`drain ROLE=all, Redis up: ${r.ms} ms`);
    expect(r.code).toBe(0);
    expect(r.ms).toBeLessThan(5000);
  });

  for (const role of ['all', 'worker', 'gateway'] as const) {
    it(`ROLE=${role} with Redis unreachable: within the drain time and the close steps' bounds`, async ({ expect }) => {
      const redis = await redisServer();
      const s = await startServer({ REDIS_URL: redis.url, ROLE: role, NODE_ID: `down-${role}`, ...DRAIN });
      await redis.stop();
      await new Promise((r) => setTimeout(r, 500));
      const r = await stopTime(s);
      console.log(`drain ROLE=${role}, Redis unreachable: ${r.ms} ms`);
      expect(r.code).toBe(0);
      // Nothing can finish without Redis: the worker is forced after 1 s, the other close steps
      // drop their connections at once (before, ROLE=all was still alive 90 s after SIGTERM).
      expect(r.ms).toBeLessThan(10_000);
      expect(s.log.join('')).toMatch(/drained; exiting/);
    }, 60_000);
  }
});

describe.concurrent('read timeouts', () => {
  it('a request body that never finishes gets a 408 within the read timeout, not after 300 s', async ({ expect }) => {
    const redis = await redisServer();
    const s = await startServer({ REDIS_URL: redis.url, NODE_ID: 'slow', REQUEST_READ_TIMEOUT_MS: '2000', HEADERS_READ_TIMEOUT_MS: '1000' });
    const t0 = Date.now();
    const answer = await new Promise<string>((resolve) => {
      const sock = connect(s.port, '127.0.0.1', () => {
        sock.write('POST /functions/m/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs":');
      });
      let text = '';
      sock.on('data', (d) => (text += d.toString()));
      sock.on('close', () => resolve(text));
      sock.on('error', () => resolve(text));
    });
    const ms = Date.now() - t0;
    console.log(`unfinished body answered after ${ms} ms: ${answer.split('\r\n')[0]}`);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(6000);
    const slowHeaders = await new Promise<string>((resolve) => {
      const sock = connect(s.port, '127.0.0.1', () => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
      let text = '';
      sock.on('data', (d) => (text += d.toString()));
      sock.on('close', () => resolve(text));
      sock.on('error', () => resolve(text));
    });
    expect(slowHeaders).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - t0).toBeLessThan(12_000);
    await stopTime(s);
  }, 60_000);
});

describe('a draining gateway', () => {
  it('answers new requests on open keep-alive connections with 503 and Connection: close, finishes the accepted one, then exits', async () => {
    const redis = await redisServer();
    const store = mkdtempSync(join(tmpdir(), 'brulee-drain-store-'));
    dirs.push(store);
    const shared = { REDIS_URL: redis.url, KEY_PREFIX: 'dr', MODEL_STORE: store };
    const worker = await startServer({ ...shared, ROLE: 'worker', NODE_ID: 'w' });
    const gw = await startServer({ ...shared, ROLE: 'gateway', NODE_ID: 'gw', DRAIN_TIMEOUT_MS: '20000' });
    const put = await fetch(`${gw.base}/functions/m`, { method: 'PUT', body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) });
    expect(put.status).toBe(201);
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const call = (path: string, body?: string) =>
      new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: gw.port, path, method: body ? 'POST' : 'GET', agent, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    // Open a few keep-alive connections.
    const warm = await Promise.all([call('/functions/m/invoke', x), call('/healthz'), call('/healthz'), call('/healthz')]);
    expect(warm.map((w) => w.status)).toEqual([200, 200, 200, 200]);

    // The worker freezes (its heartbeat stays fresh for a few seconds): this call is accepted and waits.
    worker.proc.kill('SIGSTOP');
    const accepted = call('/functions/m/invoke', x);
    // Accepted: its job waits in the queue (asked on a connection of its own, not the agent's).
    await until(
      'the call to be queued',
      async () => {
        const q = ((await (await fetch(`${gw.base}/stats`)).json()) as any).queue;
        return q.waiting + q.active > 0;
      },
      10_000,
    );
    const t0 = Date.now();
    gw.proc.kill('SIGTERM');
    // Draining once a new connection's request is refused (the agent's open ones are kept for below).
    await until(
      'the gateway to start draining',
      async () => {
        const r = await fetch(`${gw.base}/healthz`);
        const body = await r.text();
        return r.status === 503 && body.includes('SHUTTING_DOWN');
      },
      10_000,
    );
    const refused = await Promise.all([call('/healthz'), call('/functions/m/invoke', x), call('/stats')]);
    for (const r of refused) {
      expect(r.status).toBe(503);
      expect(r.connection).toBe('close');
      expect(JSON.parse(r.body).error.code).toBe('SHUTTING_DOWN');
    }
    expect(gw.proc.exitCode).toBeNull(); // still draining: the accepted call is not answered yet

    worker.proc.kill('SIGCONT');
    const answered = await accepted;
    expect(answered.status).toBe(200);
    expect(JSON.parse(answered.body).outputs.y.dims).toEqual([1, 2]);
    const e = await gw.exited;
    console.log(`drain ROLE=gateway with one accepted call: ${e.at - t0} ms`);
    expect(e.code).toBe(0);
    agent.destroy();
    worker.proc.kill('SIGTERM');
    await worker.exited;
  }, 90_000);
});
