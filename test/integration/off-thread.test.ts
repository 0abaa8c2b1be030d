import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBruleeError } from '../../errors';
import { mlpModel, typesModel } from '../../models/generate';
import type { Tensor } from '../../queue/wire';
import { MAPPED_FILE_NAME } from '../../runtime/mapped';
import { deriveOptimized, loadModel, offThread } from '../../runtime/onnx';
import { SessionHost } from '../../runtime/session-host';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { floats, ort } from '../support/models';
import { until, within } from '../support/within';

/**
 * Sessions hosted off the main thread (runtime/session-host.ts): onnxruntime-node creates and
 * runs a session synchronously on the calling thread, so a long model on the main thread stopped
 * the node's HTTP, heartbeats and Redis work until it was done (bench/event-loop.ts). In a host,
 * the outputs are the same bits, its errors keep their codes, a thread that dies fails only the
 * calls it held, and the main thread answers while the model computes.
 */

const dir = mkdtempSync(join(tmpdir(), 'brulee-offthread-'));
const host = new SessionHost();
afterAll(async () => {
  await host.close();
  rmSync(dir, { recursive: true, force: true });
});

/** 64 -> 1024 -> 1024 -> 16: ~4.5 MB, ~1.1 M multiply-adds a row (hundreds of ms on a few thousand rows). */
const LONG = mlpModel({ inputSize: 64, hidden: [1024, 1024], outputSize: 16, seed: 3 });
const longInput = (rows: number): Record<string, Tensor> => ({ x: { type: 'float32', dims: [rows, 64], data: Float32Array.from(floats(rows * 64, 7)) } });

const bits = (t: { data: unknown }) => (Array.isArray(t.data) ? JSON.stringify(t.data) : Buffer.from((t.data as Uint8Array).buffer, (t.data as Uint8Array).byteOffset, (t.data as Uint8Array).byteLength).toString('hex'));

