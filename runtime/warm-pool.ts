import { BruleeError } from '../errors';
import type { EntryFacts, EvictionPolicy, ModelFacts } from './policies';

/** What the pool needs to know about a model to admit it. */
export interface ModelSpec {
  readonly key: string;
  /** Function name the model version belongs to (for stats and retiring old versions). */
  readonly fn: string;
  readonly sizeBytes: number;
  readonly loadMs: number;
  readonly execMs: number;
  /** Version of the function this model is (newer versions retire older ones). */
  readonly version?: number;
  readonly pinned?: boolean;
}

export interface WarmPoolOptions<T, S extends ModelSpec = ModelSpec> {
  /**
   * Byte budget, for the models and the bytes calls hold beside them (`CallBytes`): no admission
   * takes used bytes past it. A `resize` past what a call reserved for its growth, or a
   * `Reservation.set` past what it reserved, may, until releases let the pool evict.
   */
  budgetBytes: number;
  policy: EvictionPolicy;
  /** Loads a model; the pool calls it once per admission (single flight). */
  load: (spec: S) => Promise<T>;
  /**
   * Frees what `load` made; `evicted` says why and what it was charged when an eviction frees it
   * (absent at shutdown). Errors are swallowed: the bytes are accounted as free anyway.
   */
  dispose?: (value: T, key: string, evicted?: { cause: EvictionEvent['cause']; sizeBytes: number }) => Promise<void> | void;
  /** Popularity share of a function (from the popularity job). @default () => 0 */
  popularity?: (fn: string) => number;
  /** Clock, ms. @default Date.now */
  now?: () => number;
  /** How long an admission waits for in-flight models to free memory. @default 30000 */
  admitTimeoutMs?: number;
  /** Called on each eviction, with the policy's reason. */
  onEvict?: (ev: EvictionEvent) => void;
  /**
   * Called when `drop` finds the model not held (evicted before, or never loaded here): nothing is
   * evicted, but what the caller keeps of it may go (a retired version, a deleted function).
   */
  onDropNotHeld?: (key: string, cause: DropCause) => void;
  /** Called when a load that `prefetch` started ends: loaded, dropped meanwhile, or failed. */
  onPrefetch?: (ev: PrefetchEvent) => void;
  /**
   * Whether a model's memory is in the process as soon as its load ends (`runBytes` counts it from
   * then on, not only once a call has run it): true for a model whose load copies its weights into
   * memory, false for a mapped artifact's, whose weights are file pages a run touches
   * (runtime/mapped.ts). @default () => false
   */
  heldAtLoad?: (spec: S, value: T) => boolean;
  /**
   * How long a load waits for the process's overhead (`setOverhead`) to leave it room, ms: while
   * the model, its call and the overhead would pass the budget with every idle model evicted, the
   * load waits for calls to end (their models then go for the overhead) or for the overhead to
   * fall; past this it loads as if there were no overhead (a call is not failed for garbage).
   * 0: never waits. @default 0
   */
  overheadWaitMs?: number;
  /**
   * Called when a load starts waiting for the overhead, and again at most once per `overheadWaitMs`
   * of waiting: the process may free what it holds beyond the charges (a node collects its dead
   * buffers) and measure again (`setOverhead`, which wakes the waiting loads).
   */
  onOverheadWait?: () => void;
  /**
   * Memory of the process's overhead that its owner can let go of at once (a node's parked
   * sessions, runtime/parked.ts): asked for up to `bytes` before any idle model is evicted for the
   * overhead. Returns the bytes it lets go of (taken off the overhead now) and when they are free
   * (a load waits for that, as for an evicted model's disposal).
   */
  reclaim?: (bytes: number) => { bytes: number; done: Promise<void> };
}

export interface PrefetchEvent {
  key: string;
  fn: string;
  sizeBytes: number;
  /** The policy's reason for wanting it loaded. */
  reason: string;
  /**
   * `loaded`: resident now. `dropped`: deleted, unloaded or replaced while it loaded, so gone
   * again. `failed`: the load failed (`error` says why); the pool and the policy forget the model
   * until a call loads it again.
   */
  outcome: 'loaded' | 'dropped' | 'failed';
  error?: unknown;
}

export interface EvictionEvent {
  key: string;
  fn: string;
  sizeBytes: number;
  reason: string;
  /**
   * `policy` (memory pressure), `expired` (keep-alive), `retired` (new version), `unload` (asked),
   * `deleted` (its function was deleted: an unload after which nothing of the model is kept).
   */
  cause: 'policy' | 'expired' | 'retired' | 'unload' | 'deleted';
}

/** Why a model is dropped on request (`WarmPool.drop`). */
export type DropCause = 'retired' | 'unload' | 'deleted';

/**
 * What one call holds beside its model while it runs (issue 12 §4): admitted with the model, in one
 * step, so a call that would pass the budget waits or evicts as a load does, and a waiting call
 * holds nothing.
 */
export interface CallBytes {
  /** Its tensors in flight (inputs and outputs), held until `Lease.reservation.free()`. */
  bytes?: number;
  /**
   * What its run may grow the model by (a run measured by runtime/footprint.ts): a `resize` of the
   * model while the lease is held takes its increase from here first. What is left is freed with
   * the lease.
   */
  growth?: number;
}

