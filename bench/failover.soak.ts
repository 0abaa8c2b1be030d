/**
 * The failover drill, longer than `npm test` runs it (never part of `npm test`): a gateway and
 * three workers as their own processes (`npm start`, ROLE=gateway/worker, own DATA_DIR each, one
 * S3-compatible store), rounds of sync and async calls over PP-OCR cls, Silero VAD and generated
 * MLPs; in each round one worker is killed with kill -9 in the middle of the burst and a new one
 * started. Prints per round and in all: calls sent, answered, right, lost, duplicated, and the
 * time from each kill to its node's death and to the last answer of the calls in flight then.
 *
 *   npm run soak:failover                        # 6 rounds of 300 calls
 *   npm run soak:failover -- --rounds 20 --calls 500 --concurrency 24
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer } from '../queue/redis-server';
import { busiest, buildWorkload, register, stats, stream, tally, type CallResult, type Tally } from '../test/support/failover-drill';
import { startProc, stopAll, type Proc } from '../test/support/procs';
import { startS3 } from '../test/support/s3';

const a = parseArgs({ options: { rounds: { type: 'string', default: '6' }, calls: { type: 'string', default: '300' }, concurrency: { type: 'string', default: '16' } } }).values;
const ROUNDS = Number(a.rounds);
const CALLS = Number(a.calls);
const CONC = Number(a.concurrency);

const dir = mkdtempSync(join(tmpdir(), 'brulee-soak-'));
const redisServer = await startRedisServer({ dir, persist: false });
const s3 = await startS3();
const env = { REDIS_URL: redisServer.url, KEY_PREFIX: 'soak', POPULARITY_CRON: '*/10 * * * * *', ...s3.env() };
const procs: Proc[] = [];
let n = 0;
const worker = async () => {
  const id = `w${++n}`;
  const p = await startProc(id, 'worker', { ...env, NODE_ID: id, WORKER_CONCURRENCY: '2' });
  procs.push(p);
  return p;
};
const alive = () => procs.filter((p) => p.role === 'worker' && p.child.exitCode === null && p.child.signalCode === null);
const all: CallResult[] = [];
try {
  const [gw] = await Promise.all([startProc('gw', 'gateway', env), worker(), worker(), worker()]);
  procs.push(gw!);
  const wl = await buildWorkload();
  await register(gw!.base, wl.models);
  for (let round = 1; round <= ROUNDS; round++) {
    const async = round % 2 === 0;
    let killed: { id: string; at: number } | undefined;
    let picking = false;
    const rs = await stream({
      base: gw!.base,
      cases: wl.cases,
      total: CALLS,
      concurrency: CONC,
      async,
      onAnswer: (done) => {
        if (killed || picking || done < CALLS / 4) return;
        picking = true;
        void busiest(gw!.base, alive()).then((b) => {
          picking = false;
          if (killed || !b || b.depth < 1) return;
          b.proc.kill9();
          killed = { id: b.proc.nodeId!, at: Date.now() };
        });
      },
    });
    all.push(...rs);
    const s = await stats(gw!.base);
    const dead = killed && s.failover.deadNodes.find((d: { id: string }) => d.id === killed!.id);
    const inFlight = killed ? rs.filter((r) => r.sentAt <= killed!.at && r.doneAt >= killed!.at) : [];
    const t: Tally = tally(rs);
    console.log(
      JSON.stringify({
        round,
        mode: async ? 'async' : 'sync',
        ...t,
        killed: killed?.id ?? null,
        declaredDeadMs: dead ? dead.at - killed!.at : null,
        lastInFlightAnsweredMs: inFlight.length ? Math.max(...inFlight.map((r) => r.doneAt)) - killed!.at : null,
        failover: { nodeDeaths: s.failover.nodeDeaths, jobsRerouted: s.failover.jobsRerouted, duplicateRuns: s.failover.duplicateRuns, poisonJobs: s.failover.poisonJobs },
      }),
    );
    await worker();
  }
  const t = tally(all);
  // One kill a round, after the last round's calls were all answered: no call is held by two dead
  // nodes, so a call given up as a poison pill (NODE_CRASHED, MAX_NODE_DEATHS_PER_JOB) is a false one.
  const { poisonJobs } = (await stats(gw!.base)).failover;
  console.log(`\nin all: ${JSON.stringify({ ...t, poisonJobs })}`);
  if (t.lost + t.wrong + t.duplicated + poisonJobs > 0 || t.answered !== t.sent) process.exitCode = 1;
} finally {
  await stopAll(procs);
  await s3.stop();
  await redisServer.stop();
  rmSync(dir, { recursive: true, force: true });
}
