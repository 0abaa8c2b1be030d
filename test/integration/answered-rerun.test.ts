import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { deleteKeys } from '../support/brulee';
import { cutProxy, type CutProxy } from '../support/cut-proxy';
import { register, stats } from '../support/failover-drill';
import { floats } from '../support/models';
import { startProc, stopAll, type Proc } from '../support/procs';
import { until } from '../support/within';

/*
 * An async call's job stays on its node's BullMQ queue from its answer until BullMQ completes it (a
 * command later): a node that dies in between leaves an answered job there, active. Whoever takes
 * it next (the node restarted under its NODE_ID, after its hold lapsed; or a live node the reaper
 * moved it to) ran it again: a duplicate run, its answer dropped but its counts applied, so /stats
 * counted the one call twice. Real processes: a gateway, and a worker whose Redis commands are cut
 * off right after its answer's script (a TCP proxy, test/support/cut-proxy.ts), then SIGKILLed.
 */

const prefix = `ar${process.pid}`;
const k = keys(prefix);
const redis = createRedis(inject('redisUrl'));
const storeDir = mkdtempSync(join(tmpdir(), 'brulee-ar-store-'));
const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, HEARTBEAT_MS: '1000', POPULARITY_CRON: '0 0 1 1 *', MODEL_STORE: pathToFileURL(storeDir).href });
const procs: Proc[] = [];
let gw: Proc;
let proxy: CutProxy | undefined;

beforeAll(async () => {
  // Its reaper declares a node dead after 9 s silent (3 beats): a worker restarted under its
  // NODE_ID is back before, and takes its predecessor's job back itself (the workers beat every 1 s).
  gw = await startProc('gw', 'gateway', { ...env(), HEARTBEAT_MS: '3000' });
  procs.push(gw);
}, 60_000);

afterAll(async () => {
  proxy?.close();
  await stopAll(procs);
  redis.disconnect();
  await deleteKeys(prefix);
  rmSync(storeDir, { recursive: true, force: true });
});

/** A worker that answers one async call of `fn` and dies right after its answer, before BullMQ finishes the job. Resolves to the call's id. */
async function answeredThenDead(node: string, fn: string, seed: number): Promise<string> {
  // Armed after a first call (its model loaded, and its answer's script known to Redis: an EVALSHA
  // that Redis refuses as NOSCRIPT is sent again as EVAL), then the answer's script: the first
  // script of this worker that names a result key.
  let armed = false;
  proxy = await cutProxy(inject('redisUrl'), (args) => (armed && /^eval/i.test(args[0] ?? '') && args.some((a) => a.startsWith(k.result(''))) ? 'after' : undefined));
  const w = await startProc(node, 'worker', { ...env(), REDIS_URL: proxy.url, NODE_ID: node, JOB_LOCK_MS: '1000' });
  procs.push(w);
  await register(gw.base, [{ fn, bytes: mlpModel({ inputSize: 16, hidden: [16], outputSize: 2, seed }) }], '?timeoutMs=60000');
  const call = async () => {
    const res = await fetch(`${gw.base}/functions/${fn}/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 16], data: floats(16, seed) } } }) });
    return ((await res.json()) as { id: string }).id;
  };
  const first = await call();
  await until('the first call answered', async () => (await redis.exists(k.result(first))) === 1, 20_000);
  armed = true;
  const id = await call();
  await Promise.race([proxy.cut, new Promise((_, reject) => setTimeout(() => reject(new Error(`${node} never answered:\n${w.output()}`)), 20_000))]);
  w.kill9();
  await w.exited;
  proxy.close();
  proxy = undefined;
  return id;
}

const counts = async (fn: string) => {
  const s = await stats(gw.base);
  return { invocations: s.functions[fn]?.invocations, duplicateRuns: s.failover.duplicateRuns };
};

describe('an async call answered by a node that died before BullMQ finished its job', () => {
  it('is not run again by the node restarted under its NODE_ID: counted once, no duplicate run', async () => {
    const id = await answeredThenDead('wa', 'ans-restart', 3);
    const job = `${k.bullPrefix}:${k.nodeQueue('wa')}:${id}`;
    expect([await redis.exists(job), await redis.exists(k.result(id))]).toEqual([1, 1]);
    const before = await counts('ans-restart');
    expect(before.invocations).toBe(2);
    procs.push(await startProc('wa', 'worker', { ...env(), NODE_ID: 'wa', JOB_LOCK_MS: '1000' }));
    // Its hold lapses (1 s), its successor's stall check finds it and takes it again.
    await until('the job to leave its queue', async () => (await redis.exists(job)) === 0, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await counts('ans-restart')).toEqual(before);
    expect(((await (await fetch(`${gw.base}/invocations/${id}`)).json()) as { status: string }).status).toBe('completed');
  }, 90_000);

  it('is not moved to a live node by the reaper: counted once, no duplicate run', async () => {
    // wb the only worker: the calls go to it.
    await Promise.all(procs.filter((p) => p !== gw).map((p) => p.stop(10_000)));
    const id = await answeredThenDead('wb', 'ans-reaped', 4);
    // A live node to move it to, started once the call was wb's: the reaper leaves a job where it is until one lives.
    procs.push(await startProc('wl', 'worker', { ...env(), NODE_ID: 'wl' }));
    const job = `${k.bullPrefix}:${k.nodeQueue('wb')}:${id}`;
    const before = await counts('ans-reaped');
    expect(before.invocations).toBe(2);
    // wb is declared dead after 3 missed beats, and the reaper (wl's, or the gateway's) takes its queue.
    await until('the job to leave the dead queue', async () => (await redis.exists(job)) === 0, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(await counts('ans-reaped')).toEqual(before);
    expect(((await (await fetch(`${gw.base}/invocations/${id}`)).json()) as { status: string }).status).toBe('completed');
  }, 90_000);
});
