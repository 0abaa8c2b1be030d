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
  /** Byte budget; no admission takes used bytes past it (a `resize` may, until releases let the pool evict). */
  budgetBytes: number;
  policy: EvictionPolicy;
  /** Loads a model; the pool calls it once per admission (single flight). */
  load: (spec: S) => Promise<T>;
  /** Frees what `load` made. Errors are swallowed: the bytes are accounted as free anyway. */
  dispose?: (value: T, key: string) => Promise<void> | void;
  /** Popularity share of a function (from the popularity job). @default () => 0 */
  popularity?: (fn: string) => number;
  /** Clock, ms. @default Date.now */
  now?: () => number;
  /** How long an admission waits for in-flight models to free memory. @default 30000 */
  admitTimeoutMs?: number;
  /** Called on each eviction, with the policy's reason. */
  onEvict?: (ev: EvictionEvent) => void;
  /** Called when a load that `prefetch` started ends: loaded, dropped meanwhile, or failed. */
  onPrefetch?: (ev: PrefetchEvent) => void;
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
  /** `policy` (memory pressure), `expired` (keep-alive), `retired` (new version), `unload` (asked). */
  cause: 'policy' | 'expired' | 'retired' | 'unload';
}

export interface Lease<T> {
  readonly value: T;
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
  /** Drop as soon as the last in-flight invocation releases it. */
  retire?: EvictionEvent["cause"];
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
 * Rules (DESIGN.md, cache rules): used bytes (resident plus loading) never exceed the budget; a
 * model with an invocation in flight, or pinned, is never evicted; concurrent cold requests for
 * one model share one load; a model larger than the budget is refused. Which model goes is the
 * policy's choice, from facts only.
 */
export class WarmPool<T, S extends ModelSpec = ModelSpec> {
  private readonly entries = new Map<string, Entry<T, S>>();
  private readonly opts: Required<Omit<WarmPoolOptions<T, S>, 'dispose' | 'onEvict' | 'onPrefetch'>> &
    Pick<WarmPoolOptions<T, S>, 'dispose' | 'onEvict' | 'onPrefetch'>;
  /**
   * The models this pool has loaded, resident or not, so the policy's `prewarm` hook can name one
   * that was evicted. A model leaves when it is retired (new version) or unloaded (deleted, or
   * unloaded on request): those must not come back ahead of demand.
   */
  private readonly known = new Map<string, S>();
  private used = 0;
  private waiters: Array<() => void> = [];
  private readonly disposing = new Set<Promise<void>>();

  constructor(opts: WarmPoolOptions<T, S>) {
    if (!(Number.isFinite(opts.budgetBytes) && opts.budgetBytes > 0)) {
      throw new RangeError(`WarmPool: budgetBytes must be a positive number, got ${opts.budgetBytes}`);
    }
    this.opts = { popularity: () => 0, now: Date.now, admitTimeoutMs: 30_000, ...opts };
  }

  get budgetBytes(): number {
    return this.opts.budgetBytes;
  }

  get usedBytes(): number {
    return this.used;
  }

  get policyName(): string {
    return this.opts.policy.name;
  }

