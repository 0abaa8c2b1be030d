import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { FunctionRegistry } from '../../functions/registry';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { FileModelStore, LocalModels, type ModelStore } from '../../store';
import { deleteKeys } from '../support/brulee';
import { until } from '../support/within';

/*
 * A deletion is fenced as a registration is (functions/registry.ts, functions/model-bytes.ts): its
 * name lock and its hold on the bytes it removes are leases renewed while it runs, and it writes
 * only while it still holds them. One that stalled past them (its writes held up on the way to
 * Redis, or its process blocked) removes neither the record nor the bytes a newer registration
 * took meanwhile. Real Redis, a real file store, real profiling; the stalls are a real TCP hop to
 * Redis that holds the deletion's writes, and a real blocked event loop.
 */

const url = inject('redisUrl');
const redis = createRedis(url);
const ns = `leasefence${process.pid}`;
/** The registries' lease here: shorter than the 15 s default so that the waits past it stay short, long enough that renewals (every third) keep it on a loaded machine. */
const LEASE_MS = 5000;
const dirs: string[] = [];
const servers: Server[] = [];
afterAll(async () => {
  redis.disconnect();
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await deleteKeys(ns);
});

/**
 * A TCP hop to Redis that forwards everything, until a command carrying `marker` comes by: from
 * then on what the client sends is held (Redis is away for it) until `release()`, once.
 */
async function stallingHop(marker: string) {
  const target = new URL(url);
  let holding = false;
  let armed = true;
  const held: Array<() => void> = [];
  const server = createServer((client: Socket) => {
    const up = createConnection(Number(target.port), target.hostname);
    up.on('data', (d) => client.write(d));
    const end = () => {
      client.destroy();
      up.destroy();
    };
    up.on('error', end).on('close', end);
    client.on('error', end).on('close', end);
    client.on('data', (d: Buffer) => {
      if (armed && d.includes(marker)) [holding, armed] = [true, false];
      if (holding) held.push(() => up.write(d));
      else up.write(d);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    holding: () => holding,
    release: () => {
      holding = false;
      for (const w of held.splice(0)) w();
    },
  };
}

let seq = 0;
/** A registry over a file store (its `remove` of a sha may be slowed, `slow`), on `redisUrl`. */
function setUp(redisUrl = url, slow?: (sha: string) => Promise<void> | void) {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-leasefence-'));
  dirs.push(dir);
  const files = new FileModelStore(join(dir, 'models'));
  const store: ModelStore = {
    url: files.url,
    put: (b) => files.put(b),
    has: (s) => files.has(s),
    get: (s) => files.get(s),
    download: (s, d) => files.download(s, d),
    remove: async (s) => {
      await slow?.(s);
      await files.remove(s);
    },
  };
  const k = keys(`${ns}:${++seq}`);
  const conn = redisUrl === url ? redis : createRedis(redisUrl);
  const make = (r = conn) => new FunctionRegistry({ redis: r, keys: k, models: new LocalModels({ store, dir: join(dir, `cache${Math.random()}`) }), budgets: async () => [2 ** 30], leaseMs: LEASE_MS });
  return { k, files, registry: make(), other: () => make(redis), close: () => conn !== redis && conn.disconnect() };
}

const bytes = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 41 });
const newer = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 42 });

const third = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 43 });

it.each(['deletion', 'registration'] as const)('a %s whose write reaches Redis after its lease fails (CONFLICT) and leaves the newer registration of the name, and its bytes', async (what) => {
  // The request's connection goes through a hop that holds its write of the record (a deletion's
  // is the one command naming the function's counts key; a registration's carries the record)
  // and all it sends after, its renewals included.
  const probe = keys(`${ns}:${seq + 1}`);
  const hop = await stallingHop(what === 'deletion' ? probe.fnStats('name') : '"versions"');
  const { k, files, registry, other, close } = setUp(hop.url);
  const first = (await other().register('name', bytes, {})).fn;
  const late = what === 'deletion' ? registry.delete('name') : registry.register('name', third, {});
  late.catch(() => undefined);
  await until(`the ${what} to send its write`, () => hop.holding());
  // Its lease lapses; a newer registration takes the name and saves.
  await until(`the ${what}'s lease to lapse`, async () => (await redis.exists(`${k.fn('name')}:lock`)) === 0, LEASE_MS + 10_000);
  const taken = (await other().register('name', newer, {})).fn;
  hop.release();
  await expect(late).rejects.toMatchObject({ code: 'CONFLICT' });
  expect(await other().get('name')).toEqual(taken);
  expect(taken.sha256).not.toBe(first.sha256);
  for (const v of taken.versions) expect(await files.has(v.sha256)).toBe(true);
  close();
}, 60_000);

it('a deletion renews its hold on the bytes it removes while a slow removal runs', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let removing = false;
  const { k, registry } = setUp(url, async () => {
    removing = true;
    await gate;
  });
  const fn = (await registry.register('slow', bytes, {})).fn;
  const deletion = registry.delete('slow');
  await until('the removal to start', () => removing);
  await new Promise((r) => setTimeout(r, LEASE_MS + 2000));
  // Past its first lease, still held: a registration of these bytes waits for the removal to end.
  expect(await redis.exists(k.removing(fn.sha256))).toBe(1);
  release();
  expect((await deletion).removed).toContain(fn.sha256);
  expect(await redis.exists(k.removing(fn.sha256))).toBe(0);
}, 60_000);

it('a deletion whose process stalled past its hold on some bytes leaves those bytes', async () => {
  // The first removal blocks the process (a synchronous step longer than the lease): no renewal
  // runs, and the holds on the bytes still to remove (the artifact's) lapse meanwhile.
  let stalled = false;
  const { files, registry } = setUp(url, (sha) => {
    if (stalled || sha !== model) return;
    stalled = true;
    const end = Date.now() + LEASE_MS + 1000;
    while (Date.now() < end) {
      /* stalled */
    }
  });
  const fn = (await registry.register('stall', bytes, {})).fn;
  const model = fn.sha256;
  const artifact = fn.versions[0]?.artifactSha256;
  expect(artifact).toBeDefined();
  const { removed } = await registry.delete('stall');
  expect(stalled).toBe(true);
  expect(removed).toEqual([model]);
  expect(await files.has(model)).toBe(false);
  expect(await files.has(artifact!)).toBe(true);
}, 60_000);

it('a deletion whose store fails to remove some bytes still deletes the function, removes the rest, and leaves those', async () => {
  let model = '';
  const { files, registry, other } = setUp(url, (sha) => {
    if (sha === model) throw new Error('the store did not answer');
  });
  const fn = (await registry.register('flaky', bytes, {})).fn;
  model = fn.sha256;
  const artifact = fn.versions[0]?.artifactSha256;
  expect(artifact).toBeDefined();
  const { removed } = await registry.delete('flaky');
  expect(removed).toEqual([artifact]);
  expect(await files.has(model)).toBe(true);
  expect(await files.has(artifact!)).toBe(false);
  await expect(other().get('flaky')).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
});
