import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { FunctionRegistry, removeDeadScratch } from '../../functions/registry';
import { mlpModel } from '../../models/generate';
import { createRedis } from '../../queue/connection';
import { keys } from '../../queue/keys';
import { FileModelStore, LocalModels } from '../../store';
import { deleteKeys } from '../support/brulee';
import { until } from '../support/within';

/*
 * A registration writes its pre-optimized artifact to a scratch folder in the OS temp folder,
 * named with its process's pid (and pid namespace): one killed mid-way leaves it, and a process
 * that starts removes those whose process is gone, never a live one's. Real processes: one alive,
 * one that has exited. (registration-crash.test.ts: the same after a real kill -9.)
 */

const dir = mkdtempSync(join(tmpdir(), 'brulee-scratch-'));
const live = spawn('sleep', ['120'], { stdio: 'ignore' });
const ns = `scratch${process.pid}`;
afterAll(async () => {
  live.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  await deleteKeys(ns);
});

const pidNs = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]!;

it('removes the scratch folders of registrations whose process is gone, and only those', async () => {
  const dead = spawn('true', { stdio: 'ignore' });
  await new Promise((r) => dead.once('exit', r));
  const folder = (name: string, ageMs = 0) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'model.onnx'), 'artifact');
    const t = (Date.now() - ageMs) / 1000;
    utimesSync(join(dir, name), t, t);
    return name;
  };
  const scratch = (pid: number | undefined, namespace = pidNs, ageMs = 0) => folder(`brulee-artifact-${namespace}-${pid}-${randomUUID()}`, ageMs);
  const ofDead = scratch(dead.pid);
  const ofLive = scratch(live.pid);
  const ofThis = scratch(process.pid);
  // A pid of another pid namespace (a container sharing the temp folder) says nothing here...
  const ofOtherNamespace = scratch(dead.pid, '1');
  // ...but no registration runs an hour: that namespace's process (a container restarted over the
  // same emptyDir /tmp starts in a new one, whose pids are its own) left it.
  const oldOfOtherNamespace = scratch(live.pid, '1', 2 * 60 * 60_000);
  // The form before pids were in the name: removed once older than any registration runs.
  const oldUnowned = folder(`brulee-artifact-${randomUUID()}`, 2 * 60 * 60_000);
  const newUnowned = folder(`brulee-artifact-${randomUUID()}`);
  const other = folder(`brulee-artifact-notes`, 2 * 60 * 60_000);

  expect((await removeDeadScratch(dir)).sort()).toEqual([ofDead, oldOfOtherNamespace, oldUnowned].sort());
  expect(readdirSync(dir).sort()).toEqual([ofLive, ofThis, ofOtherNamespace, newUnowned, other].sort());
});

it('a registration removes what a start had to leave: another pid namespace\'s folder once an hour old', async () => {
  // This process's temp folder is its own here (os.tmpdir() reads TMPDIR at each call).
  const tmp = mkdtempSync(join(dir, 'tmp-'));
  const before = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  const redis = createRedis(inject('redisUrl'));
  try {
    const store = new FileModelStore(join(tmp, 'models'));
    const registry = new FunctionRegistry({ redis, keys: keys(ns), models: new LocalModels({ store, dir: join(tmp, 'cache') }), budgets: async () => [2 ** 30] });
    // The start's sweep is long over once a registration (a profiling child's start) is.
    await registry.register('first', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }), {});
    const name = `brulee-artifact-1-${live.pid}-${randomUUID()}`;
    mkdirSync(join(tmp, name));
    const t = (Date.now() - 2 * 60 * 60_000) / 1000;
    utimesSync(join(tmp, name), t, t);
    await registry.register('second', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 2 }), {});
    await until('the old folder of another pid namespace to go', () => !readdirSync(tmp).includes(name));
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    redis.disconnect();
  }
});

it("removes a profiling child's own scratch folder (runtime/onnx.ts, left when the child is killed at its timeout) once an hour old, not a younger one", async () => {
  const tmp = mkdtempSync(join(dir, 'derive-'));
  const [old, young] = ['brulee-derive-Ab12Cd', 'brulee-derive-xY34zW'];
  for (const name of [old, young]) {
    mkdirSync(join(tmp, name));
    writeFileSync(join(tmp, name, 'graph.onnx'), 'partial');
  }
  const t = (Date.now() - 2 * 60 * 60_000) / 1000;
  utimesSync(join(tmp, old), t, t);
  expect(await removeDeadScratch(tmp)).toEqual([old]);
  expect(readdirSync(tmp)).toEqual([young]);
});
