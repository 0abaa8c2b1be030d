import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config';
import { BruleeError } from '../../errors';
import { createModelStore, LocalModels, S3ModelStore, sha256Of } from '../../store';
import { mlpModel } from '../../models/generate';
import { startBrulee, deleteKeys, type TestBrulee } from '../support/brulee';
import { floats, ort, readModel, REAL_MODELS, runDirect } from '../support/models';
import { canUnshare, onFullDisk } from '../support/full-disk';
import { S3_ACCESS_KEY, startS3, type TestS3 } from '../support/s3';

// Every test here talks to a real S3-compatible HTTP server (s3rver) that this file starts.
let s3: TestS3;
const dirs: string[] = [];
const started: TestBrulee[] = [];
const stores: S3ModelStore[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'brulee-s3-test-'));
  dirs.push(d);
  return d;
};
const storeFor = (prefix: string, extra: { accessKeyId?: string } = {}) => {
  const c = loadConfig({ ...s3.env(prefix), ...(extra.accessKeyId ? { AWS_ACCESS_KEY_ID: extra.accessKeyId } : {}) });
  const s = createModelStore(c.modelStore, c.s3) as S3ModelStore;
  stores.push(s);
  return s;
};
async function thrown(p: Promise<unknown>): Promise<BruleeError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(BruleeError);
  return e as BruleeError;
}

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  for (const b of started.reverse()) await b.destroy();
  for (const s of stores) await s.destroy();
  await s3?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('S3ModelStore against a real S3-compatible server', () => {
  it('notes which clusters use the store, under its prefix (what a deletion asks before it removes bytes)', async () => {
    const store = storeFor('unit/clusters');
    expect(await store.clusters()).toEqual([]);
    const [one, two] = [crypto.randomUUID(), crypto.randomUUID()];
    await store.touchCluster(one);
    await store.touchCluster(two);
    await store.touchCluster(one);
    const found = await store.clusters();
    expect(found.map((c) => c.id).sort()).toEqual([one, two].sort());
    for (const c of found) expect(c.at).toBeGreaterThan(0);
    expect(await storeFor('unit/other-clusters').clusters()).toEqual([]);
    await expect(store.touchCluster('../x')).rejects.toThrow(RangeError);
  });

  it.skipIf(!canUnshare)("a download into a full model cache says the cache's disk is full, not that the store is unreachable", async () => {
    // A process of its own with this S3 server for its store and its cache on a full disk.
    const r = await onFullDisk(
      `const { loadConfig } = await import(\`\${ROOT}/config.ts\`);
const { createModelStore, LocalModels } = await import(store);
const c = loadConfig(process.env);
const s3 = createModelStore(c.modelStore, c.s3);
const sha = await s3.put(new Uint8Array(256 * 1024).fill(5));
await new LocalModels({ store: s3, dir: process.argv[2]! }).open(sha).then(() => console.log('cached'), (e) => console.log(e.code, e.message));`,
      s3.env('unit/full-cache'),
    );
    expect(r.stdout).toMatch(/^INTERNAL writing model [0-9a-f]{12}… to this process's model cache .* failed \(ENOSPC\): free space/);
    expect(r.left).toEqual(['other']);
  });

  it('puts, finds, gets, streams to a file and removes bytes by sha256, under the prefix', async () => {
    const store = storeFor('unit/a');
    expect(store.url).toBe(`s3://${s3.bucket}/unit/a`);
    const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 11 });
    const sha = sha256Of(bytes);
    expect(await store.has(sha)).toBe(false);
    expect(await store.put(bytes)).toBe(sha);
    expect(await store.has(sha)).toBe(true);
    // Another prefix in the same bucket is another store.
    expect(await storeFor('unit/b').has(sha)).toBe(false);
    expect(Buffer.from(await store.get(sha)).equals(Buffer.from(bytes))).toBe(true);
    const dest = join(tmp(), 'model.onnx');
    await store.download(sha, dest);
    const { readFileSync } = await import('node:fs');
    expect(Buffer.from(readFileSync(dest)).equals(Buffer.from(bytes))).toBe(true);
    await store.remove(sha);
    expect(await store.has(sha)).toBe(false);
    expect((await thrown(store.get(sha))).code).toBe('MODEL_BYTES_MISSING');
    expect((await thrown(store.download(sha, join(tmp(), 'x.onnx')))).code).toBe('MODEL_BYTES_MISSING');
  });

  it('says what to fix when the store refuses the key, has no such bucket, or does not answer', async () => {
    const sha = sha256Of(new Uint8Array([1, 2, 3]));
    const badKey = await thrown(storeFor('unit', { accessKeyId: 'NOT-A-KEY' }).has(sha));
    expect(badKey.code).toBe('MODEL_STORE_UNAVAILABLE');
    expect(badKey.message).toMatch(/HTTP 403.*AWS_ACCESS_KEY_ID/);

    const c = loadConfig({ ...s3.env(), MODEL_STORE: 's3://no-such-bucket/models' });
    const noBucket = createModelStore(c.modelStore, c.s3) as S3ModelStore;
    stores.push(noBucket);
    const e = await thrown(noBucket.put(new Uint8Array([1, 2, 3])));
    expect(e.code).toBe('MODEL_STORE_UNAVAILABLE');
    expect(e.message).toMatch(/NoSuchBucket.*create the bucket/);

    // A port nothing listens on (this server's, after it stopped).
    const gone = await startS3();
    await gone.stop();
    const cg = loadConfig(gone.env());
    const down = createModelStore(cg.modelStore, cg.s3) as S3ModelStore;
    stores.push(down);
    const d = await thrown(down.has(sha));
    expect(d.code).toBe('MODEL_STORE_UNAVAILABLE');
    expect(d.message).toMatch(/ECONNREFUSED[\s\S]*AWS_ENDPOINT_URL/);
  });

  it('LocalModels keeps at most MODEL_CACHE_BYTES of downloads, least recently used out, and fetches again what it dropped', async () => {
    const store = storeFor('lru');
    const models = [1, 2, 3].map((seed) => mlpModel({ inputSize: 64, hidden: [64], outputSize: 8, seed }));
    const shas = await Promise.all(models.map((m) => store.put(m)));
    const size = models[0]!.byteLength;
    expect(models.every((m) => m.byteLength === size)).toBe(true);
    const dir = tmp();
    const local = new LocalModels({ store, dir, maxBytes: 2 * size + size / 2 }); // room for two
    const [a, b, c] = shas as [string, string, string];
    expect((await local.open(a)).fetchMs).toBeGreaterThan(0);
    expect((await local.open(b)).fetchMs).toBeGreaterThan(0);
    expect((await local.open(a)).fetchMs).toBe(0); // cached, and now more recent than b
    expect((await local.open(c)).fetchMs).toBeGreaterThan(0);
    expect(readdirSync(dir).sort()).toEqual([a, c].sort());
    expect(local.usedBytes).toBe(2 * size);
    expect((await local.open(b)).fetchMs).toBeGreaterThan(0); // fetched again; a is now the oldest
    expect(readdirSync(dir).sort()).toEqual([b, c].sort());
  });
});

