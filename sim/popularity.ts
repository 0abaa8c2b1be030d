import type { ShareView } from '../runtime/policies/share-order';

/**
 * Popularity as the runtime defines it (`runtime/popularity.ts`, `decayRates` and `shares`): a
 * function's share of recent invocations, as an exponentially decayed rate refreshed periodically.
 * Every `refreshMs` of (virtual) time the counts since the last refresh are folded into
 * `rate = keep × rate + (1 − keep) × count / refreshMs` with `keep = exp(−refreshMs / windowMs)`,
 * and `popularity(f) = rate(f) / Σ rate`. Only past invocations count, so a policy reading it is
 * online.
 *
 * Refreshes are applied lazily, with the very same operations: `refreshRates` only notes the
 * refresh (and the increments of the functions called since the last one), and the first `share`
 * read after it brings every rate up to date and sums them, in one pass. The simulator's clock
 * runs far past the trace on a busy node, so most refreshes see 0 or 1 calls and more than half
 * are followed by another refresh before any share is read: those cost O(calls) instead of a
 * 500-long decay and sum each.
 */
export class PopularityTracker implements ShareView {
  readonly popularity: Float64Array;
  /** Every rate as of `lag` refreshes ago (the last time they were brought up to date). */
  private readonly rate: Float64Array;
  private readonly pending: Float64Array;
  /** The functions with a call since the last refresh (each once). */
  private readonly touched: Int32Array;
  private nTouched = 0;
  private readonly decay: number;
  /** Time of the next refresh. */
  nextRefreshAt: number;

  /** Refreshes noted but not yet applied to `rate` and `total`. */
  private lag = 0;
  /**
   * The increments of those refreshes, in order: at refresh `logStep[j]` (1..lag), function
   * `logF[j]` adds `logInc[j]` (`(1 − keep) × count / refreshMs`); every other function adds +0
   * there, which leaves its rate × keep as it is.
   */
  private logF: Int32Array;
  private logStep: Int32Array;
  private logInc: Float64Array;
  private nLog = 0;
  /** For the functions in the log during `catchUp`: their rate brought up to date. */
  private readonly fixed: Float64Array;
  private readonly fixedAt: Int32Array;
  private readonly inLog: Uint8Array;
  /** The functions in the log (each once), during `catchUp`. */
  private readonly called: Int32Array;
  /** keep for every function, but 1 for those in the log during `catchUp`. */
  private readonly mult: Float64Array;

  constructor(
    functions: number,
    readonly refreshMs = 10_000,
    readonly windowMs = 600_000,
  ) {
    if (!(refreshMs > 0)) throw new RangeError(`popularity refreshMs must be > 0, got ${refreshMs}`);
    if (!(windowMs > 0)) throw new RangeError(`popularity windowMs must be > 0, got ${windowMs}`);
    this.popularity = new Float64Array(functions);
    this.rate = new Float64Array(functions);
    this.pending = new Float64Array(functions);
    this.touched = new Int32Array(functions);
    this.fixed = new Float64Array(functions);
    this.fixedAt = new Int32Array(functions);
    this.inLog = new Uint8Array(functions);
    this.called = new Int32Array(functions);
    this.logF = new Int32Array(64);
    this.logStep = new Int32Array(64);
    this.logInc = new Float64Array(64);
    this.decay = Math.exp(-refreshMs / windowMs);
    this.mult = new Float64Array(functions).fill(this.decay);
    this.moved = new Int32Array(functions);
    this.movedMark = new Uint8Array(functions);
    this.nextRefreshAt = refreshMs;
  }

  /** One invocation of function `f` (counted at the next refresh). */
  record(f: number): void {
    if (this.pending[f]!++ === 0) this.touched[this.nTouched++] = f;
  }

  /** Σ rate as of the last refresh (once `lag` is 0). */
  private total = 0;
  /**
   * How many times the rates have been brought up to date (`catchUp`): two `share(f)` reads with
   * the same `epoch` (read after `sync`) give the same value.
   */
  epoch = 0;

  /** Applies the refreshes noted so far; returns `epoch`, which names the shares `share` now gives. */
  sync(): number {
    if (this.lag !== 0) this.catchUp();
    return this.epoch;
  }

