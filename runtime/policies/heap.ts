/** An empty key list to return where nothing is due (no allocation per check). */
export const NONE: readonly string[] = Object.freeze([]);

/**
 * A copy of typed array `a` with room for `n` (n ≥ a.length), the new slots 0 or `fill`: how the
 * policies' per-id arrays and these queues' pools grow (by doubling, off their hot paths).
 */
export function grown<T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(a: T, n: number, fill?: number): T {
  const b = new (a.constructor as new (length: number) => T)(n);
  if (fill !== undefined && fill !== 0) b.fill(fill, a.length);
  b.set(a);
  return b;
}

/**
 * A binary min-heap of (time, key) pairs with lazy deletion: callers push a pair whenever a key's
 * deadline changes and check, when one surfaces, that it is still current. Used by policies that
 * keep deadlines, so a periodic check costs O(what is due), not O(every function).
 */
export class DeadlineHeap {
  private readonly t: number[] = [];
  private readonly k: string[] = [];

  get size(): number {
    return this.t.length;
  }

  push(time: number, key: string): void {
    const t = this.t;
    const k = this.k;
    let i = t.length;
    t.push(time);
    k.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!(t[p]! > time)) break;
      t[i] = t[p]!;
      k[i] = k[p]!;
      i = p;
    }
    t[i] = time;
    k[i] = key;
  }

  /** The earliest time (Infinity when empty). */
  peekTime(): number {
    return this.t.length > 0 ? this.t[0]! : Infinity;
  }

  peekKey(): string {
    return this.k[0]!;
  }

  pop(): void {
    const t = this.t;
    const k = this.k;
    const lastT = t.pop()!;
    const lastK = k.pop()!;
    const n = t.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && t[r]! < t[l]! ? r : l;
      if (!(t[c]! < lastT)) break;
      t[i] = t[c]!;
      k[i] = k[c]!;
      i = c;
    }
    t[i] = lastT;
    k[i] = lastK;
  }
}

/**
 * `DeadlineHeap` for policies that number their keys (integer ids): the same heap, the same
 * order, with the ids in a typed array. The slot just past the last pair always holds time
 * +Infinity (room for it is kept), so a sift-down compares a node's two children without first
 * asking whether the right one exists: an absent right child loses, as the bounds test made it.
 * Which child is smaller is a coin toss for the branch predictor; without the `&&` the choice
 * compiles to a conditional move, about one mispredicted branch a level fewer (a replay of the
 * 6.07 M pushes and pops of a `hybrid-histogram` run: 32.5 M -> 16.6 M mispredicted branches).
 */
export class IdDeadlineHeap {
  private t = new Float64Array(64).fill(Infinity);
  private k = new Int32Array(64);
  private n = 0;

  get size(): number {
    return this.n;
  }

  push(time: number, id: number): void {
    if (this.n + 1 === this.t.length) {
      const t = new Float64Array(2 * this.t.length).fill(Infinity);
      t.set(this.t.subarray(0, this.n));
      this.t = t;
      const k = new Int32Array(2 * this.k.length);
      k.set(this.k.subarray(0, this.n));
      this.k = k;
    }
    const t = this.t;
    const k = this.k;
    let i = this.n++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!(t[p]! > time)) break;
      t[i] = t[p]!;
      k[i] = k[p]!;
      i = p;
    }
    t[i] = time;
    k[i] = id;
  }

  /** The earliest time (Infinity when empty: the slot past the end). */
  peekTime(): number {
    return this.t[0]!;
  }

  peekId(): number {
    return this.k[0]!;
  }

  pop(): void {
    const t = this.t;
    const k = this.k;
    const n = --this.n;
    if (n <= 0) {
      this.n = Math.max(0, n);
      t[0] = Infinity;
      return;
    }
    const lastT = t[n]!;
    const lastK = k[n]!;
    t[n] = Infinity; // (the slot past the end from now on)
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const c = l + +(t[l + 1]! < t[l]!);
      if (!(t[c]! < lastT)) break;
      t[i] = t[c]!;
      k[i] = k[c]!;
      i = c;
    }
    t[i] = lastT;
    k[i] = lastK;
  }

  /**
   * Keeps only the pairs `keep` says still stand for something (a caller that never pops would
   * otherwise keep every pair it pushed), in heap order again.
   */
  keepOnly(keep: (time: number, id: number) => boolean): void {
    const t = this.t;
    const k = this.k;
    let n = 0;
    for (let j = 0; j < this.n; j++) {
      if (!keep(t[j]!, k[j]!)) continue;
      t[n] = t[j]!;
      k[n++] = k[j]!;
    }
    t.fill(Infinity, n, this.n + 1);
    this.n = n;
    for (let j = (n >> 1) - 1; j >= 0; j--) {
      const time = t[j]!;
      const id = k[j]!;
      let i = j;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const c = l + +(t[l + 1]! < t[l]!);
        if (!(t[c]! < time)) break;
        t[i] = t[c]!;
        k[i] = k[c]!;
        i = c;
      }
      t[i] = time;
      k[i] = id;
    }
  }
}

