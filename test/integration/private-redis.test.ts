import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { closeRedis, createRedis } from '../../queue/connection';
import { freePort, startRedisServer, type PrivateRedis } from '../../queue/redis-server';
import { until } from '../support/within';

const dir = mkdtempSync(join(tmpdir(), 'brulee-private-redis-'));
const started: PrivateRedis[] = [];
afterAll(async () => {
  for (const r of started) await r.stop();
  rmSync(dir, { recursive: true, force: true });
});

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process id of the Redis answering at `url` (INFO server). */
async function pidAt(url: string): Promise<number> {
  const c = createRedis(url, { name: 'private-redis-test' });
  try {
    return Number(/process_id:(\d+)/.exec(await c.info('server'))![1]);
  } finally {
    await closeRedis(c);
  }
}

/** A private redis-server with its append-only file in `at`, stopped after the tests. */
async function persisting(at: string): Promise<PrivateRedis> {
  const r = await startRedisServer({ dir: at, persist: true });
  started.push(r);
  return r;
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

it("two private redis-servers are not started on one directory's append-only file: the second start is refused while the first's Redis runs, and goes once it stopped", async () => {
  const shared = join(dir, 'shared');
  // Two `npm start`s of one DATA_DIR at once: both appended to one append-only file before.
  const [a, b] = await Promise.allSettled([startRedisServer({ dir: shared, persist: true }), startRedisServer({ dir: shared, persist: true })]);
  const up = [a, b].filter((r): r is PromiseFulfilledResult<PrivateRedis> => r.status === 'fulfilled').map((r) => r.value);
  started.push(...up);
  expect(up).toHaveLength(1);
  const refused = [a, b].find((r) => r.status === 'rejected')!.reason as Error;
  expect(refused.message).toContain(`another process's private redis-server, running at ${up[0]!.url}`);
  expect(refused.message).toContain('DATA_DIR');
  // Stopped, its directory is free for the next start.
  await up[0]!.stop();
  const next = await persisting(shared);
  expect(await pidAt(next.url)).toBe(next.pid);
});

it("a private redis-server's directory left locked by a process killed with -9 (its Redis gone too) is taken over", async () => {
  const left = join(dir, 'left');
  const r = await persisting(left);
  // Its Redis gone (killed with the process), the lock still there with its URL.
  process.kill(r.pid, 'SIGKILL');
  await until('the killed redis-server to be gone', () => !processAlive(r.pid), 10_000);
  const next = await persisting(left);
  expect(await pidAt(next.url)).toBe(next.pid);
});

it("a private redis-server left running by a brulee killed with -9 (a redis-server outlives its parent) is shut down and replaced by the next start on its directory", async () => {
  const orphaned = join(dir, 'orphaned');
  const r = await persisting(orphaned);
  const exited = new Promise<void>((res) => {
    const check = setInterval(() => {
      try {
        process.kill(r.pid, 0);
      } catch {
        clearInterval(check);
        res();
      }
    }, 50);
  });
  // Its process gone (a process id no process has now), its Redis still answering.
  writeFileSync(join(orphaned, 'brulee.lock', 'pid'), String(spawnSync('true').pid));
  const next = await persisting(orphaned);
  expect(await pidAt(next.url)).toBe(next.pid);
  await exited;
  // The lock is the new start's: the old one's stop leaves it.
  await r.stop();
  expect(readFileSync(join(orphaned, 'brulee.lock', 'url'), 'utf8')).toBe(next.url);
});
