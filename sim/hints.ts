import type { ShareView } from '../runtime/policies/share-order';
import type { EntryFacts, EvictionPolicy, EvictionRequest, Victim } from '../runtime/policies/types';

/**
 * Speed hints the simulator may read from a policy, none of which changes a decision (the
 * runtime's warm pool never reads them; `test/sim/lazy-checks.test.ts` runs policies with and
 * without them and requires the same evictions at the same times). A policy offers them as extra
 * members of the object it returns; `simHints` picks them up.
 */
export interface SimHints {
  /**
   * The keys that `expired` might name at `now` (a superset; loaded models only). A caller may then
   * pass `expired` only the evictable entries among them (in its usual order), or skip the call
   * when there are none, so a policy that gives this hint must decide each entry on its own.
   */
  expiryCandidates?(now: number): readonly string[];
  /**
   * False when no hook of the policy ever reads `popularity` (of entries or of `incoming`), so a
   * caller may leave it unset (the simulator then skips its popularity job).
   */
  readonly usesPopularity?: boolean;
  /**
   * For callers that check `expired` / `prewarm` periodically, asked right after a check at `now`:
   * a time before which a check would name nothing and change nothing a later check decides,
   * provided no hook is called and the caller's state (what is loaded, in flight, free memory,
   * the entries' facts) stays as it is. A caller may skip checks before it while that holds, and
   * may ask later (or not at all) instead of right after the check, as long as no hook has been
   * called since (the simulator asks only when it would use the answer).
   */
  nextCheckAt?(now: number): number;
  /**
   * Asked at a check due instead of running it, whatever hooks have been called since the last
   * check: a time before which a check would name nothing and change nothing a later check
   * decides, as things are (the hooks so far, `freeBytes` free, the models `inFlight` says are in
   * flight, whatever is loading), provided no hook is called and none of these changes meanwhile.
   * The caller skips the checks before it up to its next event, and asks again at the next check
   * due after that event. A caller that has it need not ask `nextCheckAt`. Asked only after
   * `numberModels` (`inFlight` takes the caller's numbers).
   */
  checkAfterHooks?(freeBytes: number, inFlight: (model: number) => boolean): number;
  /**
   * What `checkAfterHooks` would answer, without asking it at each event: live values the policy
   * keeps up to date in its own calls (asked once, after `numberModels`; undefined: none). At any
   * time between the policy's calls, `checkAfterHooks(freeBytes, inFlight)` would answer at least
   * `bounds[0]` if `freeBytes < bounds[1]` and every model i with `watch[i] !== 0` is in flight. The
   * policy sets `watch[i]` only in `onAccess` of model i or its `onLoad` of an entry with `hits > 0`
   * (a call of i is then in flight), so a caller that notes each call's end on a watched model
   * (and asks `checkAfterHooks` again after it) need not look at `watch` otherwise. The bound may
   * be low (a caller asks `checkAfterHooks` for the exact answer when it is not enough).
   */
  checkSignals?(): CheckSignals | undefined;
  /** Like `nextCheckAt` but unconditional: a check before this time names nothing and changes nothing, whatever happens meanwhile. */
  quietUntil?(now: number): number;
  /**
   * Asked at a check due at or after `quietUntil`, instead of running it: P if a check at any time
   * from now on, with `freeBytes` free and no hook called, would expire nothing, name nothing and
   * change nothing but its `quietUntil`, which it would set to its own time + P; else NaN. A caller
   * whose checks run at the first check time at or after the last one's `quietUntil` may then skip
   * every check before its next event and go on from the quiet time the last of them would have
   * given (no need to ask `quietUntil` again: the policy's own may lag behind), provided nothing
   * else changes meanwhile (no hook, the same free memory, no call waiting for memory).
   */
  idleCheckPeriod?(freeBytes: number): number;
  /**
   * The caller never reads a victim's `reason` (the simulator counts, it does not log): from this
   * call on, the policy may give every victim it returns (from `selectVictims`, `expired`,
   * `prewarm`) an empty reason instead of formatting one. It changes nothing else.
   */
  omitReasons?(): void;
  /**
   * The caller reads each answer of `expired`, `prewarm`, `selectVictims` and `selectAmongLoaded`
   * before it calls the same method again, and keeps none (the simulator; the runtime's warm pool
   * is not told): from this call on, the policy may hand out the same array, refilled, from one
   * answer to the next. It changes nothing else.
   */
  reuseAnswers?(): void;
  /**
   * The caller loads what `prewarm` names in its order, each one that fits the free memory left
   * after the ones before it, by the sizes the policy was told at `onLoad`, and skips none for any
   * other reason (the simulator; not the runtime's warm pool, whose charges grow after a load and
   * which skips models it no longer knows): from this call on, `prewarm` may leave out a model that
   * would not fit after the ones named before it. It changes nothing the caller loads.
   */
  prewarmInOrder?(): void;
  /**
   * `selectVictims(req)`'s answer (the same victims in the same order), for a request whose
   * `candidates` are exactly the models loaded (reported by `onLoad`, not `onEvict`ed since), each
   * with the facts it had at its last `onLoad` / `onAccess`: the policy may answer from an order it
   * keeps at its hooks (runtime/policies/ordered.ts) without looking at every candidate. A caller
   * that cannot promise this calls `selectVictims`.
   */
  selectAmongLoaded?(req: EvictionRequest): Victim[];
  /**
   * `selectVictims(req)`'s answer (the same victims in the same order; their reasons may be empty),
   * for a request whose `candidates` are exactly the models loaded (each the same entry object
   * while it stays loaded, with the same `sizeBytes` and `loadMs` at each load), whose
   * `popularity` (and `incoming`'s) the caller may have left stale: `shares` gives each model's
   * popularity now, by number (runtime/policies/share-order.ts). Asked only after `numberModels`,
   * by a caller that reports every eviction through `onEvictNumber`. A caller that cannot promise
   * this sets the entries' popularity and calls `selectVictims` (or `selectAmongLoaded`).
   */
  selectAmongLoadedByShare?(req: EvictionRequest, shares: ShareView): Victim[];
  /**
   * The caller's numbers for its models: `keys[i]` is model i's key, for every model it will ever
   * name to the policy (none forgotten). Called before any hook; true if the policy takes them (it
   * may refuse, say once it has seen a model: the caller then goes on by key). From then on every
   * entry the caller passes (to `onLoad`, `onAccess`, `expired`, in `candidates`, as `incoming`) is
   * a `NumberedEntry` of its number, the caller reports an eviction through `onEvictNumber(i, now)`
   * instead of `onEvict(keys[i], now)`, and the policy may give a victim it returns its model's
   * number (`NumberedVictim`), which the caller then reads instead of looking the key up. So
   * neither side finds a string in a map on the path of a miss. It changes no decision. The hints
   * set a policy up for one run: the simulator runs each instance once (`simulate` refuses a
   * second run of one).
   */
  numberModels?(keys: readonly string[]): boolean;
  /** `onEvict(keys[i], now)` by number, after `numberModels`. */
  onEvictNumber?(i: number, now: number): void;
  /**
   * `expiryCandidates` by number, after `numberModels`: the same models (the caller's numbers), in
   * an array the caller reads before its next call to the policy. A caller that took the numbers
   * asks this instead of `expiryCandidates`.
   */
  expiryCandidateNumbers?(now: number): readonly number[];
  /**
   * After `numberModels`, instead of `expired` at a check: writes to `out[0..n)` (room for twice
   * the models) numbers of models among which the evictable ones (resident, not in flight) are
   * exactly those `expired(now)` would name if handed every evictable entry (each with the facts
   * of its last hook), and returns n. The caller evicts those, in the order `expired` would name
   * them (its entries' order: the caller's resident order), and does not call `expired`.
   */
  expiredNumbers?(now: number, out: Int32Array): number;
  /**
   * After `numberModels` and `modelStates`: what `prewarm(now, isResident, freeBytes)` would name,
   * by number, in its order, written to `out[0..n)` (room for every model); returns n.
   */
  prewarmNumbers?(now: number, freeBytes: number, out: Int32Array): number;
  /**
   * After `numberModels`: the caller's own array by model number, nonzero while the model is
   * loaded or loading (what `prewarm`'s `isResident` answers for its key), kept live by the caller
   * (the policy only reads it, and only during its own calls), so `prewarm` may read it instead
   * of asking `isResident`.
   */
  modelStates?(states: Uint8Array): void;
}