  /** Runs the refresh due at `nextRefreshAt`. */
  refresh(): void {
    this.refreshRates();
    const { rate, popularity } = this;
    for (let f = 0; f < rate.length; f++) popularity[f] = this.share(f);
  }

  /**
   * Runs the refresh due at `nextRefreshAt` without filling `popularity`: read shares with
   * `share(f)` instead (the same values, computed only when asked for).
   */
  refreshRates(): void {
    const { pending, touched } = this;
    const add = 1 - this.decay;
    const ms = this.refreshMs;
    const nt = this.nTouched;
    const step = ++this.lag;
    if (this.nLog + nt > this.logF.length) this.growLog(this.nLog + nt);
    const { logF, logStep, logInc } = this;
    let k = this.nLog;
    for (let j = 0; j < nt; j++) {
      const f = touched[j]!;
      logF[k] = f;
      logStep[k] = step;
      // As the runtime's `decayRates` computes the added term.
      logInc[k++] = (add * pending[f]!) / ms;
      pending[f] = 0;
    }
    this.nLog = k;
    this.nTouched = 0;
    this.nextRefreshAt += ms;
    // Bounded work and memory when nothing reads for a long time (a run that never evicts).
    if (step >= 256) this.catchUp();
  }

  /**
   * Applies the `lag` refreshes noted: each rate as the refreshes one by one would leave it
   * (`rate × keep + inc` at each; where the function had no call inc is +0, and a rate × keep,
   * never negative, plus +0 is itself, so `rate × keep`),
   * and Σ rate of the last one, added one rate at a time in function order (the same additions,
   * so the same sum to the last bit; `test/sim/popularity-agreement.test.ts` fails otherwise).
   */
  private catchUp(): void {
    const L = this.lag;
    const keep = this.decay;
    const { rate, mult, fixed, fixedAt, inLog, logF, logStep, logInc, called, moved, movedMark } = this;
    const nLog = this.nLog;
    // The functions called within the lag, each brought up to date on its own (in step order).
    let nCalled = 0;
    for (let j = 0; j < nLog; j++) {
      const f = logF[j]!;
      let r: number;
      let at: number;
      if (inLog[f] === 0) {
        inLog[f] = 1;
        called[nCalled++] = f;
        r = rate[f]!;
        at = 0;
      } else {
        r = fixed[f]!;
        at = fixedAt[f]!;
      }
      const s = logStep[j]!;
      for (; at < s - 1; at++) r *= keep;
      fixed[f] = r * keep + logInc[j]!;
      fixedAt[f] = s;
    }
    // Their rates now, and a multiplier of 1 (x × 1 is x) in the pass below, which takes every
    // other rate L refreshes on (× keep at each) and sums them all in function order.
    for (let j = 0; j < nCalled; j++) {
      const f = called[j]!;
      let r = fixed[f]!;
      for (let at = fixedAt[f]!; at < L; at++) r *= keep;
      rate[f] = r;
      mult[f] = 1;
      inLog[f] = 0;
      if (movedMark[f] === 0) {
        movedMark[f] = 1;
        moved[this.nMoved++] = f;
      }
    }
    const n = rate.length;
    let total = 0;
    let f = 0;
    // Four functions a turn, Σ rate still added one rate at a time in function order (the same
    // additions, so the same sum to the last bit): the loop written plainly took ~1.9x as long.
    if (L === 1) {
      for (; f + 4 <= n; f += 4) {
        const r0 = rate[f]! * mult[f]!;
        const r1 = rate[f + 1]! * mult[f + 1]!;
        const r2 = rate[f + 2]! * mult[f + 2]!;
        const r3 = rate[f + 3]! * mult[f + 3]!;
        rate[f] = r0;
        rate[f + 1] = r1;
        rate[f + 2] = r2;
        rate[f + 3] = r3;
        total = total + r0 + r1 + r2 + r3;
      }
    } else if (L === 2) {
      for (; f + 4 <= n; f += 4) {
        const m0 = mult[f]!;
        const m1 = mult[f + 1]!;
        const m2 = mult[f + 2]!;
        const m3 = mult[f + 3]!;
        const r0 = rate[f]! * m0 * m0;
        const r1 = rate[f + 1]! * m1 * m1;
        const r2 = rate[f + 2]! * m2 * m2;
        const r3 = rate[f + 3]! * m3 * m3;
        rate[f] = r0;
        rate[f + 1] = r1;
        rate[f + 2] = r2;
        rate[f + 3] = r3;
        total = total + r0 + r1 + r2 + r3;
      }
    } else {
      // Eight a turn here: L multiplications each, eight independent chains in flight.
      for (; f + 8 <= n; f += 8) {
        const m0 = mult[f]!;
        const m1 = mult[f + 1]!;
        const m2 = mult[f + 2]!;
        const m3 = mult[f + 3]!;
        const m4 = mult[f + 4]!;
        const m5 = mult[f + 5]!;
        const m6 = mult[f + 6]!;
        const m7 = mult[f + 7]!;
        let r0 = rate[f]!;
        let r1 = rate[f + 1]!;
        let r2 = rate[f + 2]!;
        let r3 = rate[f + 3]!;
        let r4 = rate[f + 4]!;
        let r5 = rate[f + 5]!;
        let r6 = rate[f + 6]!;
        let r7 = rate[f + 7]!;
        for (let t = 0; t < L; t++) {
          r0 *= m0;
          r1 *= m1;
          r2 *= m2;
          r3 *= m3;
          r4 *= m4;
          r5 *= m5;
          r6 *= m6;
          r7 *= m7;
        }
        rate[f] = r0;
        rate[f + 1] = r1;
        rate[f + 2] = r2;
        rate[f + 3] = r3;
        rate[f + 4] = r4;
        rate[f + 5] = r5;
        rate[f + 6] = r6;
        rate[f + 7] = r7;
        total = total + r0 + r1 + r2 + r3 + r4 + r5 + r6 + r7;
      }
    }
    for (; f < n; f++) {
      const m = mult[f]!;
      let r = rate[f]!;
      for (let t = 0; t < L; t++) r *= m;
      rate[f] = r;
      total += r;
    }
    for (let j = 0; j < nCalled; j++) mult[called[j]!] = keep;
    this.total = total;
    this.lag = 0;
    this.nLog = 0;
    this.epoch++;
  }