describe('a session in the host thread', () => {
  it('gives the bits onnxruntime gives on the main thread: an MLP on 300 rows, every element type, an output subset, mapped and ORT-format artifacts', async () => {
    const cases: Array<{ source: string | Uint8Array; inputs: Record<string, Tensor>; outputs?: string[]; preOptimized?: boolean }> = [
      { source: LONG, inputs: longInput(300) },
      {
        source: typesModel(),
        inputs: {
          f32: { type: 'float32', dims: [2, 3], data: Float32Array.from(floats(6)) },
          f64: { type: 'float64', dims: [3], data: Float64Array.from([0.1, -2.5, 1e300]) },
          i32: { type: 'int32', dims: [1, 2], data: Int32Array.from([-7, 2 ** 31 - 1]) },
          i64: { type: 'int64', dims: [4], data: BigInt64Array.from([1n, -1n, 2n ** 62n, -(2n ** 63n)]) },
          u8: { type: 'uint8', dims: [2, 2], data: Uint8Array.from([0, 1, 254, 255]) },
          b: { type: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
        } as Record<string, Tensor>,
        outputs: ['i64_out', 'f64_out'],
      },
    ];
    // A mapped artifact (weights mapped from the file, runtime/mapped.ts) and the ORT format.
    const src = join(dir, 'src.onnx');
    const wide = mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 5 });
    writeFileSync(src, wide);
    for (const form of ['mapped', 'ort'] as const) {
      mkdirSync(join(dir, form));
      const out = join(dir, form, MAPPED_FILE_NAME);
      expect((await deriveOptimized(src, out, { form })).form).toBe(form);
      cases.push({ source: out, inputs: longInput(40), preOptimized: true });
    }
    for (const c of cases) {
      const opts = c.preOptimized ? { preOptimized: true } : {};
      const m = await loadModel(c.source, { ...opts, host });
      const onMain = await loadModel(c.source, opts);
      try {
        expect(m.signature).toEqual(onMain.signature);
        const got = await m.run(c.inputs, c.outputs);
        const want = await onMain.run(c.inputs, c.outputs);
        expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
        for (const [name, t] of Object.entries(want)) {
          expect(got[name]!.type).toBe(t.type);
          expect(got[name]!.dims).toEqual(t.dims);
          expect(bits(got[name]!)).toBe(bits(t));
        }
      } finally {
        await m.dispose();
        await onMain.dispose();
      }
    }
    // And against onnxruntime with no brulee at all (its defaults), for the MLP.
    const golden = await (await ort.InferenceSession.create(LONG, { intraOpNumThreads: 1 })).run({ x: new ort.Tensor('float32', longInput(300).x!.data as Float32Array, [300, 64]) });
    const m = await loadModel(LONG, { host });
    expect(bits((await m.run(longInput(300))).y!)).toBe(bits(golden.y!));
    await m.dispose();
  });

  it('says it is hosted (so a measured run is not charged its outputs: the main thread does not count them), and a model on the main thread does not', async () => {
    const hosted = await loadModel(LONG, { host });
    const here = await loadModel(LONG);
    expect(hosted.hosted).toBe(true);
    expect(here.hosted).toBeUndefined();
    await hosted.dispose();
    await here.dispose();
  });

  it("leaves the caller's input tensors as they were (they are copied to the thread, not moved)", async () => {
    const m = await loadModel(LONG, { host });
    const inputs = longInput(3);
    const before = bits(inputs.x!);
    await m.run(inputs);
    expect(bits(inputs.x!)).toBe(before);
    await m.dispose();
  });

  it("leaves a caller's Buffer input and the frame it views whole (a Buffer's own slice() is a view: its transfer took the frame)", async () => {
    const m = await loadModel(typesModel(), { host });
    const frame = Buffer.alloc(64, 7);
    const u8 = frame.subarray(8, 12); // a Buffer, as a view into a frame read from Redis is
    const inputs = {
      f32: { type: 'float32', dims: [2, 3], data: Float32Array.from(floats(6)) },
      f64: { type: 'float64', dims: [3], data: Float64Array.from([1, 2, 3]) },
      i32: { type: 'int32', dims: [1, 2], data: Int32Array.from([1, 2]) },
      i64: { type: 'int64', dims: [4], data: BigInt64Array.from([1n, 2n, 3n, 4n]) },
      u8: { type: 'uint8', dims: [2, 2], data: u8 },
      b: { type: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
    } as Record<string, Tensor>;
    const out = await m.run(inputs);
    expect(frame.byteLength).toBe(64);
    expect(u8.byteLength).toBe(4);
    expect([...frame]).toEqual(Array(64).fill(7));
    expect(Object.keys(out).length).toBeGreaterThan(0);
    await m.dispose();
  });

  it("passes onnxruntime's errors on with the codes the main thread gives: INVALID_MODEL, INFERENCE_FAILED", async () => {
    const load = await loadModel(new Uint8Array([1, 2, 3]), { host }).catch((e: unknown) => e);
    expect(isBruleeError(load) && load.code).toBe('INVALID_MODEL');
    const m = await loadModel(LONG, { host });
    const run = await m.run({ x: { type: 'float32', dims: [2, 63], data: new Float32Array(126) } }).catch((e: unknown) => e);
    expect(isBruleeError(run) && run.code).toBe('INFERENCE_FAILED');
    expect((run as Error).message).toMatch(/onnxruntime could not run the model on these inputs: .*(dim|shape|Got)/i);
    // The session is still there after an error.
    expect((await m.run(longInput(2))).y!.dims).toEqual([2, 16]);
    await m.dispose();
  });

  it('a thread that dies with a run in flight fails that call with INTERNAL (never a hang), and the next call runs in a new thread', async () => {
    const own = new SessionHost();
    try {
      const m = await loadModel(LONG, { host: own });
      const want = bits((await m.run(longInput(5))).y!);
      const long = m.run(longInput(4000));
      long.catch(() => undefined);
      // Read by the thread before the run's request (sent a microtask later): it dies with the run in flight.
      own.crash('killed by the test');
      const e = await within(10_000, 'the run of a dead thread', long.then(() => 'answered', (err: unknown) => err));
      expect(isBruleeError(e) && e.code).toBe('INTERNAL');
      expect((e as Error).message).toMatch(/thread running onnxruntime for this model stopped \(killed by the test\)/);
      // Loaded again in the host's next thread, from the same source: the same bits.
      expect(bits((await within(10_000, 'a run after the thread died', m.run(longInput(5)))).y!)).toBe(want);
      await m.dispose();
    } finally {
      await own.close();
    }
  });

  it('a closed host refuses loads with SHUTTING_DOWN', async () => {
    const own = new SessionHost();
    await own.start();
    await own.close();
    const e = await loadModel(LONG, { host: own }).catch((err: unknown) => err);
    expect(isBruleeError(e) && e.code).toBe('SHUTTING_DOWN');
  });

  it('a second close waits for the threads as the first does, and a run caught by the close fails SHUTTING_DOWN (not INTERNAL)', async () => {
    const own = new SessionHost();
    const m = await loadModel(LONG, { host: own });
    const long = m.run(longInput(3000)).catch((err: unknown) => err);
    let firstDone = false;
    const first = own.close().then(() => (firstDone = true));
    await within(20_000, 'the second close', own.close());
    expect(firstDone).toBe(true);
    await first;
    expect(isBruleeError(await long) && ((await long) as { code: string }).code).toBe('SHUTTING_DOWN');
  });

  it("lets the main thread's timers run while it computes", async () => {
    const m = await loadModel(LONG, { host });
    // On the main thread the run would hold it from its start to its end: no tick at all in
    // between. How many fit in a run in the thread is the scheduler's: a run that had 3 or fewer
    // is done again, 5 runs at most.
    let during = 0;
    for (let runs = 0; during <= 3 && runs < 5; runs++) {
      let ticks = 0;
      const t = setInterval(() => ticks++, 1);
      await m.run(longInput(3000)).then(() => (during = ticks));
      clearInterval(t);
    }
    expect(during).toBeGreaterThan(3);
    await m.dispose();
  });
});

