import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
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
    // An async invocation keeps its job, so the job's own bytes can be read.
    const r = await b.json('POST', '/functions/cls/invoke?async=true', { inputs: input });
    expect(r.status).toBe(202);
    let s: any;
    for (let i = 0; i < 200; i++) {
      s = (await b.json('GET', `/invocations/${r.body.id}`)).body;
      if (s.status === 'completed' || s.status === 'failed') break;
      await new Promise((res) => setTimeout(res, 25));
    }
    expect(s.status).toBe('completed');
    const k = keys(b.namespace);
    const job = await redis.hget(`${k.bullPrefix}:${k.nodeQueue(b.node!.id)}:${r.body.id}`, 'data');
    expect(job).not.toBeNull();
    expect(job!.length).toBeLessThan(1024); // 110 592 bytes of input are not in it
    expect(JSON.parse(job!).inputs.key).toBe(k.inputs(r.body.id));
    expect(await redis.exists(k.inputs(r.body.id))).toBe(0); // dropped once run
    const want = await runDirect(readModel(REAL_MODELS.ocrCls), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 3, 48, 192]) });
    expect(s.outputs['softmax_0.tmp_0'].data).toEqual(Array.from(want['softmax_0.tmp_0']!.data as Float32Array));
  });

  it('sync calls leave no input or output keys behind, small or large', async () => {
    await b.put('wide', mlpModel({ inputSize: 2048, hidden: [4], outputSize: 4096, seed: 3 }));
    const x = floats(2048, 9);
    const r = await b.invoke('wide', { x: { type: 'float32', dims: [1, 2048], data: x } });
    expect(r.status).toBe(200);
    expect(r.body.outputs.y.dims).toEqual([1, 4096]);
    const k = keys(b.namespace);
    expect(await redis.keys(`${b.namespace}:in:*`)).toEqual([]);
    expect(await redis.keys(k.result('*'))).toEqual([]);
  });
});
