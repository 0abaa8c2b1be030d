/**
 * What pre-parking (runtime/prepark.ts) costs the calls of other models: a warm model's calls at
 * random gaps while the node pre-parks a big one, against the same with PREPARK=off (never part of
 * `npm test`). Each arm is a server of this checkout (`npm start`, its own redis-server); rounds
 * take turns A B B A. A round deletes and registers the big model again (the node holds nothing of
 * it), then calls the small one for `--window` ms at gaps drawn from [`--gap-min`, `--gap-max`] ms
 * (a node pre-parks only after 200 ms without a call, so gaps under that never meet a pre-park).
 * With PREPARK=on the round checks that the node pre-parked the big model meanwhile.
 *
 *   npm run bench:prepark-busy -- --model mlp-20MB --rounds 6
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mlpForBytes, mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { leanClient, median, pct, startServer, type BenchServer } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'mlp-20MB' },
    rounds: { type: 'string', default: '6' },
    window: { type: 'string', default: '2500' },
    'gap-min': { type: 'string', default: '150' },
    'gap-max': { type: 'string', default: '450' },
  },
}).values;

const BIG: Record<string, () => Uint8Array> = {
  'mlp-20MB': () => mlpForBytes(20e6, 1),
  'mlp-100MB': () => mlpForBytes(100e6, 1),
  'ocr-det': () => readModel(REAL_MODELS.ocrDet),
};
const JSON_TYPE = { 'content-type': 'application/json' };
const small = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i)) } } });

interface Arm {
  label: string;
  s: BenchServer;
  c: ReturnType<typeof leanClient>;
  ms: number[];
  prePark: boolean;
}

async function ok(r: Promise<{ status: number; body: Buffer }>, what: string, status = 200): Promise<Buffer> {
  const a = await r;
  if (a.status !== status) throw new Error(`${what}: ${a.status} ${a.body.toString()}`);
  return a.body;
}

async function preParked(arm: Arm): Promise<number> {
  const s = JSON.parse((await ok(arm.c.call('GET', '/stats'), 'stats')).toString()) as { nodes: Array<{ parked?: { pre: { parked: number } } }> };
  return s.nodes[0]?.parked?.pre.parked ?? 0;
}

async function round(arm: Arm, big: Uint8Array): Promise<void> {
  await ok(arm.c.call('DELETE', '/functions/big'), 'delete');
  await ok(arm.c.call('PUT', '/functions/big', Buffer.from(big), { 'content-type': 'application/octet-stream' }), 'register', 201);
  const before = await preParked(arm);
  const end = performance.now() + Number(args.window);
  const lo = Number(args['gap-min']);
  const hi = Number(args['gap-max']);
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, lo + Math.random() * (hi - lo)));
    const t = performance.now();
    await ok(arm.c.call('POST', '/functions/small/invoke', body, JSON_TYPE), 'invoke');
    arm.ms.push(performance.now() - t);
  }
  const after = await preParked(arm);
  if (arm.prePark && after !== before + 1) throw new Error(`PREPARK=on: the node did not pre-park the big model within the window (${before} -> ${after}); raise --window`);
  if (!arm.prePark && after !== 0) throw new Error('PREPARK=off pre-parked');
}

async function main() {
  const make = BIG[args.model];
  if (!make) throw new Error(`unknown model ${args.model}; known: ${Object.keys(BIG).join(', ')}`);
  const big = make();
  const dir = mkdtempSync(join(tmpdir(), 'brulee-prepark-busy-'));
  const arms: Arm[] = [];
  try {
    for (const [label, on] of [['PREPARK=on', true], ['PREPARK=off', false]] as const) {
      const s = await startServer(join(dir, label), { PREPARK: on ? 'on' : 'off', MEMORY_BUDGET: '4GiB' });
      const c = leanClient(s.url);
      arms.push({ label, s, c, ms: [], prePark: on });
      await ok(c.call('PUT', '/functions/small', Buffer.from(small), { 'content-type': 'application/octet-stream' }), 'register small', 201);
      await ok(c.call('PUT', '/functions/big', Buffer.from(big), { 'content-type': 'application/octet-stream' }), 'register big', 201);
      await ok(c.call('POST', '/functions/small/invoke', body, JSON_TYPE), 'warm small');
    }
    for (let i = 0; i < Number(args.rounds); i++) for (const arm of i % 2 === 0 ? arms : [...arms].reverse()) await round(arm, big);
    const { readFileSync } = await import('node:fs');
    console.log(`\n${args.model} pre-parked while a small MLP is called at gaps of ${args['gap-min']}-${args['gap-max']} ms; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    console.log(`  ${''.padEnd(14)}${'calls'.padStart(7)}${'p50 ms'.padStart(9)}${'p90'.padStart(9)}${'p99'.padStart(9)}${'max'.padStart(9)}${'> p50+5 ms'.padStart(12)}`);
    for (const a of arms) {
      const p50 = median(a.ms);
      console.log(`  ${a.label.padEnd(14)}${String(a.ms.length).padStart(7)}${p50.toFixed(2).padStart(9)}${pct(a.ms, 90).toFixed(2).padStart(9)}${pct(a.ms, 99).toFixed(2).padStart(9)}${Math.max(...a.ms).toFixed(2).padStart(9)}${String(a.ms.filter((x) => x > p50 + 5).length).padStart(12)}`);
    }
    const on = arms[0]!;
    const s = JSON.parse((await ok(on.c.call('GET', '/stats'), 'stats')).toString()) as { nodes: Array<{ parked?: { pre: { parked: number; seconds: number; cpuSeconds: number } } }> };
    const pre = s.nodes[0]?.parked?.pre;
    if (pre) console.log(`  PREPARK=on: ${pre.parked} pre-parks, ${((pre.seconds / pre.parked) * 1000).toFixed(1)} ms wall and ${((pre.cpuSeconds / pre.parked) * 1000).toFixed(1)} ms CPU each (/stats nodes[].parked.pre)`);
  } finally {
    for (const a of arms) {
      a.c.close();
      await a.s.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
