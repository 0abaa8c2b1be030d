/**
 * Pre-parking (issue 10 §1): a node creates the session of a registered mapped-form model it does
 * not hold yet and parks it (runtime/parked.ts) before any call of it reaches the node, so that the
 * model's first cold start here is a reload from park (0.07-0.21x a raw create + first run) instead
 * of a session create (0.47-0.94x): what AWS Lambda's SnapStart and provisioned concurrency buy,
 * bounded by the node's `PARK_BUDGET` and paid in its idle time.
 *
 * - Idle time only: a pre-park starts when no call waits or runs on the node and no model loads
 *   there, one at a time; a call that comes for the model being pre-parked waits for that create
 *   and takes its session (less than the create it would have started), a call of another model
 *   waits at most for the one create under way (main-thread models: less than
 *   `ORT_OFF_THREAD_LOAD_MS`, the node's own bound on a load holding its thread; longer ones load
 *   in the session host).
 * - Within budget: a pre-park takes only the room parked sessions have left, disposing none (a
 *   session an eviction parked is never disposed for one), and only while the warm pool has room
 *   for the create's whole charge; a pre-parked session is the first to go when room is wanted.
 * - Most wanted first (`preParkOrder`): popularity share, then load time (a longer create saves more).
 * - Every node pre-parks: a model's first call goes to the node where a cold start costs least at
 *   that moment (queue/routing.ts `chooseNode`: free room, then queue depth), which no node can
 *   foresee; a parked session holds ~3 % of its model's charge, and `PARK_BUDGET` bounds the sum.
 */

/** What the scheduler needs to know of a registered model. */
export interface PreParkCandidate {
  /** The node's model key (`modelKey`). */
  key: string;
  fn: string;
  /** Its popularity share (the cron's), 0 when unknown. */
  popularity: number;
  /** Its load time as registration measured it, ms. */
  loadMs: number;
}

/** What one attempt came to: parked; not for this node (not mapped here, held, too big for the room now); or failed. */
export type PreParkOutcome = 'parked' | 'skipped' | 'no-room' | 'failed';

/** The order to pre-park candidates in (pure): most popular first, then longest to load, then by key. */
export function preParkOrder<C extends PreParkCandidate>(candidates: readonly C[]): C[] {
  return [...candidates].sort((a, b) => b.popularity - a.popularity || b.loadMs - a.loadMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

export interface PreParkerOptions<C extends PreParkCandidate> {
  /** The registered models this node could pre-park (mapped form for its onnxruntime), with their popularity. */
  candidates: () => Promise<C[]>;
  /** Whether the node is idle now: no call waiting or running, no load under way. */
  idle: () => boolean;
  /** Creates and parks one model's session (the node's `prePark`). */
  park: (c: C) => Promise<PreParkOutcome>;
  /** How long the node must have been idle before a pre-park starts, ms. */
  idleMs: number;
  onError?: (e: unknown) => void;
}

/**
 * Runs pre-parks in a node's idle time, one at a time, in `preParkOrder`, until the candidates are
 * done or the room is full; `wake` starts a pass again (a registration, a deletion, a popularity
 * refresh, room freed). A model whose pre-park failed is not tried again until `wake(fn)` names
 * its function.
 */
export class PreParker<C extends PreParkCandidate> {
  private wanted = false;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private closed = false;
  /** Keys whose pre-park failed, with their function's name. */
  private readonly failed = new Map<string, string>();

  constructor(private readonly o: PreParkerOptions<C>) {}

  /** Asks for a pass once the node has been idle `idleMs`; `fn`: that function changed, so what failed of it is tried again. */
  wake(fn?: string): void {
    if (this.closed) return;
    if (fn !== undefined) for (const [k, f] of [...this.failed]) if (f === fn) this.failed.delete(k);
    this.wanted = true;
    this.arm();
  }

  /** The pass under way, if any (tests and `close` wait for it). */
  get busy(): Promise<void> | undefined {
    return this.running;
  }

  /** Stops: no pass starts again; resolves once the one under way (its create) is done. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private arm(): void {
    if (this.timer || this.running || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.o.idle()) return this.arm();
      this.running = this.pass()
        .catch((e: unknown) => this.o.onError?.(e))
        .finally(() => {
          this.running = undefined;
          if (this.wanted) this.arm();
        });
    }, this.o.idleMs);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    this.wanted = false;
    for (const c of preParkOrder(await this.o.candidates())) {
      if (this.closed) return;
      if (this.failed.has(c.key)) continue;
      // A call came: the rest waits for the next idle time.
      if (!this.o.idle()) {
        this.wanted = true;
        return;
      }
      const out = await this.o.park(c).catch((e: unknown) => (this.o.onError?.(e), 'failed' as const));
      if (out === 'failed') this.failed.set(c.key, c.fn);
    }
  }
}
