import { createRequire } from 'node:module';

/**
 * glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which a
 * model's weights and arena come from the heap and stay in the process once the model is evicted
 * (a worker reached 2.1x its budget above idle that way). A fixed threshold (any value set) keeps
 * large blocks in their own mappings, returned to the OS when freed (issue 12 §4, README).
 *
 * `glibc.malloc.hugetlb=1` (issue 10 §1): glibc marks the memory it maps and the heap it grows
 * MADV_HUGEPAGE, so where the kernel's transparent huge pages are `madvise` (as on this VM) a weight's
 * packed copy at load is faulted in 2 MiB at a time instead of 4 KiB: a 20 MB MLP's mapped create
 * ~1 100 -> ~200 page faults and 12.5-14 -> 10.7-11.6 ms of CPU, and its load window's copies reuse
 * the heap every time (without it, one load in three took ~4 000 faults); resident bytes within
 * 1 MiB (bench/README.md, "Cold starts: where a load's time goes"). Where the kernel's THP is `never` it does
 * nothing; where it is `always` glibc's flag changes nothing either.
 *
 * glibc reads them only at process start, so whatever starts a node sets them: `npm start`,
 * `npm test`, the image, `brulee serve`, and the benches' servers (through `withMallocTunables`).
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=131072:glibc.malloc.hugetlb=1';

/** This environment gives freed model memory back to the OS (not Linux, or a fixed mmap threshold). */
export function mallocReturnsMemory(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): boolean {
  return platform !== 'linux' || /glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? '') || env.MALLOC_MMAP_THRESHOLD_ !== undefined;
}

/** `env` with brulee's GLIBC_TUNABLES unless it sets its own (an empty one included: a way to measure without). */
export function withMallocTunables<T extends Record<string, string | undefined>>(env: T): T & { GLIBC_TUNABLES: string } {
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ?? MALLOC_TUNABLES };
}

/**
 * Whether to run this process again under `withMallocTunables(env)` (glibc reads its tunables only
 * at start): when it does not give freed memory back and would then. Not when the environment sets
 * its own GLIBC_TUNABLES without a threshold (an empty one included): that one is kept, so the
 * process run again would not either, and would run itself again, without end.
 */
export function runAgainForMalloc(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): boolean {
  return !mallocReturnsMemory(env, platform) && mallocReturnsMemory(withMallocTunables(env), platform);
}

/** glibc's mallopt parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

/**
 * While a mapped artifact loads, blocks of up to this size come from the heap, not from mappings
 * of their own. 32 MiB is as high as glibc lets the threshold go (half its 64 MiB arena heaps).
 */
export const LOAD_WINDOW_MMAP_THRESHOLD = 32 * 1024 * 1024;

/**
 * A mapped load gets a window when its prepacked blobs over the threshold hold at least this many
 * bytes beyond the largest (`prepackedReuseBytes`): 4 MiB is ~1 000 page faults saved, more than the
 * trim at the window's end costs (0.2-3 ms, measured). PP-OCR rec (one 3.2 MB blob, two of 176 KB)
 * gets none; a 20 MB MLP (five of 3.9 MB) does.
 */
export const LOAD_WINDOW_MIN_REUSE_BYTES = 4 * 1024 * 1024;

/** What brulee calls in glibc's allocator (through koffi, a foreign function interface with prebuilt binaries). */
export interface MallocControl {
  mallopt(param: number, value: number): number;
  mallocTrim(pad: number): number;
}

interface Koffi {
  load(path: string): { func(signature: string): (...args: number[]) => number };
}

let control: MallocControl | null | undefined;

/**
 * glibc's mallopt and malloc_trim, or null where brulee does not steer the allocator: not glibc,
 * no fixed mmap threshold in force (`mallocReturnsMemory`), or koffi not installed.
 */
