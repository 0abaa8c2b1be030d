import { afterAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { WHOLE_PARK_MAX_BYTES } from '../../runtime/parked';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { mapped, sameAsDirect } from '../support/parked';
import { until } from '../support/within';

// The node runs in this process: its sessions' mappings are this process's (/proc/self).
const opened: TestBrulee[] = [];

/**
 * A node whose parked sessions are the ones its unloads park, on the thread they were built on:
 * - PREPARK off: a pre-park (runtime/prepark.ts) in an idle gap (a put's 200 ms before its first
 *   call, on a loaded machine) would park and count a session of its own, and these tests count
 *   each park and take (pre-parking: prepark.test.ts).
 * - ORT_OFF_THREAD_MS an hour: a run of 10 ms or more on the main thread (PP-OCR det, or any model
 *   at load 8) sends the model's next load to the session host (`longRuns`), which does not take a
 *   session parked as built on the main thread (`taken 0`): right, but not what is tested here.
 */
const start = (env: Record<string, string> = {}) => startBrulee({ PREPARK: 'off', ORT_OFF_THREAD_MS: '3600000', ...env });
afterAll(async () => {
  for (const b of opened) await b.destroy();
});

async function registerWide(b: TestBrulee, name: string, seed: number) {
  // 64 -> 500 -> 1000 -> 16: a 2 MB weight, so the mapped form (runtime/mapped.ts).
  const bytes = mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed });
  const put = await b.put(name, bytes);
  expect([200, 201]).toContain(put.status); // 200: a new version
  expect(put.body.profile.artifact).toMatchObject({ form: 'mapped' });
  return { bytes, sha: put.body.profile.artifact.sha256 as string };
}