describe('the rule: which models go off the main thread', () => {
  it('auto: a model whose registered run took ORT_OFF_THREAD_MS or more, or its load ORT_OFF_THREAD_LOAD_MS or more; always and never: all, none', () => {
    const limits = { runMs: 10, loadMs: 100 };
    expect(offThread('auto', limits, { loadMs: 2, execMs: 0.1 })).toBe(false);
    // PP-OCR cls: a 20-50 ms load, a ~1.3 ms run: on the main thread (a call in the host pays the thread's hop).
    expect(offThread('auto', limits, { loadMs: 50, execMs: 1.3 })).toBe(false);
    expect(offThread('auto', limits, { loadMs: 100, execMs: 0.1 })).toBe(true);
    expect(offThread('auto', limits, { loadMs: 2, execMs: 10 })).toBe(true);
    expect(offThread('auto', limits, { loadMs: 2, execMs: 9.9 })).toBe(false);
    expect(offThread('always', limits, { loadMs: 0, execMs: 0 })).toBe(true);
    expect(offThread('never', limits, { loadMs: 1e6, execMs: 1e6 })).toBe(false);
  });
});

describe('a node with ORT_OFF_THREAD=always', () => {
  let b: TestBrulee;
  beforeAll(async () => {
    b = await startBrulee({ ORT_OFF_THREAD: 'always', ORT_OFF_THREAD_THREADS: '2' });
    expect((await b.put('long', LONG)).status).toBe(201);
    expect((await b.put('tiny', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
  });
  afterAll(() => b?.destroy());

  it("answers /healthz and another function's calls while a long run is under way, and the long call's outputs are onnxruntime's", async () => {
    const rows = 3000;
    const x = floats(rows * 64, 7);
    // Both warm, their first runs measured (runtime/footprint.ts measures each alone: it waits for every other run).
    for (let i = 0; i < 4; i++) expect((await b.invoke('long', { x: { type: 'float32', dims: [rows, 64], data: x } })).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await b.invoke('tiny', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } })).status).toBe(200);
    // A round (/healthz and a call of the other function, at once) counts when the long call holds
    // its model (its lease: from before its run to after it) both when the round starts and when
    // it has its answers. On the main thread the run holds it from start to end, and the lease
    // waits on no I/O besides: no round, whose call goes to Redis and back, fits in it (0 with
    // ORT_OFF_THREAD=never). How many fit in a run in the host is the scheduler's and the shared
    // Redis's (1 in a full run at load 7): a run that had none is done again, 5 runs at most.
    const held = () => (b.node!.pool.list().find((e) => e.fn === 'long')?.inFlight ?? 0) > 0;
    let answered = 0;
    let r: { status: number; body: any } | undefined;
    for (let runs = 0; answered === 0 && runs < 5; runs++) {
      let ended = false;
      const long = b.invoke('long', { x: { type: 'float32', dims: [rows, 64], data: x } }).finally(() => (ended = true));
      await until('the long call to hold its model', () => ended || held(), 10_000);
      while (!ended) {
        const during = held();
        const [h, t] = await Promise.all([b.req('/healthz'), b.invoke('tiny', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } })]);
        expect(h.status).toBe(200);
        expect(t.status).toBe(200);
        if (during && held() && !ended) answered++;
      }
      r = await long;
      expect(r.status).toBe(200);
    }
    expect(answered).toBeGreaterThanOrEqual(1);
    const golden = await (await ort.InferenceSession.create(LONG, { intraOpNumThreads: 1 })).run({ x: new ort.Tensor('float32', Float32Array.from(x), [rows, 64]) });
    expect(Buffer.from(Float32Array.from(r!.body.outputs.y.data as number[]).buffer).equals(Buffer.from((golden.y!.data as Float32Array).buffer))).toBe(true);
  });

  it('puts every model in the host, whatever its profile', async () => {
    const keys = b.node!.pool.list().map((e) => e.key);
    expect(keys.length).toBe(2);
    for (const k of keys) expect(b.node!.inSessionHost(k)).toBe(true);
  });

  it('measures the footprint of a model loaded in the host (RSS is the process\'s) and charges it', () => {
    const m = b.node!.pool.list().find((e) => e.fn === 'long')!;
    const measured = b.node!.footprints.measured(m.key);
    // Its weights alone are ~4.5 MB.
    expect(measured).toBeGreaterThan(3e6);
    expect(m.sizeBytes).toBeGreaterThanOrEqual(measured);
  });
});