  private growLog(n: number): void {
    const m = Math.max(n, 2 * this.logF.length);
    const f = new Int32Array(m);
    const s = new Int32Array(m);
    const inc = new Float64Array(m);
    f.set(this.logF.subarray(0, this.nLog));
    s.set(this.logStep.subarray(0, this.nLog));
    inc.set(this.logInc.subarray(0, this.nLog));
    this.logF = f;
    this.logStep = s;
    this.logInc = inc;
  }

  /**
   * Every rate as of the last refresh once `sync` has run (until the next refresh): `share(f)` is
   * rate / Σ rate, non-decreasing in it (the `ShareView` a policy's `selectAmongLoadedByShare` reads).
   */
  get rates(): Float64Array {
    return this.rate;
  }

  /** The functions whose rate moved against the others' (called) since the last `takeMoved`, each once. */
  readonly moved: Int32Array;
  private readonly movedMark: Uint8Array;
  private nMoved = 0;

  /** How many functions `moved` lists, and a fresh list from now on (see `ShareView.takeMoved`). */
  takeMoved(): number {
    const n = this.nMoved;
    for (let j = 0; j < n; j++) this.movedMark[this.moved[j]!] = 0;
    this.nMoved = 0;
    return n;
  }

  /** Function f's popularity as of the last refresh (what `refresh` writes to `popularity[f]`). */
  share(f: number): number {
    if (this.lag !== 0) this.catchUp();
    const total = this.total;
    return total > 0 ? this.rate[f]! / total : 0;
  }

  /** Sets each entry's `popularity` to `share(entry.idx)`: the same values, with one catch-up check for all. */
  fillShares(entries: readonly { readonly idx: number; popularity: number }[]): void {
    if (this.lag !== 0) this.catchUp();
    const { rate, total } = this;
    if (total > 0) {
      for (let j = 0; j < entries.length; j++) {
        const e = entries[j]!;
        e.popularity = rate[e.idx]! / total;
      }
    } else for (let j = 0; j < entries.length; j++) entries[j]!.popularity = 0;
  }

  /** Runs every refresh due at or before `now`. */
  advanceTo(now: number): void {
    while (this.nextRefreshAt <= now) this.refresh();
  }
}
