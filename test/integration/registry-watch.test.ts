import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { FunctionRegistry } from '../../functions/registry';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { FileModelStore, LocalModels } from '../../store';
import { deleteKeys } from '../support/brulee';
import { until } from '../support/within';

/*
 * A gateway serves lookups from an in-memory copy that the control channel's messages drop
 * (FunctionRegistry.watch). What is published while its subscriber is away is lost to it: a
 * registration or deletion through another gateway meanwhile must not leave this one answering
 * with the old record once it is back. Real Redis; the subscriber reaches it through a real TCP
 * hop that goes down (its connections cut, new ones refused) and up again.
 */

const url = inject('redisUrl');
const redis = createRedis(url);
const ns = `regwatch${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'brulee-regwatch-'));
const servers: Server[] = [];
afterAll(async () => {
  redis.disconnect();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
  await deleteKeys(ns);
});

/**
 * A TCP hop to Redis that can go down (cuts its connections and refuses new ones) and up, or hold
 * what Redis sends (a message on its way) until released.
 */
async function hop() {
  const target = new URL(url);
  let down = false;
  let holding = false;
  const held: Array<() => void> = [];
  const open = new Set<Socket>();
  const server = createServer((client: Socket) => {
    if (down) return void client.destroy();
    const up = createConnection(Number(target.port), target.hostname);
    open.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
    };
    up.on('error', end).on('close', end);
    client.on('error', end).on('close', end);
    up.on('data', (d: Buffer) => (holding ? held.push(() => client.write(d)) : client.write(d)));
    client.pipe(up);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    down: () => {
      down = true;
      for (const s of open) s.destroy();
    },
    up: () => void (down = false),
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const w of held.splice(0)) w();
    },
  };
}

let seq = 0;
/** Two registries of one cluster over one file store: a writer, and a gateway whose subscriber goes through a hop. */
async function setUp() {
  const h = await hop();
  const store = new FileModelStore(join(dir, `models${++seq}`));
  const k = keys(`${ns}:${seq}`);
  const make = () => new FunctionRegistry({ redis, keys: k, models: new LocalModels({ store, dir: join(dir, `cache${Math.random()}`) }), budgets: async () => [2 ** 30] });
  const gateway = make();
  const sub = createRedis(h.url);
  await gateway.watch(sub);
  return { h, store, sub, writer: make(), gateway };
}

it('a gateway whose subscriber was away answers with what changed meanwhile, not its old copy', async () => {
  const { h, sub, writer, gateway } = await setUp();
  try {
    await writer.register('f', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }), {});
    await writer.register('g', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 3 }), {});
    // The gateway's copy holds both.
    expect((await gateway.get('f')).version).toBe(1);
    expect((await gateway.get('g')).version).toBe(1);
    expect(await gateway.get('f')).toBe(await gateway.get('f'));

    h.down();
    await until('the subscriber to notice', () => sub.status !== 'ready');
    // Changed through another gateway while this one hears nothing.
    const v2 = (await writer.register('f', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 2 }), {})).fn;
    await writer.delete('g');
    // Meanwhile its lookups read Redis: its copy may be old.
    expect((await gateway.get('f')).sha256).toBe(v2.sha256);
    h.up();
    await until('the subscriber to be back', () => sub.status === 'ready');

    await until('the gateway to answer with the new version', async () => (await gateway.get('f')).sha256 === v2.sha256);
    await expect(gateway.get('g')).rejects.toMatchObject({ code: 'FUNCTION_NOT_FOUND' });
    // And the copy is in use again (a lookup answers the very record the one before read).
    await until('the copy to be in use again', async () => (await gateway.get('f')) === (await gateway.get('f')));
  } finally {
    await gateway.close();
  }
}, 60_000);

it('a deletion deletes the record as Redis has it, not as the copy of its gateway had it a moment before', async () => {
  const { h, store, writer, gateway } = await setUp();
  try {
    const v1 = (await writer.register('h', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 4 }), {})).fn;
    expect(await gateway.get('h')).toEqual(v1);
    // A new version through another gateway, whose announcement has not reached this one yet.
    h.hold();
    const v2 = (await writer.register('h', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 5 }), {})).fn;
    const { fn, removed } = await gateway.delete('h');
    h.release();
    expect(fn).toEqual(v2);
    // Every version's bytes go, the newest's too (none is named by another function).
    const all = v2.versions.flatMap((v) => [v.sha256, v.artifactSha256!]);
    expect(removed.sort()).toEqual(all.sort());
    for (const sha of all) expect(await store.has(sha)).toBe(false);
  } finally {
    await gateway.close();
  }
}, 60_000);
