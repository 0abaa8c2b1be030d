/**
 * Popularity as the runtime defines it (`runtime/popularity.ts`, `decayRates` and `shares`): a
 * function's share of recent invocations, as an exponentially decayed rate refreshed periodically.
 * Every `refreshMs` of (virtual) time the counts since the last refresh are folded into
 * `rate = keep × rate + (1 − keep) × count / refreshMs` with `keep = exp(−refreshMs / windowMs)`,
 * and `popularity(f) = rate(f) / Σ rate`. Only past invocations count, so a policy reading it is
 * online.
 */
export class PopularityTracker {
  readonly popularity: Float64Array;
  private readonly rate: Float64Array;
  private readonly pending: Float64Array;
  /**
   * `(1 − keep) × pending[f] / refreshMs` of the functions in `touched`, 0 for every other: the
   * refresh adds it to every rate (+0 changes no rate), so it divides only for the functions
   * called since the last refresh (a division per function per refresh was half its time).
   */
  private readonly inc: Float64Array;
  /** The functions with a call since the last refresh (each once). */
  private readonly touched: Int32Array;
  private nTouched = 0;
  private readonly decay: number;
  /** Time of the next refresh. */
  nextRefreshAt: number;

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
    this.inc = new Float64Array(functions);
    this.touched = new Int32Array(functions);
    this.decay = Math.exp(-refreshMs / windowMs);
    this.nextRefreshAt = refreshMs;
  }

  /** One invocation of function `f` (counted at the next refresh). */
  record(f: number): void {
    if (this.pending[f]!++ === 0) this.touched[this.nTouched++] = f;
  }

  /** Σ rate as of the last refresh. */
  private total = 0;

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
    const { rate, pending, inc, touched } = this;
    const keep = this.decay;
    const add = 1 - keep;
    const ms = this.refreshMs;
    const nt = this.nTouched;
    // rate × keep + (1 − keep) × pending / refreshMs, as the runtime's `decayRates` computes it,
    // with the second term 0 (exactly what it is) for functions not called since the last refresh.
    for (let j = 0; j < nt; j++) {
      const f = touched[j]!;
      inc[f] = (add * pending[f]!) / ms;
      pending[f] = 0;
    }
    // Four functions a turn, Σ rate still added one rate at a time in function order (the same
    // additions, so the same sum to the last bit): the loop written plainly took ~1.9x as long
    // (one refresh of 500 functions ~0.95 µs against ~0.5 µs, a micro-benchmark on this machine).
    let total = 0;
    const n = rate.length;
    let f = 0;
    for (; f + 4 <= n; f += 4) {
      const r0 = rate[f]! * keep + inc[f]!;
      const r1 = rate[f + 1]! * keep + inc[f + 1]!;
      const r2 = rate[f + 2]! * keep + inc[f + 2]!;
      const r3 = rate[f + 3]! * keep + inc[f + 3]!;
      rate[f] = r0;
      rate[f + 1] = r1;
      rate[f + 2] = r2;
      rate[f + 3] = r3;
      total = total + r0 + r1 + r2 + r3;
    }
    for (; f < n; f++) {
      const r = rate[f]! * keep + inc[f]!;
      rate[f] = r;
      total += r;
    }
    for (let j = 0; j < nt; j++) inc[touched[j]!] = 0;
    this.nTouched = 0;
    this.total = total;
    this.nextRefreshAt += ms;
  }

  /** Function f's popularity as of the last refresh (what `refresh` writes to `popularity[f]`). */
  share(f: number): number {
    const total = this.total;
    return total > 0 ? this.rate[f]! / total : 0;
  }

  /** Runs every refresh due at or before `now`. */
  advanceTo(now: number): void {
    while (this.nextRefreshAt <= now) this.refresh();
  }
}