/** A call's tensor bytes, charged from admission until `free()` (after its answer is sent); may outlive the lease. */
export interface Reservation {
  /** Bytes held now. */
  readonly bytes: number;
  /** Holds `bytes` from now on (the outputs' real size): never waits; more than the budget allows evicts idle models, or stays over until releases let the pool evict. */
  set(bytes: number): void;
  /** Gives the bytes back (idempotent). */
  free(): void;
}

export interface Lease<T> {
  readonly value: T;
  /** The call's tensor bytes (`CallBytes.bytes`); free it once the call is answered, after `release`. */
  readonly reservation: Reservation;
  /** This invocation waited for a load (its own or a concurrent one). */
  readonly coldStart: boolean;
  /** This invocation started the load (counts as a model load). */
  readonly loaded: boolean;
  /** Time this invocation spent waiting for the load, ms (0 when warm). */
  readonly loadWaitMs: number;
  release(): void;
}

interface Entry<T, S extends ModelSpec> {
  /** Replaced (not mutated) when `resize` re-charges the model. */
  spec: S;
  value?: T;
  loading?: Promise<T>;
  loadedAt: number;
  lastUsedAt: number;
  hits: number;
  inFlight: number;
  pinned: boolean;
  /** Growth reserved by the calls in flight on it (`CallBytes.growth`), for `resize` to take from. */
  growth: Set<{ bytes: number }>;
  /** Its memory exists (see `runBytes`): its load held it (`heldAtLoad`), or a call has run on it since its load (a lease with a call ended). */
  ran: boolean;
  /** Drop as soon as the last in-flight invocation releases it. */
  retire?: DropCause;
  retireReason?: string;
}

export interface ResidentModel {
  key: string;
  fn: string;
  sizeBytes: number;
  state: 'loading' | 'resident';
  inFlight: number;
  pinned: boolean;
  hits: number;
  loadedAt: number;
  lastUsedAt: number;
}

/**
 * The warm pool: a model cache with a byte budget.
 *
 * Rules (DESIGN.md, cache rules): used bytes (resident plus loading, plus what calls in flight
 * hold beside their models: `CallBytes`) never exceed the budget, but for growth past what was
 * reserved for it (`resize`, `Reservation.set`), which evicts what it can; a
 * model with an invocation in flight, or pinned, is never evicted; concurrent cold requests for
 * one model share one load; a model larger than the budget is refused. Which model goes is the
 * policy's choice, from facts only.
 */
export class WarmPool<T, S extends ModelSpec = ModelSpec> {
  private readonly entries = new Map<string, Entry<T, S>>();
  private readonly opts: Required<Omit<WarmPoolOptions<T, S>, 'dispose' | 'onEvict' | 'onDropNotHeld' | 'onPrefetch' | 'heldAtLoad' | 'onOverheadWait' | 'reclaim'>> &
    Pick<WarmPoolOptions<T, S>, 'dispose' | 'onEvict' | 'onDropNotHeld' | 'onPrefetch' | 'heldAtLoad' | 'onOverheadWait' | 'reclaim'>;
  /**
   * The models this pool has loaded, resident or not, so the policy's `prewarm` hook can name one
   * that was evicted. A model leaves when it is retired (new version) or unloaded (deleted, or
   * unloaded on request): those must not come back ahead of demand.
   */
  private readonly known = new Map<string, S>();
  private used = 0;
  /** Of `used`, what calls hold beside their models (`CallBytes`). */
  private calls = 0;
  /** Of `calls`, their tensors' bytes (`CallBytes.bytes`, `Reservation`), without growth reserves. */
  private tensors = 0;
  /** The most `used` has been (tests: the budget is never passed). */
  private peak = 0;
  /** Bytes charged that no admission made room for (see `unreservedBytes`). */
  private unreserved = 0;
  /** What the process holds beside the pool's charges (`setOverhead`). */
  private overhead = 0;
  /** Of evicted models, the bytes not yet disposed (still in the process). */
  private disposingBytes_ = 0;
  private waiters: Array<() => void> = [];
  private readonly disposing = new Set<Promise<void>>();

  constructor(opts: WarmPoolOptions<T, S>) {
    if (!(Number.isFinite(opts.budgetBytes) && opts.budgetBytes > 0)) {
      throw new RangeError(`WarmPool: budgetBytes must be a positive number, got ${opts.budgetBytes}`);
    }
    this.opts = { popularity: () => 0, now: Date.now, admitTimeoutMs: 30_000, overheadWaitMs: 0, ...opts };
  }

  get budgetBytes(): number {
    return this.opts.budgetBytes;
  }

  /** Bytes charged: resident and loading models, plus what calls hold beside them. */
  get usedBytes(): number {
    return this.used;
  }

  /** Of `usedBytes`, what calls in flight hold beside their models (tensors, reserved growth). */
  get callBytes(): number {
    return this.calls;
  }

  /** Of `callBytes`, the calls' tensor bytes (`CallBytes.bytes`, as `Reservation.set` changed them), without growth reserves. */
  get tensorBytes(): number {
    return this.tensors;
  }

