import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { tensorBytes } from '../../queue/tensor';
import { INLINE_BYTES, packTensors, unpackTensors, type Tensor } from '../../queue/wire';
import { mlpModel } from '../../models/generate';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';

const redis = createRedis(inject('redisUrl'));
let b: TestBrulee;
beforeAll(async () => {
  b = await startBrulee();
});
afterAll(async () => {
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

  it('large inputs travel as bytes under their own key, not inside the job, and are gone once the job has run', async () => {
    await b.put('cls', readModel(REAL_MODELS.ocrCls));
    const data = floats(3 * 48 * 192, 5);
    const input = { x: { type: 'float32', dims: [1, 3, 48, 192], data } };
    expect(data.length * 4).toBeGreaterThan(INLINE_BYTES);
    // Every command Redis runs during the call, as MONITOR reports it.
    const mon = await redis.monitor();
    const seen: string[][] = [];
    mon.on('monitor', (_t: string, args: string[]) => seen.push(args));
    const r = await b.invoke('cls', input);
    await new Promise((res) => setTimeout(res, 100));
    mon.disconnect();
    expect(r.status).toBe(200);
    const sets = seen.filter((a) => a[0]?.toLowerCase() === 'set' && a[1]?.startsWith(`${b.namespace}:in:`));
    expect(sets).toHaveLength(1);
    const inKey = sets[0]![1]!;
    // No other command carries them: the job (BullMQ's add script) and the answer are small.
    const others = seen.filter((a) => a !== sets[0]);
    expect(others.some((a) => a[0]?.toLowerCase() === 'evalsha')).toBe(true);
    const longest = (a: string[]) => Math.max(0, ...a.slice(a[0]?.toLowerCase() === 'eval' ? 2 : 1).map((x) => x.length)); // not a script's source
    for (const a of others) expect([a[0], longest(a)]).toEqual([a[0], expect.toSatisfy((n: number) => n < 4096)]);
    expect(seen.some((a) => a[0]?.toLowerCase() === 'get' && a[1] === inKey)).toBe(true);
    expect(await redis.exists(inKey)).toBe(0); // dropped once run
    expect(await redis.keys(`${b.namespace}:in:*`)).toEqual([]);
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
    const mon = await redis.monitor();
    const xadds: string[][] = [];
    mon.on('monitor', (_t: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'xadd' && args[1]?.startsWith(`${b.namespace}:replies:`)) xadds.push(args);
    });
    const r = await b.invoke('rawout', { x: { type: 'float32', dims: [1, 8], data: x } });
    await new Promise((res) => setTimeout(res, 100));
    mon.disconnect();
    expect(r.status).toBe(200);
    expect(xadds.map((a) => a.length)).toEqual([7]); // XADD key * id <id> a <answer>
    expect(xadds[0]![6]!.includes(raw.toString('base64').slice(0, 64))).toBe(false);
    expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  });
});
