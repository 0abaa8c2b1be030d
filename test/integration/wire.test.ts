import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { STREAM_FROM_BYTES } from '../../functions/http/answer';
import { encodeModel } from '../../models/onnx-builder';
import { createRedis } from '../../queue/connection';
import { tensorBytes } from '../../queue/tensor';
import { INLINE_BYTES, LANE_INLINE_BYTES, packTensors, unpackTensors, type Tensor } from '../../queue/wire';
import { mlpModel } from '../../models/generate';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { monitor } from '../support/monitor';
import { until } from '../support/within';

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
/** A gateway of its own: its calls reach b's node on the node's lane, through Redis (b's own calls run in b's process). */
let gw: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
  gw = await startBrulee({ ROLE: 'gateway' }, { namespace: b.namespace, dataDir: b.dataDir, nodeId: 'gw' });
});
afterAll(async () => {
  await gw?.destroy();
  await b?.destroy();
  redis.disconnect();
});

describe('tensors on the wire', () => {
  it('pack/unpack keeps every bit of every element type (NaN payloads, -0, int64 extremes, odd lengths)', () => {
    const nan = new Float32Array(new Uint32Array([0x7fc00001, 0xffc12345]).buffer);
    const ts: Record<string, Tensor> = {
      f32: { type: 'float32', dims: [4], data: Float32Array.of(-0, nan[0]!, nan[1]!, 1e-45) },
      i64: { type: 'int64', dims: [2], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n) },
      u8: { type: 'uint8', dims: [3], data: Uint8Array.of(0, 255, 7) }, // 3 bytes: the next tensor is realigned
      f64: { type: 'float64', dims: [1], data: Float64Array.of(-0) },
      f16: { type: 'float16', dims: [1], data: Uint16Array.of(0x7e01) },
      s: { type: 'string', dims: [2], data: ['', 'héllo'] },
    };
    const { tensors, blob } = packTensors(ts);
    const back = unpackTensors(tensors, blob);
    for (const [k, t] of Object.entries(ts)) {
      expect(back[k]!.type).toBe(t.type);
      expect(back[k]!.dims).toEqual(t.dims);
      expect(Buffer.from(tensorBytes(back[k]!))).toEqual(Buffer.from(tensorBytes(t)));
      expect(tensors[k]!.offset % 8).toBe(0);
    }
  });

  /**
   * Every command Redis runs during `call`, as MONITOR reports it, of this brulee only (other test
   * files share the Redis). With `last`, read until a command it matches has come (a command sent
   * with the answer, not waited for, reaches Redis when it does: under load, past any fixed wait).
   */
  async function monitored<T>(call: () => Promise<T>, last?: (a: string[]) => boolean): Promise<{ out: T; seen: string[][] }> {
    const all: string[][] = [];
    const mon = await monitor(inject('redisUrl'), (c) => all.push(c.args));
    const out = await call();
    if (last) await until('the last command of the call in MONITOR', () => all.some(last), 10_000);
    else await new Promise((res) => setTimeout(res, 100));
    mon.stop();
    return { out, seen: all.filter((a) => a.some((x) => x.startsWith(`${b.namespace}:`))) };
  }
  /**
   * What the node runs on its own timers, whatever the calls: its heartbeat (a script on the node
   * set), the reaper's lock, its BullMQ worker's waits for a job on its queue (BullMQ's drainDelay,
   * 5 s: moveToActive, 11 keys, wait then active) and stalled-jobs check (stalledInterval, 30 s:
   * its first key the stalled set), and its lane worker's blocking BLMOVE from the lane, sent again
   * each BLOCK_S (5 s). A job added to the node's queue (addStandardJob: wait then paused) or
   * pushed onto its lane is none of them.
   */
  const ownTimer = (a: string[]) => {
    const [cmd, k1, k2] = [a[0]!.toLowerCase(), a[1], a[3]];
    const q = `${b.namespace}:bull:node-${b.node!.id}`;
    if (cmd === 'blmove') return k1 === `${b.namespace}:lane:${b.node!.id}`;
    if (cmd !== 'evalsha' && cmd !== 'eval') return false;
    return !!k2 && (k2.startsWith(`${b.namespace}:nodes`) || k2.startsWith(`${b.namespace}:lock:`) || (a[2] === '11' && k2 === `${q}:wait` && a[4] === `${q}:active`) || k2 === `${q}:stalled`);
  };
  const longest = (a: string[]) => Math.max(0, ...a.slice(a[0]?.toLowerCase() === 'eval' ? 2 : 1).map((x) => x.length)); // not a script's source

  it('inputs up to LANE_INLINE_BYTES travel raw inside the sync job (no key of their own, no base64), and the job is gone once run', async () => {
    await b.put('cls', readModel(REAL_MODELS.ocrCls));
    const data = floats(3 * 48 * 192, 5);
    expect(data.length * 4).toBeGreaterThan(INLINE_BYTES);
    expect(data.length * 4).toBeLessThanOrEqual(LANE_INLINE_BYTES);
    const { out: r, seen } = await monitored(() => gw.invoke('cls', { x: { type: 'float32', dims: [1, 3, 48, 192], data } }));
    expect(r.status).toBe(200);
    expect(seen.filter((a) => a[0]?.toLowerCase() === 'set' && a[1]?.startsWith(`${b.namespace}:in:`))).toEqual([]);
    // The script that admits and queues it carries the frame with the raw bytes (MONITOR shows a
    // byte outside printable ASCII as \xNN; base64 would have none), and nothing fetches them.
    const queued = seen.filter((a) => a[0]?.toLowerCase() === 'evalsha' && a.includes(`${b.namespace}:lane:${b.node!.id}`));
    expect(queued).toHaveLength(1);
    const frame = queued[0]!.find((x) => x.length === longest(queued[0]!))!;
    expect(frame.length).toBeGreaterThan(110_592);
    expect(frame).toMatch(/\\x[0-9a-f]{2}/);
    expect(seen.some((a) => a[0]?.toLowerCase() === 'get' && a[1]?.startsWith(`${b.namespace}:in:`))).toBe(false);
    expect(await redis.llen(`${b.namespace}:lane:${b.node!.id}:active`)).toBe(0);
    const want = await runDirect(readModel(REAL_MODELS.ocrCls), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 3, 48, 192]) });
    expect(r.body.outputs['softmax_0.tmp_0'].data).toEqual(Array.from(want['softmax_0.tmp_0']!.data as Float32Array));
  });

  it('larger inputs travel as bytes under their own key, not inside the job, and are gone once the job has run', async () => {
    const n = LANE_INLINE_BYTES / 4 + 1024;
    const bytes = mlpModel({ inputSize: n, hidden: [2], outputSize: 2, seed: 8 });
    await b.put('wide-in', bytes);
    const data = floats(n, 6);
    const { out: r, seen } = await monitored(() => gw.invoke('wide-in', { x: { type: 'float32', dims: [1, n], data } }));
    expect(r.status).toBe(200);
    const sets = seen.filter((a) => a[0]?.toLowerCase() === 'set' && a[1]?.startsWith(`${b.namespace}:in:`));
    expect(sets).toHaveLength(1);
    const inKey = sets[0]![1]!;
    // No other command carries them: the job (the script that admits and queues it) and the answer are small.
    const others = seen.filter((a) => a !== sets[0]);
    expect(others.some((a) => a[0]?.toLowerCase() === 'evalsha')).toBe(true);
    for (const a of others) expect([a[0], longest(a)]).toEqual([a[0], expect.toSatisfy((x: number) => x < 4096)]);
    expect(seen.some((a) => a[0]?.toLowerCase() === 'get' && a[1] === inKey)).toBe(true);
    expect(await redis.exists(inKey)).toBe(0); // dropped once run
    expect(await redis.keys(`${b.namespace}:in:*`)).toEqual([]);
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(data), [1, n]) });
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  });

  it("a call of the node's own process (ROLE=all) puts no tensor bytes in Redis: one small script admits and counts it", async () => {
    await b.put('cls', readModel(REAL_MODELS.ocrCls));
    const data = floats(3 * 48 * 192, 7);
    expect((await b.invoke('cls', { x: { type: 'float32', dims: [1, 3, 48, 192], data } })).status).toBe(200); // warm
    const before = (await b.json('GET', '/functions/cls')).body.stats;
    const counts = (a: string[]) => ['evalsha', 'eval'].includes(a[0]!.toLowerCase()) && !!a[3]?.startsWith(`${b.namespace}:answered:`);
    const { out: r, seen } = await monitored(() => b.invoke('cls', { x: { type: 'float32', dims: [1, 3, 48, 192], data } }), counts);
    expect(r.status).toBe(200);
    expect(r.body.node).toBe(b.node!.id);
    // Inside a script MONITOR shows each command too: those are the script's, and all small.
    for (const a of seen) expect([a[0], longest(a)]).toEqual([a[0], expect.toSatisfy((x: number) => x < 4096)]);
    // One script (by its first key; EVAL after EVALSHA is the same one, new to this Redis), what
    // the node runs on its own timers aside (ownTimer: any of them may fall in the window): a lone
    // call that can run at once is admitted after its run, with its counts (admitAndApply).
    const call = seen.filter((a) => !ownTimer(a));
    const scripts = call.filter((a) => ['evalsha', 'eval'].includes(a[0]!.toLowerCase())).map((a) => a[3]);
    expect(scripts.filter((k, i) => k !== scripts[i - 1])).toEqual([expect.stringMatching(new RegExp(`^${b.namespace}:answered:[0-9a-f-]{36}$`))]);
    // Nothing is queued, stored or answered through Redis (the other gateway's XREAD of its own
    // reply stream may show here: a read, and not this call's).
    const writes = call.filter((a) => ['lpush', 'rpush', 'set', 'xadd', 'blmove', 'lmove'].includes(a[0]!.toLowerCase()));
    expect(writes.filter((a) => a.some((x) => x.startsWith(`${b.namespace}:lane:`) || x.startsWith(`${b.namespace}:replies:`) || x.startsWith(`${b.namespace}:in:`)))).toEqual([]);
    const after = (await b.json('GET', '/functions/cls')).body.stats;
    expect([after.invocations - before.invocations, after.warmHits + after.coldStarts - before.warmHits - before.coldStarts]).toEqual([1, 1]);
    const want = await runDirect(readModel(REAL_MODELS.ocrCls), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 3, 48, 192]) });
    expect(r.body.outputs['softmax_0.tmp_0'].data).toEqual(Array.from(want['softmax_0.tmp_0']!.data as Float32Array));
  });

  it('a call with large inputs and outputs leaves no input key behind, and its outputs are exact', async () => {
    await b.put('wide', mlpModel({ inputSize: 2048, hidden: [4], outputSize: 4096, seed: 3 }));
    const x = floats(2048, 9);
    const r = await b.invoke('wide', { x: { type: 'float32', dims: [1, 2048], data: x } });
    expect(r.status).toBe(200);
    expect(r.body.outputs.y.dims).toEqual([1, 4096]);
    expect(await redis.keys(`${b.namespace}:in:*`)).toEqual([]);
    const want = await runDirect(mlpModel({ inputSize: 2048, hidden: [4], outputSize: 4096, seed: 3 }), { x: new ort.Tensor('float32', Float32Array.from(x), [1, 2048]) });
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  });

  it('outputs travel node -> gateway as their raw bytes, not base64 inside JSON (sync: the reply stream; async: the result key)', async () => {
    const bytes = mlpModel({ inputSize: 8, hidden: [4], outputSize: 2048, seed: 4 });
    await b.put('rawout', bytes);
    const x = floats(8, 2);
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 8]) });
    const raw = Buffer.from(tensorBytes({ type: 'float32', dims: [1, 2048], data: want.y!.data as Float32Array }));
    // Async: the answer rests under its result key; its bytes are the outputs' bytes, with a small JSON header.
    const sub = await b.json('POST', '/functions/rawout/invoke?async=true', { inputs: { x: { type: 'float32', dims: [1, 8], data: x } } });
    expect(sub.status).toBe(202);
    let stored: Buffer | null = null;
    for (let i = 0; i < 200 && !(stored = await redis.getBuffer(`${b.namespace}:result:${sub.body.id}`)); i++) await new Promise((r) => setTimeout(r, 25));
    expect(stored!.indexOf(raw)).toBeGreaterThan(0);
    expect(stored!.byteLength).toBeLessThan(raw.byteLength + 1024);
    expect(stored!.includes(raw.toString('base64').slice(0, 64))).toBe(false);
    const s = await b.json('GET', `/invocations/${sub.body.id}`);
    expect(s.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
    // Sync: the XADD onto the gateway's reply stream carries a value no longer than bytes + header.
    const xadds: string[][] = [];
    const mon = await monitor(inject('redisUrl'), ({ args }) => {
      if (args[0]?.toLowerCase() === 'xadd' && args[1]?.startsWith(`${b.namespace}:replies:`)) xadds.push(args);
    });
    const r = await gw.invoke('rawout', { x: { type: 'float32', dims: [1, 8], data: x } });
    await new Promise((res) => setTimeout(res, 100));
    mon.stop();
    expect(r.status).toBe(200);
    expect(xadds.map((a) => a.length)).toEqual([7]); // XADD key * id <id> a <answer>
    expect(xadds[0]![6]!.includes(raw.toString('base64').slice(0, 64))).toBe(false);
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  });
});

