import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { register, stats } from '../support/failover-drill';
import { floats, ort, runDirect } from '../support/models';
import { startProc, stopAll, type Proc } from '../support/procs';
import { deleteKeys } from '../support/brulee';

/*
 * A poison pill: a call whose run kills the node running it. Real worker processes, SIGKILLed
 * while they hold the call (in their lane's active list, or as an active job of their BullMQ
 * queue), as a crash of onnxruntime or the OOM killer would: after MAX_NODE_DEATHS_PER_JOB (2)
 * deaths the call is not run again, its caller gets 500 NODE_CRASHED, and the nodes left live on.
 * One death: the call runs again elsewhere and is answered right.
 */

const prefix = `poison${process.pid}`;
const k = keys(prefix);
// A gateway answers a call whose node died 503 once RESTART_GRACE_MS has passed since the death
// with no node to take it back (queue/dispatcher.ts orphans). The restart test's new process must
// start (tsx, onnxruntime) and take the call back within that: the default grace, four dead-after
// times, was 12 s with 1 s beats, which a loaded CI machine once overran, so the test ran on 2 s
// beats (24 s of grace), and each death took 6 s to be declared (the file 68 s instead of 44 s
// quiet). Now 1 s beats (a death declared after 3 s) and 24 s of grace set on its own.
const HEARTBEAT_MS = 1000;
const RESTART_GRACE_MS = 24_000;
const storeDir = mkdtempSync(join(tmpdir(), 'brulee-poison-store-'));
const redis = createRedis(inject('redisUrl'));
let gw: Proc;
const workers: Proc[] = [];
let nextWorker = 1;

// PREPARK off: each test's model is cold on every node, so the node that takes its call holds it
// for a create (time to be caught: `killWhenActive`); pre-parked (runtime/prepark.ts), it would
// hold it for a reload from park and one run, a few ms.
const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, HEARTBEAT_MS: String(HEARTBEAT_MS), RESTART_GRACE_MS: String(RESTART_GRACE_MS), POPULARITY_CRON: '0 0 1 1 *', PREPARK: 'off', MODEL_STORE: pathToFileURL(storeDir).href });
const startWorker = async (id: string, onSpawn?: (child: ChildProcess, dataDir: string) => void) => {
  const w = await startProc(id, 'worker', { ...env(), NODE_ID: id, WORKER_CONCURRENCY: '2', MEMORY_BUDGET: '512MiB' }, onSpawn ? { onSpawn } : {});
  workers.push(w);
  return w;
};
const startWorkers = (n: number) => Promise.all(Array.from({ length: n }, () => startWorker(`p${nextWorker++}`)));
const alive = () => workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);

/** A model of its own per test (cold on every node, so each node that takes the call loads it first: time to be caught holding it). */
async function bigModel(fn: string, seed: number): Promise<{ x: number[]; want: number[] }> {
  const bytes = mlpModel({ inputSize: 256, hidden: [2048, 2048], outputSize: 8, seed });
  await register(gw.base, [{ fn, bytes }], '?timeoutMs=60000');
  const x = floats(256, seed);
  const out = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 256]) });
  return { x, want: Array.from(out.y!.data as Float32Array) };
}

/**
 * SIGKILLs the first of `among` found holding a job (lane active list, or BullMQ active list),
 * polling Redis every 2 ms; resolves to it, or undefined after `timeoutMs`.
 */
async function killWhenActive(among: Proc[], timeoutMs: number): Promise<Proc | undefined> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    for (const w of among) {
      const id = w.nodeId!;
      const [lane, bull] = await Promise.all([redis.llen(k.laneActive(id)), redis.llen(`${k.bullPrefix}:${k.nodeQueue(id)}:active`)]);
      if (lane + bull > 0) {
        w.kill9();
        await w.exited;
        return w;
      }
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return undefined;
}

/** Polls an async invocation until it is done; its last status, or undefined after `timeoutMs`. */
async function settled(id: string, timeoutMs: number): Promise<any> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const s = (await (await fetch(`${gw.base}/invocations/${id}`)).json()) as any;
    if (s.status === 'completed' || s.status === 'failed') return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

