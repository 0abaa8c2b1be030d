import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { busiest, buildWorkload, register, stats, stream, tally, whoLoads, type CallResult, type Workload } from '../support/failover-drill';
import { startProc, stopAll, type Proc } from '../support/procs';
import { startS3, type TestS3 } from '../support/s3';
import { deleteKeys } from '../support/brulee';

/*
 * Processes that really die: one gateway and three workers, each its own OS process (as `npm
 * start` runs them) with its own DATA_DIR and the S3-compatible model store, and kill -9 in the
 * middle of a burst, while a worker loads a model, and under async calls. Every call must get
 * exactly one answer, equal to onnxruntime's; none lost, none hanging.
 */

const prefix = `fo${process.pid}`;
// The default beat: dead after 3 missed beats (3 s). Shorter beats make false deaths likely on a
// loaded 2-core box (a starved event loop misses its beats; it then rejoins, see below).
const HEARTBEAT_MS = 1000;
let s3: TestS3;
let gw: Proc;
const workers: Proc[] = [];
let wl: Workload;
let nextWorker = 1;

// PREPARK off: 'kill -9 of the worker that is loading a model' catches the worker whose model
// cache gets the model's bytes at the call (`whoLoads`); pre-parking workers (runtime/prepark.ts)
// fetch them all right after the registration, and the call's is then a reload from park.
const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, HEARTBEAT_MS: String(HEARTBEAT_MS), POPULARITY_CRON: '0 0 1 1 *', PREPARK: 'off', ...s3.env() });
const startWorker = async () => {
  const id = `w${nextWorker++}`;
  const w = await startProc(id, 'worker', { ...env(), NODE_ID: id, WORKER_CONCURRENCY: '2', MEMORY_BUDGET: '512MiB' });
  workers.push(w);
  return w;
};
const alive = () => workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);

beforeAll(async () => {
  s3 = await startS3();
  [gw] = await Promise.all([startProc('gw', 'gateway', env()), startWorker(), startWorker(), startWorker()]);
  wl = await buildWorkload();
  await register(gw.base, wl.models);
}, 120_000);

afterAll(async () => {
  await stopAll([gw, ...workers].filter(Boolean));
  await s3?.stop();
  await deleteKeys(prefix);
});

/** Polls /stats until node `id` is listed dead; resolves to when (epoch ms). */
async function deadReach(id: string, timeoutMs: number): Promise<number | undefined> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const s = await stats(gw.base).catch(() => undefined);
    if (s?.failover?.deadNodes?.some((d: { id: string; reason: string }) => d.id === id && d.reason === 'silent')) return Date.now();
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}

function report(what: string, rs: CallResult[], killedAt: number, extra: Record<string, unknown>) {
  const t = tally(rs);
  // Calls in flight when the node died: the last of their answers ends the recovery.
  const inFlight = rs.filter((r) => r.sentAt <= killedAt && r.doneAt >= killedAt);
  const lastAnswer = Math.max(0, ...inFlight.map((r) => r.doneAt));
  console.log(`[failover] ${what}: ${JSON.stringify({ ...t, inFlightAtKill: inFlight.length, lastInFlightAnsweredMs: lastAnswer ? lastAnswer - killedAt : 0, ...extra })}`);
  return t;
}

