import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** `npm run sim` (sim/cli.ts through tsx) as an operator runs it: usage mistakes found before the runs, exit 2. */
const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'brulee-sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

writeFileSync(join(dir, 'invocations.csv'), 'time_ms,function\n' + Array.from({ length: 200 }, (_, i) => `${i * 100},${i % 3 ? 'a' : 'b'}`).join('\n') + '\n');
writeFileSync(join(dir, 'catalog.json'), JSON.stringify({ a: { sizeBytes: 1e6, loadMs: 50, execMs: 5 }, b: { sizeBytes: 2e6, loadMs: 80, execMs: 8 } }));

/** Runs one of sim/'s tools through tsx: its exit code and output. */
function tool(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, timeout: 60_000 }, (e, stdout, stderr) =>
      res({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const sim = (args: string[]) => tool('sim/cli.ts', ['--replay', dir, '--budgets', '1MB,3MB', '--policy', 'lru', ...args]);

describe('sim CLI usage errors', () => {
  it('an output file in a folder that does not exist: exit 2 before any run, naming the flag and the folder (not a stack trace after the sweep)', async () => {
    for (const flag of ['--out', '--csv', '--plot']) {
      const r = await sim([flag, join(dir, 'no-such-folder', 'x')]);
      expect(r.code, flag).toBe(2);
      expect(r.stderr, flag).toContain(`sim: ${flag} ${join(dir, 'no-such-folder', 'x')}: cannot write in ${join(dir, 'no-such-folder')} (ENOENT)`);
      expect(r.stderr, flag).not.toMatch(/\[1\/2\]|at main/);
    }
    const ok = await sim(['--out', join(dir, 'r.json')]);
    expect(ok.code).toBe(0);
  });

  it('a report window that is empty (from at or after to): exit 2, not a table of zeros', async () => {
    const r = await sim(['--report-from', '80%', '--report-to', '20%']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('sim: --report-from 80% is not before --report-to 20%: no invocation would be counted');
    expect((await sim(['--report-from', '20%', '--report-to', '80%'])).code).toBe(0);
  });
});

describe('report, tune and synth usage', () => {
  const STACK = /\n\s+at /;
  it('--help prints the usage and exits 0', async () => {
    for (const t of ['report', 'tune', 'synth']) {
      const r = await tool(`sim/${t}.ts`, ['--help']);
      expect(r.code, t).toBe(0);
      expect(r.stdout, t).toMatch(new RegExp(`^usage: npx tsx sim/${t}.ts `));
      expect(r.stderr, t).toBe('');
    }
  });

  it('a missing input or argument: one line naming it, exit 2, no stack trace', async () => {
    const missing = join(dir, 'no-such.csv');
    const cases: [string, string[], string][] = [
      ['report', ['all', missing], `sim/report: cannot read ${missing}: ENOENT`],
      ['report', ['everything', missing], 'sim/report: give a table (all, plus or bound) and one sweep CSV'],
      ['report', ['all', join(dir, 'catalog.json')], `sim/report: ${join(dir, 'catalog.json')}: no column policy`],
      ['tune', ['--azure', join(dir, 'nowhere'), '--models', missing], `sim/tune: ${join(dir, 'nowhere')}: no invocations.csv`],
      ['tune', ['--models', missing], 'sim/tune: give --azure DIR (the trace) and --models FILE'],
      ['tune', ['--azure', dir, '--models', missing, '--variant', '{nope'], 'sim/tune: --variant {nope: not JSON'],
      ['synth', [], 'sim/synth: give --out DIR'],
      ['synth', ['--out', join(dir, 'synth'), '--functions', 'many'], 'sim/synth: --functions must be a whole number, got "many"'],
      ['synth', ['--outdir', dir], "sim/synth: Unknown option '--outdir'"],
    ];
    for (const [t, args, want] of cases) {
      const r = await tool(`sim/${t}.ts`, args);
      expect(r.code, `${t} ${args.join(' ')}`).toBe(2);
      expect(r.stderr, `${t} ${args.join(' ')}`).toContain(want);
      expect(r.stderr, `${t} ${args.join(' ')}`).not.toMatch(STACK);
    }
  });
});