/** A set of integer ids with O(1) add, delete and membership; iteration order is unspecified. */
export class IdSet {
  /** The members, `items[0..size)`. */
  items = new Int32Array(16);
  size = 0;
  private pos = new Int32Array(16).fill(-1);

  has(id: number): boolean {
    return id < this.pos.length && this.pos[id]! >= 0;
  }

  add(id: number): void {
    if (id >= this.pos.length) {
      const pos = new Int32Array(Math.max(id + 1, 2 * this.pos.length)).fill(-1);
      pos.set(this.pos);
      this.pos = pos;
    }
    if (this.pos[id]! >= 0) return;
    if (this.size === this.items.length) {
      const items = new Int32Array(2 * this.size);
      items.set(this.items);
      this.items = items;
    }
    this.pos[id] = this.size;
    this.items[this.size++] = id;
  }

  /** Removes every member. */
  clear(): void {
    for (let j = 0; j < this.size; j++) this.pos[this.items[j]!] = -1;
    this.size = 0;
  }

  /** Removes `id` (the last member takes its place: iterate backwards to delete while iterating). */
  delete(id: number): void {
    if (!this.has(id)) return;
    const p = this.pos[id]!;
    const last = this.items[--this.size]!;
    this.items[p] = last;
    this.pos[last] = p;
    this.pos[id] = -1;
  }
}

/** Buckets in `IdCalendar`'s ring (a power of two). */
const RING = 16384;

/**
 * A min-queue of (time, id) pairs with `IdDeadlineHeap`'s interface and contents (the same pairs
 * come out earliest first; pairs of equal times in some order of its own), kept as a calendar:
 * times in buckets `width` wide, a ring of RING buckets from the earliest pair's on (a bitmap
 * says which hold pairs, each an unordered list), pairs beyond the ring in an `IdDeadlineHeap`
 * until the ring reaches them. For pairs pushed at most ~RING × width ahead (hybrid-histogram's
 * reminders: hours ahead, a few hundred pending), a push is a few stores and a pop a scan of one
 * bucket and a word or two of the bitmap, where a heap of that size sifts through ~8 levels of
 * comparisons no branch predictor can guess.
 */
export class IdCalendar {
  /**
   * 1 / width: a pair's bucket is floor(time × perMs), a multiplication where a division would
   * cost ~15 cycles at each push. Any bucket numbering that never puts a later time in an earlier
   * bucket will do, and a product by a positive constant, rounded, never decreases with time.
   */
  private readonly perMs: number;
  // The pairs in a pool: time, id, the next pair in its bucket (-1: none), free slots listed through `next`.
  private et = new Float64Array(64);
  private eid = new Int32Array(64);
  private next = new Int32Array(64);
  private freeSlot = -1;
  private usedSlots = 0;
  private readonly head = new Int32Array(RING).fill(-1);
  private readonly bits = new Int32Array(RING >> 5);
  /**
   * The bucket number (floor(time × perMs)) of ring slot `baseSlot`. Every pair in the ring is in a
   * bucket from it to RING − 1 after it (pairs earlier than it are kept in its bucket: they come
   * first anyway); the far heap's pairs are at or past the ring's end.
   */
  private kBase = 0;
  private baseSlot = 0;
  private inRing = 0;
  private readonly far = new IdDeadlineHeap();
  // The earliest pair (time Infinity: none, or only pairs at Infinity): its time and id, its pool
  // slot (-1: the far heap's top), its ring slot and the pair before it in that bucket (-1: none).
  private minT = Infinity;
  private minId = 0;
  private minE = -1;
  private minSlot = 0;
  private minPrev = -1;

  constructor(width: number) {
    if (!(width > 0 && width < Infinity)) throw new RangeError(`IdCalendar: width must be a positive finite number, got ${width}`);
    this.perMs = 1 / width;
  }

  get size(): number {
    return this.inRing + this.far.size;
  }