describe('failover across processes that really die (gateway + 3 workers, S3 store)', () => {
  it('kill -9 of a worker in the middle of a burst of sync calls: every call answered once, right', async () => {
    let killed: { proc: Proc; at: number; depth: number } | undefined;
    let declared: Promise<number | undefined> | undefined;
    let picking = false;
    const rs = await stream({
      base: gw.base,
      cases: wl.cases,
      total: 240,
      concurrency: 16,
      onAnswer: (done) => {
        if (killed || picking || done < 60) return;
        picking = true;
        // A sync call spends little time in a lane (the node takes it at once), so a worker is
        // frozen first (SIGSTOP: it stops taking jobs, and routing still sends it some until it is
        // declared dead), then killed once it holds calls: its lane and the calls it had taken
        // must both move.
        void (async () => {
          const victim = (await busiest(gw.base, alive()))!.proc;
          victim.child.kill('SIGSTOP');
          let depth = 0;
          for (let i = 0; i < 100 && depth < 1; i++) {
            depth = (await busiest(gw.base, [victim]))?.depth ?? 0;
            if (depth < 1) await new Promise((r) => setTimeout(r, 10));
          }
          victim.kill9();
          killed = { proc: victim, at: Date.now(), depth };
          declared = deadReach(victim.nodeId!, 20_000);
        })();
      },
    });
    expect(killed, 'a worker was killed').toBeDefined();
    expect(killed!.depth, 'the killed worker held calls').toBeGreaterThanOrEqual(1);
    expect(await declared).toBeDefined();
    const s = await stats(gw.base);
    // When the reaper declared it dead, on Redis's clock (the same machine's clock here).
    const dead = s.failover.deadNodes.find((d: { id: string }) => d.id === killed!.proc.nodeId);
    const t = report('sync burst', rs, killed!.at, { killed: killed!.proc.nodeId, depthAtKill: killed!.depth, declaredDeadMs: dead.at - killed!.at, silentMs: dead.at - dead.lastBeatAt, failover: { ...s.failover, deadNodes: undefined } });
    expect(t).toMatchObject({ sent: 240, answered: 240, right: 240, wrong: 0, lost: 0, duplicated: 0 });
    // The killed node is dead. (A live node starved of CPU for 3 beats would be declared dead too,
    // then rejoin: its moved jobs run twice, counted in duplicateRuns and never answered twice.)
    expect(s.failover.nodeDeaths).toBeGreaterThanOrEqual(1);
    expect(s.failover.deadNodes.map((d: { id: string }) => d.id)).toContain(killed!.proc.nodeId);
    expect(s.failover.jobsRerouted).toBeGreaterThanOrEqual(1);
    // Dead after about 3 missed beats, not much later.
    expect(dead.at - dead.lastBeatAt).toBeGreaterThanOrEqual(HEARTBEAT_MS * 3);
    expect(dead.at - killed!.at).toBeLessThan(HEARTBEAT_MS * 3 + 2000);
    expect(s.nodes.map((n: { id: string }) => n.id)).not.toContain(killed!.proc.nodeId);
    const metrics = await (await fetch(`${gw.base}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1]);
    expect(metric('brulee_node_deaths_total')).toBeGreaterThanOrEqual(s.failover.nodeDeaths);
    expect(metric('brulee_jobs_rerouted_total')).toBeGreaterThanOrEqual(s.failover.jobsRerouted);
  }, 120_000);

  it('kill -9 of the worker that is loading a model: the call is answered by another worker', async () => {
    await startWorker();
    const big = mlpModel({ inputSize: 256, hidden: [2048, 2048], outputSize: 8, seed: 9 });
    await register(gw.base, [{ fn: 'big', bytes: big }]);
    const x = new Array(256).fill(0).map((_, i) => Math.fround(Math.sin(i)));
    const { runDirect, ort } = await import('../support/models');
    const want = Array.from((await runDirect(big, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 256]) })).y!.data as Float32Array);
    const loader = whoLoads(alive(), big, 20_000);
    const sentAt = Date.now();
    const call = fetch(`${gw.base}/functions/big/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 256], data: x } } }) });
    const victim = await loader;
    expect(victim, 'some worker started loading the model').toBeDefined();
    victim!.kill9();
    const killedAt = Date.now();
    const res = await call;
    const body = (await res.json()) as any;
    const doneAt = Date.now();
    console.log(`[failover] kill while loading: ${JSON.stringify({ killed: victim!.nodeId, killedAfterMs: killedAt - sentAt, status: res.status, answeredBy: body.node, recoveryMs: doneAt - killedAt })}`);
    expect(res.status).toBe(200);
    expect(body.node).not.toBe(victim!.nodeId);
    expect(body.coldStart).toBe(true);
    expect(body.outputs.y.data).toEqual(want);
    expect(await deadReach(victim!.nodeId!, 20_000)).toBeDefined();
  }, 120_000);

  it('kill -9 of a worker under async calls: every id completes once, right', async () => {
    await startWorker();
    let killed: { proc: Proc; at: number } | undefined;
    let declared: Promise<number | undefined> | undefined;
    let picking = false;
    const rs = await stream({
      base: gw.base,
      cases: wl.cases,
      total: 120,
      concurrency: 16,
      async: true,
      onAnswer: (done) => {
        if (killed || picking || done < 30) return;
        picking = true;
        void busiest(gw.base, alive()).then((b) => {
          picking = false;
          if (killed || !b || b.depth < 1) return;
          b.proc.kill9();
          killed = { proc: b.proc, at: Date.now() };
          declared = deadReach(b.proc.nodeId!, 20_000);
        });
      },
    });
    expect(killed).toBeDefined();
    expect(await declared).toBeDefined();
    const s = await stats(gw.base);
    const dead = s.failover.deadNodes.find((d: { id: string }) => d.id === killed!.proc.nodeId);
    const t = report('async burst', rs, killed!.at, { killed: killed!.proc.nodeId, declaredDeadMs: dead.at - killed!.at, failover: { ...s.failover, deadNodes: undefined } });
    expect(t).toMatchObject({ sent: 120, answered: 120, right: 120, wrong: 0, lost: 0, duplicated: 0 });
  }, 120_000);
});
