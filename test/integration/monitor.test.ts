import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedis } from '../../queue/connection';
import { startRedisServer } from '../../queue/redis-server';
import { monitor, parseMonitorLine, type Monitored } from '../support/monitor';

// The tests that count Redis commands (wire.test.ts, bench:breakdown) read them with MONITOR while
// other test files keep the shared Redis busy: a MONITOR whose first lines come in the same read as
// its +OK must neither throw nor lose a line sent after it started.
const redis = createRedis(inject('redisUrl'));
afterAll(() => redis.disconnect());

describe('MONITOR reader (test support)', () => {
  it('parses what Redis prints: the source, a script\'s commands, escaped quotes, bytes left as \\xNN', () => {
    expect(parseMonitorLine('+1795911649.354476 [0 127.0.0.1:37416] "set" "a \\"b\\" \\\\" "\\x00\\xff\\n"')).toEqual({
      time: '1795911649.354476',
      source: '127.0.0.1:37416',
      args: ['set', 'a "b" \\', '\\x00\\xff\\n'],
    });
    expect(parseMonitorLine('+1.5 [3 lua] "incr" "k"')).toEqual({ time: '1.5', source: 'lua', args: ['incr', 'k'] });
    expect(parseMonitorLine('+1.5 [0 unix:/tmp/r.sock] ""')).toEqual({ time: '1.5', source: 'unix:/tmp/r.sock', args: [''] });
    expect(parseMonitorLine('+OK')).toBeUndefined();
  });

  it('starts while another client floods Redis, and sees every command sent after it started, in order', async () => {
    const flood = createRedis(inject('redisUrl'));
    const key = `monitor-test:${process.pid}`;
    let flooding = true;
    const loop = (async () => {
      while (flooding) await flood.pipeline(Array.from({ length: 50 }, () => ['ping'])).exec();
    })();
    try {
      for (let round = 0; round < 20; round++) {
        const seen: Monitored[] = [];
        const mon = await monitor(inject('redisUrl'), (c) => seen.push(c));
        for (let i = 0; i < 5; i++) await redis.set(key, `${round}:${i}`);
        await redis.del(key); // its echo marks the end
        for (let i = 0; i < 200 && !seen.some((c) => c.args[0] === 'del' && c.args[1] === key); i++) await new Promise((r) => setTimeout(r, 5));
        mon.stop();
        const mine = seen.filter((c) => c.args[1] === key).map((c) => c.args.join(' '));
        expect(mine).toEqual([...Array.from({ length: 5 }, (_, i) => `set ${key} ${round}:${i}`), `del ${key}`]);
      }
    } finally {
      flooding = false;
      await loop;
      flood.disconnect();
    }
  });

  it('with a password (spaces in it), starts only after MONITOR\'s own +OK: the first command after it is seen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brulee-monitor-auth-'));
    const server = await startRedisServer({ dir, persist: false });
    try {
      const admin = createRedis(server.url);
      await admin.config('SET', 'requirepass', 'pass word');
      admin.disconnect();
      const url = new URL(server.url);
      url.password = encodeURIComponent('pass word');
      const client = createRedis(url.toString());
      for (let round = 0; round < 10; round++) {
        const seen: Monitored[] = [];
        const mon = await monitor(url.toString(), (c) => seen.push(c));
        await client.set('k', String(round)); // at once: AUTH's +OK alone must not have started it
        for (let i = 0; i < 200 && !seen.some((c) => c.args[0] === 'set'); i++) await new Promise((r) => setTimeout(r, 5));
        mon.stop();
        expect(seen.filter((c) => c.args[0] === 'set').map((c) => c.args)).toEqual([['set', 'k', String(round)]]);
      }
      client.disconnect();
      await expect(monitor(server.url, () => undefined)).rejects.toThrow(/MONITOR refused: NOAUTH/);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