describe('a gateway and a worker with no shared disk, model bytes in S3', () => {
  const cls = readModel(REAL_MODELS.ocrCls);
  const x = floats(3 * 48 * 192, 5);
  let gw: TestBrulee;
  let worker: TestBrulee;
  let workerDir: string;

  beforeAll(async () => {
    gw = await startBrulee({ ROLE: 'gateway', ...s3.env('cluster') });
    started.push(gw);
    workerDir = tmp();
    worker = await startBrulee({ ROLE: 'worker', ...s3.env('cluster') }, { namespace: gw.namespace, dataDir: workerDir, nodeId: 'w1' });
    started.push(worker);
  });
  afterAll(async () => {
    await deleteKeys(gw.namespace);
  });

  it('registers through the gateway, the worker fetches from S3 on its cold start, outputs equal onnxruntime run directly', async () => {
    expect(gw.store.url).toBe(`s3://${s3.bucket}/cluster`);
    const put = await gw.put('cls', cls);
    expect(put.status).toBe(201);
    const sha = sha256Of(cls);
    expect(put.body.versions[0].sha256).toBe(sha);
    // The bytes are in the bucket, and in neither process's DATA_DIR/models.
    expect(await gw.store.has(sha)).toBe(true);
    expect(existsSync(join(gw.dataDir, 'models'))).toBe(false);
    expect(existsSync(join(workerDir, 'models'))).toBe(false);
    expect(existsSync(join(workerDir, 'model-cache', sha))).toBe(false);

    const want = await runDirect(cls, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3, 48, 192]) });
    const inputs = { x: { type: 'float32', dims: [1, 3, 48, 192], data: x } };
    const cold = await gw.invoke('cls', inputs);
    expect(cold.status).toBe(200);
    expect(cold.body).toMatchObject({ coldStart: true, node: 'w1' });
    const out = Object.keys(want)[0]!;
    expect(Float32Array.from(cold.body.outputs[out].data as number[])).toEqual(want[out]!.data);
    // What a node fetches and loads is the pre-optimized artifact (README: Pre-optimized models).
    expect(readdirSync(join(workerDir, 'model-cache'))).toEqual([put.body.profile.artifact.sha256]);

    const warm = await gw.invoke('cls', inputs);
    expect(warm.body).toMatchObject({ coldStart: false, node: 'w1' });
    expect(Float32Array.from(warm.body.outputs[out].data as number[])).toEqual(want[out]!.data);

    // /stats: the one load fetched the bytes; fetch ms and session-create ms are apart, and add up to the load.
    const s = (await gw.json('GET', '/stats')).body.functions.cls;
    expect(s).toMatchObject({ invocations: 2, loads: 1, fetches: 1, coldStarts: 1, warmHits: 1 });
    expect(s.fetchMs.samples).toBe(1);
    expect(s.createMs.samples).toBe(1);
    expect(s.fetchMs.p50).toBeGreaterThan(0);
    expect(s.createMs.p50).toBeGreaterThan(0);
    expect(s.fetchMs.p50 + s.createMs.p50).toBeCloseTo(s.loadMs.p50, 2);
    expect(cold.body.timings.loadMs).toBeCloseTo(s.loadMs.p50, 2);
    const metrics = await (await worker.req('/metrics')).text();
    expect(metrics).toMatch(/brulee_model_fetch_seconds_count\{function="cls"\} 1/);
  });

  it('refuses a damaged object with a clear error, loads nothing from it, and registering the same file again repairs it', async () => {
    const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 21 });
    const sha = sha256Of(bytes);
    const put = await gw.put('dmg', bytes);
    expect(put.status).toBe(201);
    // Someone (a bad disk, a bad copy) replaces the objects with other bytes under the same keys:
    // the original's and its pre-optimized artifact's (a damaged artifact alone falls back to the original).
    const { S3Client, PutObjectCommand } = await import('@aws-sdk/client-s3');
    const raw = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_ACCESS_KEY } });
    for (const key of [sha, put.body.profile.artifact.sha256 as string]) {
      const damaged = Uint8Array.from(bytes);
      damaged[damaged.length - 1]! ^= 0xff;
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `cluster/${key}.onnx`, Body: damaged }));
    }
    raw.destroy();

    const inputs = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };
    const r = await gw.invoke('dmg', inputs);
    expect(r.status).toBe(500);
    expect(r.body.error.code).toBe('MODEL_BYTES_CORRUPT');
    expect(r.body.error.message).toContain(`not ${sha.slice(0, 12)}`);
    expect(r.body.error.message).toContain('register the same model file again');
    expect(existsSync(join(workerDir, 'model-cache', sha))).toBe(false);

    expect((await gw.put('dmg', bytes)).status).toBe(200); // same bytes: no new version, object rewritten
    const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
    const ok = await gw.invoke('dmg', inputs);
    expect(ok.status).toBe(200);
    expect(Float32Array.from(ok.body.outputs.y.data as number[])).toEqual(want.y!.data);
  });

  it('a worker bounds its local cache by MODEL_CACHE_BYTES', async () => {
    const models = [31, 32, 33].map((seed) => mlpModel({ inputSize: 64, hidden: [256], outputSize: 8, seed }));
    const size = models[0]!.byteLength;
    const dir = tmp();
    const small = await startBrulee({ ROLE: 'worker', ...s3.env('cluster'), MODEL_CACHE_BYTES: String(Math.floor(1.5 * size)) }, { namespace: gw.namespace, dataDir: dir, nodeId: 'w2' });
    started.push(small);
    await worker.close(); // w1 gone: every call goes to w2
    const artifacts: string[] = [];
    for (const [i, m] of models.entries()) {
      const put = await gw.put(`lru${i}`, m);
      expect(put.status).toBe(201);
      artifacts.push(put.body.profile.artifact.sha256);
    }
    const inputs = { x: { type: 'float32', dims: [1, 64], data: floats(64, 1) } };
    for (let i = 0; i < 3; i++) {
      const r = await gw.invoke(`lru${i}`, inputs);
      expect(r.body).toMatchObject({ coldStart: true, node: 'w2' });
      // Only the model just used (its pre-optimized artifact, what a node loads) stays on disk.
      expect(readdirSync(join(dir, 'model-cache'))).toEqual([artifacts[i]]);
    }
  });
});
