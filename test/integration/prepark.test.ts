import { afterAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { mapped, sameAsDirect } from '../support/parked';
import { until } from '../support/within';

// The node runs in this process: its sessions' mappings are this process's (/proc/self).
const opened: TestBrulee[] = [];
afterAll(async () => {
  for (const b of opened) await b.destroy();
});

async function start(env: Record<string, string> = {}): Promise<TestBrulee> {
  const b = await startBrulee({ PREPARK: 'on', ...env });
  opened.push(b);
  return b;
}

// 64 -> 500 -> 1000 -> 16: a 2 MB weight, so the mapped form (runtime/mapped.ts).
const wide = (seed: number) => mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed });

async function register(b: TestBrulee, name: string, bytes: Uint8Array, query?: string) {
  const put = await b.put(name, bytes, query);
  expect(put.status).toBe(201);
  expect(put.body.profile.artifact).toMatchObject({ form: 'mapped' });
  return put.body.profile.artifact.sha256 as string;
}

/** The node's parked sessions as /stats shows them (its last heartbeat). */
async function statsParked(b: TestBrulee) {
  const r = await b.json('GET', '/stats');
  return r.body.nodes.find((n: { id: string }) => n.id === b.node!.id)?.parked as { held: number; bytes: number; taken: number; pre: { parked: number; taken: number; dropped: number; held: number; bytes: number; cpuSeconds: number } } | undefined;
}

