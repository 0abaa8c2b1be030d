/**
 * Redis CPU per lane call with admission off: a plain LPUSH (before 2026-11-30) against pushJob (the
 * job queued once, queue/lane.ts), each followed by the node's take (LMOVE) and its answer (deliver),
 * 64 calls in flight, 10 000 per round, rounds ABBA; redis-server's used_cpu_sys + used_cpu_user.
 *
 *   npx tsx bench/lane-push.ts
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedis, waitForRedis } from '../queue/connection';
import { keys } from '../queue/keys';
import { pushJob } from '../queue/lane';
import { deliver } from '../queue/replies';
import { startRedisServer } from '../queue/redis-server';

const server = await startRedisServer({ dir: mkdtempSync(join(tmpdir(), 'edges-push-')), persist: false });
const r = createRedis(server.url);
const node = createRedis(server.url);
await waitForRedis(r);
await waitForRedis(node);
const k = keys('b');
const frame = Buffer.alloc(300, 7);
const N = 10000;
const cpu = async () => {
  const i = await r.info('cpu');
  return Number(/used_cpu_sys:([\d.]+)/.exec(i)![1]) + Number(/used_cpu_user:([\d.]+)/.exec(i)![1]);
};
async function call(kind: string, i: number) {
  const id = `${kind}${i}${Math.random()}`;
  await (kind === 'lpush' ? r.lpush(k.lane('n'), frame) : pushJob(r, k, 'n', frame, k.answered(id), 90_000));
  const f = await node.lmoveBuffer(k.lane('n'), k.laneActive('n'), 'RIGHT', 'LEFT');
  if (!f) throw new Error('no job');
  await deliver(node, k, { id, replyTo: k.replies('g'), answerTtlMs: 90_000 }, { ok: {} });
}
async function round(kind: string): Promise<number> {
  await r.del(k.lane('n'), k.laneActive('n'), k.replies('g'));
  const c0 = await cpu();
  const ps: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    ps.push(call(kind, i));
    if (ps.length >= 64) await Promise.all(ps.splice(0));
  }
  await Promise.all(ps);
  const us = ((await cpu()) - c0) * 1e6 / N;
  await r.flushdb();
  return us;
}
const out: Record<string, number[]> = { lpush: [], script: [] };
for (const kind of ['lpush', 'script', 'script', 'lpush', 'lpush', 'script', 'script', 'lpush', 'lpush', 'script']) out[kind]!.push(await round(kind));
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
console.log(JSON.stringify(out), 'median us/call', med(out.lpush!).toFixed(1), med(out.script!).toFixed(1), 'ratio', (med(out.script!) / med(out.lpush!)).toFixed(3));
r.disconnect();
node.disconnect();
await server.stop();
