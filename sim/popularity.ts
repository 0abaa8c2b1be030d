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
    this.decay = Math.exp(-refreshMs / windowMs);
    this.nextRefreshAt = refreshMs;
  }

  /** One invocation of function `f` (counted at the next refresh). */
  record(f: number): void {
    this.pending[f]!++;
  }

  /** Runs the refresh due at `nextRefreshAt`. */
  refresh(): void {
    const { rate, pending, popularity } = this;
    let total = 0;
    for (let f = 0; f < rate.length; f++) {
      const r = rate[f]! * this.decay + ((1 - this.decay) * pending[f]!) / this.refreshMs;
      rate[f] = r;
      pending[f] = 0;
      total += r;
    }
    for (let f = 0; f < rate.length; f++) popularity[f] = total > 0 ? rate[f]! / total : 0;
    this.nextRefreshAt += this.refreshMs;
  }

  /** Runs every refresh due at or before `now`. */
  advanceTo(now: number): void {
    while (this.nextRefreshAt <= now) this.refresh();
  }
}
