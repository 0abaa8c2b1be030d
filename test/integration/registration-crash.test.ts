import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { sha256Of } from '../../store';
import { deleteKeys } from '../support/brulee';
import { startProc, stopAll, type Proc } from '../support/procs';
import { until } from '../support/within';

/*
 * A registration whose process is killed mid-way (SIGKILL while it profiles) never releases its
 * name lock nor its marks on the bytes (functions/model-bytes.ts). They are a lease the
 * registration renews while it runs: once it is over, a retry of the same name registers, and the
 * dead registration's marks no longer keep a deletion from removing the bytes.
 */

const redis = createRedis(inject('redisUrl'));
const ns = `regcrash${process.pid}`;
const procs: Proc[] = [];
// The processes' own temp folder: what a killed registration leaves there is seen.
const tmp = mkdtempSync(join(tmpdir(), 'brulee-regcrash-tmp-'));
const scratch = () => readdirSync(tmp).filter((n) => n.startsWith('brulee-artifact-'));
afterAll(async () => {
  await stopAll(procs);
  redis.disconnect();
  await deleteKeys(ns);
  rmSync(tmp, { recursive: true, force: true });
});

it('a registration killed mid-way holds its name and its bytes for its lease only: a retry of the name registers, a deletion removes the bytes, and the next process removes its scratch folder', async () => {
  // A 5 s lease (REGISTRATION_LEASE_MS), not the default 15 s: the retry waits out the dead registration's.
  const env = { REDIS_URL: inject('redisUrl'), KEY_PREFIX: ns, TMPDIR: tmp, REGISTRATION_LEASE_MS: '5000' };
  const k = keys(ns);
  const bytes = mlpModel({ inputSize: 64, hidden: [512, 512], outputSize: 16, seed: 12 });
  const sha = sha256Of(bytes);
  const put = (p: Proc) => fetch(`${p.base}/functions/crashy`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes });

  const first = await startProc('regcrash-first', 'all', env);
  procs.push(first);
  const sent = put(first).catch(() => undefined);
  // Killed once it holds the name, has marked the bytes and made its scratch folder (it is profiling them).
  await until('the registration holds its name and marks its bytes', async () => (await redis.exists(`${k.fn('crashy')}:lock`)) === 1 && (await redis.zcard(k.storing(sha))) === 1 && scratch().length === 1);
  first.kill9();
  await first.exited;
  await sent;
  expect(await redis.exists(k.fn('crashy'))).toBe(0);
  const [left] = scratch();
  expect(left).toBeDefined();

  // The next process removes the folder the dead registration left.
  const second = await startProc('regcrash-second', 'all', env);
  procs.push(second);
  await until('the dead registration\'s scratch folder to go', () => !scratch().includes(left!));
  let res: Response | undefined;
  const refused = new Set<string>();
  await until(
    'a retry of the name registers',
    async () => {
      res = await put(second);
      if (res.status !== 409) return true;
      refused.add(((await res.json()) as { error: { code: string } }).error.code);
      await new Promise((r) => setTimeout(r, 500));
      return false;
    },
    60_000,
  );
  expect(res!.status).toBe(201);
  for (const code of refused) expect(code).toBe('CONFLICT');
  // The dead registration's marks are over too: the deletion removes the bytes from the store.
  const stored = join(second.dataDir, 'models', `${sha}.onnx`);
  expect(existsSync(stored)).toBe(true);
  expect((await fetch(`${second.base}/functions/crashy`, { method: 'DELETE' })).status).toBe(200);
  expect(existsSync(stored)).toBe(false);
}, 120_000);
