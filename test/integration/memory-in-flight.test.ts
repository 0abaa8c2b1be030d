import { afterEach, describe, expect, it } from 'vitest';
import { mlpForBytes, stringsModel } from '../../models/generate';
import type { CallBytes, Lease } from '../../runtime/warm-pool';
import type { LoadedModel } from '../../runtime/onnx';
import { floats, REAL_MODELS, readModel } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { within } from '../support/within';

/**
 * Issue 12 §4, what calls hold beside their models, from the warm pool's own accounting (no RSS,
 * no timing): a call's tensors are charged with its model and stay charged until its answer is
 * sent, and a run that may grow its model has that growth reserved before it runs, so the pool's
 * used bytes never pass the budget while calls run at once, on real onnxruntime sessions.
 */
const MiB = 1024 ** 2;
const DET = readModel(REAL_MODELS.ocrDet);
const image = (h: number, w: number, seed: number) => ({ x: { type: 'float32', dims: [1, 3, h, w], data: floats(3 * h * w, seed) } });
const mlp = (rows: number, seed: number) => ({ x: { type: 'float32', dims: [rows, 64], data: floats(rows * 64, seed) } });

let b: TestBrulee | undefined;
afterEach(async () => {
  await b?.destroy();
  b = undefined;
});

/** Records what each invocation asked the pool for, and what its reservation held once its outputs were known. */
function spy(brulee: TestBrulee) {
  const pool = brulee.node!.pool;
  const calls: Array<{ fn: string; asked: CallBytes; after?: number; usedAfter?: number; modelsAfter?: number }> = [];
  /** One per call, settled when its reservation is freed (after its answer is sent, which its caller may see first). */
  const freed: Array<Promise<void>> = [];
  const acquire = pool.acquire.bind(pool);
  pool.acquire = async (spec, deadline, call = {}) => {
    const lease: Lease<LoadedModel> = await acquire(spec, deadline, call);
    const rec: (typeof calls)[number] = { fn: spec.fn, asked: call };
    calls.push(rec);
    const { reservation } = lease;
    const set = reservation.set.bind(reservation);
    const free = reservation.free.bind(reservation);
    freed.push(new Promise((resolve) => (reservation.free = () => (free(), resolve()))));
    reservation.set = (n) => {
      set(n);
      if (rec.after !== undefined) return; // free() sets 0: keep what it held once its outputs were known
      rec.after = reservation.bytes;
      rec.usedAfter = pool.usedBytes;
      rec.modelsAfter = pool.list().reduce((a, m) => a + m.sizeBytes, 0);
    };
    return lease;
  };
  return { calls, allFreed: () => within(5000, 'every reservation freed', Promise.all(freed)) };
}

describe('calls in flight are charged to the warm pool', () => {
  // First: a model measured in a process whose heap already held what another session freed would look smaller.
  it("a fresh model's first runs, with other models' calls in flight: their growth is reserved before they run, so the re-charge never takes used bytes past the budget", async () => {
    const BUDGET = 48 * MiB;
    b = await startBrulee({ MEMORY_BUDGET: String(BUDGET), WORKER_CONCURRENCY: '4' });
    let detKey = '';
    for (const [fn, bytes] of [['ocr-det', DET], ['mlp-12mb', mlpForBytes(12 * MiB, 2)], ['mlp-8mb', mlpForBytes(8 * MiB, 3)]] as const) {
      const r = await b.put(fn, bytes);
      expect(r.status).toBe(201);
      if (fn === 'ocr-det') detKey = `${fn}@${String(r.body.sha256).slice(0, 16)}`;
    }
    const { calls, allFreed } = spy(b);
    const pool = b.node!.pool;
    const fp = b.node!.footprints;
    // Rounds of: the two MLPs' calls and det's runs on ever larger inputs (each measured), at once.
    for (const [i, side] of [96, 160, 224, 320, 320, 320].entries()) {
      const rs = await Promise.all([
        b.invoke('ocr-det', image(side, side, i + 1)),
        b.invoke('mlp-12mb', mlp(16, i + 1)),
        b.invoke('mlp-8mb', mlp(8, i + 1)),
        b.invoke('mlp-12mb', mlp(4, i + 2)),
      ]);
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    }
    // det grew in this process (its arena on 320x320), so its first runs were re-charged...
    expect(fp.measured(detKey)).toBeGreaterThan(0);
    expect(calls.filter((c) => c.fn === 'ocr-det' && (c.asked.growth ?? 0) > 0).length).toBeGreaterThan(0);
    // ...and the pool's own high-water mark of used bytes passed the budget by no more than the
    // growth no call had reserved (the reserve is an estimate, footprint.ts's growthEstimate).
    expect(pool.peakUsedBytes).toBeLessThanOrEqual(BUDGET + pool.unreservedBytes);
    await allFreed();
    expect(pool.callBytes).toBe(0);
    expect(pool.list().reduce((a, m) => a + m.sizeBytes, 0)).toBe(pool.usedBytes);
  }, 180_000);

  it('8 PP-OCR det calls at once: each is admitted with its tensors charged (2x its input, 3x its outputs once known), held until answered, and used bytes never pass the budget', async () => {
    const BUDGET = 64 * MiB;
    b = await startBrulee({ MEMORY_BUDGET: String(BUDGET), WORKER_CONCURRENCY: '4' });
    expect((await b.put('ocr-det', DET)).status).toBe(201);
    const { calls, allFreed } = spy(b);
    const pool = b.node!.pool;
    const inBytes = 3 * 320 * 320 * 4;
    const outBytes = 320 * 320 * 4; // its probability map, 1x1x320x320 float32
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => b!.invoke('ocr-det', image(320, 320, i + 1))));
    expect(rs.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(rs.map((r) => Object.values(r.body.outputs as Record<string, { dims: number[] }>).map((t) => t.dims))).toEqual(Array(8).fill([[1, 1, 320, 320]]));
    expect(calls).toHaveLength(8);
    for (const c of calls) {
      // Before the run: the input twice, and outputs guessed (the input's size for the first call).
      expect(c.asked.bytes).toBeGreaterThanOrEqual(2 * inBytes + 3 * outBytes);
      // After it: exactly what it holds, and the pool counted it beside the models.
      expect(c.after).toBe(2 * inBytes + 3 * outBytes);
      expect(c.usedAfter! - c.modelsAfter!).toBeGreaterThanOrEqual(c.after!);
    }
    // Answered: nothing is held for them any more, and the charges add up.
    await allFreed();
    expect(pool.callBytes).toBe(0);
    expect(pool.list().reduce((a, m) => a + m.sizeBytes, 0)).toBe(pool.usedBytes);
    expect(pool.peakUsedBytes).toBeLessThanOrEqual(BUDGET + pool.unreservedBytes);
  }, 120_000);
  it('a string tensor counts its 4-byte length prefix per element, in this process as on the wire: one count on both paths', async () => {
    b = await startBrulee({ MEMORY_BUDGET: String(16 * MiB) });
    expect((await b.put('strings', stringsModel())).status).toBe(201);
    const { calls, allFreed } = spy(b);
    const r = await b.invoke('strings', { s: { type: 'string', dims: [3], data: ['1', '2.5', '-3'] } });
    expect(r.status).toBe(200);
    // ROLE=all: the call ran in this process (invokeHere), not through a lane.
    expect(calls).toHaveLength(1);
    const inBytes = 3 * 4 + 1 + 3 + 2; // s
    const outBytes = inBytes + 3 * 4; // u (the same strings) and f (3 float32)
    expect(calls[0]!.after).toBe(2 * inBytes + 3 * outBytes);
    await allFreed();
  }, 60_000);
});