  push(time: number, id: number): void {
    const k = Math.floor(time * this.perMs);
    if (this.inRing === 0 && this.far.size === 0 && Number.isFinite(k)) {
      this.kBase = k;
      this.baseSlot = 0;
    }
    const d = k - this.kBase;
    if (!(d < RING)) {
      this.far.push(time, id); // (past the ring, or NaN)
      if (this.minE < 0) {
        // The ring is empty (it holds the earliest pairs when it has any): the far heap's top.
        this.minT = this.far.peekTime();
        this.minId = this.far.peekId();
      }
      return;
    }
    const slot = d > 0 ? (this.baseSlot + d) & (RING - 1) : this.baseSlot;
    const e = this.toRing(slot, time, id);
    if (time < this.minT) {
      this.minT = time;
      this.minId = id;
      this.minE = e;
      this.minSlot = slot;
      this.minPrev = -1;
    } else if (slot === this.minSlot && this.minE >= 0 && this.minPrev < 0) this.minPrev = e; // (now first in its bucket)
  }

  /** The earliest time (Infinity when empty). */
  peekTime(): number {
    return this.minT;
  }

  peekId(): number {
    return this.minId;
  }

  pop(): void {
    const e = this.minE;
    if (e < 0) {
      if (this.far.size > 0) this.far.pop();
    } else {
      const slot = this.minSlot;
      if (this.minPrev < 0) this.head[slot] = this.next[e]!;
      else this.next[this.minPrev] = this.next[e]!;
      if (this.head[slot] === -1) this.bits[slot >> 5]! &= ~(1 << (slot & 31));
      this.next[e] = this.freeSlot;
      this.freeSlot = e;
      this.inRing--;
    }
    this.findMin();
  }

  /** Keeps only the pairs `keep` says still stand for something. */
  keepOnly(keep: (time: number, id: number) => boolean): void {
    const ts: number[] = [];
    const ids: number[] = [];
    while (this.size > 0) {
      if (keep(this.minT, this.minId)) {
        ts.push(this.minT);
        ids.push(this.minId);
      }
      this.pop();
    }
    for (let j = 0; j < ts.length; j++) this.push(ts[j]!, ids[j]!);
  }

  /** Puts a pair in ring slot `slot`'s bucket; returns its pool slot. */
  private toRing(slot: number, time: number, id: number): number {
    let e = this.freeSlot;
    if (e >= 0) this.freeSlot = this.next[e]!;
    else {
      if (this.usedSlots === this.et.length) {
        const n = 2 * this.et.length;
        this.et = grown(this.et, n);
        this.eid = grown(this.eid, n);
        this.next = grown(this.next, n);
      }
      e = this.usedSlots++;
    }
    this.et[e] = time;
    this.eid[e] = id;
    this.next[e] = this.head[slot]!;
    this.head[slot] = e;
    this.bits[slot >> 5]! |= 1 << (slot & 31);
    this.inRing++;
    return e;
  }

  /** After a pop: the ring moved on to its first bucket with pairs, the far pairs it now reaches brought in, the earliest found. */
  private findMin(): void {
    const far = this.far;
    if (this.inRing === 0) {
      const k = Math.floor(far.peekTime() * this.perMs);
      if (!Number.isFinite(k)) {
        // Empty, or only pairs at ±Infinity or NaN: the far heap's top.
        this.minT = far.peekTime();
        this.minId = far.peekId();
        this.minE = -1;
        return;
      }
      this.kBase = k;
      this.baseSlot = 0;
    } else {
      const bits = this.bits;
      const from = this.baseSlot;
      let w = from >> 5;
      let m = bits[w]! & (-1 << (from & 31));
      while (m === 0) {
        w = (w + 1) & ((RING >> 5) - 1);
        m = bits[w]!;
      }
      const slot = (w << 5) + 31 - Math.clz32(m & -m);
      this.kBase += (slot - from) & (RING - 1);
      this.baseSlot = slot;
    }
    while (far.size > 0) {
      const d = Math.floor(far.peekTime() * this.perMs) - this.kBase;
      if (!(d < RING)) break;
      this.toRing(d > 0 ? (this.baseSlot + d) & (RING - 1) : this.baseSlot, far.peekTime(), far.peekId());
      far.pop();
    }
    // The earliest pair of the first bucket (the ring's first bucket has pairs now).
    const et = this.et;
    const next = this.next;
    const slot = this.baseSlot;
    let best = this.head[slot]!;
    let bestPrev = -1;
    let bt = et[best]!;
    for (let p = best, e = next[best]!; e >= 0; p = e, e = next[e]!) {
      if (et[e]! < bt) {
        bt = et[e]!;
        best = e;
        bestPrev = p;
      }
    }
    this.minT = bt;
    this.minId = this.eid[best]!;
    this.minE = best;
    this.minSlot = slot;
    this.minPrev = bestPrev;
  }
}