/** brulee_parked{what} of this node, from /metrics. */
async function metricParked(b: TestBrulee, what: string): Promise<number> {
  const text = await (await b.req('/metrics')).text();
  const m = new RegExp(`^brulee_parked\\{node="${b.node!.id}",what="${what}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('pre-parking (runtime/prepark.ts)', () => {
  it('a registered mapped model is pre-parked in idle time; its first call takes it: bit for bit, a cold start and a load, as a reload from park; /stats and /metrics agree', async () => {
    const b = await start();
    const node = b.node!;
    const bytes = wide(1);
    const sha = await register(b, 'wide', bytes);
    await until('the model pre-parked (/stats)', async () => (await statsParked(b))?.pre.held === 1);
    // The session and its mappings exist; their pages were given back; nothing is resident.
    expect(mapped(sha).mappings).toBeGreaterThan(0);
    expect(mapped(sha).rssKiB).toBe(0);
    const s = (await statsParked(b))!;
    expect(s.pre).toMatchObject({ parked: 1, taken: 0, dropped: 0, held: 1 });
    expect(s.pre.bytes).toBeGreaterThan(0);
    expect(s.pre.bytes).toBe(s.bytes);
    expect(s.pre.cpuSeconds).toBeGreaterThan(0);
    // The same figures in /metrics.
    for (const [what, v] of [['pre_parked', s.pre.parked], ['pre_held', s.pre.held], ['pre_bytes', s.pre.bytes], ['bytes', s.bytes], ['pre_cpu_seconds', s.pre.cpuSeconds]] as const) expect(await metricParked(b, what)).toBe(v);

    // The first call: the pre-parked session, as onnxruntime on the original; a cold start and a load, counted as any reload from park.
    const first = await sameAsDirect(b, 'wide', bytes, 3, 2);
    expect(first.coldStart).toBe(true);
    expect(first.timings.loadMs).toBeGreaterThan(0);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 1, held: 0, pre: { parked: 1, taken: 1, held: 0, dropped: 0 } });
    const fs = (await b.json('GET', '/stats')).body.functions.wide;
    expect(fs).toMatchObject({ invocations: 1, coldStarts: 1, loads: 1, warmHits: 0 });
    expect(await sameAsDirect(b, 'wide', bytes, 1, 3)).toMatchObject({ coldStart: false });
    expect(mapped(sha).rssKiB).toBeGreaterThan(1024);
  });

  it('a model that loads in the session host (ORT_OFF_THREAD=always) is pre-parked there, and its first call takes it, bit for bit', async () => {
    const b = await start({ ORT_OFF_THREAD: 'always' });
    const node = b.node!;
    const bytes = wide(7);
    const sha = await register(b, 'hosted', bytes);
    await until('pre-parked', () => node.parkedSessions.pre.held === 1);
    expect((await sameAsDirect(b, 'hosted', bytes, 2, 1)).coldStart).toBe(true);
    expect(node.parkedSessions.pre).toMatchObject({ parked: 1, taken: 1, dropped: 0 });
    const key = node.pool.list().find((m) => m.fn === 'hosted')!.key;
    expect(node.inSessionHost(key)).toBe(true);
    expect(mapped(sha).mappings).toBeGreaterThan(0);
  });

  it('PP-OCR det is pre-parked, and its first call takes it, bit for bit', async () => {
    const b = await start();
    const node = b.node!;
    const bytes = readModel(REAL_MODELS.ocrDet);
    const sha = await register(b, 'det', bytes);
    await until('det pre-parked', async () => (await statsParked(b))?.pre.held === 1);
    expect(mapped(sha)).toMatchObject({ rssKiB: 0 });
    const x = floats(3 * 64 * 96, 1);
    const r = await b.invoke('det', { x: { type: 'float32', dims: [1, 3, 64, 96], data: x } });
    expect(r.status).toBe(200);
    expect(r.body.coldStart).toBe(true);
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3, 64, 96]) });
    for (const [k, t] of Object.entries(want)) expect(r.body.outputs[k].data).toEqual(Array.from(t.data as Float32Array));
    expect(node.parkedSessions.pre).toMatchObject({ parked: 1, taken: 1 });
  });

  it('a node pre-parks only in idle time: not while calls come closer than 200 ms apart, then once they stop', async () => {
    const b = await start();
    const node = b.node!;
    const small = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 9 });
    expect((await b.put('small', small)).status).toBe(201);
    const call = async () => expect((await b.invoke('small', { x: { type: 'float32', dims: [1, 64], data: floats(64, 1) } })).status).toBe(200);
    await call();
    await register(b, 'wide', wide(6));
    // Two seconds of calls 50 ms apart: the node is idle between them, never for 200 ms.
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      await call();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(node.parkedSessions.pre).toMatchObject({ parked: 0 });
    await until('pre-parked once the calls stopped', () => node.parkedSessions.pre.held === 1);
  });

  it('with PREPARK=off nothing is pre-parked: the first call creates its session', async () => {
    const b = await start({ PREPARK: 'off' });
    const node = b.node!;
    const bytes = wide(2);
    await register(b, 'wide', bytes);
    // As long as the test above took to see its pre-park, and more.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await statsParked(b))?.pre).toMatchObject({ parked: 0, held: 0 });
    expect((await sameAsDirect(b, 'wide', bytes, 1, 1)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 0, taken: 0 });
  });

  it("a deleted function's pre-parked session is disposed, its file mapping released", async () => {
    const b = await start();
    const node = b.node!;
    const sha = await register(b, 'gone', wide(3));
    await until('pre-parked', () => node.parkedSessions.pre.held === 1);
    expect(mapped(sha).mappings).toBeGreaterThan(0);
    expect((await b.json('DELETE', '/functions/gone')).status).toBe(200);
    await until('the pre-parked session disposed', () => node.parkedSessions.held === 0 && mapped(sha).mappings === 0);
    expect(node.parkedSessions.pre).toMatchObject({ parked: 1, taken: 0, dropped: 1 });
  });

  it('a pre-park takes only the room left: it never disposes a session a call parked, nor goes over PARK_BUDGET', async () => {
    // Learn one wide model's parked cost, then allow a little more than one. Charged as given
    // (memoryBytes), so that the cost (the charge less the mapped bytes) is the same on both nodes.
    const fixed = 'memoryBytes=8388608';
    const probe = await start();
    await register(probe, 'a', wide(4), fixed);
    await until('pre-parked', () => probe.node!.parkedSessions.pre.held === 1);
    const one = probe.node!.parkedSessions.bytes;
    await probe.destroy();
    opened.splice(opened.indexOf(probe), 1);

    const cap = Math.floor(one * 1.5);
    const b = await start({ PARK_BUDGET: String(cap) });
    const node = b.node!;
    const aBytes = wide(4);
    const aSha = await register(b, 'a', aBytes, fixed);
    await until('a pre-parked', () => node.parkedSessions.pre.held === 1);
    // a is called (taking its pre-parked session), then unloaded: parked by a call.
    await sameAsDirect(b, 'a', aBytes, 1, 1);
    expect((await b.json('POST', '/v2/repository/models/a/unload')).status).toBe(200);
    await until('a parked by its unload', () => node.parkedSessions.held === 1 && node.parkedSessions.pre.held === 0);
    // b would need as much again: no room; a stays.
    const bSha = await register(b, 'b', wide(5), fixed);
    await until('b given up for want of room', () => node.parkedSessions.pre.noRoom >= 1);
    expect(mapped(bSha).mappings).toBe(0);
    expect(node.parkedSessions).toMatchObject({ held: 1, pre: { parked: 1, held: 0 } });
    expect(mapped(aSha).mappings).toBeGreaterThan(0);
    expect(node.parkedSessions.bytes).toBeLessThanOrEqual(cap);
  });
});
