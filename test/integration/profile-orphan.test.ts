import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { deleteKeys } from '../support/brulee';
import { startProc, stopAll, type Proc } from '../support/procs';
import { until } from '../support/within';

/*
 * A registration profiles its model in a child process. When the registering process is killed
 * (kill -9), the child must stop too, rather than go on deriving and profiling for nobody (up to
 * its 120 s timeout, a core and the model's memory) and write into a scratch folder the next
 * process removes. Real processes: a gateway killed, its profiling child frozen (SIGSTOP) while it
 * derives the artifact, before it wrote it, and let go (SIGCONT) once its parent is gone.
 */

const ns = `orphan${process.pid}`;
const procs: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'brulee-orphan-tmp-'));
afterAll(async () => {
  await stopAll(procs);
  await deleteKeys(ns);
  rmSync(tmp, { recursive: true, force: true });
});

/** The pids whose parent is `ppid` and whose command line names the profiling child. */
function profilingChildren(ppid: number): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === ppid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('profile-child')) found.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Whether `pid` runs (an exited child not yet reaped by its new parent is a zombie: not running). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
};

it('the profiling child of a registration whose process was killed stops, without finishing its work', async () => {
  const gw = await startProc('orphan-gw', 'all', { REDIS_URL: inject('redisUrl'), KEY_PREFIX: ns, TMPDIR: tmp });
  procs.push(gw);
  // Large enough (~13 MB) that deriving it takes long enough to be seen: a ~1 MB model's derive was
  // over between two looks of the loop below on a quiet machine (a clean-clone CI run, load ~1).
  const bytes = mlpModel({ inputSize: 64, hidden: [1024, 1024, 1024, 1024], outputSize: 16, seed: 5 });
  const sent = fetch(`${gw.base}/functions/orphan`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes }).catch(() => undefined);
  // Frozen while it derives the pre-optimized artifact (its own scratch folder is there; the
  // artifact is written at the end of that step).
  let child = 0;
  await until('the profiling child to derive', () => {
    [child = 0] = profilingChildren(gw.child.pid!);
    if (!child || !readdirSync(tmp).some((n) => n.startsWith('brulee-derive-'))) return false;
    process.kill(child, 'SIGSTOP');
    return true;
  }, 60_000);
  const scratch = readdirSync(tmp).filter((n) => n.startsWith('brulee-artifact-'));
  expect(scratch).toHaveLength(1);
  expect(readdirSync(join(tmp, scratch[0]!))).toEqual([]);
  gw.kill9();
  await gw.exited;
  await sent;
  process.kill(child, 'SIGCONT');
  await until('the orphaned profiling child to exit', () => !alive(child), 60_000);
  // It stopped before deriving the artifact it was asked for.
  expect(readdirSync(join(tmp, scratch[0]!))).toEqual([]);
}, 120_000);