/** `SimHints.checkSignals`' live values (the policy writes them; the caller only reads). */
export interface CheckSignals {
  /** [0]: `checkAfterHooks`' answer is at least this (a time); [1]: ... while the free memory is below this (bytes). */
  readonly bounds: Float64Array;
  /** By model number: nonzero, a check may act once the model is not in flight. */
  readonly watch: Uint8Array;
}

/** An entry of model number `idx` (`SimHints.numberModels`). */
export interface NumberedEntry extends EntryFacts {
  readonly idx: number;
}

/** A victim naming model number `idx` (`keys[idx]` is its key; `SimHints.numberModels`). */
export interface NumberedVictim extends Victim {
  readonly idx: number;
}

/** The hints `policy` offers (members of other types are ignored). */
export function simHints(policy: EvictionPolicy): SimHints {
  const p = policy as EvictionPolicy & Record<keyof SimHints, unknown>;
  const fn = <T>(v: unknown): T | undefined => (typeof v === 'function' ? (v.bind(policy) as T) : undefined);
  return {
    usesPopularity: typeof p.usesPopularity === 'boolean' ? p.usesPopularity : undefined,
    expiryCandidates: fn(p.expiryCandidates),
    nextCheckAt: fn(p.nextCheckAt),
    checkAfterHooks: fn(p.checkAfterHooks),
    checkSignals: fn(p.checkSignals),
    quietUntil: fn(p.quietUntil),
    idleCheckPeriod: fn(p.idleCheckPeriod),
    omitReasons: fn(p.omitReasons),
    prewarmInOrder: fn(p.prewarmInOrder),
    reuseAnswers: fn(p.reuseAnswers),
    selectAmongLoaded: fn(p.selectAmongLoaded),
    selectAmongLoadedByShare: fn(p.selectAmongLoadedByShare),
    numberModels: fn(p.numberModels),
    onEvictNumber: fn(p.onEvictNumber),
    expiryCandidateNumbers: fn(p.expiryCandidateNumbers),
    expiredNumbers: fn(p.expiredNumbers),
    prewarmNumbers: fn(p.prewarmNumbers),
    modelStates: fn(p.modelStates),
  };
}
