import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { deleteKeys } from '../support/brulee';
import { until } from '../support/within';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

/** `npm start` as a user runs it, in its own process group (so the test can always clean up). */
async function npmStart(): Promise<{ npm: ChildProcess; url: string; cleanup: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'brulee-npm-start-'));
  const prefix = `npmstart${process.pid}${randomUUID().slice(0, 8)}`;
  // Ports 0: the server binds free ones and prints which (one picked here first could be taken by
  // another process before the server binds it, and another server answer /healthz there).
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, REDIS_URL: inject('redisUrl'), PORT: '0', GRPC_PORT: '0', DATA_DIR: dataDir, KEY_PREFIX: prefix, LOG_LEVEL: 'warn', POPULARITY_CRON: '0 0 1 1 *' },
  });
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let port: string | undefined;
  await until('npm start to say where it is ready', () => (port = /brulee is ready on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]) !== undefined, 60_000);
  const url = `http://127.0.0.1:${port}/healthz`;
  await until('npm start to answer /healthz', () => answers(url), 60_000);
  return {
    npm,
    url,
    async cleanup() {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {}
      rmSync(dataDir, { recursive: true, force: true });
      await deleteKeys(prefix);
    },
  };
}

describe('killing npm start stops the server', () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${signal} to the npm process`, async () => {
      const s = await npmStart();
      try {
        process.kill(s.npm.pid!, signal);
        // SIGTERM reaches node (the script execs it) and drains; SIGKILL leaves node orphaned, and it notices.
        await until(`the server to stop answering after ${signal}`, async () => !(await answers(s.url)), 15_000);
        await until(`npm's process group to be gone after ${signal}`, () => {
          try {
            process.kill(-s.npm.pid!, 0);
            return false;
          } catch {
            return true;
          }
        }, 15_000);
      } finally {
        await s.cleanup();
      }
    }, 120_000);
  }
});

// A mount namespace of its own (a user namespace too, so no root is needed) where a bind mount can
// be made read-only; where there is none (no unshare, user namespaces off), the test cannot be set up.
const canUnshare = spawnSync('unshare', ['-rm', 'true']).status === 0;

describe('npm start in a read-only checkout', () => {
  it.skipIf(!canUnshare)('runs the server through tsx where .build/ cannot be made', () => {
    // A checkout of its own with no .build/ yet: start.mjs and bundle.mjs copied (they find the
    // checkout beside themselves), server.ts and node_modules linked; then mounted read-only over itself.
    const dir = mkdtempSync(join(tmpdir(), 'brulee-ro-checkout-'));
    try {
      for (const f of ['start.mjs', 'bundle.mjs']) copyFileSync(join(ROOT, f), join(dir, f));
      symlinkSync(join(ROOT, 'server.ts'), join(dir, 'server.ts'));
      symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      const script = `mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && cd "$0" && exec "$1" start.mjs`;
      // A bad MEMORY_BUDGET: the server, once loaded, says so and exits 2 (no Redis needed).
      const r = spawnSync('unshare', ['-rm', 'sh', '-c', script, dir, process.execPath], { env: { ...process.env, MEMORY_BUDGET: 'bogus' }, encoding: 'utf8', timeout: 60_000 });
      // Node 20's recursive mkdir said ENOENT there, not EROFS, and start.mjs failed with it.
      expect(r.stderr).toContain('brulee: invalid configuration');
      expect(r.stderr).toContain('MEMORY_BUDGET');
      expect(r.status).toBe(2);
      expect(existsSync(join(dir, '.build'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
