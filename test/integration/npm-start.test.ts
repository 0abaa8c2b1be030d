import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { deleteKeys } from '../support/brulee';
import { until } from '../support/within';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

/** `npm start` as a user runs it, in its own process group (so the test can always clean up). */
async function npmStart(): Promise<{ npm: ChildProcess; url: string; cleanup: () => Promise<void> }> {
  const [port, grpc] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'brulee-npm-start-'));
  const prefix = `npmstart${process.pid}${port}`;
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, REDIS_URL: inject('redisUrl'), PORT: String(port), GRPC_PORT: String(grpc), DATA_DIR: dataDir, KEY_PREFIX: prefix, LOG_LEVEL: 'warn', POPULARITY_CRON: '0 0 1 1 *' },
  });
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
