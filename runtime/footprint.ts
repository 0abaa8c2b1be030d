import { trimHeap } from './malloc';

/**
 * What a model really holds in this process (issue 12 §4). Registration measures a model's
 * resident bytes once, in a fresh child process, on a generated input with every dynamic axis at
 * 1; in a node the same model holds more: onnxruntime's arena grows on the first runs and again on
 * larger inputs (PP-OCR det: ~8 MiB at load, then ~30 MiB more over its first runs at 320x320).
 * A node therefore measures each model itself: its first load, its first `firstRuns` runs, and
 * every run on an input larger than any measured before, each *alone* in the process (an exclusive
 * turn: other loads and runs wait for it, it waits for them), so the growth of the process's native
 * memory (RSS less the V8 heap and JS ArrayBuffers) over that operation is the model's. The model is charged the sum of
 * what its measured operations added, at least what registration measured; the charge never falls
 * (a high-water mark per model, kept across evictions and reloads), so later loads of it are charged
 * in full before they start, and need no exclusive turn.
 *
 * An exclusive turn stalls the node's other calls for one load or one run; they happen once per
 * model and per new largest input, not per call.
 */

/**
 * Native bytes of this process: RSS less the V8 heap and less JS ArrayBuffers (whose growth is the
 * JS garbage of the moment and the tensors of calls being fetched or answered meanwhile, not a model's).
 */
export function nativeBytes(): number {
  // Free heap pages could serve a measured load or run in a load window (runtime/malloc.ts),
  // hiding its growth, or be given back at the window's end, hiding what was there before: none
  // are left when it reads.
  trimHeap();
  const m = process.memoryUsage();
  return m.rss - m.heapTotal - m.arrayBuffers;
}

/** A readers-writer turn: many shared operations at once, or one exclusive one; a waiting exclusive one goes first. */
export class Turns {
  private shared = 0;
  private exclusive = false;
  private exclusiveWaiting = 0;
  private waiters: Array<() => void> = [];