const invoke = (fn: string, x: number[], query = '') =>
  fetch(`${gw.base}/functions/${fn}/invoke${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 256], data: x } } }), signal: AbortSignal.timeout(90_000) });

async function poisonCounts(): Promise<{ stats: number; metrics: number }> {
  const s = await stats(gw.base);
  const text = await (await fetch(`${gw.base}/metrics`)).text();
  return { stats: s.failover.poisonJobs, metrics: Number(/^brulee_poison_jobs_total (\d+)$/m.exec(text)?.[1]) };
}

beforeAll(async () => {
  [gw] = await Promise.all([startProc('gw', 'gateway', env()), startWorkers(3)]);
}, 120_000);

afterAll(async () => {
  await stopAll([gw, ...workers].filter(Boolean));
  redis.disconnect();
  await deleteKeys(prefix);
  rmSync(storeDir, { recursive: true, force: true });
});

describe('a call that kills the nodes that run it (real processes, SIGKILL)', () => {
  it('sync: two nodes die running it, its caller gets 500 NODE_CRASHED, counted once; the third node lives and serves', async () => {
    const { x, want } = await bigModel('poison-sync', 11);
    const small = mlpModel({ inputSize: 256, hidden: [8], outputSize: 2, seed: 12 });
    await register(gw.base, [{ fn: 'small', bytes: small }]);
    const smallWant = Array.from((await runDirect(small, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 256]) })).y!.data as Float32Array);
    const [a, b, c] = alive();
    const call = invoke('poison-sync', x);
    const first = await killWhenActive([a!, b!, c!], 20_000);
    expect(first, 'a worker took the call').toBeDefined();
    // Moved, once the reaper declares the first dead (3 beats), to one of the other two: caught there too.
    const second = await killWhenActive([a!, b!, c!].filter((w) => w !== first), 30_000);
    expect(second, 'the call ran again on another worker').toBeDefined();
    const res = await call;
    const body = (await res.json()) as any;
    console.log(`[poison] sync: ${JSON.stringify({ killed: [first!.nodeId, second!.nodeId], status: res.status, body })}`);
    expect(res.status).toBe(500);
    expect(body.error.code).toBe('NODE_CRASHED');
    expect(body.error.message).toContain("function 'poison-sync'");
    expect(body.error.message).toContain(`died 2 times (nodes ${first!.nodeId}, ${second!.nodeId})`);
    expect(body.error.message).toContain('MAX_NODE_DEATHS_PER_JOB');
    expect(await poisonCounts()).toEqual({ stats: 1, metrics: 1 });
    // Nothing left behind: not on the third node, nor on the dead ones' lists.
    const third = [a!, b!, c!].find((w) => w !== first && w !== second)!;
    expect(alive()).toEqual([third]);
    for (const w of [a!, b!, c!]) expect([await redis.llen(k.lane(w.nodeId!)), await redis.llen(k.laneActive(w.nodeId!))]).toEqual([0, 0]);
    // The third node serves other calls, and the poison call's function too is still there for other inputs.
    const ok = await invoke('small', x);
    const okBody = (await ok.json()) as any;
    expect([ok.status, okBody.node, okBody.outputs.y.data]).toEqual([200, third.nodeId, smallWant]);
    const again = await invoke('poison-sync', x);
    const againBody = (await again.json()) as any;
    expect([again.status, againBody.node, againBody.outputs.y.data]).toEqual([200, third.nodeId, want]);
    expect(alive()).toEqual([third]);
  }, 120_000);

  it('async, one death: the call runs again on another node and is answered right', async () => {
    await startWorkers(1);
    const { x, want } = await bigModel('poison-once', 21);
    const before = (await stats(gw.base)).failover;
    const res = await invoke('poison-once', x, '?async=true');
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const killed = await killWhenActive(alive(), 20_000);
    expect(killed, 'a worker took the call').toBeDefined();
    const s = await settled(id, 60_000);
    expect(s?.status).toBe('completed');
    expect(s.node).not.toBe(killed!.nodeId);
    expect(s.outputs.y.data).toEqual(want);
    const after = (await stats(gw.base)).failover;
    expect(after.jobsRerouted).toBeGreaterThan(before.jobsRerouted);
    expect(after.poisonJobs).toBe(before.poisonJobs);
  }, 120_000);

  it('async: two nodes die running it, its status is failed with NODE_CRASHED, counted once', async () => {
    await startWorkers(2);
    const { x } = await bigModel('poison-async', 31);
    const among = alive();
    expect(among).toHaveLength(3);
    const res = await invoke('poison-async', x, '?async=true');
    const { id } = (await res.json()) as { id: string };
    const first = await killWhenActive(among, 20_000);
    expect(first, 'a worker took the call').toBeDefined();
    const second = await killWhenActive(among.filter((w) => w !== first), 30_000);
    expect(second, 'the call ran again on another worker').toBeDefined();
    const s = await settled(id, 60_000);
    console.log(`[poison] async: ${JSON.stringify({ killed: [first!.nodeId, second!.nodeId], s })}`);
    expect(s?.status).toBe('failed');
    expect(s.error.code).toBe('NODE_CRASHED');
    expect(s.error.message).toContain("this invocation of function 'poison-async'");
    expect(await poisonCounts()).toEqual({ stats: 2, metrics: 2 });
    const third = among.find((w) => w !== first && w !== second)!;
    expect(alive()).toEqual([third]);
    // Off every queue: no node holds it or will run it.
    for (const w of among) expect(await redis.llen(`${k.bullPrefix}:${k.nodeQueue(w.nodeId!)}:active`)).toBe(0);
  }, 120_000);

  it('a node restarted under the same NODE_ID (compose, a StatefulSet) before the reaper moved the call: its deaths count too, and the third process does not run it', async () => {
    // This node alone: the others leave cleanly (a clean leave counts no death), so no reaper can move the call elsewhere.
    await Promise.all(alive().map((w) => w.stop()));
    const { x } = await bigModel('poison-restart', 41);
    const first = await startWorker('px');
    const call = invoke('poison-restart', x);
    expect(await killWhenActive([first], 20_000), 'px took the call').toBe(first);
    // Restarted as compose's `restart:` or a StatefulSet would: it takes its id over (after 3 missed
    // beats at most), takes the call back, starts loading its model, and is killed there.
    let loading: Promise<boolean> | undefined;
    let dataDir = '';
    const restarted = startWorker('px', (child, dir) => {
      dataDir = dir;
      loading = (async () => {
        const until = Date.now() + 60_000;
        while (Date.now() < until && child.exitCode === null) {
          const names = (() => {
            try {
              return readdirSync(join(dir, 'model-cache'));
            } catch {
              return [];
            }
          })();
          if (names.some((n) => !n.startsWith('.'))) return child.kill('SIGKILL');
          await new Promise((r) => setTimeout(r, 2));
        }
        return false;
      })();
    }).catch(() => undefined);
    const took = await loading;
    const answered = await Promise.race([call.then((r) => `answered ${r.status} first`), new Promise((r) => setTimeout(() => r('not answered'), 10))]);
    expect(took, `the restarted px took the call back and loaded its model (the call: ${answered})`).toBe(true);
    await restarted;
    rmSync(dataDir, { recursive: true, force: true });
    // Once more: this process lives, and does not run the call.
    const last = await startWorker('px');
    const res = await call;
    const body = (await res.json()) as any;
    console.log(`[poison] restart: ${JSON.stringify({ status: res.status, body })}`);
    expect([res.status, body.error?.code]).toEqual([500, 'NODE_CRASHED']);
    expect(body.error.message).toContain("function 'poison-restart' (version 1) died 2 times (nodes px, px)");
    expect(await poisonCounts()).toEqual({ stats: 3, metrics: 3 });
    expect(alive()).toEqual([last]);
    const ok = await invoke('small', x);
    expect([ok.status, ((await ok.json()) as any).node]).toEqual([200, 'px']);
  }, 120_000);
});