  /**
   * Of the models' charges, those whose memory exists for sure: models a call has run on since
   * their load, and models whose load held their memory (`heldAtLoad`: an original ONNX or ORT
   * file, its weights copied into memory). A load is charged at its admission, but a mapped
   * artifact's memory comes later: its weights (runtime/mapped.ts) are file pages that count in RSS
   * only once a run touches them, so such a model loaded and not yet run (pre-warmed, say) holds
   * little of its charge (runtime/footprint.ts `chargesHeld`).
   */
  get runBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.ran && e.value !== undefined) n += e.spec.sizeBytes;
    return n;
  }

  /** The most `usedBytes` has been since the pool was made. */
  get peakUsedBytes(): number {
    return this.peak;
  }

  /**
   * Bytes charged since the pool was made that no admission made room for: growth of a model past
   * what its calls reserved (`resize`), outputs past their estimate (`Reservation.set`). The only
   * way used bytes pass the budget: `peakUsedBytes <= budgetBytes + unreservedBytes`.
   */
  get unreservedBytes(): number {
    return this.unreserved;
  }

  /** What the process holds beside the pool's charges, as last set (`setOverhead`). */
  get overheadBytes(): number {
    return this.overhead;
  }

  /** Of evicted models, the bytes their disposal has not freed yet: the process still holds them. */
  get disposingBytes(): number {
    return this.disposingBytes_;
  }

  /**
   * Whether every charge is memory the process holds now, as far as the pool knows: no model
   * loading (charged at its admission, before its memory exists), no bytes reserved for calls
   * (tensors and growth charged before they exist), nothing disposing (freed memory still
   * charged). `ProcessOverhead` learns the process's idle figure only then.
   */
  get settled(): boolean {
    if (this.calls !== 0 || this.disposing.size > 0) return false;
    for (const e of this.entries.values()) if (e.value === undefined) return false;
    return true;
  }

  /**
   * What the process holds beside the pool's charges (a node measures it: runtime/footprint.ts's
   * `ProcessOverhead`): the V8 heap's growth, tensors not yet collected, memory malloc kept.
   * Admissions leave it room by evicting idle models (`used + overhead <= budget` as far as idle
   * models go). A call on a resident model never waits for it, and a load waits at most
   * `overheadWaitMs` (for calls in flight to end, or the overhead to fall): it is not the pool's to
   * free, and a call must not be refused for garbage, so a model and its call still get the whole
   * budget if nothing else is left.
   */
  setOverhead(bytes: number): void {
    const was = this.overhead;
    this.overhead = Math.max(0, bytes);
    // Loads waiting for it look again (`overheadWaitMs`).
    if (this.overhead < was && this.overheadWaiters > 0) this.wake();
  }

  /** Loads waiting for the overhead now (`overheadWaitMs`). */
  private overheadWaiters = 0;
  /**
   * Loads that have waited for the overhead, and how long in all, ms; of them, how many loaded at
   * the end of their wait with the overhead still there (`timedOut`), and how many at once, since
   * the overhead left no room even with every unpinned model gone (`noRoom`).
   */
  readonly overheadWaits = { loads: 0, ms: 0, timedOut: 0, noRoom: 0 };

  private charge(bytes: number): void {
    this.used += bytes;
    if (this.used > this.peak) this.peak = this.used;
  }

  get policyName(): string {
    return this.opts.policy.name;
  }

  has(key: string): boolean {
    return this.entries.get(key)?.value !== undefined;
  }

  /**
   * Whether `acquire(spec, …, { bytes })` now would take its room without evicting anything (nor
   * waiting): the model resident or not here at all (not loading), and it (if not resident) and
   * `bytes` fit beside what is used and the process's overhead. For a call that runs before its
   * admission is decided (node.ts `invokeHere`): a refused call must not have evicted.
   */
  fitsWithoutEviction(spec: S, bytes: number): boolean {
    const e = this.entries.get(spec.key);
    if (e && e.value === undefined) return false;
    const need = (e ? 0 : spec.sizeBytes) + Math.max(0, bytes);
    return this.used <= this.opts.budgetBytes && this.used + need + Math.max(0, this.overhead) <= this.opts.budgetBytes;
  }

  /**
   * Takes back a model loaded for one call that was then refused (node.ts `invokeHere`), as if the
   * load had not happened: only if it is still that load's (`value`, its lease's: not one loaded
   * again after it was dropped or evicted), no other call used it (its loader's hit alone, none in
   * flight) and nothing retires it. Its bytes are free again; the policy sees an eviction, nobody
   * else anything (no `onEvict`: it counts nowhere). False (kept) when another call used it.
   */
  withdraw(key: string, value: T): boolean {
    const e = this.entries.get(key);
    if (!e || e.value !== value || e.inFlight > 0 || e.hits > 1 || e.retire) return false;
    this.entries.delete(key);
    this.used -= e.spec.sizeBytes;
    this.opts.policy.onEvict?.(key, this.opts.now());
    this.dispose(value, key, e.spec.sizeBytes, 'policy');
    delete e.value;
    this.wake();
    return true;
  }

  list(): ResidentModel[] {
    return [...this.entries.values()].map((e) => ({
      key: e.spec.key,
      fn: e.spec.fn,
      sizeBytes: e.spec.sizeBytes,
      state: e.value !== undefined ? 'resident' : 'loading',
      inFlight: e.inFlight,
      pinned: e.pinned,
      hits: e.hits,
      loadedAt: e.loadedAt,
      lastUsedAt: e.lastUsedAt,
    }));
  }

  /**
   * Takes a model for one invocation, loading it first if needed, with `call`'s bytes charged
   * beside it (`CallBytes`: admitted together, or the call waits holding nothing). What a call
   * asks beyond the budget less its model is capped there. Always `release()` the lease and
   * `reservation.free()` it.
   * @throws BruleeError MODEL_TOO_LARGE when the model can never fit; CACHE_BUSY when in-flight
   *   models hold the memory for longer than `admitTimeoutMs`, or past `deadline` (clock ms).
   */
  async acquire(spec: S, deadline?: number, call: CallBytes = {}): Promise<Lease<T>> {
    const until = Math.min(this.opts.now() + this.opts.admitTimeoutMs, deadline ?? Infinity);
    for (;;) {
      const existing = this.entries.get(spec.key);
      // Capped at what the budget leaves beside the model as it is charged now (a resize may have grown it).
      const base = existing?.spec.sizeBytes ?? spec.sizeBytes;
      const room = Math.max(0, this.opts.budgetBytes - base);
      const bytes = Math.min(Math.max(0, call.bytes ?? 0), room);
      const growth = Math.min(Math.max(0, call.growth ?? 0), room - bytes);
      if (!existing) return this.admit(spec, 1, until, bytes, growth);
      // A model being dropped still serves what reaches it before it goes (it was accepted);
      // the drop stands and happens when the last of them ends.
      if (spec.pinned !== undefined) existing.pinned = spec.pinned;
      this.adoptVersion(existing, spec);
      // Options can change without a new version (same bytes): reload it as it is now.
      if (!existing.retire) this.known.set(spec.key, spec);
      if (existing.value !== undefined) {
        // Checking for room and taking it happen in one synchronous step, as in `admit`.
        if (bytes + growth === 0 || this.makeRoom(spec, bytes + growth, existing)) {
          existing.inFlight++;
          this.touch(existing);
          return this.lease(existing, existing.value, false, false, 0, bytes, growth);
        }
        // Judged at the size the model is charged now, as the room was (a newer figure in `spec`
        // applies at its next load): else a call could be refused as never fitting when it does.
        await this.waitForRoom(spec, base, bytes + growth, until);
        continue;
      }
      existing.inFlight++;
      const t0 = this.opts.now();
      let value: T;
      try {
        value = await existing.loading!;
      } catch (e) {
        existing.inFlight--;
        throw e;
      }
      if (bytes + growth === 0 || this.makeRoom(spec, bytes + growth, existing)) {
        this.touch(existing);
        return this.lease(existing, value, true, false, this.opts.now() - t0, bytes, growth);
      }
      // Loaded, but no room for the call's bytes yet: wait holding nothing.
      existing.inFlight--;
      if (existing.inFlight === 0 && existing.retire) this.evict(existing, existing.retireReason ?? 'retired', existing.retire);
      await this.waitForRoom(spec, base, bytes + growth, until);
    }
  }

  /**
   * Loads a model without an invocation (prewarm). Resolves true if it was loaded now. A prewarm
   * is not a use: it counts no hit, so policies do not mistake it for demand.
   */
  async prewarm(spec: S): Promise<boolean> {
    const existing = this.entries.get(spec.key);
    if (existing) {
      this.adoptVersion(existing, spec);
      return false;
    }
    const lease = await this.admit(spec, 0);
    lease.release();
    return lease.loaded;
  }

  /**
   * A model whose bytes were registered again as a newer version is that version's model once a
   * call or load of it reaches the model: a late job or call of a version between them must not
   * retire it (`dropFunction`'s `belowVersion`).
   */
  private adoptVersion(e: Entry<T, S>, spec: S): void {
    if ((spec.version ?? 0) > (e.spec.version ?? 0)) e.spec = { ...e.spec, version: spec.version };
  }

  /**
   * Charges a model `sizeBytes` from now on (a node measured it holding more, or less, than its
   * spec said: runtime/footprint.ts). The pool evicts what it can to stay within the budget; what
   * it cannot evict now (in flight, pinned) it evicts as calls release models, and no admission
   * proceeds while the pool is over. A model not held is only re-charged for its next admission.
   */
  resize(key: string, sizeBytes: number): void {
    const known = this.known.get(key);
    if (known) this.known.set(key, { ...known, sizeBytes });
    const e = this.entries.get(key);
    if (!e || e.spec.sizeBytes === sizeBytes) return;
    let grow = sizeBytes - e.spec.sizeBytes;
    // A growth the calls on it reserved is theirs already: it moves from them to the model.
    if (grow > 0) for (const g of e.growth) {
      const take = Math.min(g.bytes, grow);
      g.bytes -= take;
      this.calls -= take;
      grow -= take;
      if (grow <= 0) break;
    }
    if (grow > 0) this.unreserved += grow;
    this.charge(grow);
    e.spec = { ...e.spec, sizeBytes };
    this.rebalance(e.spec);
    this.wake();
  }

  /** Evicts the policy's victims while the pool is over its budget (after a `resize`); false if it stays over. */
  private rebalance(incoming: S, held?: Entry<T, S>): boolean {
    const need = this.used - this.opts.budgetBytes;
    if (need <= 0) return true;
    const candidates = this.evictable(held);
    if (candidates.length === 0) return false;
    this.evictNamed(incoming, need, candidates, this.opts.budgetBytes, held);
    return this.used <= this.opts.budgetBytes;
  }

  /** Whether the pool holds, or remembers for prefetching, a model of `fn` other than `key`. */
  holdsOther(fn: string, key: string): boolean {
    for (const s of this.known.values()) if (s.fn === fn && s.key !== key) return true;
    for (const e of this.entries.values()) if (e.spec.fn === fn && e.spec.key !== key) return true;
    return false;
  }

  /**
   * Drops a model now, or when its last in-flight invocation ends. Pinned models are dropped too:
   * an explicit unload or a new version overrides the pin.
   */
  drop(key: string, cause: DropCause, reason: string): boolean {
    const e = this.entries.get(key);
    if (!e) {
      this.forget(key, cause);
      this.opts.onDropNotHeld?.(key, cause);
      return false;
    }
    this.known.delete(key);
    if (e.inFlight === 0 && e.value !== undefined) {
      this.evict(e, reason, cause);
    } else {
      e.retire = cause;
      e.retireReason = reason;
    }
    return true;
  }

  /**
   * Drops the models of `fn` (now, or when their last invocation ends): all of them, or with
   * `belowVersion` only the older versions, so a late job of an old version cannot retire a newer
   * one; never those whose keys are in `keep`.
   */
  dropFunction(fn: string, how: { belowVersion?: number; keep?: readonly string[]; cause: DropCause; reason: string }): number {
    const matches = (s: S) => s.fn === fn && (how.belowVersion === undefined || (s.version ?? 0) < how.belowVersion) && !how.keep?.includes(s.key);
    for (const s of [...this.known.values()]) {
      if (matches(s) && !this.entries.has(s.key)) this.drop(s.key, how.cause, how.reason);
    }
    let n = 0;
    for (const e of [...this.entries.values()]) {
      if (matches(e.spec) && this.drop(e.spec.key, how.cause, how.reason)) n++;
    }
    return n;
  }

  /** Keep-alive expiry, for policies that have it (`ttl`). Returns the number dropped. */
  sweep(): number {
    if (!this.opts.policy.expired) return 0;
    let dropped = 0;
    for (const v of this.opts.policy.expired(this.evictable(), this.opts.now())) {
      const e = this.entries.get(v.key);
      if (e && this.isEvictable(e)) {
        this.evict(e, v.reason, 'expired');
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * Pre-warming by the policy (its `prewarm` hook: `cremebrulee-plus` prefetches, `hybrid-histogram`
   * pre-warms before a predicted call): starts loading, in the background, the models it names
   * that this pool has held before and that fit in the free memory now. It never evicts for them,
   * and a prefetched model counts no hit (the policy does not mistake it for demand). Call it
   * periodically, as `sweep`. Returns the number of loads started; each one's end is reported to
   * `onPrefetch`.
   */
  prefetch(): number {
    const policy = this.opts.policy;
    // A call waiting for memory comes first: what a prefetch took, it would have to evict again.
    if (!policy.prewarm || this.waiters.length > 0) return 0;
    const wanted = policy.prewarm(this.opts.now(), (key) => this.entries.has(key), this.opts.budgetBytes - this.used - this.overhead);
    let started = 0;
    for (const v of wanted) {
      const spec = this.known.get(v.key);
      if (!spec || this.entries.has(v.key) || this.used + this.overhead + spec.sizeBytes > this.opts.budgetBytes) continue;
      // It fits, so `admit` reserves the room and starts the load before it first awaits.
      const report = (outcome: PrefetchEvent['outcome'], error?: unknown) =>
        this.opts.onPrefetch?.({ key: spec.key, fn: spec.fn, sizeBytes: spec.sizeBytes, reason: v.reason, outcome, ...(error !== undefined ? { error } : {}) });
      this.admit(spec, 0).then(
        (lease) => {
          const dropped = this.entries.get(spec.key)?.retire !== undefined;
          lease.release(); // evicts it now if it was dropped meanwhile
          report(dropped ? 'dropped' : 'loaded');
        },
        (e: unknown) => {
          // Not named again until a call loads it (else a policy that names one model per
          // check would name this one, and be skipped, forever).
          this.forget(spec.key);
          report('failed', e ?? new Error('load failed'));
        },
      );
      started++;
    }
    return started;
  }

  /** A model not loaded is gone for good: neither the pool nor the policy names it again. */
  private forget(key: string, cause?: DropCause): void {
    this.known.delete(key);
    this.opts.policy.forget?.(key, cause);
  }

  /** Disposes everything (shutdown); not evictions, so nothing is reported to `onEvict`. */
  async clear(): Promise<void> {
    for (const e of [...this.entries.values()]) {
      if (e.loading) await e.loading.catch(() => undefined);
      if (this.entries.get(e.spec.key) !== e) continue; // its load failed: already taken out
      this.entries.delete(e.spec.key);
      this.used -= e.spec.sizeBytes;
      if (e.value !== undefined) this.dispose(e.value, e.spec.key, e.spec.sizeBytes);
      delete e.value;
    }
    await Promise.allSettled([...this.disposing]);
  }

  private async admit(spec: S, hits: number, until?: number, bytes = 0, growth = 0): Promise<Lease<T>> {
    if (spec.sizeBytes > this.opts.budgetBytes) {
      throw new BruleeError(
        'MODEL_TOO_LARGE',
        `model ${spec.fn} needs ${spec.sizeBytes} bytes resident, more than this node's whole budget of ${this.opts.budgetBytes} bytes; raise MEMORY_BUDGET or register a smaller model`,
      );
    }
    const deadline = Math.min(this.opts.now() + this.opts.admitTimeoutMs, until ?? Infinity);
    /** While the overhead may hold this load back (`overheadWaitMs`), from its first wait for it. */
    let overheadUntil: number | undefined;
    let waitedSince: number | undefined;
    try {
      for (;;) {
        // Another request may have started the same load while this one waited for memory.
        if (this.entries.has(spec.key)) return await this.acquire(spec, deadline, { bytes, growth });
        const need = spec.sizeBytes + bytes + growth;
        const now = this.opts.now();
        if (this.opts.overheadWaitMs > 0 && (overheadUntil === undefined || now < overheadUntil) && now < deadline && this.overheadBlocks(spec, need)) {
          if (overheadUntil === undefined) {
            overheadUntil = now + this.opts.overheadWaitMs;
            waitedSince = now;
            this.overheadWaits.loads++;
            this.opts.onOverheadWait?.();
            // It may have freed and measured at once.
            if (!this.overheadBlocks(spec, need)) continue;
          }
          // Worth waiting only if the load fits beside the overhead once the models in flight are
          // idle (then evicted for it): an overhead that leaves no room even then is the process's
          // own (malloc's kept heap, which the load's allocations reuse), not the calls'.
          if (this.opts.budgetBytes - this.pinnedBytes(spec.key) >= need + this.overhead) {
            this.overheadWaiters++;
            try {
              await this.nextRelease(Math.min(deadline, overheadUntil) - now);
            } finally {
              this.overheadWaiters--;
            }
            if (this.opts.now() >= deadline && !this.entries.has(spec.key)) {
              // The caller has had its answer (a deadline's 504): loading for it now would only run a call nobody waits for.
              throw new BruleeError('CACHE_BUSY', `no room for ${spec.fn} beside this node's memory overhead (${this.overhead} bytes) before the call's deadline; retry later`);
            }
            if (this.opts.now() >= overheadUntil && this.overheadBlocks(spec, need)) this.overheadWaits.timedOut++;
            continue;
          }
          this.overheadWaits.noRoom++;
          overheadUntil = now;
        }
        // Checking for room and reserving it happen in one synchronous step, so concurrent
        // admissions can neither both start a load nor both count on the same free bytes.
        if (this.makeRoom(spec, need)) break;
        await this.waitForRoom(spec, spec.sizeBytes, bytes + growth, deadline);
      }
    } finally {
      if (waitedSince !== undefined) this.overheadWaits.ms += this.opts.now() - waitedSince;
    }
    const now = this.opts.now();
    const entry: Entry<T, S> = {
      spec,
      loadedAt: now,
      lastUsedAt: now,
      hits: 0,
      inFlight: 1,
      pinned: spec.pinned ?? false,
      growth: new Set(),
      ran: false,
    };
    this.charge(spec.sizeBytes);
    const lease = this.callLease(entry, bytes, growth, hits > 0);
    this.entries.set(spec.key, entry);
    // Calls for the same model waiting for the overhead take this load's lease now, not at the end of their wait.
    if (this.overheadWaiters > 0) this.wake();
    const t0 = now;
    // What evictions freed is free once it is disposed: loading before would hold both at once.
    entry.loading = this.disposing.size > 0 ? Promise.allSettled([...this.disposing]).then(() => this.opts.load(spec)) : this.opts.load(spec);
    let value: T;
    try {
      value = await entry.loading;
    } catch (e) {
      this.entries.delete(spec.key);
      this.used -= entry.spec.sizeBytes;
      lease.end();
      lease.reservation.free();
      // Dropped while it loaded: gone for good, as a drop after the load would have told the policy.
      if (entry.retire) this.opts.policy.forget?.(spec.key, entry.retire);
      this.wake();
      throw e;
    }
    entry.value = value;
    delete entry.loading;
    if (this.opts.heldAtLoad?.(spec, value)) entry.ran = true;
    entry.loadedAt = this.opts.now();
    entry.lastUsedAt = entry.loadedAt;
    entry.hits = hits;
    if (!entry.retire) this.known.set(spec.key, spec);
    this.opts.policy.onLoad?.(this.facts(entry), entry.loadedAt);
    return lease.make(value, true, true, this.opts.now() - t0);
  }

  /**
   * Waits for a release, or throws CACHE_BUSY: at `deadline`, or at once when waiting cannot help
   * (pinned models hold what `modelBytes` for `spec` and `callBytes` for its call would take: in-flight and loading models go,
   * pinned ones do not, short of an unload).
   */
  private async waitForRoom(spec: S, modelBytes: number, callBytes: number, deadline: number): Promise<void> {
    const pinned = this.pinnedBytes(spec.key);
    const need = modelBytes + callBytes;
    // What is asked for: the model's bytes, and what the call's tensors and its run's growth add.
    const asked = callBytes > 0 ? `${modelBytes} bytes, and ${callBytes} for the call's tensors` : `${modelBytes} bytes`;
    if (this.opts.budgetBytes - pinned < need) {
      throw new BruleeError(
        'CACHE_BUSY',
        `no room for ${spec.fn} (${asked}): pinned models hold ${pinned} of ${this.opts.budgetBytes} bytes and nothing else can be evicted; unpin or unload one, or raise MEMORY_BUDGET`,
      );
    }
    const left = deadline - this.opts.now();
    if (left <= 0) {
      throw new BruleeError(
        'CACHE_BUSY',
        `no room for ${spec.fn} (${asked}): in-flight or pinned models hold ${this.used} of ${this.opts.budgetBytes} bytes; retry later`,
      );
    }
    await this.nextRelease(left);
  }

  /**
   * Evicts the policy's victims until `bytes` more fit (`spec`'s admission, or a call on `held`,
   * which is not evicted for it); on success the bytes are the caller's to charge at once. False
   * when in-flight/pinned models block it.
   */
  private makeRoom(spec: S, bytes: number, held?: Entry<T, S>): boolean {
    // Over the budget already (a model re-charged by `resize`): that first, then this admission.
    if (this.used > this.opts.budgetBytes && !this.rebalance(spec, held)) return false;
    // The process's overhead next, as far as idle models go (never a wait: `setOverhead`).
    if (this.overhead > 0) this.evictFor(spec, this.used + bytes + this.overhead - this.opts.budgetBytes, held);
    const need = this.used + bytes - this.opts.budgetBytes;
    if (need <= 0) return true;
    const candidates = this.evictable(held);
    const evictableBytes = candidates.reduce((s, c) => s + c.sizeBytes, 0);
    if (evictableBytes < need) return false;
    this.evictNamed(spec, need, candidates, this.opts.budgetBytes - bytes, held);
    const fits = this.used + bytes <= this.opts.budgetBytes;
    if (!fits) {
      // Enough was evictable, so waiting for a release would not help: the policy is at fault.
      throw new BruleeError('INTERNAL', `eviction policy ${this.opts.policy.name} named too few victims to free ${need} bytes for ${spec.fn}`);
    }
    return true;
  }

  /**
   * Whether a load of `need` bytes (its model and its call) and the process's overhead would pass
   * the budget even with the idle models evicted (it evicts them for it, as `makeRoom` does).
   */
  private overheadBlocks(spec: S, need: number): boolean {
    // A load that can never fit is refused by `waitForRoom` at once, not held here first.
    if (this.overhead <= 0 || this.opts.budgetBytes - this.pinnedBytes(spec.key) < need) return false;
    this.evictFor(spec, this.used + need + this.overhead - this.opts.budgetBytes);
    return this.used + need + this.overhead > this.opts.budgetBytes;
  }

  /** Evicts the policy's victims among idle models until `need` bytes are freed, or none is left. */
  private evictFor(spec: S, need: number, held?: Entry<T, S>): void {
    if (need <= 0) return;
    need -= this.reclaim(need);
    if (need <= 0) return;
    const candidates = this.evictable(held);
    if (candidates.length === 0) return;
    const needBytes = Math.min(need, candidates.reduce((s, c) => s + c.sizeBytes, 0));
    this.evictNamed(spec, needBytes, candidates, this.used - needBytes, held);
  }

  /**
   * Asks the policy for victims among `candidates` to free `needBytes` for `incoming`, then evicts
   * those it names, in its order, until used bytes are at most `until`: only idle ones (never
   * `held`, a model in flight or pinned; a key it names that is not here is passed over).
   */
  private evictNamed(incoming: S, needBytes: number, candidates: EntryFacts[], until: number, held?: Entry<T, S>): void {
    const victims = this.opts.policy.selectVictims({ now: this.opts.now(), needBytes, candidates, incoming: { ...incoming, popularity: this.opts.popularity(incoming.fn) } });
    for (const v of victims) {
      if (this.used <= until) break;
      const e = this.entries.get(v.key);
      if (e && e !== held && this.isEvictable(e)) this.evict(e, v.reason, 'policy');
    }
  }

  /** Bytes held by pinned models that are not on their way out (but `except`). */
  private pinnedBytes(except?: string): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.pinned && !e.retire && e.spec.key !== except) n += e.spec.sizeBytes;
    return n;
  }

  private isEvictable(e: Entry<T, S>): boolean {
    return e.value !== undefined && e.inFlight === 0 && !e.pinned;
  }

  private evictable(except?: Entry<T, S>): EntryFacts[] {
    const out: EntryFacts[] = [];
    for (const e of this.entries.values()) if (e !== except && this.isEvictable(e)) out.push(this.facts(e));
    return out;
  }

  private facts(e: Entry<T, S>): EntryFacts {
    const m: ModelFacts = { ...e.spec, popularity: this.opts.popularity(e.spec.fn) };
    return { key: m.key, sizeBytes: m.sizeBytes, loadMs: m.loadMs, execMs: m.execMs, popularity: m.popularity, loadedAt: e.loadedAt, lastUsedAt: e.lastUsedAt, hits: e.hits };
  }

  private touch(e: Entry<T, S>): void {
    e.hits++;
    e.lastUsedAt = this.opts.now();
    this.opts.policy.onAccess?.(this.facts(e), e.lastUsedAt);
  }

  private lease(e: Entry<T, S>, value: T, coldStart: boolean, loaded: boolean, loadWaitMs: number, bytes = 0, growth = 0): Lease<T> {
    return this.callLease(e, bytes, growth, true).make(value, coldStart, loaded, loadWaitMs);
  }

  /**
   * Charges a call's bytes on `e` (already counted in flight there): its growth reserve until
   * the lease ends, its tensor bytes until `reservation.free()`. A call's lease (`call`: not a
   * prewarm's) marks the model run when it is released.
   */
  private callLease(e: Entry<T, S>, bytes: number, growth: number, call: boolean) {
    const g = { bytes: growth };
    this.charge(bytes + growth);
    this.calls += bytes + growth;
    this.tensors += bytes;
    if (growth > 0) e.growth.add(g);
    let held = bytes;
    let freed = false;
    const reservation: Reservation = {
      get bytes() {
        return held;
      },
      set: (n: number) => {
        if (freed) return;
        const d = Math.max(0, n) - held;
        held += d;
        this.calls += d;
        this.tensors += d;
        if (d > 0) {
          this.unreserved += d;
          this.charge(d);
          if (this.used > this.opts.budgetBytes) this.rebalance(e.spec, e.inFlight > 0 ? e : undefined);
        } else {
          this.used += d;
          if (d < 0) this.wake();
        }
      },
      free: () => {
        if (freed) return;
        reservation.set(0);
        freed = true;
      },
    };
    let ended = false;
    /** The growth reserve goes back (once). */
    const end = () => {
      if (ended) return;
      ended = true;
      e.growth.delete(g);
      this.used -= g.bytes;
      this.calls -= g.bytes;
      g.bytes = 0;
    };
    const make = (value: T, coldStart: boolean, loaded: boolean, loadWaitMs: number): Lease<T> => {
      let released = false;
      return {
        value,
        coldStart,
        loaded,
        loadWaitMs,
        reservation,
        release: () => {
          if (released) return;
          released = true;
          end();
          if (call) e.ran = true;
          e.inFlight--;
          if (e.inFlight === 0 && e.retire && this.entries.get(e.spec.key) === e) {
            this.evict(e, e.retireReason ?? 'retired', e.retire);
          }
          if (this.used > this.opts.budgetBytes) this.rebalance(e.spec);
          this.wake();
        },
      };
    };
    return { reservation, end, make };
  }

  /** Takes an entry out of the accounting at once; its value is disposed in the background. */
  private evict(e: Entry<T, S>, reason: string, cause: EvictionEvent['cause']): void {
    if (this.entries.get(e.spec.key) !== e) return;
    this.entries.delete(e.spec.key);
    this.used -= e.spec.sizeBytes;
    this.opts.policy.onEvict?.(e.spec.key, this.opts.now());
    // Retired, unloaded or deleted: gone for good, not merely out of memory.
    if (cause === 'retired' || cause === 'unload' || cause === 'deleted') this.opts.policy.forget?.(e.spec.key, cause);
    this.opts.onEvict?.({ key: e.spec.key, fn: e.spec.fn, sizeBytes: e.spec.sizeBytes, reason, cause });
    if (e.value !== undefined) this.dispose(e.value, e.spec.key, e.spec.sizeBytes, cause);
    delete e.value;
    this.wake();
  }

  /** What the owner lets go of for the overhead (`WarmPoolOptions.reclaim`), bytes; a load waits until it is free. */
  private reclaim(need: number): number {
    const r = this.opts.reclaim?.(need);
    if (!r || r.bytes <= 0) return 0;
    this.overhead = Math.max(0, this.overhead - r.bytes);
    const d: Promise<void> = r.done.catch(() => undefined).finally(() => this.disposing.delete(d));
    this.disposing.add(d);
    return r.bytes;
  }

  /** Frees a value in the background; a failed release cannot be retried, the bytes count as free. */
  private dispose(value: T, key: string, sizeBytes: number, cause?: EvictionEvent['cause']): void {
    if (!this.opts.dispose) return;
    this.disposingBytes_ += sizeBytes;
    const d = Promise.resolve()
      .then(() => this.opts.dispose!(value, key, cause && { cause, sizeBytes }))
      .catch(() => undefined)
      .finally(() => {
        this.disposing.delete(d);
        this.disposingBytes_ -= sizeBytes;
      });
    this.disposing.add(d);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private nextRelease(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}