  has(key: string): boolean {
    return this.entries.get(key)?.value !== undefined;
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
   * Takes a model for one invocation, loading it first if needed. Always `release()` the lease.
   * @throws BruleeError MODEL_TOO_LARGE when the model can never fit; CACHE_BUSY when in-flight
   *   models hold the memory for longer than `admitTimeoutMs`, or past `deadline` (clock ms).
   */
  async acquire(spec: S, deadline?: number): Promise<Lease<T>> {
    const existing = this.entries.get(spec.key);
    if (existing) {
      // A model being dropped still serves what reaches it before it goes (it was accepted);
      // the drop stands and happens when the last of them ends.
      existing.inFlight++;
      if (spec.pinned !== undefined) existing.pinned = spec.pinned;
      // Options can change without a new version (same bytes): reload it as it is now.
      if (!existing.retire) this.known.set(spec.key, spec);
      if (existing.value !== undefined) {
        this.touch(existing);
        return this.lease(existing, existing.value, false, false, 0);
      }
      const t0 = this.opts.now();
      try {
        const value = await existing.loading!;
        this.touch(existing);
        return this.lease(existing, value, true, false, this.opts.now() - t0);
      } catch (e) {
        existing.inFlight--;
        throw e;
      }
    }
    return this.admit(spec, 1, deadline);
  }

  /**
   * Loads a model without an invocation (prewarm). Resolves true if it was loaded now. A prewarm
   * is not a use: it counts no hit, so policies do not mistake it for demand.
   */
  async prewarm(spec: S): Promise<boolean> {
    if (this.entries.has(spec.key)) return false;
    const lease = await this.admit(spec, 0);
    lease.release();
    return lease.loaded;
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
    this.used += sizeBytes - e.spec.sizeBytes;
    e.spec = { ...e.spec, sizeBytes };
    this.rebalance(e.spec);
    this.wake();
  }

  /** Evicts the policy's victims while the pool is over its budget (after a `resize`); false if it stays over. */
  private rebalance(incoming: S): boolean {
    const need = this.used - this.opts.budgetBytes;
    if (need <= 0) return true;
    const candidates = this.evictable();
    if (candidates.length === 0) return false;
    const victims = this.opts.policy.selectVictims({ now: this.opts.now(), needBytes: need, candidates, incoming: { ...incoming, popularity: this.opts.popularity(incoming.fn) } });
    for (const v of victims) {
      if (this.used <= this.opts.budgetBytes) break;
      const e = this.entries.get(v.key);
      if (e && this.isEvictable(e)) this.evict(e, v.reason, 'policy');
    }
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
  drop(key: string, cause: 'retired' | 'unload', reason: string): boolean {
    const e = this.entries.get(key);
    if (!e) {
      this.forget(key);
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
   * `belowVersion` only the older versions, so a late job of an old version cannot retire a newer one.
   */
  dropFunction(fn: string, how: { belowVersion?: number; cause: 'retired' | 'unload'; reason: string }): number {
    const matches = (s: S) => s.fn === fn && (how.belowVersion === undefined || (s.version ?? 0) < how.belowVersion);
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
    const wanted = policy.prewarm(this.opts.now(), (key) => this.entries.has(key), this.opts.budgetBytes - this.used);
    let started = 0;
    for (const v of wanted) {
      const spec = this.known.get(v.key);
      if (!spec || this.entries.has(v.key) || this.used + spec.sizeBytes > this.opts.budgetBytes) continue;
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
  private forget(key: string): void {
    this.known.delete(key);
    this.opts.policy.forget?.(key);
  }

  /** Disposes everything (shutdown); not evictions, so nothing is reported to `onEvict`. */
  async clear(): Promise<void> {
    for (const e of [...this.entries.values()]) {
      if (e.loading) await e.loading.catch(() => undefined);
      if (this.entries.get(e.spec.key) !== e) continue; // its load failed: already taken out
      this.entries.delete(e.spec.key);
      this.used -= e.spec.sizeBytes;
      if (e.value !== undefined) this.dispose(e.value, e.spec.key);
      delete e.value;
    }
    await Promise.allSettled([...this.disposing]);
  }

  private async admit(spec: S, hits: number, until?: number): Promise<Lease<T>> {
    if (spec.sizeBytes > this.opts.budgetBytes) {
      throw new BruleeError(
        'MODEL_TOO_LARGE',
        `model ${spec.fn} needs ${spec.sizeBytes} bytes resident, more than this node's whole budget of ${this.opts.budgetBytes} bytes; raise MEMORY_BUDGET or register a smaller model`,
      );
    }
    const deadline = Math.min(this.opts.now() + this.opts.admitTimeoutMs, until ?? Infinity);
    for (;;) {
      // Another request may have started the same load while this one waited for memory.
      if (this.entries.has(spec.key)) return this.acquire(spec, deadline);
      // Checking for room and reserving it happen in one synchronous step, so concurrent
      // admissions can neither both start a load nor both count on the same free bytes.
      if (this.makeRoom(spec)) break;
      // Waiting helps only if what holds the memory can go: an in-flight or loading model will,
      // a pinned one will not (short of an unload). Say so now rather than at the deadline.
      const pinned = this.pinnedBytes();
      if (this.opts.budgetBytes - pinned < spec.sizeBytes) {
        throw new BruleeError(
          'CACHE_BUSY',
          `no room for ${spec.fn} (${spec.sizeBytes} bytes): pinned models hold ${pinned} of ${this.opts.budgetBytes} bytes and nothing else can be evicted; unpin or unload one, or raise MEMORY_BUDGET`,
        );
      }
      const left = deadline - this.opts.now();
      if (left <= 0) {
        throw new BruleeError(
          'CACHE_BUSY',
          `no room for ${spec.fn} (${spec.sizeBytes} bytes): in-flight or pinned models hold ${this.used} of ${this.opts.budgetBytes} bytes; retry later`,
        );
      }
      await this.nextRelease(left);
    }
    const now = this.opts.now();
    const entry: Entry<T, S> = {
      spec,
      loadedAt: now,
      lastUsedAt: now,
      hits: 0,
      inFlight: 1,
      pinned: spec.pinned ?? false,
    };
    this.used += spec.sizeBytes;
    this.entries.set(spec.key, entry);
    const t0 = now;
    // What evictions freed is free once it is disposed: loading before would hold both at once.
    entry.loading = this.disposing.size > 0 ? Promise.allSettled([...this.disposing]).then(() => this.opts.load(spec)) : this.opts.load(spec);
    let value: T;
    try {
      value = await entry.loading;
    } catch (e) {
      this.entries.delete(spec.key);
      this.used -= spec.sizeBytes;
      // Dropped while it loaded: gone for good, as a drop after the load would have told the policy.
      if (entry.retire) this.opts.policy.forget?.(spec.key);
      this.wake();
      throw e;
    }
    entry.value = value;
    delete entry.loading;
    entry.loadedAt = this.opts.now();
    entry.lastUsedAt = entry.loadedAt;
    entry.hits = hits;
    if (!entry.retire) this.known.set(spec.key, spec);
    this.opts.policy.onLoad?.(this.facts(entry), entry.loadedAt);
    return this.lease(entry, value, true, true, this.opts.now() - t0);
  }

  /** Evicts the policy's victims until `spec` fits. False when in-flight/pinned models block it. */
  private makeRoom(spec: S): boolean {
    // Over the budget already (a model re-charged by `resize`): that first, then this admission.
    if (this.used > this.opts.budgetBytes && !this.rebalance(spec)) return false;
    const need = this.used + spec.sizeBytes - this.opts.budgetBytes;
    if (need <= 0) return true;
    const candidates = this.evictable();
    const evictableBytes = candidates.reduce((s, c) => s + c.sizeBytes, 0);
    if (evictableBytes < need) return false;
    const victims = this.opts.policy.selectVictims({
      now: this.opts.now(),
      needBytes: need,
      candidates,
      incoming: { ...spec, popularity: this.opts.popularity(spec.fn) },
    });
    for (const v of victims) {
      if (this.used + spec.sizeBytes <= this.opts.budgetBytes) break;
      const e = this.entries.get(v.key);
      if (e && this.isEvictable(e)) this.evict(e, v.reason, 'policy');
    }
    const fits = this.used + spec.sizeBytes <= this.opts.budgetBytes;
    if (!fits) {
      // Enough was evictable, so waiting for a release would not help: the policy is at fault.
      throw new BruleeError('INTERNAL', `eviction policy ${this.opts.policy.name} named too few victims to free ${need} bytes for ${spec.fn}`);
    }
    return true;
  }

  /** Bytes held by pinned models that are not on their way out. */
  private pinnedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.pinned && !e.retire) n += e.spec.sizeBytes;
    return n;
  }

  private isEvictable(e: Entry<T, S>): boolean {
    return e.value !== undefined && e.inFlight === 0 && !e.pinned;
  }

  private evictable(): EntryFacts[] {
    const out: EntryFacts[] = [];
    for (const e of this.entries.values()) if (this.isEvictable(e)) out.push(this.facts(e));
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

  private lease(e: Entry<T, S>, value: T, coldStart: boolean, loaded: boolean, loadWaitMs: number): Lease<T> {
    let released = false;
    return {
      value,
      coldStart,
      loaded,
      loadWaitMs,
      release: () => {
        if (released) return;
        released = true;
        e.inFlight--;
        if (e.inFlight === 0 && e.retire && this.entries.get(e.spec.key) === e) {
          this.evict(e, e.retireReason ?? 'retired', e.retire);
        }
        if (this.used > this.opts.budgetBytes) this.rebalance(e.spec);
        this.wake();
      },
    };
  }

  /** Takes an entry out of the accounting at once; its value is disposed in the background. */
  private evict(e: Entry<T, S>, reason: string, cause: EvictionEvent['cause']): void {
    if (this.entries.get(e.spec.key) !== e) return;
    this.entries.delete(e.spec.key);
    this.used -= e.spec.sizeBytes;
    this.opts.policy.onEvict?.(e.spec.key, this.opts.now());
    // Retired or unloaded: gone for good, not merely out of memory.
    if (cause === 'retired' || cause === 'unload') this.opts.policy.forget?.(e.spec.key);
    this.opts.onEvict?.({ key: e.spec.key, fn: e.spec.fn, sizeBytes: e.spec.sizeBytes, reason, cause });
    if (e.value !== undefined) this.dispose(e.value, e.spec.key);
    delete e.value;
    this.wake();
  }

  /** Frees a value in the background; a failed release cannot be retried, the bytes count as free. */
  private dispose(value: T, key: string): void {
    if (!this.opts.dispose) return;
    const d = Promise.resolve()
      .then(() => this.opts.dispose!(value, key))
      .catch(() => undefined)
      .finally(() => this.disposing.delete(d));
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