export function mallocControl(env: NodeJS.ProcessEnv = process.env): MallocControl | null {
  if (control !== undefined) return control;
  control = null;
  if (process.platform !== 'linux' || !/glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? '')) return control;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    const libc = koffi.load('libc.so.6');
    const mallopt = libc.func('int mallopt(int param, int value)');
    const trim = libc.func('int malloc_trim(size_t pad)');
    control = { mallopt: (p, v) => mallopt(p, v), mallocTrim: (pad) => trim(pad) };
  } catch {
    control = null;
  }
  return control;
}

/** A tunable's value in a GLIBC_TUNABLES string (decimal or glibc's 0x hex), or `fallback`. */
export function tunable(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const m = new RegExp(`glibc\\.malloc\\.${name}=(0x[0-9a-f]+|\\d+)`, 'i').exec(env.GLIBC_TUNABLES ?? '');
  return m ? Number(m[1]) : fallback;
}

let open = 0;
let opened = 0;
let windowed = false;
let trimQueued = false;

/** Load windows opened in this process so far (a load sharing an open one does not count). */
export function loadWindowsOpened(): number {
  return opened;
}

/**
 * Runs `load` (a session create of a mapped artifact) with glibc's mmap threshold raised, then
 * puts the process's thresholds back and gives every free heap page back to the OS (issue 10 §1).
 *
 * Why: onnxruntime 1.30 packs every prepacked weight again at each load, into a fresh buffer, to
 * find its stored blob by a hash of the packed bytes, and frees that copy at once (bench/README.md, "Models
 * of 5 MB and more"). Under brulee's fixed threshold each such buffer is a mapping of its own:
 * fresh pages to fault in and zero, then unmapped, weight after weight (~26 000 page faults for a
 * 100 MB MLP). With the threshold raised for the load, the next weight's copy reuses the pages the
 * last one freed. The free heap is trimmed when the last load in flight ends (issue 12 §4's bound).
 *
 * What a window leaves: blocks other threads took from the heap meanwhile, and holes between the
 * blocks the load kept, from which later large blocks are served (glibc takes a free chunk before
 * it maps one), so they too stay in the process once freed. `trimHeap` gives such pages back: the
 * node calls it after an eviction (`trimFreed`), before each footprint measurement (a free page
 * reused by a load would hide its growth, a trim inside one would hide what was there before), and
 * when a load waits for the process's overhead.
 *
 * Loads in flight at once share one window (a count). Where `mallocControl` is null, `load` runs as it is.
 */
export async function inLoadWindow<T>(load: () => Promise<T>, ctl: MallocControl | null = mallocControl()): Promise<T> {
  if (!ctl) return load();
  windowed = true;
  if (open++ === 0) {
    opened++;
    ctl.mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
    ctl.mallopt(M_MMAP_THRESHOLD, LOAD_WINDOW_MMAP_THRESHOLD);
  }
  try {
    return await load();
  } finally {
    if (--open === 0) {
      ctl.mallopt(M_MMAP_THRESHOLD, tunable(process.env, 'mmap_threshold', 131072));
      // glibc's default, which a fixed mmap threshold leaves in force unless set as well.
      ctl.mallopt(M_TRIM_THRESHOLD, tunable(process.env, 'trim_threshold', 131072));
      ctl.mallocTrim(0);
    }
  }
}

/**
 * Gives the free heap's pages back to the OS now (`malloc_trim`, 0.2-3 ms) unless a load window is
 * open. Whether it trimmed. A process's first window needs it too: the runs of small blocks freed
 * before it are free heap pages its large blocks can take.
 */
export function trimHeap(ctl: MallocControl | null = mallocControl()): boolean {
  if (!ctl || open > 0) return false;
  ctl.mallocTrim(0);
  return true;
}

/**
 * After an eviction: `trimHeap` in the next turn of the event loop (off the call's path), once
 * however many evictions ask; only in a process that has used load windows (elsewhere no block
 * over the mmap threshold came from the heap, and there is nothing to give back).
 */
export function trimFreed(ctl: MallocControl | null = mallocControl()): void {
  if (!ctl || !windowed || trimQueued) return;
  trimQueued = true;
  setImmediate(() => {
    trimQueued = false;
    trimHeap(ctl);
  });
}
