import { closeSync, mkdtempSync, openSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

// Where /proc/self/pagemap cannot be opened (Linux 4.0-4.1 for non-root, some sandboxes): `fail.pagemap` makes its open throw EACCES.
const fail = vi.hoisted(() => ({ pagemap: false }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const openSync = ((path: string, ...rest: unknown[]) => {
    if (fail.pagemap && path === '/proc/self/pagemap') throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
    return (fs.openSync as (...a: unknown[]) => number)(path, ...rest);
  }) as typeof fs.openSync;
  return { ...fs, default: { ...fs, openSync }, openSync };
});

const { ParkedSessions, canPark, mappingsOf } = await import('../../runtime/parked');
const { preParkOrder } = await import('../../runtime/prepark');

const PAGE = 4096;
type Mmap = (addr: number, len: number, prot: number, flags: number, fd: number, off: number) => number;
type Munmap = (addr: number, len: number) => number;
const libc = createRequire(import.meta.url)('koffi').load('libc.so.6') as { func(s: string): Mmap & Munmap };
const mmap = libc.func('uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, intptr_t off)') as Mmap;
const munmap = libc.func('int munmap(uintptr_t addr, size_t len)') as Munmap;
const memset = libc.func('uintptr_t memset(uintptr_t s, int c, size_t n)') as unknown as (s: number, c: number, n: number) => number;

const dir = mkdtempSync(join(tmpdir(), 'parked-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real read-only private mapping of a 16-page file (clean file pages, as a mapped artifact's weights): disposed by unmapping it. */
function mappedSession(name: string, write = true, writable = false) {
  const path = join(dir, name);
  if (write) writeFileSync(path, Buffer.alloc(16 * PAGE, 7));
  const fd = openSync(path, 'r');
  const len = 16 * PAGE;
  const addr = mmap(0, len, writable ? 3 /* PROT_READ | PROT_WRITE */ : 1 /* PROT_READ */, 2 /* MAP_PRIVATE */, fd, 0);
  closeSync(fd);
  let disposed = 0;
  return {
    path: realpathSync(path),
    addr,
    get disposed() {
      return disposed;
    },
    async dispose() {
      disposed++;
      munmap(addr, len);
    },
  };
}

describe.runIf(canPark())('ParkedSessions (runtime/parked.ts)', () => {
  it('a session whose mapping cannot be checked (pagemap unreadable) is disposed, not leaked', async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const s = mappedSession('a');
    expect(mappingsOf(s.path).length).toBeGreaterThan(0);
    fail.pagemap = true;
    try {
      await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(false);
    } finally {
      fail.pagemap = false;
    }
    expect(s.disposed).toBe(1);
    expect(parked.counts).toMatchObject({ parked: 0, held: 0 });
    expect(mappingsOf(s.path)).toEqual([]);
  });

  it('a session dropped while its park waits for its turn is disposed, not parked after the drop', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const parked = new ParkedSessions({ capBytes: 1024 ** 3, aside: async (f) => { await gate; return f(); } });
    const s = mappedSession('b');
    const parking = parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE });
    // The model's function is deleted meanwhile (RuntimeNode.forgetModel).
    const dropping = parked.drop('k');
    open();
    await parking;
    await dropping;
    expect(parked.has('k')).toBe(false);
    expect(s.disposed).toBe(1);
    expect(parked.bytes).toBe(0);
  });

  it('a session whose file another session maps too (the same artifact under two functions) is disposed, not parked', async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const s = mappedSession('d');
    const other = mappedSession('d', false);
    expect(mappingsOf(s.path)).toHaveLength(2);
    await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(false);
    expect(s.disposed).toBe(1);
    expect(parked.counts).toMatchObject({ parked: 0, held: 0 });
    expect(mappingsOf(s.path)).toHaveLength(1);
    await other.dispose();
  });

  it("a session with a page of its mapping written (copied: its own, no longer the file's) is disposed, not parked", async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const s = mappedSession('e', true, true);
    memset(s.addr + 5 * PAGE, 9, 1);
    await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(false);
    expect(s.disposed).toBe(1);
    expect(parked.counts).toMatchObject({ parked: 0, held: 0 });
  });

  it('a session parks when its mapping holds only file pages', async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const s = mappedSession('c');
    await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(true);
    expect(parked.bytes).toBe(16 * PAGE);
    expect(await parked.take('k', 'm')).toBe(s);
    await s.dispose();
  });

  it('a pre-park (runtime/prepark.ts) parks only into the room left: it disposes no parked session, and is itself the first to go for a later park', async () => {
    // Each session costs 16 pages parked (32 charged, 16 mapped); room for two.
    const parked = new ParkedSessions({ capBytes: 32 * PAGE });
    const called = mappedSession('f');
    await expect(parked.park('called', called, { mappedPath: called.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(true);
    const pre = mappedSession('g');
    await expect(parked.park('pre', pre, { mappedPath: pre.path, match: 'm', sizeBytes: 32 * PAGE, pre: { token: parked.reserve('pre') } })).resolves.toBe(true);
    expect(parked.preCounts).toMatchObject({ parked: 1, held: 1, bytes: 16 * PAGE });
    // Full: a third pre-park is disposed, the others stay.
    const more = mappedSession('h');
    await expect(parked.park('more', more, { mappedPath: more.path, match: 'm', sizeBytes: 32 * PAGE, pre: { token: parked.reserve('more') } })).resolves.toBe(false);
    expect(more.disposed).toBe(1);
    expect(parked.has('called') && parked.has('pre')).toBe(true);
    // An eviction's park wants room: the pre-parked session goes first, though it is the newer.
    const evicted = mappedSession('i');
    await expect(parked.park('evicted', evicted, { mappedPath: evicted.path, match: 'm', sizeBytes: 32 * PAGE })).resolves.toBe(true);
    expect([parked.has('called'), parked.has('pre'), parked.has('evicted')]).toEqual([true, false, true]);
    expect(pre.disposed).toBe(1);
    expect(parked.preCounts).toMatchObject({ parked: 1, taken: 0, dropped: 1, held: 0 });
    await parked.clear();
  });

  it('a pre-park whose key is dropped while its session is created (its function deleted) is disposed, not parked', async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const token = parked.reserve('k');
    expect(parked.isPre('k')).toBe(true);
    // The create runs; the function is deleted meanwhile.
    const s = mappedSession('j');
    await parked.drop('k');
    await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE, pre: { token } })).resolves.toBe(false);
    expect(s.disposed).toBe(1);
    expect(parked.keys()).toEqual([]);
  });

  it('a pre-parked session taken by a call counts as taken, and as a pre-park taken', async () => {
    const parked = new ParkedSessions({ capBytes: 1024 ** 3 });
    const s = mappedSession('l');
    const token = parked.reserve('k');
    await expect(parked.park('k', s, { mappedPath: s.path, match: 'm', sizeBytes: 32 * PAGE, pre: { token } })).resolves.toBe(true);
    parked.unreserve('k', token);
    expect(await parked.take('k', 'm')).toBe(s);
    expect(parked.counts).toMatchObject({ parked: 1, taken: 1, held: 0 });
    expect(parked.preCounts).toMatchObject({ parked: 1, taken: 1, dropped: 0 });
    expect(parked.keys()).toEqual([]);
    await s.dispose();
  });
});

describe('preParkOrder (runtime/prepark.ts)', () => {
  it('most popular first, then longest to load, then by key', () => {
    const c = (key: string, popularity: number, loadMs: number) => ({ key, fn: key, popularity, loadMs });
    expect(preParkOrder([c('a', 0, 10), c('b', 0.5, 1), c('c', 0, 40), c('d', 0.5, 5), c('e', 0, 40)]).map((x) => x.key)).toEqual(['d', 'b', 'c', 'e', 'a']);
  });
});
