import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * Parked sessions (issue 10 §1): an evicted model whose session onnxruntime built from a mapped
 * artifact (runtime/mapped.ts) is kept, with the pages of its mapped weights given back.
 *
 * Why: onnxruntime 1.30 cannot load already-packed weights without packing them again. Its
 * `SessionState::PrepackConstantInitializedTensors` (onnxruntime/core/framework/session_state.cc)
 * calls each kernel's `PrePack` into a fresh buffer and hashes the result
 * (`PrePackedWeights::GetHash`, MurmurHash3 over every packed byte) before it looks the stored blob
 * up by that hash; the cross-session `PrepackedWeightsContainer` does the same, and onnxruntime-node
 * reaches neither it nor `AddInitializer` (bench/README.md, "Parked sessions"). That is ~0.43 ms per
 * MB at every load. What a session of a mapped artifact holds once built is mostly those mapped
 * weights: clean file pages (a 20 MB MLP: 19.1 MiB of them against ~0.5 MiB of anonymous memory).
 * So a node that evicts such a model can keep its session and drop only the pages
 * (`madvise(MADV_DONTNEED)`: the process's RSS falls at once, the file stays in the page cache); a
 * cold call of it then reuses the session, its first run faulting the pages in again, and the
 * outputs are the very same session's, bit for bit.
 *
 * onnxruntime maps the data file private and writable, and never writes constant weights; a page a
 * write had copied would be lost by MADV_DONTNEED, so `park` refuses a mapping with any such page
 * (`/proc/self/pagemap`: a present page that is not a file page).
 *
 * A small model's session, with no mapped weights, is parked whole (`WHOLE_PARK_MAX_BYTES`): it
 * gives nothing back, and costs parked what it was charged resident, which is what a mapped
 * session keeps parked or less; its next cold start then skips onnxruntime's create (~1-2 ms for
 * the tiny MLP after a pause, most of its cold call).
 */

/** A session that can be parked: it is disposed as any other, and knows the file its weights are mapped from. */
export interface Parkable {
  dispose(): Promise<void>;
}

export interface ParkedEntry<T extends Parkable> {
  model: T;
  /** What the session was built from and how: a parked session is reused only for the same. */
  match: string;
  /** Its estimated cost while parked: the pool's charge of it less its mapped bytes. */
  bytes: number;
  /** Parked before any call of it here (runtime/prepark.ts), not by an eviction: the first to go when room is wanted. */
  pre: boolean;
}

export interface ParkedSessionsOptions {
  /** The most bytes parked sessions may hold (their estimated cost); 0 parks none. */
  capBytes: number;
  /** Runs a disposal or a release of pages out of the way of measured loads (runtime/footprint.ts's turns). */
  aside?: <R>(f: () => Promise<R>) => Promise<R>;
}

/**
 * A session with no mapped weights (an ONNX or ORT-format artifact: a small model's) is parked
 * whole, at its charge, when that is this or less: no more than what a mapped session keeps of
 * itself parked (~0.5-4 MiB of anonymous memory). The tiny MLP of the benches is charged ~0.44 MiB;
 * its create is most of its cold call (issue 10 §3: README, "Warm calls and throughput").
 */
export const WHOLE_PARK_MAX_BYTES = 1024 * 1024;

const MADV_DONTNEED = 4;
const PAGE = 4096;

interface Madvise {
  (addr: number, len: number, advice: number): number;
}
let madviseFn: Madvise | null | undefined;

/** libc's madvise through koffi (runtime/malloc.ts loads it likewise), or null where it cannot be had. */
function madvise(): Madvise | null {
  if (madviseFn !== undefined) return madviseFn;
  madviseFn = null;
  if (process.platform !== 'linux') return madviseFn;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as { load(path: string): { func(signature: string): Madvise } };
    madviseFn = koffi.load('libc.so.6').func('int madvise(uintptr_t addr, size_t len, int advice)');
  } catch {
    madviseFn = null;
  }
  return madviseFn;
}

/** Whether this process can park sessions (Linux, koffi installed). */
export function canPark(): boolean {
  return madvise() !== null;
}

/** The address ranges at which this process maps `path` (`/proc/self/maps`), and the file offset each maps from. */
export function mappingsOf(path: string): Array<{ start: number; end: number; offset: number }> {
  const out: Array<{ start: number; end: number; offset: number }> = [];
  for (const line of readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    if (!line.endsWith(path)) continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \S+\s+(.*)$/.exec(line);
    if (m && m[4] === path) out.push({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), offset: parseInt(m[3]!, 16) });
  }
  return out;
}

/**
 * Whether no two of the ranges map the same part of the file: one session's mappings of a mapped
 * artifact never do (onnxruntime maps only tensors at page-aligned offsets, each in pages of its
 * own), two sessions' of the same artifact (two functions registered with the same bytes) always do.
 */
