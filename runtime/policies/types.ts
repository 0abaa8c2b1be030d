/**
 * The eviction-policy interface shared by the runtime's warm pool and the simulator.
 *
 * A policy is pure code: it gets facts (sizes, costs, popularity, last use, the caller's `now`)
 * and returns victims. It never reads a clock, Redis or a timer, so the simulator (virtual clock)
 * and the runtime (wall clock) run the very same module. A policy may keep bookkeeping of its own
 * (GDSF's inflation clock, a seeded random generator), fed only through the hooks below.
 */

/** What is known about a model before it is loaded. */
export interface ModelFacts {
  /** Cache key: one entry per model version (function name + content hash in the runtime). */
  readonly key: string;
  /** Measured resident bytes (not the file size). */
  readonly sizeBytes: number;
  /** Measured load time, ms: what a miss costs. */
  readonly loadMs: number;
  /** Measured execution time, ms. */
  readonly execMs: number;
  /** Share of recent invocations, 0..1, refreshed by the popularity job (decayed rate). */
  readonly popularity: number;
}

/** A resident model, as the cache sees it. */
export interface EntryFacts extends ModelFacts {
  /** When the model finished loading (caller's clock, ms). */
  readonly loadedAt: number;
  /** When an invocation last used it (caller's clock, ms). */
  readonly lastUsedAt: number;
  /** Invocations served since it was loaded (the load's own invocation included). */
  readonly hits: number;
}

/** An entry with the caller's number for its model (the simulator's `numberModels` hint, sim/hints.ts). */
export type NumberedEntry = EntryFacts & { readonly idx: number };

/**
 * Future knowledge, for the simulator's oracles only. "Future" means the invocations the node has
 * not served yet, in the order it will serve them; when invocations queue up, the next one's
 * arrival time can be earlier than `now`.
 */
export interface FutureFacts {
  /** Arrival time of the next invocation of `key` not yet served, or Infinity. */
  nextUse(key: string, now: number): number;
  /** Invocations of `key` not yet served that arrive by `now + horizonMs`. */
  usesWithin?(key: string, now: number, horizonMs: number): number;
}

export interface EvictionRequest {
  readonly now: number;
  /** Bytes that must be freed so the incoming model fits. */
  readonly needBytes: number;
  /** Evictable entries only: the caller has already left out pinned and in-flight models. */
  readonly candidates: readonly EntryFacts[];
  /** The model that needs the room. */
  readonly incoming: ModelFacts;
  /** Present only in the simulator, for oracle policies. */
  readonly future?: FutureFacts;
}

export interface Victim {
  readonly key: string;
  /** Why this one, in words an operator can read in /stats (for example "utility 0.0012 lowest"). */
  readonly reason: string;
}

export interface EvictionPolicy {
  readonly name: string;
  /**
   * Victims in eviction order. The caller evicts them in this order until `needBytes` is free;
   * a policy frees only what is needed. Returning too little means the model cannot be admitted now.
   */
  selectVictims(req: EvictionRequest): Victim[];
  /** A model was loaded (admitted). */
  onLoad?(entry: EntryFacts, now: number): void;
  /** A resident model served an invocation. */
  onAccess?(entry: EntryFacts, now: number): void;
  /** A model left the cache (evicted, retired or unloaded). */
  onEvict?(key: string, now: number): void;
  /**
   * A model is gone for good: its function was deleted, unloaded on request, or replaced by a new
   * version (`cause`; none: a pre-warm load of it failed). Called after its `onEvict` (if it was
   * loaded). A policy that names models in `prewarm` must not name it again (until it is loaded
   * anew). With `retired` or `deleted` the key will not be loaded again (unless the same bytes are
   * registered again): a policy keeps no record of it, so a node where functions come and go does
   * not grow; otherwise it may keep what it learned of the function.
   */
  forget?(key: string, cause?: 'retired' | 'unload' | 'deleted'): void;
  /**
   * Entries to drop with no memory pressure (keep-alive expiry). Called periodically by the
   * runtime and at each event by the simulator; `entries` are evictable entries only.
   */
  expired?(entries: readonly EntryFacts[], now: number): Victim[];
  /**
   * Models the policy wants loaded ahead of demand (pre-warming, prefetching), most wanted first.
   * The caller loads them only into free memory, never evicting for them, and reports each load
   * through `onLoad` with `hits` 0. Called where `expired` is; `isResident` says what is loaded
   * (or loading). `freeBytes`, when given, is the free memory: the caller will not load anything
   * larger, so a policy may leave such models out; a caller that gives it also reports every load
   * and eviction through `onLoad` / `onEvict`, so a policy may trust its own view of what is loaded.
   */
  prewarm?(now: number, isResident: (key: string) => boolean, freeBytes?: number): Victim[];
}

export interface PolicyOptions {
  /** Seed for `random`. @default 1 */
  seed?: number;
  /** Keep-alive for `ttl`, ms. @default 600000 (10 minutes) */
  ttlMs?: number;
}
