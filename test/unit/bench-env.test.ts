import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { npmStart, npmStartEnv } from '../../bench/support';
import { MALLOC_TUNABLES } from '../../runtime/malloc';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
/** A checkout whose package.json has this start script (the forms brulee's has had). */
const checkout = (start: string) => {
  const d = mkdtempSync(join(tmpdir(), 'brulee-checkout-'));
  dirs.push(d);
  writeFileSync(join(d, 'package.json'), JSON.stringify({ scripts: { start } }));
  return d;
};

it("a bench's server gets the tunables its own checkout's npm start sets, not those exported where the bench runs", () => {
  // vitest.config.ts exports brulee's own into this process; another value here, as a shell's might be.
  const was = process.env.GLIBC_TUNABLES;
  process.env.GLIBC_TUNABLES = 'glibc.malloc.arena_max=1';
  try {
    expect(npmStartEnv().GLIBC_TUNABLES).toBe(MALLOC_TUNABLES);
    const older = checkout('GLIBC_TUNABLES=${GLIBC_TUNABLES-glibc.malloc.mmap_threshold=131072} exec node --import tsx server.ts');
    expect(npmStartEnv(older).GLIBC_TUNABLES).toBe('glibc.malloc.mmap_threshold=131072');
    // Checkouts from before brulee set any: none (glibc's defaults), as their npm start ran.
    for (const start of ['exec node --import tsx server.ts', 'tsx server.ts']) expect(npmStartEnv(checkout(start))).not.toHaveProperty('GLIBC_TUNABLES');
    // The rest of the environment is this process's.
    expect(npmStartEnv(older).PATH).toBe(process.env.PATH);
  } finally {
    process.env.GLIBC_TUNABLES = was;
  }
});

it("a bench's server runs as its own checkout's npm start runs it", () => {
  // This checkout's: the launcher that builds server.ts (start.mjs); older checkouts' through tsx.
  expect(npmStart().nodeArgs).toEqual(['start.mjs']);
  for (const start of ['GLIBC_TUNABLES=${GLIBC_TUNABLES-glibc.malloc.mmap_threshold=131072} exec node --import tsx server.ts', 'exec node --import tsx server.ts', 'tsx server.ts']) {
    expect(npmStart(checkout(start)).nodeArgs).toEqual(['--import', 'tsx', 'server.ts']);
  }
});
