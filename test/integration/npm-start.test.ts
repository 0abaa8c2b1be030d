import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
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
