import { IdDeadlineHeap, NONE } from './heap';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, Victim } from './types';

/** An entry with the caller's number for its model (the simulator's `numberModels` hint, sim/hints.ts). */
type NumberedEntry = EntryFacts & { readonly idx: number };

/**
 * Fixed keep-alive (the default of most serverless platforms, e.g. 10 minutes): a model idle
 * longer than `ttlMs` is dropped even without memory pressure; under pressure, the entry closest
 * to expiry (least recently used) goes first.
 */
export function ttl(ttlMs = 600_000): EvictionPolicy {
  if (!(ttlMs > 0)) throw new RangeError(`ttl: ttlMs must be > 0, got ${ttlMs}`);
  // For `expiryCandidates`: each loaded model's last use (NaN when not loaded), by an id of the
  // policy's own, and a heap of their expiry times (a new entry at each use; the superseded ones
  // are dropped as they surface).
  const idOf = new Map<string, number>();
  const keys: string[] = [];
  let lastUse = new Float64Array(64).fill(NaN);
  const ends = new IdDeadlineHeap();
  /** Ids are the caller's model numbers (the simulator's `numberModels`), read from the entries. */
  let numbered = false;
  const used = (e: EntryFacts, t: number) => {
    let id = numbered ? (e as NumberedEntry).idx : idOf.get(e.key);
    if (id === undefined) {
      const key = e.key;
      id = keys.length;
      keys.push(key);
      idOf.set(key, id);
      if (id === lastUse.length) {
        const grown = new Float64Array(2 * id).fill(NaN);
        grown.set(lastUse);
        lastUse = grown;
      }
    }
    lastUse[id] = t;
    ends.push(t + ttlMs, id);
  };
  /** Whether the heap's top is an expiry still due (its model loaded and not used since). */
  const topCurrent = () => {
    const id = ends.peekId();
    return lastUse[id]! + ttlMs === ends.peekTime();
  };
  // expiryCandidates' ids, and its answer when it names one key, reused from call to call.
  let due = new Int32Array(16);
  const grow = (a: Int32Array) => {
    const b = new Int32Array(2 * a.length);
    b.set(a);
    return b;
  };
  const oneKey: string[] = [''];
  const dueOut: number[] = [];
  /**
   * `expiryCandidates`' models, in `due[0..n)`: loaded models idle for about the keep-alive or
   * longer (1 ms of slack for rounding: `expired` decides exactly). Those still loaded after this
   * check are looked at again. (The caller reads the answer before the next call: arrays reused.)
   */
  const dueIds = (now: number): number => {
    if (ends.peekTime() > now + 1) return 0;
    let n = 0;
    while (ends.peekTime() <= now + 1) {
      if (topCurrent()) {
        if (n === due.length) due = grow(due);
        due[n++] = ends.peekId();
      }
      ends.pop();
    }
    for (let j = 0; j < n; j++) ends.push(lastUse[due[j]!]! + ttlMs, due[j]!);
    return n;
  };
  const sel = new Selection();
  const expiredReason = `keep-alive of ${ttlMs} ms expired`;
  const policy: EvictionPolicy = {
    name: 'ttl',
    onLoad(e) {
      used(e, e.lastUsedAt);
    },
    onAccess(e) {
      used(e, e.lastUsedAt);
    },
    onEvict(key) {
      const id = idOf.get(key);
      if (id !== undefined) lastUse[id] = NaN;
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.lastUsedAt;
      return sel.lowestScored(c, s, req.needBytes, (e) =>
        `under pressure, closest to keep-alive expiry (idle ${Math.round(req.now - e.lastUsedAt)} ms of ${ttlMs})`,
      );
    },
    expired(entries, now) {
      const out: Victim[] = [];
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        if (now - e.lastUsedAt >= ttlMs) out.push(numbered ? ({ key: e.key, reason: expiredReason, idx: (e as NumberedEntry).idx } as Victim) : { key: e.key, reason: expiredReason });
      }
      return out;
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    nextCheckAt(): number {
      // expiryCandidates names nothing while the earliest expiry still due is more than 1 ms away
      // (1 ms more of margin for rounding), and only hooks push new expiries. (Superseded expiries
      // are dropped here: they would only wake a check that names nothing.)
      while (ends.size > 0 && !topCurrent()) ends.pop();
      return ends.peekTime() - 2;
    },
    quietUntil(now: number): number {
      // Whatever happens after `now`: a hook at t >= now pushes t + ttlMs, which is no earlier
      // than the earliest expiry still due (a use at or before now, plus ttlMs) nor than
      // now + ttlMs (when nothing is loaded), and an eviction only makes an expiry superseded. A
      // model in flight at its expiry keeps its entry (expiryCandidates pushes it again), so the
      // bound stays at or before it. Checks between two expiries name nothing, however many calls
      // come and go (a node whose queue never empties made a check after almost every event).
      while (ends.size > 0 && !topCurrent()) ends.pop();
      return Math.min(ends.peekTime(), now + ttlMs) - 2;
    },
    expiryCandidates(now: number): readonly string[] {
      const n = dueIds(now);
      if (n === 0) return NONE;
      // Mostly one: then an array of one reused from call to call.
      const out = n === 1 ? oneKey : new Array<string>(n);
      for (let j = 0; j < n; j++) out[j] = keys[due[j]!]!;
      return out;
    },
    expiryCandidateNumbers(now: number): readonly number[] {
      const n = dueIds(now);
      dueOut.length = n;
      for (let j = 0; j < n; j++) dueOut[j] = due[j]!;
      return dueOut;
    },
    numberModels(all: readonly string[]): boolean {
      if (keys.length > 0) return false; // ids already given by key
      for (const key of all) {
        idOf.set(key, keys.length);
        keys.push(key);
      }
      lastUse = new Float64Array(Math.max(64, all.length)).fill(NaN);
      numbered = true;
      return true;
    },
    onEvictNumber(id: number): void {
      lastUse[id] = NaN;
    },
  });
}