describe('large answers are streamed (issue 12 §1)', () => {
  // y = sin(range(0.5, limit, 0.37)): as many distinct float32 values as asked for.
  const wave = encodeModel({
    inputs: [{ name: 'limit', type: 'float32', shape: [] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['n'] }],
    initializers: [
      { name: 'start', type: 'float32', dims: [], data: Float32Array.of(0.5) },
      { name: 'delta', type: 'float32', dims: [], data: Float32Array.of(0.37) },
    ],
    nodes: [
      { op: 'Range', inputs: ['start', 'limit', 'delta'], outputs: ['r'] },
      { op: 'Sin', inputs: ['r'], outputs: ['y'] },
    ],
    graphName: 'wave',
  });
  const LIMIT = 0.5 + 0.37 * 300_000; // 300 000 values, 1.2 MB: over STREAM_FROM_BYTES
  let want: Float32Array;
  beforeAll(async () => {
    expect((await b.put('wave', wave)).status).toBe(201);
    want = (await runDirect(wave, { limit: new ort.Tensor('float32', Float32Array.of(LIMIT), []) })).y!.data as Float32Array;
    expect(want.byteLength).toBeGreaterThan(STREAM_FROM_BYTES);
  });

  /** The body as the pieces it arrives in. */
  async function pieces(res: Response): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for await (const p of res.body as unknown as AsyncIterable<Uint8Array>) out.push(Buffer.from(p));
    return out;
  }
  /** Whether JSON numbers are, as float32, exactly `want` (a byte comparison: expect's deep equality takes seconds here). */
  const exact = (xs: number[]) => Buffer.from(Float32Array.from(xs).buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength));
  const expectStreamed = (ps: Buffer[]) => {
    expect(ps.length).toBeGreaterThan(4);
    expect(Math.max(...ps.map((p) => p.byteLength))).toBeLessThan(want.byteLength);
  };

  it('v1 JSON, sync and async: in pieces, each value onnxruntime\'s own', async () => {
    const res = await b.req('/functions/wave/invoke', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { limit: { type: 'float32', dims: [], data: [LIMIT] } } }) });
    expect([res.status, res.headers.get('content-type')]).toEqual([200, 'application/json']);
    const ps = await pieces(res);
    expectStreamed(ps);
    const body = JSON.parse(Buffer.concat(ps).toString()) as { function: string; outputs: { y: { type: string; dims: number[]; data: number[] } } };
    expect(body.function).toBe('wave');
    expect(body.outputs.y.dims).toEqual([want.length]);
    expect(exact(body.outputs.y.data)).toBe(true);

    const sub = await b.json('POST', '/functions/wave/invoke?async=true', { inputs: { limit: { type: 'float32', dims: [], data: [LIMIT] } } });
    expect(sub.status).toBe(202);
    for (let i = 0; i < 400 && (await b.json('GET', `/invocations/${sub.body.id}`)).body.status !== 'completed'; i++) await new Promise((r) => setTimeout(r, 25));
    const aps = await pieces(await b.req(`/invocations/${sub.body.id}`));
    expectStreamed(aps);
    const a = JSON.parse(Buffer.concat(aps).toString()) as { status: string; outputs: { y: { data: number[] } } };
    expect(a.status).toBe('completed');
    expect(exact(a.outputs.y.data)).toBe(true);
  });

  it('v2 JSON: in pieces, each value onnxruntime\'s own', async () => {
    const res = await b.req('/v2/models/wave/infer', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'limit', shape: [], datatype: 'FP32', data: [LIMIT] }] }) });
    expect(res.status).toBe(200);
    const ps = await pieces(res);
    expectStreamed(ps);
    const body = JSON.parse(Buffer.concat(ps).toString()) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> };
    expect(body.outputs.map((o) => [o.name, o.shape])).toEqual([['y', [want.length]]]);
    expect(exact(body.outputs[0]!.data)).toBe(true);
  });

  // v1 JSON and v2 binary: each route notes its streamed answer (functions/http/answer.ts's
  // streamedAnswer), and the drain waits for whichever it is.
  const routes = [
    { name: 'v1 JSON', path: '/functions/wave/invoke', body: { inputs: { limit: { type: 'float32', dims: [], data: [LIMIT] } } }, values: (b: Buffer) => exact((JSON.parse(b.toString()) as { outputs: { y: { data: number[] } } }).outputs.y.data) },
    {
      name: 'v2 binary',
      path: '/v2/models/wave/infer',
      body: { inputs: [{ name: 'limit', shape: [], datatype: 'FP32', data: [LIMIT] }], outputs: [{ name: 'y', parameters: { binary_data: true } }] },
      values: (b: Buffer) => b.subarray(b.byteLength - want.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)),
    },
  ];
  // Each route has a brulee of its own and spends its time waiting out the 500 ms: both run at once.
  it.concurrent.for(routes)('a drain waits for a streamed answer ($name) to be taken to its last byte before it closes', async ({ path, body, values }, { expect }) => {
    const c = await startBrulee();
    try {
      expect((await c.put('wave', wave)).status).toBe(201);
      const res = await c.req(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      // The handler has returned; its body has not been read. A drain starts, and the client
      // takes the body only 500 ms later: close must not finish before it has (one that does not
      // wait for the body is over in tens of ms).
      let closedAt: number | undefined;
      const closed = c.close({ drainMs: 20_000 }).then(() => (closedAt = Date.now()));
      await new Promise((r) => setTimeout(r, 500));
      const ps = await pieces(res);
      const readAt = Date.now();
      await closed;
      expect(closedAt!).toBeGreaterThanOrEqual(readAt);
      expect(values(Buffer.concat(ps))).toBe(true);
    } finally {
      await c.destroy();
    }
  });

  it('v2 binary: the JSON header, then the output bytes as they came (exactly onnxruntime\'s), plain and gzip', async () => {
    const req = { inputs: [{ name: 'limit', shape: [], datatype: 'FP32', data: [LIMIT] }], outputs: [{ name: 'y', parameters: { binary_data: true } }] };
    const raw = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
    for (const encoding of [undefined, 'gzip']) {
      const res = await b.req('/v2/models/wave/infer', { method: 'POST', headers: { 'content-type': 'application/json', ...(encoding ? { 'accept-encoding': encoding } : {}) }, body: JSON.stringify(req) });
      expect(res.status).toBe(200);
      const n = Number(res.headers.get('inference-header-content-length'));
      const ps = await pieces(res);
      const body = encoding ? gunzipSync(Buffer.concat(ps)) : Buffer.concat(ps);
      if (!encoding) {
        expect(Number(res.headers.get('content-length'))).toBe(n + raw.byteLength);
        // The output's bytes are one piece of their own: never copied into a buffer with the header.
        expect(ps.map((p) => p.byteLength)).toEqual([n, raw.byteLength]);
      } else expectStreamed(ps);
      expect(JSON.parse(body.subarray(0, n).toString())).toEqual({ model_name: 'wave', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [want.length], parameters: { binary_data_size: raw.byteLength } }] });
      expect(body.subarray(n).equals(raw)).toBe(true);
    }
  });
});
