import { inject } from 'vitest';
import { deleteKeys } from './brulee';
import { startProc, stopAll, type Proc } from './procs';
import type { TestS3 } from './s3';

/**
 * brulee processes of one cluster (the test's Redis, a key prefix, an S3-compatible model store)
 * for tests whose processes die: `env()` is what each gets, `worker(id)` starts a ROLE=worker
 * process under NODE_ID `id`; every process started goes in `procs`. `stop()` stops them all, then
 * the store, and deletes the prefix's keys. `extra`: more of every process's environment (the
 * cluster's settings: RESTART_GRACE_MS, say).
 */
export function workerProcs(prefix: string, s3: () => TestS3 | undefined, extra: Record<string, string> = {}): { procs: Proc[]; env(): Record<string, string>; worker(id: string): Promise<Proc>; stop(): Promise<void> } {
  const procs: Proc[] = [];
  const env = () => ({ REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix, POPULARITY_CRON: '0 0 1 1 *', ...s3()!.env(), ...extra });
  return {
    procs,
    env,
    worker: async (id) => {
      const w = await startProc(id, 'worker', { ...env(), NODE_ID: id });
      procs.push(w);
      return w;
    },
    stop: async () => {
      await stopAll(procs);
      await s3()?.stop();
      await deleteKeys(prefix);
    },
  };
}