describe('a node with ORT_OFF_THREAD=auto', () => {
  it('keeps a model whose registered load and run are under their limits on the main thread', async () => {
    const b = await startBrulee({ ORT_OFF_THREAD_MS: '3600000', ORT_OFF_THREAD_LOAD_MS: '3600000' });
    try {
      expect((await b.put('tiny', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
      expect((await b.invoke('tiny', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } })).status).toBe(200);
      const [m] = b.node!.pool.list();
      expect(b.node!.inSessionHost(m!.key)).toBe(false);
    } finally {
      await b.destroy();
    }
  });

  it('sends a model whose runs here take ORT_OFF_THREAD_MS or more (inputs larger than registration ran) to the host at its next load', async () => {
    // Registration ran LONG on one row (a median of ~1 ms). 3000 rows took 54-72 ms on the main
    // thread of this machine at load 9: at a limit of 50 ms, a quicker run left the model's next
    // load on the main thread (inSessionHost false below). 6000 rows take twice that, more under
    // load: a limit of 20 ms is ~5x under the long run and ~20x over the registered one.
    const b = await startBrulee({ ORT_OFF_THREAD_MS: '20', ORT_OFF_THREAD_LOAD_MS: '3600000' });
    try {
      expect((await b.put('long', LONG)).status).toBe(201);
      const key = () => b.node!.pool.list().find((e) => e.fn === 'long')!.key;
      expect((await b.invoke('long', { x: { type: 'float32', dims: [1, 64], data: floats(64, 7) } })).status).toBe(200);
      expect(b.node!.inSessionHost(key())).toBe(false);
      const rows = 6000;
      const x = floats(rows * 64, 7);
      expect((await b.invoke('long', { x: { type: 'float32', dims: [rows, 64], data: x } })).status).toBe(200);
      // The session already loaded stays where it is; the next load goes to the host.
      expect(b.node!.inSessionHost(key())).toBe(false);
      expect((await b.json('POST', '/v2/repository/models/long/unload')).status).toBe(200);
      const r = await b.invoke('long', { x: { type: 'float32', dims: [rows, 64], data: x } });
      expect(r.status).toBe(200);
      expect(r.body.coldStart).toBe(true);
      expect(b.node!.inSessionHost(key())).toBe(true);
      const golden = await (await ort.InferenceSession.create(LONG, { intraOpNumThreads: 1 })).run({ x: new ort.Tensor('float32', Float32Array.from(x), [rows, 64]) });
      expect(Buffer.from(Float32Array.from(r.body.outputs.y.data as number[]).buffer).equals(Buffer.from((golden.y!.data as Float32Array).buffer))).toBe(true);
    } finally {
      await b.destroy();
    }
  }, 60_000);

  it('does not send a model to the host for runs that waited behind other work in the event loop', async () => {
    // onnxruntime-node runs a session in a setImmediate of its own: a run of the tiny MLP (~0.1 ms)
    // queued behind 15 ms of other work in the loop (here an immediate that holds the thread and
    // queues itself again) took that long by the clock. Its input is the size of those that ran
    // short before it, so its model's next load stays on the main thread.
    const b = await startBrulee({ ORT_OFF_THREAD_MS: '10', ORT_OFF_THREAD_LOAD_MS: '3600000' });
    let holding = true;
    try {
      expect((await b.put('tiny', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
      const input = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
      // The footprint's first runs (measured alone) are timed for the host whatever their input.
      for (let i = 0; i < 4; i++) expect((await b.invoke('tiny', input)).status).toBe(200);
      const key = b.node!.pool.list().find((e) => e.fn === 'tiny')!.key;
      const hold = () => {
        const until = performance.now() + 15;
        while (performance.now() < until);
        if (holding) setImmediate(hold);
      };
      setImmediate(hold);
      for (let i = 0; i < 3; i++) expect((await b.invoke('tiny', input)).status).toBe(200);
      holding = false;
      expect((await b.json('POST', '/v2/repository/models/tiny/unload')).status).toBe(200);
      const r = await b.invoke('tiny', input);
      expect(r.status).toBe(200);
      expect(r.body.coldStart).toBe(true);
      expect(b.node!.inSessionHost(key)).toBe(false);
    } finally {
      holding = false;
      await b.destroy();
    }
  }, 60_000);
});
