import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { removeDeadScratch } from '../../functions/registry';

/*
 * A registration writes its pre-optimized artifact to a scratch folder in the OS temp folder,
 * named with its process's pid (and pid namespace): one killed mid-way leaves it, and a process
 * that starts removes those whose process is gone, never a live one's. Real processes: one alive,
 * one that has exited. (registration-crash.test.ts: the same after a real kill -9.)
 */

const dir = mkdtempSync(join(tmpdir(), 'brulee-scratch-'));
const live = spawn('sleep', ['120'], { stdio: 'ignore' });
afterAll(() => {
  live.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

it('removes the scratch folders of registrations whose process is gone, and only those', async () => {
  const dead = spawn('true', { stdio: 'ignore' });
  await new Promise((r) => dead.once('exit', r));
  const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]!;
  const folder = (name: string, ageMs = 0) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'model.onnx'), 'artifact');
    const t = (Date.now() - ageMs) / 1000;
    utimesSync(join(dir, name), t, t);
    return name;
  };
  const scratch = (pid: number | undefined, namespace = ns) => folder(`brulee-artifact-${namespace}-${pid}-${randomUUID()}`);
  const ofDead = scratch(dead.pid);
  const ofLive = scratch(live.pid);
  const ofThis = scratch(process.pid);
  // A pid of another pid namespace (a container sharing the temp folder) says nothing here.
  const ofOtherNamespace = scratch(dead.pid, '1');
  // The form before pids were in the name: removed once older than any registration runs.
  const oldUnowned = folder(`brulee-artifact-${randomUUID()}`, 2 * 60 * 60_000);
  const newUnowned = folder(`brulee-artifact-${randomUUID()}`);
  const other = folder(`brulee-artifact-notes`, 2 * 60 * 60_000);

  expect((await removeDeadScratch(dir)).sort()).toEqual([ofDead, oldUnowned].sort());
  expect(readdirSync(dir).sort()).toEqual([ofLive, ofThis, ofOtherNamespace, newUnowned, other].sort());
});
