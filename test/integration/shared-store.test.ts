import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { FunctionRegistry } from '../../functions/registry';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { FileModelStore, LocalModels, type ModelStore } from '../../store';
import { deleteKeys } from '../support/brulee';

/*
 * A cluster (a Redis and a KEY_PREFIX) knows only its own functions, and model bytes are shared by
 * content: two clusters pointed at one model store would each remove bytes the other's functions
 * still name. Each cluster notes in the store that it uses it, and none removes bytes while
 * another has done so lately: they stay in the store instead. Real Redis, one real file store
 * shared by two clusters (two key prefixes), real profiling.
 */

const redis = createRedis(inject('redisUrl'));
const ns = `sharedstore${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'brulee-shared-store-'));
const warnings: string[] = [];
afterAll(async () => {
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
  await deleteKeys(ns);
});

const store = new FileModelStore(join(dir, 'models'));
const cluster = (name: string) =>
  new FunctionRegistry({
    redis,
    keys: keys(`${ns}:${name}`),
    models: new LocalModels({ store, dir: join(dir, `cache-${name}`) }),
    budgets: async () => [2 ** 30],
    log: { warn: (_o: object, msg: string) => void warnings.push(msg) } as never,
  });
const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 51 });

it("two clusters sharing a model store: a deletion in one leaves the bytes the other's function names, and it can still load them", async () => {
  const a = cluster('a');
  const b = cluster('b');
  const f = (await a.register('f', bytes, {})).fn;
  const g = (await b.register('g', bytes, {})).fn;
  expect(g.sha256).toBe(f.sha256);
  const { removed } = await a.delete('f');
  expect(removed).toEqual([]);
  expect(warnings.some((w) => w.includes('used by other brulee clusters too'))).toBe(true);
  // b's function still loads its bytes from the store (a fresh cache: fetched and sha256-verified).
  const fresh = new LocalModels({ store, dir: join(dir, 'cache-fresh') });
  for (const v of g.versions) expect((await fresh.open(v.sha256)).fetchMs).toBeGreaterThanOrEqual(0);
  expect((await b.get('g')).sha256).toBe(f.sha256);
  await Promise.all([a.close(), b.close()]);
});

it('a cluster that has not noted itself for hours (gone, or its Redis reset) no longer keeps the bytes: a deletion removes them', async () => {
  const c = cluster('c');
  const d = cluster('d');
  const { fn } = await c.register('h', bytes, {});
  await d.register('k', bytes, {});
  expect((await d.delete('k')).removed).toEqual([]);
  // Every cluster but c last noted itself 4 hours ago.
  const notes = join(dir, 'models', '.clusters');
  const cId = await redis.get(keys(`${ns}:c`).clusterId);
  const old = new Date(Date.now() - 4 * 60 * 60_000);
  for (const id of readdirSync(notes)) if (id !== cId) utimesSync(join(notes, id), old, old);
  const { removed } = await c.delete('h');
  expect(removed).toContain(fn.sha256);
  expect(removed.sort()).toEqual(fn.versions.flatMap((v) => [v.sha256, ...(v.artifactSha256 ? [v.artifactSha256] : [])]).sort());
  for (const s of removed) expect(await store.has(s)).toBe(false);
  await Promise.all([c.close(), d.close()]);
});

it("a store whose notes cannot be read keeps the bytes (it may be shared), and the warning says why", async () => {
  // A file store whose listing of the notes fails (as an S3 store's does while S3 is away).
  const files = new (class extends FileModelStore {
    override clusters(): Promise<Array<{ id: string; at: number }>> {
      return Promise.reject(new Error('the store did not answer'));
    }
  })(join(dir, 'unreadable'));
  const store: ModelStore = files;
  const e = new FunctionRegistry({ redis, keys: keys(`${ns}:e`), models: new LocalModels({ store, dir: join(dir, 'cache-e') }), budgets: async () => [2 ** 30], log: { warn: (_o: object, msg: string) => void warnings.push(msg) } as never });
  const { fn } = await e.register('u', bytes, {});
  expect((await e.delete('u')).removed).toEqual([]);
  expect(await files.has(fn.sha256)).toBe(true);
  expect(warnings.at(-1)).toMatch(/could not be read \(the store did not answer\)/);
  await e.close();
});
