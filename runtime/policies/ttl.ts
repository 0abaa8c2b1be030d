import { grown, NONE } from './heap';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, NumberedEntry, Victim } from './types';

/** No model (the ends of the list, and a model not in it). */
const NIL = -1;
const NO_IDS: readonly number[] = Object.freeze([]);

/**
 * Fixed keep-alive (the default of most serverless platforms, e.g. 10 minutes): a model idle
 * longer than `ttlMs` is dropped even without memory pressure; under pressure, the entry closest
 * to expiry (least recently used) goes first.
 */
export function ttl(ttlMs = 600_000): EvictionPolicy {
  if (!(ttlMs > 0)) throw new RangeError(`ttl: ttlMs must be > 0, got ${ttlMs}`);
  // The loaded models (from `onLoad` to `onEvict`), by an id of the policy's own, in a doubly
  // linked list in `selectVictims`' order: last use, then key. Expiry times are last use + ttlMs,
  // so the models due at a check are a prefix of the list (`expiryCandidates`), the earliest
  // expiry is its head's (`nextCheckAt`, `quietUntil`), and the victims of a request whose
  // candidates are the loaded models are its first (`selectAmongLoaded`). A use moves its model to
  // the tail (callers' clocks do not run back, so the walk back from the tail to its place is
  // usually no step at all).
  const idOf = new Map<string, number>();
  const keys: string[] = [];
  let cap = 0;
  /** Last use at the last hook (NaN when not loaded). */
  let lastUse = new Float64Array(0);
  /** Size at the last hook (`selectAmongLoaded`). */
  let sizes = new Float64Array(0);
  let prev = new Int32Array(0);
  let next = new Int32Array(0);
  /** Keys' places in key order (`<` on strings), for the ties of last use; -1: not ranked yet. */
  let rank = new Int32Array(0);
  /** Every id ranked (`numberModels` ranks them all): ties compare ranks, not strings. */
  let ranked = false;
  let head = NIL;
  let tail = NIL;
  /** Ids are the caller's model numbers (the simulator's `numberModels`), read from the entries. */
  let numbered = false;
  const idFor = (key: string): number => {
    let id = idOf.get(key);
    if (id === undefined) {
      id = keys.length;
      if (id === cap) {
        cap = Math.max(64, 2 * cap);
        lastUse = grown(lastUse, cap, NaN);
        sizes = grown(sizes, cap, 0);
        prev = grown(prev, cap, NIL);
        next = grown(next, cap, NIL);
        rank = grown(rank, cap, -1);
      }
      keys.push(key);
      idOf.set(key, id);
      ranked = false; // (a key added by hand is compared as a string)
    }
    return id;
  };
  /** a before b in the list: last use, then key. */
  const before = (a: number, b: number): boolean => {
    const la = lastUse[a]!;
    const lb = lastUse[b]!;
    if (la < lb) return true;
    if (la > lb) return false;
    return ranked ? rank[a]! < rank[b]! : keys[a]! < keys[b]!;
  };
  const unlink = (id: number): void => {
    const p = prev[id]!;
    const n = next[id]!;
    if (p !== NIL) next[p] = n;
    else head = n;
    if (n !== NIL) prev[n] = p;
    else tail = p;
    prev[id] = next[id] = NIL;
  };
  const used = (id: number, e: EntryFacts): void => {
    if (lastUse[id] === lastUse[id]) unlink(id); // (in the list: loaded)
    lastUse[id] = e.lastUsedAt;
    sizes[id] = e.sizeBytes;
    let at = tail;
    while (at !== NIL && before(id, at)) at = prev[at]!;
    const n = at === NIL ? head : next[at]!;
    prev[id] = at;
    next[id] = n;
    if (n !== NIL) prev[n] = id;
    else tail = id;
    if (at !== NIL) next[at] = id;
    else head = id;
  };
  const gone = (id: number): void => {
    if (lastUse[id] !== lastUse[id]) return; // not loaded
    unlink(id);
    lastUse[id] = NaN;
  };
  /** The earliest expiry of a loaded model (Infinity: none loaded). */
  const earliest = (): number => (head === NIL ? Infinity : lastUse[head]! + ttlMs);
  // expiryCandidates' ids by how many (each array filled in place: none resized per check), and its
  // answer when it names one key, reused from call to call.
  const dueOut: number[][] = [];
  const oneKey: string[] = [''];
  /**
   * `expiryCandidates`' models: loaded models idle for about the keep-alive or longer (1 ms of
   * slack for rounding: `expired` decides exactly), the head of the list. They stay in it until
   * evicted. (The caller reads the answer before the next call: the arrays are reused.)
   */
  const dueIds = (now: number): readonly number[] => {
    let n = 0;
    const lim = now + 1;
    for (let id = head; id !== NIL && lastUse[id]! + ttlMs <= lim; id = next[id]!) n++;
    if (n === 0) return NO_IDS;
    const out = (dueOut[n] ??= new Array<number>(n).fill(0));
    for (let id = head, j = 0; j < n; id = next[id]!) out[j++] = id;
    return out;
  };
  const sel = new Selection();
  const expiredReason = `keep-alive of ${ttlMs} ms expired`;
  const pressureReason = (idle: number) => `under pressure, closest to keep-alive expiry (idle ${Math.round(idle)} ms of ${ttlMs})`;
  // Victims made once per model and reused (their fields never change): expiries by number, and
  // evictions once reasons are omitted.
  const expiredVictims: Victim[] = [];
  const plainVictims: Victim[] = [];
  const policy: EvictionPolicy = {
    name: 'ttl',
    onLoad(e) {
      used(numbered ? (e as NumberedEntry).idx : idFor(e.key), e);
    },
    onAccess(e) {
      used(numbered ? (e as NumberedEntry).idx : idFor(e.key), e);
    },
    onEvict(key) {
      const id = idOf.get(key);
      if (id !== undefined) gone(id);
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.lastUsedAt;
      return sel.lowestScored(c, s, req.needBytes, (e) => pressureReason(req.now - e.lastUsedAt));
    },
    expired(entries, now) {
      const out: Victim[] = [];
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        if (!(now - e.lastUsedAt >= ttlMs)) continue;
        if (!numbered) out.push({ key: e.key, reason: expiredReason });
        else {
          const id = (e as NumberedEntry).idx;
          out.push((expiredVictims[id] ??= { key: e.key, reason: expiredReason, idx: id } as Victim));
        }
      }
      return out;
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    nextCheckAt(): number {
      // expiryCandidates names nothing while the earliest expiry is more than 1 ms away (1 ms more
      // of margin for rounding), and only hooks bring expiries.
      return earliest() - 2;
    },
    quietUntil(now: number): number {
      // Whatever happens after `now`: a hook at t >= now makes an expiry t + ttlMs, which is no
      // earlier than the earliest expiry of a model loaded now (a use at or before now, plus
      // ttlMs) nor than now + ttlMs (when nothing is loaded), and an eviction only takes an expiry
      // away. A model in flight at its expiry stays at the head of the list, so the bound stays at
      // or before it. Checks between two expiries name nothing, however many calls come and go (a
      // node whose queue never empties made a check after almost every event).
      return Math.min(earliest(), now + ttlMs) - 2;
    },
    expiryCandidates(now: number): readonly string[] {
      const ids = dueIds(now);
      const n = ids.length;
      if (n === 0) return NONE;
      // Mostly one: then an array of one reused from call to call.
      const out = n === 1 ? oneKey : new Array<string>(n);
      for (let j = 0; j < n; j++) out[j] = keys[ids[j]!]!;
      return out;
    },
    expiryCandidateNumbers(now: number): readonly number[] {
      return dueIds(now);
    },
    selectAmongLoaded(req: EvictionRequest): Victim[] {
      // The candidates are the loaded models with the facts of their last hook (the hint's
      // contract): `selectVictims`' order (last use, then key) is the list's, so its first models.
      const victims: Victim[] = [];
      let freed = 0;
      for (let id = head; id !== NIL && !(freed >= req.needBytes); id = next[id]!) {
        victims.push(
          sel.reasons
            ? numbered ? ({ key: keys[id]!, reason: pressureReason(req.now - lastUse[id]!), idx: id } as Victim) : { key: keys[id]!, reason: pressureReason(req.now - lastUse[id]!) }
            : (plainVictims[id] ??= numbered ? ({ key: keys[id]!, reason: '', idx: id } as Victim) : { key: keys[id]!, reason: '' }),
        );
        freed += sizes[id]!;
      }
      return victims;
    },
    numberModels(all: readonly string[]): boolean {
      if (keys.length > 0) return false; // ids already given by key
      for (const key of all) idFor(key); // id i for all[i]
      const order = all.map((_, i) => i).sort((a, b) => (all[a]! < all[b]! ? -1 : all[a]! > all[b]! ? 1 : 0));
      order.forEach((id, r) => (rank[id] = r));
      ranked = true;
      numbered = true;
      return true;
    },
    onEvictNumber(id: number): void {
      gone(id);
    },
  });
}
