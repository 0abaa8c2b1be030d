import { mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { FunctionRegistry, type FunctionMeta } from '../../functions/registry';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { FileModelStore, LocalModels, sha256Of, type ModelStore } from '../../store';

/*
 * Model bytes are shared by content (sha256) between functions. A deletion removes the bytes no
 * other function has, and a registration of the same bytes under another name (another lock) may
 * run at that very moment: neither may leave a registered function without its bytes. Real Redis,
 * a real file store, real profiling; the store's `remove` is held until the other registration has
 * ended, the interleaving where the deletion's check came before that registration was saved.
 */

const redis = createRedis(inject('redisUrl'));
const dirs: string[] = [];
/** The registries' lease here: shorter than the 15 s default so that the waits past it stay short, long enough that renewals (every third) keep it on a loaded machine. */
const LEASE_MS = 5000;
afterAll(() => {
  redis.disconnect();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A registry over a file store whose `remove` of `held` waits for `hold` (when set). */
function setUp() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-store-race-'));
  dirs.push(dir);
  const files = new FileModelStore(join(dir, 'models'));
  let hold: Promise<unknown> | undefined;
  let held: string | undefined;
  let puts = 0;
  const putWaiters: Array<{ n: number; resolve: () => void }> = [];
  let putHold: { sha: string; until: Promise<unknown> } | undefined;
  let lostReply: ((sha: string) => boolean) | undefined;
  const store: ModelStore = {
    url: files.url,
    put: async (b) => {
      if (putHold && sha256Of(b) === putHold.sha) await putHold.until;
      const sha = await files.put(b);
      // Written, and its reply lost (an object store's answer that never came): the put fails.
      if (lostReply?.(sha)) throw new Error(`the store's reply to the put of ${sha.slice(0, 12)} was lost`);
      puts++;
      for (const w of putWaiters) if (puts >= w.n) w.resolve();
      return sha;
    },
    has: (s) => files.has(s),
    get: (s) => files.get(s),
    download: (s, d) => files.download(s, d),
    remove: async (s) => {
      if (s === held) await hold;
      await files.remove(s);
    },
  };
  const models = new LocalModels({ store, dir: join(dir, 'cache') });
  const k = keys(`storerace${Math.random().toString(36).slice(2)}`);
  const registry = new FunctionRegistry({ redis, keys: k, models, budgets: async () => [2 ** 30], leaseMs: LEASE_MS });
  const shas = (fn: FunctionMeta) => fn.versions.flatMap((v) => [v.sha256, ...(v.artifactSha256 ? [v.artifactSha256] : [])]);
  /** Resolves once the store has had `n` puts in all. */
  const putsDone = (n: number) => new Promise<void>((resolve) => (puts >= n ? resolve() : putWaiters.push({ n, resolve })));
  /** The files in the store and in the process's cache. */
  const left = async () => [...(await readdir(join(dir, 'models')).catch(() => [])), ...(await readdir(join(dir, 'cache')).catch(() => []))].filter((f) => !f.startsWith('.'));
  return { k, store, registry, shas, holdUntil: (p: Promise<unknown>, sha: string) => {
      hold = p;
      held = sha;
    }, holdPutsOf: (sha: string, until: Promise<unknown>) => (putHold = { sha, until }), loseReplies: (f: (sha: string) => boolean) => (lostReply = f), putsDone, puts: () => puts, left };
}

const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 31 });

it('a deletion while another function registers the same bytes leaves them in the store', async () => {
  const { store, registry, shas, holdUntil, putsDone, puts } = setUp();
  const first = (await registry.register('first', bytes, {})).fn;
  // `second` registers the same bytes; `first` is deleted once `second` has put them (then it is
  // profiled, not yet saved), and its removal of the bytes happens only once `second` is registered.
  // (Its artifact, derived after the profile, may be removed and stored again meanwhile.)
  const n = puts();
  const second = registry.register('second', bytes, {});
  holdUntil(second, first.sha256);
  await putsDone(n + 1);
  await registry.delete('first');
  const { fn } = await second;
  for (const s of shas(fn)) expect(await store.has(s)).toBe(true);
  expect((await registry.list()).map((f) => f.name)).toEqual(['second']);
});