describe('parked sessions (runtime/parked.ts)', () => {
  it('an unloaded mapped model keeps its session with its pages given back; its next cold start reuses it, bit for bit; a new version or a deletion disposes it', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    const { bytes, sha } = await registerWide(b, 'wide', 11);
    expect((await sameAsDirect(b, 'wide', bytes, 1, 1)).coldStart).toBe(true);
    expect(mapped(sha).rssKiB).toBeGreaterThan(1024);

    expect((await b.json('POST', '/v2/repository/models/wide/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    // The session and its mappings stay; their pages do not.
    expect(mapped(sha).mappings).toBeGreaterThan(0);
    expect(mapped(sha).rssKiB).toBe(0);
    expect(node.parkedSessions.bytes).toBeLessThan(node.pool.budgetBytes * 0.05);

    // A cold start, served by the parked session: one row and several, as onnxruntime on the original.
    expect((await sameAsDirect(b, 'wide', bytes, 3, 2)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 1, held: 0 });
    expect(await sameAsDirect(b, 'wide', bytes, 1, 3)).toMatchObject({ coldStart: false });
    expect(mapped(sha).rssKiB).toBeGreaterThan(1024);

    // A new version retires this one's model: disposed, not parked.
    await registerWide(b, 'wide', 12);
    await sameAsDirect(b, 'wide', mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 12 }), 1, 4);
    await until('the retired session disposed', () => mapped(sha).mappings === 0);
    expect(node.parkedSessions).toMatchObject({ parked: 1, held: 0 });

    // A parked model of a deleted function goes with it.
    const v = await registerWide(b, 'gone', 13);
    await sameAsDirect(b, 'gone', v.bytes, 1, 5);
    expect((await b.json('POST', '/v2/repository/models/gone/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    expect((await b.json('DELETE', '/functions/gone')).status).toBe(200);
    await until('the deleted function\'s parked session disposed', () => node.parkedSessions.held === 0 && mapped(v.sha).mappings === 0);
  });

  it('PP-OCR det (no tensor over 1 MiB, 4.6 MB in tensors of a page or more) is mapped, so an unload parks it; its next cold start reuses it, bit for bit', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    const put = await b.put('det', readModel(REAL_MODELS.ocrDet));
    expect(put.status).toBe(201);
    expect(put.body.profile.artifact).toMatchObject({ form: 'mapped' });
    const sha = put.body.profile.artifact.sha256 as string;
    const det = async (seed: number) => {
      const x = floats(3 * 64 * 96, seed);
      const r = await b.invoke('det', { x: { type: 'float32', dims: [1, 3, 64, 96], data: x } });
      expect(r.status).toBe(200);
      const want = await runDirect(readModel(REAL_MODELS.ocrDet), { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3, 64, 96]) });
      for (const [k, t] of Object.entries(want)) expect(r.body.outputs[k].data).toEqual(Array.from(t.data as Float32Array));
      return r.body as { coldStart: boolean };
    };
    expect((await det(1)).coldStart).toBe(true);
    expect((await b.json('POST', '/v2/repository/models/det/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    expect(mapped(sha)).toMatchObject({ rssKiB: 0 });
    expect(mapped(sha).mappings).toBeGreaterThan(0);
    expect((await det(2)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 1, held: 0 });
  });

  it('a session parked by an unload goes when a new version of its function retires it', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    const { bytes, sha } = await registerWide(b, 'old', 31);
    await sameAsDirect(b, 'old', bytes, 1, 1);
    expect((await b.json('POST', '/v2/repository/models/old/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    // Version 2, called: version 1 is never called again, and its parked session goes.
    const v2 = await registerWide(b, 'old', 32);
    await sameAsDirect(b, 'old', mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 32 }), 1, 2);
    await until('the retired version\'s parked session disposed', () => node.parkedSessions.held === 0 && mapped(sha).mappings === 0);
    expect(mapped(v2.sha).mappings).toBeGreaterThan(0);
  });

  it('a session parked under other session options is not reused: the same bytes registered again with arena=false load a session of their own', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    const { bytes } = await registerWide(b, 'opts', 41);
    await sameAsDirect(b, 'opts', bytes, 1, 1);
    expect((await b.json('POST', '/v2/repository/models/opts/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    const again = await b.put('opts', bytes, 'arena=false');
    expect(again.status).toBe(200);
    expect((await sameAsDirect(b, 'opts', bytes, 2, 2)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 0, held: 0 });
  });

  it('an unloaded small model with no mapped weights (charged WHOLE_PARK_MAX_BYTES or less) keeps its whole session; its next cold start reuses it, bit for bit; a larger one is disposed', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    // The tiny MLP of bench:speed and cold-pairs.ts (64 -> 64 -> 16): 21 KB, ~0.4 MiB charged.
    const small = mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 31 });
    expect((await b.put('small', small)).body.profile.artifact.form).not.toBe('mapped');
    expect((await sameAsDirect(b, 'small', small, 1, 1)).coldStart).toBe(true);
    const charge = node.pool.list().find((e) => e.fn === 'small')!.sizeBytes;
    expect(charge).toBeLessThanOrEqual(WHOLE_PARK_MAX_BYTES);
    expect((await b.json('POST', '/v2/repository/models/small/unload')).status).toBe(200);
    await until('the unloaded session parked', () => node.parkedSessions.held === 1);
    expect(node.parkedSessions.bytes).toBe(charge);
    expect(node.pool.list().some((e) => e.fn === 'small')).toBe(false);
    expect((await sameAsDirect(b, 'small', small, 3, 2)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 1, held: 0, bytes: 0 });

    // 64 -> 400 -> 400 -> 400 -> 16: 2.1 MB of weights, none over 1 MiB (not mapped), charged well over the
    // bound (the charge is measured: a 0.8 MB model was once charged 0.77 MiB, under it).
    const larger = mlpModel({ inputSize: 64, hidden: [400, 400, 400], outputSize: 16, seed: 32 });
    expect((await b.put('larger', larger)).body.profile.artifact.form).not.toBe('mapped');
    await sameAsDirect(b, 'larger', larger, 1, 3);
    expect(node.pool.list().find((e) => e.fn === 'larger')!.sizeBytes).toBeGreaterThan(WHOLE_PARK_MAX_BYTES);
    expect((await b.json('POST', '/v2/repository/models/larger/unload')).status).toBe(200);
    await until('the larger model unloaded', () => !node.pool.list().some((e) => e.fn === 'larger'));
    expect((await sameAsDirect(b, 'larger', larger, 2, 4)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 1, taken: 1, held: 0 });
  });

  it('with PARK_BUDGET=0 an unloaded model is disposed, and its next cold start loads it again', async () => {
    const b = await start({ PARK_BUDGET: '0' });
    opened.push(b);
    const node = b.node!;
    const { bytes, sha } = await registerWide(b, 'wide', 21);
    await sameAsDirect(b, 'wide', bytes, 1, 1);
    expect((await b.json('POST', '/v2/repository/models/wide/unload')).status).toBe(200);
    await until('the unloaded session disposed', () => mapped(sha).mappings === 0);
    expect((await sameAsDirect(b, 'wide', bytes, 2, 2)).coldStart).toBe(true);
    expect(node.parkedSessions).toMatchObject({ parked: 0, taken: 0, held: 0 });
  });

  it('an unloaded model whose artifact another resident function maps too is disposed: the other keeps its pages, nothing is parked at an estimate of 0 bytes', async () => {
    const b = await start();
    opened.push(b);
    const node = b.node!;
    // 64 -> 500 -> 1000 -> 16: a 2 MB weight, so the mapped form (runtime/mapped.ts).
    const bytes = mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 5 });
    const call = async (name: string) => (await b.invoke(name, { x: { type: 'float32', dims: [1, 64], data: floats(64, 1) } })).status;
    const a = await b.put('a', bytes);
    expect(a.body.profile.artifact).toMatchObject({ form: 'mapped' });
    const sha = a.body.profile.artifact.sha256 as string;
    expect((await b.put('b', bytes)).body.profile.artifact.sha256).toBe(sha);
    expect(await call('a')).toBe(200);
    const one = mapped(sha).mappings;
    expect(await call('b')).toBe(200);
    expect(mapped(sha).mappings).toBe(2 * one);

    expect((await b.json('POST', '/v2/repository/models/a/unload')).status).toBe(200);
    await until("a's session disposed", () => mapped(sha).mappings === one);
    expect(node.parkedSessions).toMatchObject({ parked: 0, held: 0, bytes: 0 });
    // b, still resident, kept its pages.
    expect(mapped(sha).rssKiB).toBeGreaterThan(1024);

    // Alone again, b's session parks when it is unloaded.
    expect((await b.json('POST', '/v2/repository/models/b/unload')).status).toBe(200);
    await until("b's session parked", () => node.parkedSessions.held === 1);
    expect(node.parkedSessions.bytes).toBeGreaterThan(0);
    expect(mapped(sha)).toEqual({ mappings: one, rssKiB: 0 });
  });
});
