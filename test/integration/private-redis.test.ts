import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { closeRedis, createRedis } from '../../queue/connection';
import { freePort, startRedisServer, type PrivateRedis } from '../../queue/redis-server';

const dir = mkdtempSync(join(tmpdir(), 'brulee-private-redis-'));
const started: PrivateRedis[] = [];
afterAll(async () => {
  for (const r of started) await r.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The process id of the Redis answering at `url` (INFO server). */
async function pidAt(url: string): Promise<number> {
  const c = createRedis(url, { name: 'private-redis-test' });
  try {
    return Number(/process_id:(\d+)/.exec(await c.info('server'))![1]);
  } finally {
    await closeRedis(c);
  }
}

/**
 * The first port offered is `taken`; the next ones free ones, as `freePort` picks them: the race of
 * a port taken between its pick and redis-server's bind, forced (queue/redis-server.ts retries).
 */
function takenFirst(taken: number): { pickPort: () => Promise<number>; picked: number[] } {
  const picked: number[] = [];
  return { picked, pickPort: async () => (picked.push(picked.length === 0 ? taken : await freePort()), picked.at(-1)!) };
}

it('a private redis-server whose picked port a listener took meanwhile starts on another port, and is its own', async () => {
  // Something that is not Redis: it takes connections (the start's probe's) and never answers.
  const conns: Socket[] = [];
  const listener = createServer((c) => conns.push(c)).listen(0, '127.0.0.1');
  await new Promise((r) => listener.once('listening', r));
  const taken = (listener.address() as AddressInfo).port;
  try {
    const { pickPort, picked } = takenFirst(taken);
    const r = await startRedisServer({ dir: join(dir, 'a'), persist: false, pickPort });
    started.push(r);
    expect(picked).toHaveLength(2);
    expect(picked[0]).toBe(taken);
    expect(r.port).toBe(picked[1]);
    expect(r.port).not.toBe(taken);
    expect(await pidAt(r.url)).toBe(r.pid);
  } finally {
    for (const c of conns) c.destroy();
    await new Promise((r) => listener.close(r));
  }
});

it("a private redis-server whose picked port another Redis took meanwhile starts on another port: not handed the other's", async () => {
  const other = await startRedisServer({ dir: join(dir, 'other'), persist: false });
  started.push(other);
  const { pickPort, picked } = takenFirst(other.port);
  const r = await startRedisServer({ dir: join(dir, 'b'), persist: false, pickPort });
  started.push(r);
  expect(picked).toHaveLength(2);
  expect(r.port).not.toBe(other.port);
  expect(r.pid).not.toBe(other.pid);
  expect(await pidAt(r.url)).toBe(r.pid);
  // The other Redis is untouched, still its own.
  expect(await pidAt(other.url)).toBe(other.pid);
});