it('a registration that fails does not remove the bytes it stored once another function has them', async () => {
  const { store, registry, shas, holdUntil } = setUp();
  // `big` stores the bytes first (new to the store), then fails (more than every budget) while
  // `small` registers the same bytes; its clean-up's removal happens only once `small` is registered.
  const big = registry.register('big', bytes, { memoryBytes: 2 ** 31 });
  const small = registry.register('small', bytes, {});
  holdUntil(small, sha256Of(bytes));
  await expect(big).rejects.toMatchObject({ code: 'MODEL_TOO_LARGE' });
  const { fn } = await small;
  for (const s of shas(fn)) expect(await store.has(s)).toBe(true);
});

it('a registration that fails after storing its artifact leaves neither the artifact nor the model in the store', async () => {
  const { store, registry, loseReplies, left } = setUp();
  const sha = sha256Of(bytes);
  // The artifact's put writes it, then fails (its reply lost): the registration fails there.
  loseReplies((s) => s !== sha);
  await expect(registry.register('lost', bytes, {})).rejects.toThrow(/reply to the put/);
  expect(await store.has(sha)).toBe(false);
  expect(await left()).toEqual([]);
  // The model's own put, the same way: nothing left either.
  loseReplies((s) => s === sha);
  await expect(registry.register('lost', bytes, {})).rejects.toThrow(/reply to the put/);
  expect(await left()).toEqual([]);
  // And the name registers once the store answers.
  loseReplies(() => false);
  expect((await registry.register('lost', bytes, {})).created).toBe(true);
});

it('two registrations of the same bytes that both fail leave none of them in the store', async () => {
  const { registry, holdPutsOf, putsDone, puts, left } = setUp();
  // `one` stores the bytes first (new to the store); `two` marks them and waits at its put until
  // `one` has failed (more than every budget), so one's clean-up finds them marked by `two`; then
  // `two` fails too. The last to fail removes what no function names.
  const n = puts();
  const one = registry.register('one', bytes, { memoryBytes: 2 ** 31 });
  await putsDone(n + 1);
  holdPutsOf(sha256Of(bytes), one.catch(() => undefined));
  const two = registry.register('two', bytes, { memoryBytes: 2 ** 31 });
  await expect(one).rejects.toMatchObject({ code: 'MODEL_TOO_LARGE' });
  await expect(two).rejects.toMatchObject({ code: 'MODEL_TOO_LARGE' });
  expect(await registry.list()).toEqual([]);
  expect(await left()).toEqual([]);
});

it('a registration that outlasts its lease keeps its name and its marks: it renews them while it runs', async () => {
  const { k, registry, holdPutsOf } = setUp();
  const sha = sha256Of(bytes);
  let release!: () => void;
  holdPutsOf(sha, new Promise<void>((r) => (release = r)));
  const slow = registry.register('slow', bytes, {});
  await new Promise((r) => setTimeout(r, LEASE_MS + 2000));
  // Past its first lease, still held: another registration of the name is refused (CONFLICT), and
  // a deletion leaves the bytes it marked.
  const [s, us] = await redis.time();
  const now = Number(s) * 1000 + Math.floor(Number(us) / 1000);
  expect(await redis.exists(`${k.fn('slow')}:lock`)).toBe(1);
  expect(await redis.zcount(k.storing(sha), now, '+inf')).toBe(1);
  release();
  expect((await slow).created).toBe(true);
}, 60_000);

it.each([
  ['new bytes', false],
  ['the same bytes under other options', true],
])('a registration (%s) whose process stalled past its lease fails instead of saving over the registration that took the name meanwhile', async (_, again) => {
  const { k, registry, holdPutsOf, left } = setUp();
  const sha = sha256Of(bytes);
  if (again) await registry.register('name', bytes, {});
  let release!: () => void;
  holdPutsOf(sha, new Promise<void>((r) => (release = r)));
  const stalled = registry.register('name', bytes, { timeoutMs: 7000 });
  stalled.catch(() => undefined);
  while (!(await redis.exists(`${k.fn('name')}:lock`))) await new Promise((r) => setTimeout(r, 10));
  // A synchronous step longer than the lease: no renewal runs, and Redis lets the lock go.
  const end = Date.now() + LEASE_MS + 1000;
  while (Date.now() < end) {
    /* stalled */
  }
  const other = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 32 });
  const taken = (await registry.register('name', other, {})).fn;
  release();
  await expect(stalled).rejects.toMatchObject({ code: 'CONFLICT' });
  expect(await registry.get('name')).toEqual(taken);
  expect(taken.sha256).not.toBe(sha);
  // The stalled registration's bytes, named by no record, went with its failure.
  if (!again) expect((await left()).filter((f) => f.includes(sha))).toEqual([]);
}, 60_000);