  async run<T>(exclusive: boolean, what: () => Promise<T>): Promise<T> {
    if (exclusive) {
      this.exclusiveWaiting++;
      try {
        while (this.exclusive || this.shared > 0) await this.next();
      } finally {
        this.exclusiveWaiting--;
      }
      this.exclusive = true;
    } else {
      while (this.exclusive || this.exclusiveWaiting > 0) await this.next();
      this.shared++;
    }
    try {
      return await what();
    } finally {
      if (exclusive) this.exclusive = false;
      else this.shared--;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  private next(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
}

export interface FootprintOptions {
  /** Runs of a newly loaded model measured alone whatever their input size. @default 3 */
  firstRuns?: number;
  /** Reads the process's native bytes. @default nativeBytes */
  measure?: () => number;
  /** Called when a model's charge rises: the warm pool re-charges it (`WarmPool.resize`). */
  onGrow?: (key: string, bytes: number) => void;
  /**
   * The most a measurement may charge (the node's budget). A model that registration measured
   * within it, measured here above it, is charged the whole budget: it runs alone rather than
   * never (one measurement disturbed by the process's other work would otherwise refuse it
   * MODEL_TOO_LARGE for good, since a charge never falls). @default Infinity
   */
  capBytes?: number;
}

/**
 * A first measured run's growth, guessed from its input before it runs (for the warm pool to
 * reserve it ahead, `growthEstimate`), per input byte: PP-OCR det's first runs at 320x320 grew its
 * arena ~30 MiB on a 1.2 MB input.
 */
export const FIRST_RUN_GROWTH_PER_INPUT_BYTE = 32;

interface Learned {
  /** What measured operations added, summed: load plus runs. */
  bytes: number;
  /** The most a measured run grew the model by per byte of its input past the largest measured before. */
  growthPerInputByte?: number;
  /** The load was measured (the first load in this process). */
  loadMeasured: boolean;
  runsMeasured: number;
  /** The largest input (bytes) a measured run has had. */
  maxInputBytes: number;
}

/** Per-model footprints, measured in this process (see the file's comment). */
export class Footprints {
  readonly turns = new Turns();
  private readonly learned = new Map<string, Learned>();
  private readonly o: Required<Omit<FootprintOptions, 'onGrow'>> & Pick<FootprintOptions, 'onGrow'>;

  constructor(opts: FootprintOptions = {}) {
    this.o = { firstRuns: 3, measure: nativeBytes, capBytes: Infinity, ...opts };
  }

  /** What `key` is charged: its measured bytes (at most `capBytes`), at least `registered` (what registration measured). */
  charge(key: string, registered: number): number {
    return Math.max(registered, Math.min(this.o.capBytes, this.learned.get(key)?.bytes ?? 0));
  }

  /** What this process has measured of `key`, bytes (0 before its first measured load). */
  measured(key: string): number {
    return this.learned.get(key)?.bytes ?? 0;
  }

  /** Loads `key`: alone and measured the first time, shared (and already charged in full) after. */
  load<T>(key: string, what: () => Promise<T>): Promise<T> {
    const l = this.learned.get(key);
    if (l?.loadMeasured) return this.turns.run(false, what);
    return this.measured_(key, what, undefined, (rec) => (rec.loadMeasured = true));
  }

  /**
   * Runs `key` on an input of `inputBytes`: alone and measured while it may still grow the model.
   * `outside`: bytes of the result that the measurement counts but are not the model's (outputs
   * made in a session host's thread are JS ArrayBuffers the main thread's figure does not show).
   */
  run<T>(key: string, inputBytes: number, what: () => Promise<T>, outside?: (result: T) => number): Promise<T> {
    if (!this.measures(key, inputBytes)) return this.turns.run(false, what);
    return this.measured_(key, what, outside, (rec, grew) => {
      rec.runsMeasured++;
      // Growth follows the input past the largest one measured (the first run: all of it).
      const more = inputBytes - rec.maxInputBytes;
      if (more > 0) rec.growthPerInputByte = Math.max(rec.growthPerInputByte ?? 0, grew / more);
      rec.maxInputBytes = Math.max(rec.maxInputBytes, inputBytes);
    });
  }

  /** Whether a run of `key` on `inputBytes` would be measured now (it may still grow the model). */
  measures(key: string, inputBytes: number): boolean {
    const l = this.learned.get(key);
    return !l || l.runsMeasured < this.o.firstRuns || inputBytes > l.maxInputBytes;
  }

  /**
   * What a run of `key` on `inputBytes` may grow it by, for the warm pool to reserve before it
   * runs (as a load is charged before it starts): 0 for a run that will not be measured (its model
   * has grown to its charge already); else the input's bytes past the largest measured run's
   * times the most a measured run of it grew per such byte (`FIRST_RUN_GROWTH_PER_INPUT_BYTE`
   * before any), and at least what it was measured holding so far, since onnxruntime's arena
   * extends itself by doubling (`kNextPowerOfTwo`): one extension can be as large as the arena
   * (PP-OCR det went from 15 to 31 MiB in one run).
   * An estimate: a growth past it is still charged when measured.
   */
  growthEstimate(key: string, inputBytes: number): number {
    if (!this.measures(key, inputBytes)) return 0;
    const l = this.learned.get(key);
    const perByte = l?.growthPerInputByte ?? FIRST_RUN_GROWTH_PER_INPUT_BYTE;
    const byInput = perByte * Math.max(0, inputBytes - (l?.maxInputBytes ?? 0));
    return Math.min(this.o.capBytes, Math.ceil(Math.max(byInput, l?.bytes ?? 0)));
  }

  /** Forgets a model (deleted or replaced): its key will not come back. */
  forget(key: string): void {
    this.learned.delete(key);
  }

  private measured_<T>(key: string, what: () => Promise<T>, outside: ((result: T) => number) | undefined, done: (rec: Learned, grew: number) => void): Promise<T> {
    return this.turns.run(true, async () => {
      const before = this.o.measure();
      const out = await what();
      const grew = Math.max(0, this.o.measure() - before - (outside?.(out) ?? 0));
      let rec = this.learned.get(key);
      if (!rec) this.learned.set(key, (rec = { bytes: 0, loadMeasured: false, runsMeasured: 0, maxInputBytes: 0 }));
      done(rec, grew);
      if (grew > 0) {
        rec.bytes += grew;
        this.o.onGrow?.(key, rec.bytes);
      }
      return out;
    });
  }
}

/** What `chargesHeld` reads of a warm pool. */
export interface HeldCharges {
  readonly runBytes: number;
  readonly tensorBytes: number;
  readonly disposingBytes: number;
}

/**
 * Of a warm pool's charges, the bytes the process holds now, for `ProcessOverhead` to compare RSS
 * with: the models run since their load (`WarmPool.runBytes`; one loaded and not yet run holds
 * little of its charge yet), evicted models not yet disposed, and of the calls' tensor bytes what
 * `buffers` (JS ArrayBuffers above their figure at rest: the bytes read from a job, onnxruntime's
 * outputs, an answer's frame) shows to exist; buffers past the calls' bytes are garbage, overhead.
 * Charges made before their memory exists are left out: counted, they hide as much of the process's
 * overhead (malloc's kept memory, dead tensors), and in a busy node some load or call is nearly
 * always under way, so the pool would make no room for it.
 */
export function chargesHeld(pool: HeldCharges, buffers: number): number {
  return pool.runBytes + pool.disposingBytes + Math.min(pool.tensorBytes, Math.max(0, buffers));
}

export interface ProcessOverheadOptions {
  /** The process's resident bytes. @default process.memoryUsage.rss */
  rss?: () => number;
  /** What the warm pool's charges hold in the process now (`chargesHeld`). */
  charged: () => number;
  /** Whether anything has been charged yet (the process is still at rest until then). */
  started: () => boolean;
  /**
   * Whether every charge is memory the process holds now (`WarmPool.settled`: no load, no call's
   * bytes, no disposal under way). Only then does a sample move the idle figure.
   */
  settled: () => boolean;
  /** Takes the overhead (`WarmPool.setOverhead`). */
  set: (bytes: number) => void;
  /**
   * How fast the idle figure rises back after a dip, ms: each settled sample above it closes
   * this fraction of the gap per ms since the previous sample (so ~63 % in `riseMs`). @default 30000
   */
  riseMs?: number;
  /** A clock, ms. @default performance.now */
  now?: () => number;
}

/**
 * What a worker process holds beyond what its warm pool charges (issue 12 §4): its RSS above its
 * idle RSS, less the pool's charges that exist in memory (`chargesHeld`). The pool charges models as measured and calls' tensors as
 * estimated, but the process also holds the V8 heap's growth under load, tensors dead but not yet
 * collected, and memory malloc keeps: up to half the budget again in the memory bench. Charging
 * that too (`WarmPool.setOverhead`: idle models make room for it) keeps the process's RSS above
 * idle near the budget whatever its cause; only for a process that is a node alone (ROLE=worker):
 * a gateway's memory is not the models' budget.
 *
 * Idle is the RSS less charges while nothing has been charged yet (the latest such sample: "rest").
 * After that only a settled pool's samples move it (see `settled`): charges made before their
 * memory exists (a call's growth reserve; a model or tensors `chargesHeld` counts a little early)
 * make RSS less charges dip while they are under way; taken for idle, such a dip would stay as a phantom overhead of its size (a model's)
 * once the memory exists. A settled sample below idle lowers it at once (memory the process held at
 * rest and has let go); one above lets it rise back slowly (`riseMs`), never above rest, so a dip
 * that was a model charged more than it holds is forgotten, while an overhead above rest never is.
 */
export class ProcessOverhead {
  private idle?: number;
  private rest = 0;
  private last = 0;
  private readonly o: Required<ProcessOverheadOptions>;

  constructor(opts: ProcessOverheadOptions) {
    this.o = { rss: () => process.memoryUsage.rss(), riseMs: 30_000, now: () => performance.now(), ...opts };
  }

  /** The idle figure samples are measured against (undefined before the first sample). */
  get idleBytes(): number | undefined {
    return this.idle;
  }

  /** Measures once and hands the overhead on; returns it. */
  sample(): number {
    const uncharged = this.o.rss() - this.o.charged();
    const now = this.o.now();
    if (this.idle === undefined || !this.o.started()) this.idle = this.rest = uncharged;
    else if (this.o.settled()) {
      if (uncharged < this.idle) this.idle = uncharged;
      // Up toward it, never past rest (idle is never above rest: set there, only lowered, risen to it).
      else this.idle += (Math.min(this.rest, uncharged) - this.idle) * Math.min(1, Math.max(0, now - this.last) / this.o.riseMs);
    }
    this.last = now;
    const overhead = Math.max(0, uncharged - this.idle);
    this.o.set(overhead);
    return overhead;
  }
}
