import { connect, createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { recordInvocation } from '../../runtime/stats';
import { deleteKeys } from '../support/brulee';
import { nextCommand } from '../support/cut-proxy';
import { startProc, stopAll, type Proc } from '../support/procs';
import { startS3, type TestS3 } from '../support/s3';

/*
 * An answer script whose reply its node's connection lost (Redis ran it) is sent again: by ioredis
 * once it reconnects (autoResendUnfulfilledCommands), or by the node's retries. It is one answer,
 * whatever it answers (an async call, a sync call on the node's lane, a load): /stats and the
 * node's /metrics count it once, and no duplicate run.
 */

const prefix = `ars${process.pid}`;
const k = keys(prefix);
let s3: TestS3;
let gw: Proc;
let w1: Proc;
const procs: Proc[] = [];
const sockets = new Set<Socket>();
/** Which script (its command's arguments) next has its reply dropped: none when undefined. */
let armed: ((args: string[]) => boolean) | undefined;
let dropped = 0;
const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, POPULARITY_CRON: '0 0 1 1 *', ...s3.env() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A proxy to Redis that forwards the armed script, drops its reply and then closes that connection (new ones pass). */
async function replyLosingProxy(redisUrl: string): Promise<{ url: string; close(): void }> {
  const target = new URL(redisUrl);
  const server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    const upstream = connect(Number(target.port || 6379), target.hostname || '127.0.0.1');
    sockets.add(upstream);
    let swallow = false;
    upstream.on('error', () => client.destroy());
    upstream.on('data', (d) => swallow || client.write(d));
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    let pending = Buffer.alloc(0);
    client.on('data', (d: Buffer) => {
      if (swallow) return;
      pending = Buffer.concat([pending, d]);
      for (;;) {
        const c = nextCommand(pending);
        if (!c) return;
        upstream.write(pending.subarray(0, c.end));
        pending = pending.subarray(c.end);
        if (armed && c.args[0]!.toUpperCase() === 'EVALSHA' && armed(c.args)) {
          armed = undefined;
          swallow = true;
          dropped++;
          // Redis runs it; its reply never reaches the node, whose connection then closes.
          setTimeout(() => client.destroy(), 300);
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(redisUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return { url: url.toString(), close: () => (server.close(), sockets.forEach((s) => s.destroy())) };
}

let proxy: { url: string; close(): void };

beforeAll(async () => {
  s3 = await startS3();
  proxy = await replyLosingProxy(inject('redisUrl'));
  [gw, w1] = await Promise.all([startProc('gw', 'gateway', env()), startProc('w1', 'worker', { ...env(), REDIS_URL: proxy.url, NODE_ID: 'w1' })]);
  procs.push(gw, w1);
  const put = await fetch(`${gw.base}/functions/m?timeoutMs=20000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }) });
  expect(put.status).toBe(201);
}, 120_000);

afterAll(async () => {
  await stopAll(procs);
  proxy?.close();
  await s3?.stop();
  await deleteKeys(prefix);
});

type Stats = { functions: Record<string, { invocations: number; loads: number; prewarms: number }>; failover: { duplicateRuns: number } };
const stats = async () => (await (await fetch(`${gw.base}/stats`)).json()) as Stats;
/** The worker's /metrics of `fn`: calls (brulee_invocations_total, all outcomes), loads, prewarms by the load API. */
async function metrics(fn: string): Promise<{ calls: number; loads: number; prewarms: number }> {
  const text = await (await fetch(`${w1.base}/metrics`)).text();
  const sum = (name: string, also = '') =>
    text.split('\n').filter((l) => l.startsWith(`${name}{`) && l.includes(`function="${fn}"`) && l.includes(also)).reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { calls: sum('brulee_invocations_total'), loads: sum('brulee_model_loads_total'), prewarms: sum('brulee_prewarms_total', 'by="api"') };
}
/** An answer script: async (its result key) or sync (its gateway's reply stream). */
const answers = (to: 'result' | 'replies') => (args: string[]) => args.some((a) => a.startsWith(`${prefix}:${to}:`));
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

async function call(): Promise<string> {
  const r = await fetch(`${gw.base}/functions/m/invoke?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) });
  const { id } = (await r.json()) as { id: string };
  for (let i = 0; i < 200; i++) {
    const st = (await (await fetch(`${gw.base}/invocations/${id}`)).json()) as { status: string };
    if (st.status !== 'waiting' && st.status !== 'active' && st.status !== 'queued') return st.status;
    await sleep(50);
  }
  return 'still waiting';
}

it('an async answer sent again after its reply was lost is counted once, and not as a duplicate run', async () => {
  // (The first call loads the answer script into Redis: from then on EVALSHA runs it.)
  expect(await call()).toBe('completed');
  const before = await stats();
  armed = answers('result');
  expect(await call()).toBe('completed');
  expect(dropped).toBe(1);
  await sleep(2000); // the node reconnects and sends it again
  const after = await stats();
  expect({ invocations: after.functions.m!.invocations - before.functions.m!.invocations, duplicateRuns: after.failover.duplicateRuns - before.failover.duplicateRuns }).toEqual({ invocations: 1, duplicateRuns: 0 });
}, 60_000);

it("a sync call's answer on its node's lane sent again after its reply was lost is counted once, in /stats and in the node's /metrics", async () => {
  const invoke = async () => (await fetch(`${gw.base}/functions/m/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: x }) })).status;
  expect(await invoke()).toBe(200);
  await sleep(200);
  const before = { stats: await stats(), metrics: await metrics('m'), dropped };
  // Its answer script takes the job off the node's active list: a lane job's answer.
  armed = (args) => answers('replies')(args) && args.includes(k.laneActive('w1'));
  expect(await invoke()).toBe(200);
  expect(dropped).toBe(before.dropped + 1);
  await sleep(2000); // the node reconnects and sends it again
  const after = { stats: await stats(), metrics: await metrics('m') };
  expect({
    stats: after.stats.functions.m!.invocations - before.stats.functions.m!.invocations,
    metrics: after.metrics.calls - before.metrics.calls,
    duplicateRuns: after.stats.failover.duplicateRuns - before.stats.failover.duplicateRuns,
  }).toEqual({ stats: 1, metrics: 1, duplicateRuns: 0 });
}, 60_000);

it("a load's answer sent again after its reply was lost is one load and one prewarm, in /stats and in the node's /metrics, and no duplicate run", async () => {
  const put = await fetch(`${gw.base}/functions/p?timeoutMs=20000`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 2 }) });
  expect(put.status).toBe(201);
  const before = { duplicateRuns: (await stats()).failover.duplicateRuns, dropped };
  armed = answers('replies');
  const r = await fetch(`${gw.base}/v2/repository/models/p/load`, { method: 'POST' });
  expect(r.status).toBe(200);
  expect(dropped).toBe(before.dropped + 1);
  await sleep(2000);
  const after = await stats();
  expect({ loads: after.functions.p!.loads, prewarms: after.functions.p!.prewarms, duplicateRuns: after.failover.duplicateRuns - before.duplicateRuns }).toEqual({ loads: 1, prewarms: 1, duplicateRuns: 0 });
  expect(await metrics('p')).toEqual({ calls: 0, loads: 1, prewarms: 1 });
}, 60_000);

it('counts sent with no answer (a load counted apart, a prewarm by the policy) sent again after their reply was lost are counted once', async () => {
  // A connection of this test through the proxy; its first script loads the count script into Redis (then EVALSHA runs it).
  const redis = createRedis(proxy.url);
  try {
    const load = () => recordInvocation(redis, k, { fn: 'm', outcome: 'load', loaded: true, loadMs: 1, fetchMs: 0, execMs: 0 });
    await load();
    const before = { loads: (await stats()).functions.m!.loads, dropped };
    // The count script (the node is idle: no other script counts m's loads now).
    armed = (args) => args.includes(k.fnStats('m')) && args.includes('loads');
    // Resolves once ioredis, reconnected, has sent it again and had its reply.
    await load();
    expect(dropped).toBe(before.dropped + 1);
    expect((await stats()).functions.m!.loads - before.loads).toBe(1);
  } finally {
    redis.disconnect();
  }
}, 60_000);
