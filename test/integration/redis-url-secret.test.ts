import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { freePort, startProc } from '../support/procs';

/**
 * A REDIS_URL with a password (redis://user:secret@host, as managed Redis services hand them out):
 * the server's start-up log printed it whole ("brulee is ready", field `redis`), so the password
 * went to every log collector; and an unreachable one ended the start with a stack trace.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const admin = createRedis(inject('redisUrl'));
const user = `redact-${randomUUID().slice(0, 8)}`;
const secret = `pw-${randomUUID()}`;
afterAll(async () => {
  await admin.call('ACL', 'DELUSER', user).catch(() => undefined);
  admin.disconnect();
});

function withCredentials(url: string, port?: number): string {
  const u = new URL(url);
  u.username = user;
  u.password = secret;
  if (port !== undefined) u.port = String(port);
  return u.toString();
}

describe('REDIS_URL with a password', () => {
  it('is logged with the password replaced by ***', async () => {
    await admin.call('ACL', 'SETUSER', user, 'on', `>${secret}`, '~*', '&*', '+@all');
    const url = withCredentials(inject('redisUrl'));
    const p = await startProc('redact', 'all', { REDIS_URL: url, KEY_PREFIX: `redact-${randomUUID()}`, LOG_LEVEL: 'info' });
    try {
      expect((await fetch(`${p.base}/healthz`)).status).toBe(200);
      const ready = p.output().split('\n').find((l) => l.includes('"msg":"brulee is ready"'));
      expect(ready).toBeDefined();
      expect(JSON.parse(ready!).redis).toBe(url.replace(secret, '***'));
      expect(p.output()).not.toContain(secret);
    } finally {
      await p.stop(5000);
    }
  });

  it('unreachable: one line that names it (redacted), exit 1, no stack trace, once REDIS_WAIT_MS has passed', async () => {
    const url = withCredentials(inject('redisUrl'), await freePort());
    const dataDir = mkdtempSync(join(tmpdir(), 'brulee-redact-'));
    const t0 = Date.now();
    // Start-up waits REDIS_WAIT_MS for Redis (10 s by default): 1 s here.
    const r = await new Promise<{ code: number | null; stderr: string }>((res) => {
      execFile(process.execPath, ['--import', 'tsx', 'server.ts'], { cwd: ROOT, timeout: 60_000, env: { ...process.env, REDIS_URL: url, REDIS_WAIT_MS: '1000', DATA_DIR: dataDir, PORT: '0', GRPC_PORT: '0', LOG_LEVEL: 'warn' } }, (e, _out, stderr) =>
        res({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    const took = Date.now() - t0;
    rmSync(dataDir, { recursive: true, force: true });
    expect(r.code).toBe(1);
    // (Process start and all: well under the 10 s the default alone would wait.)
    expect([took >= 1000, took < 10_000], `exited after ${took} ms`).toEqual([true, true]);
    expect(r.stderr).toMatch(/^brulee: Redis is not answering \(.*\); check REDIS_URL and that redis-server runs \(REDIS_URL redis:\/\/redact-[0-9a-f]+:\*\*\*@127\.0\.0\.1:\d+\)$/m);
    expect(r.stderr).not.toContain(secret);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