export function mappedOnce(ranges: ReadonlyArray<{ start: number; end: number; offset: number }>): boolean {
  const byOffset = [...ranges].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    if (byOffset[i]!.offset < prev.offset + (prev.end - prev.start)) return false;
  }
  return true;
}

/**
 * Whether every present page of the ranges is a file page and none is swapped out
 * (`/proc/self/pagemap`: bit 63 present, bit 61 file-page or shared, bit 62 swapped): none was
 * copied by a write, so dropping them loses nothing.
 */
export function onlyFilePages(ranges: ReadonlyArray<{ start: number; end: number }>): boolean {
  const fd = openSync('/proc/self/pagemap', 'r');
  try {
    for (const r of ranges) {
      const pages = (r.end - r.start) / PAGE;
      const buf = Buffer.alloc(pages * 8);
      const read = readSync(fd, buf, 0, buf.length, (r.start / PAGE) * 8);
      if (read !== buf.length) return false;
      for (let i = 0; i < pages; i++) {
        const hi = buf.readUInt32LE(i * 8 + 4);
        const present = (hi & 0x80000000) !== 0;
        const file = (hi & 0x20000000) !== 0;
        // A swapped-out page of a private file mapping is one a write had copied (clean file pages are dropped, never swapped).
        const swapped = (hi & 0x40000000) !== 0;
        if ((present && !file) || swapped) return false;
      }
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Evicted sessions of mapped artifacts, kept with their mapped pages given back, and of small
 * models, kept whole (`WHOLE_PARK_MAX_BYTES`), oldest disposed first past `capBytes`. A node takes one back at the model's next cold start (`take`) and
 * disposes them when the model is retired or deleted, when memory is short, and at shutdown.
 */
export class ParkedSessions<T extends Parkable> {
  private readonly entries = new Map<string, ParkedEntry<T>>();
  /** Parks under way, by key: the latest's token (`drop` takes it out). */
  private readonly parking = new Map<string, object>();
  /** The tokens of pre-parks (`reserve`). */
  private readonly preTokens = new WeakSet<object>();
  private bytes_ = 0;
  private parks_ = 0;
  private takes_ = 0;
  private preParks_ = 0;
  private preTakes_ = 0;
  private preDropped_ = 0;
  private readonly aside: <R>(f: () => Promise<R>) => Promise<R>;

  constructor(private readonly o: ParkedSessionsOptions) {
    this.aside = o.aside ?? ((f) => f());
  }

  /** Estimated bytes parked sessions hold now. */
  get bytes(): number {
    return this.bytes_;
  }

  /** Sessions parked, and taken back, so far. */
  get counts(): { parked: number; taken: number; held: number } {
    return { parked: this.parks_, taken: this.takes_, held: this.entries.size };
  }

  /**
   * Of those, the pre-parked ones (`park` with `pre`): parked before any call, taken by a call,
   * disposed without a call having taken them (the pre-park's work lost), held now and their bytes.
   */
  get preCounts(): { parked: number; taken: number; dropped: number; held: number; bytes: number } {
    let held = 0;
    let bytes = 0;
    for (const e of this.entries.values()) if (e.pre) (held++, (bytes += e.bytes));
    return { parked: this.preParks_, taken: this.preTakes_, dropped: this.preDropped_, held, bytes };
  }

  /** The bytes a pre-park may still take without disposing any parked session (`capBytes` less what is parked). */
  get room(): number {
    return Math.max(0, this.o.capBytes - this.bytes_);
  }

  /**
   * Marks `key` as being parked from now on, before its session exists (a pre-park's create):
   * a `drop` of the key meanwhile (its function deleted) makes `park` with this token dispose it.
   */
  reserve(key: string): object {
    const token = {};
    this.parking.set(key, token);
    this.preTokens.add(token);
    return token;
  }

  /** Ends `reserve`'s mark (its park done, or given up before it). */
  unreserve(key: string, token: object): void {
    if (this.parking.get(key) === token) this.parking.delete(key);
  }

  /** Whether the session under `key` was pre-parked and not taken yet, or is being pre-parked now. */
  isPre(key: string): boolean {
    const e = this.entries.get(key);
    if (e) return e.pre;
    const t = this.parking.get(key);
    return t !== undefined && this.preTokens.has(t);
  }

  /** The keys sessions are parked under, or being parked under now. */
  keys(): string[] {
    return [...new Set([...this.entries.keys(), ...this.parking.keys()])];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * Parks `model` under `key` if it is a mapped artifact's (`mappedPath`), or is charged
   * `WHOLE_PARK_MAX_BYTES` or less (`sizeBytes`: kept whole), and fits under the cap
   * (pre-parked ones, then older ones, are disposed to make it fit); else disposes it. `sizeBytes`
   * is the pool's charge of it. A pre-park (`pre`, with the token `reserve` gave before its create)
   * parks only into `room`, disposing nothing, and not at all if the key was dropped since `reserve`.
   * Resolves once its pages are given back (or it is disposed).
   */
  async park(key: string, model: T, how: { mappedPath?: string; match: string; sizeBytes: number; pre?: { token: object } }): Promise<boolean> {
    const advise = madvise();
    // A `drop` of the key before this park is done (its function deleted while it waited for its turn) disposes it instead.
    const token = how.pre?.token ?? {};
    if (!how.pre) {
      this.parking.set(key, token);
      await this.dispose(key);
    } else if (this.entries.has(key)) this.parking.delete(key);
    const parked = await this.aside(async () => {
      if (this.parking.get(key) !== token || this.o.capBytes <= 0) return false;
      // No mapped weights: a small session is kept whole, at its charge; a larger one is not kept.
      let ranges: Array<{ start: number; end: number; offset: number }> = [];
      if (how.mappedPath === undefined) {
        if (how.sizeBytes > WHOLE_PARK_MAX_BYTES) return false;
      } else {
        if (advise === null) return false;
        try {
          ranges = mappingsOf(how.mappedPath);
          // Another session mapping the same file (the same artifact under another function): its
          // mappings cannot be told from this one's, and its pages are not this park's to give back.
          if (ranges.length === 0 || !mappedOnce(ranges) || !onlyFilePages(ranges)) return false;
        } catch {
          // /proc/self/maps or pagemap unreadable here (a sandbox, an old kernel for non-root): not checked, not parked.
          return false;
        }
      }
      const mapped = ranges.reduce((s, r) => s + (r.end - r.start), 0);
      const bytes = Math.max(0, how.sizeBytes - mapped);
      if (bytes > (how.pre ? this.room : this.o.capBytes)) return false;
      for (const r of ranges) if (advise!(r.start, r.end - r.start, MADV_DONTNEED) !== 0) return false;
      this.entries.set(key, { model, match: how.match, bytes, pre: how.pre !== undefined });
      this.bytes_ += bytes;
      this.parks_++;
      if (how.pre) this.preParks_++;
      return true;
    });
    if (this.parking.get(key) === token) this.parking.delete(key);
    if (!parked) {
      await this.aside(() => model.dispose());
      return false;
    }
    // Pre-parked ones first (never called here), then oldest first (a Map keeps insertion order), never the one just parked.
    for (const k of this.byLeastWanted()) {
      if (this.bytes_ <= this.o.capBytes) break;
      if (k !== key) await this.drop(k);
    }
    return true;
  }

  /** The keys in the order they go when room is wanted: pre-parked ones (no call has wanted them here yet), then the rest, oldest first. */
  private byLeastWanted(): string[] {
    const all = [...this.entries];
    return [...all.filter(([, e]) => e.pre), ...all.filter(([, e]) => !e.pre)].map(([k]) => k);
  }

  /** The session parked under `key` if it was built as `match` says (taken out); a mismatched one is disposed. */
  async take(key: string, match: string): Promise<T | undefined> {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.remove(key);
    if (e.match !== match) {
      if (e.pre) this.preDropped_++;
      await this.aside(() => e.model.dispose());
      return undefined;
    }
    this.takes_++;
    if (e.pre) this.preTakes_++;
    return e.model;
  }

  /** Disposes the session parked under `key`, if any, or being parked there now. */
  async drop(key: string): Promise<void> {
    this.parking.delete(key);
    await this.dispose(key);
  }

  private async dispose(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e) return;
    this.remove(key);
    if (e.pre) this.preDropped_++;
    await this.aside(() => e.model.dispose());
  }

  /**
   * Lets parked sessions go, oldest first, until their estimated bytes reach `bytes` or none is
   * left (the warm pool's `reclaim`): taken out now, disposed in the background (`done`).
   */
  reclaim(bytes: number): { bytes: number; done: Promise<void> } {
    let freed = 0;
    const gone: T[] = [];
    for (const k of this.byLeastWanted()) {
      if (freed >= bytes) break;
      const e = this.entries.get(k)!;
      this.remove(k);
      if (e.pre) this.preDropped_++;
      freed += e.bytes;
      gone.push(e.model);
    }
    const done = gone.length === 0 ? Promise.resolve() : this.aside(async () => {
      for (const m of gone) await m.dispose().catch(() => undefined);
    });
    return { bytes: freed, done };
  }

  /** Disposes every parked session (at shutdown: not counted as pre-parks lost). */
  async clear(): Promise<void> {
    for (const e of this.entries.values()) e.pre = false;
    this.parking.clear();
    for (const k of [...this.entries.keys()]) await this.drop(k);
  }

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes_ -= e.bytes;
  }
}
