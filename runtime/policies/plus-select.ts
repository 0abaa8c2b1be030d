/**
 * `cremebrulee-plus`'s victims among exactly the loaded functions (the simulator's
 * `selectAmongLoaded` hint, sim/hints.ts), from what its hooks reported, by function number.
 *
 * Its utility of a function with a learned gap is
 *
 *     (1 / max(gap, idle, 1)) × loadMs / max(1, sizeBytes),   idle = now − last call
 *
 * which never grows with `now` (loadMs > 0). So each loaded function is kept in a bucket by the
 * bits of its score at a time `until` not yet reached (a lower bound of its score until then;
 * within its gap, the fixed score it keeps until it goes idle), and moved when `until` passes
 * (`soon`, a heap by it). A request scores only the functions of the lowest buckets (and those
 * without such a bound, `scored`), opening a bucket while the best scored could be beaten by a
 * function in it, and takes them in `Selection.lowestScored`'s order (score, then last use at the
 * hook, then key), which is total, so the answer is the plain scan's whatever the order the
 * functions are kept in.
 *
 * Hooks only mark a function (`touch`); it is put in its place at the next request, so runs that
 * never ask (every model fits) pay one flag per hook.
 */
import type { Victim } from './types';

/** How far past `now` a function gone idle is bucketed by its score (`place`): this × its idle time. */
const IDLE_STEP = 0.5;
/** Bits of a score's mantissa below its exponent in its bucket's key; the number of keys. */
const SUB_BITS = 2;
const KEYS = 1 << (11 + SUB_BITS);
/** The index of a double's high 32 bits in its `Uint32Array` view (which follows the machine's byte order). */
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

export class LoadedFacts {
  gap = new Float64Array(64);
  last = new Float64Array(64);
  lastUsedAt = new Float64Array(64);
  loadMs = new Float64Array(64);
  sizeBytes = new Float64Array(64);
  popularity = new Float64Array(64);
  /**
   * `max(gap, 1)` and the utility while idle no longer than that, `(1 / max(gap, 1)) × loadMs /
   * max(1, sizeBytes)` (the score of such a function, whatever `now`), kept by `fix` whenever gap,
   * load time or size changes; NaN without a learned gap.
   */
  maxGap = new Float64Array(64);
  fixed = new Float64Array(64);
  /** Keys by number, and each function's victim (made once: the caller reads only its key). */
  keys: string[] = [];
  victims: Victim[] = [];
  /** The loaded functions' numbers, in no order, and each one's place there (-1: not loaded). */
  ids = new Int32Array(64);
  at = new Int32Array(64).fill(-1);
  n = 0;

  /** Functions touched since the last request, each once (`dirty[id]` 1 while listed). */
  private touched = new Int32Array(64);
  private nTouched = 0;
  private dirty = new Uint8Array(64);
  /**
   * Bucketed by the bits (`keyOf`) of a bound of their score (`place`), valid until `until[id]`:
   * each bucket a list (`head` by key, `next` / `prev` by function, `bucket[id]` its key or -1),
   * the keys of nonempty buckets marked in `full` (a bit each), none below `lowKey`; and `soon`, a
   * heap of the same functions by `until`, with each one's place.
   */
  private head = new Int32Array(KEYS).fill(-1);
  private full = new Uint32Array(KEYS >>> 5);
  private lowKey = KEYS;
  private next = new Int32Array(64);
  private prev = new Int32Array(64);
  private bucket = new Int32Array(64).fill(-1);
  private soon = new Int32Array(64);
  private soonAt = new Int32Array(64).fill(-1);
  private nSoon = 0;
  private until = new Float64Array(64);
  /** The other loaded functions (scored at each request), in no order, and each one's place. */
  private scored = new Int32Array(64);
  private scoredAt = new Int32Array(64).fill(-1);
  private nScored = 0;
  /** Scratch per request: the functions scored (`pool`), their scores and taken marks by place. */
  private pool = new Int32Array(64);
  private score = new Float64Array(64);
  private taken = new Uint8Array(64);
  /** A double's bits (`keyOf`). */
  private readonly f64 = new Float64Array(1);
  private readonly u32 = new Uint32Array(this.f64.buffer);
  /** The victims' sizes, in eviction order (refilled by each request). */
  sizes = new Float64Array(64);

  /**
   * Room for function number `id`, and its key (numbers are at most one past the highest given; a
   * forgotten function's number serves a new one); `num` >= 0: the caller's number for its model,
   * which its victim carries (`idx`: the simulator's `numberModels` hint).
   */
  ensure(id: number, key: string, num = -1): void {
    this.keys[id] = key;
    this.victims[id] = num >= 0 ? ({ key, reason: '', idx: num } as Victim) : { key, reason: '' };
    if (id < this.gap.length) return;
    const m = 2 * this.gap.length;
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(m);
      b.set(a);
      return b;
    };
    const i32 = (a: Int32Array, fill: number) => {
      const b = new Int32Array(m).fill(fill);
      b.set(a);
      return b;
    };
    this.gap = f64(this.gap);
    this.last = f64(this.last);
    this.lastUsedAt = f64(this.lastUsedAt);
    this.loadMs = f64(this.loadMs);
    this.sizeBytes = f64(this.sizeBytes);
    this.popularity = f64(this.popularity);
    this.maxGap = f64(this.maxGap);
    this.fixed = f64(this.fixed);
    this.until = f64(this.until);
    this.ids = i32(this.ids, 0);
    this.at = i32(this.at, -1);
    this.touched = i32(this.touched, 0);
    const dirty = new Uint8Array(m);
    dirty.set(this.dirty);
    this.dirty = dirty;
    this.next = i32(this.next, 0);
    this.prev = i32(this.prev, 0);
    this.bucket = i32(this.bucket, -1);
    this.soon = i32(this.soon, 0);
    this.soonAt = i32(this.soonAt, -1);
    this.scored = i32(this.scored, 0);
    this.scoredAt = i32(this.scoredAt, -1);
    this.pool = new Int32Array(m);
    this.score = new Float64Array(m);
    this.taken = new Uint8Array(m);
    this.sizes = new Float64Array(m);
  }

  /** `id`'s facts changed (or it was loaded or evicted): put in its place at the next request. */
  touch(id: number): void {
    if (this.dirty[id] !== 0) return;
    this.dirty[id] = 1;
    this.touched[this.nTouched++] = id;
  }

  /** Recomputes `maxGap` and `fixed` of `id` from its gap, load time and size. */
  fix(id: number): void {
    const m = Math.max(this.gap[id]!, 1);
    this.maxGap[id] = m;
    this.fixed[id] = ((1 / m) * this.loadMs[id]!) / Math.max(1, this.sizeBytes[id]!);
    this.touch(id);
  }

  /**
   * `id`'s score at `now`, as `selectVictims` computes it for the settings `selectAmongLoaded`
   * serves (the rate of a function without a learned gap: `once` if `useOnce`, else its popularity
   * × 1e-6). Idle no longer than max(gap, 1) (84% of the candidates at 5%), max(gap, idle, 1) is
   * max(gap, 1), so the score is `fixed`, computed by `fix` with the same operations.
   */
  scoreAt(id: number, now: number, useOnce: boolean, once: number): number {
    const g = this.gap[id]!;
    if (Number.isNaN(g)) return ((useOnce ? once : this.popularity[id]! * 1e-6) * this.loadMs[id]!) / Math.max(1, this.sizeBytes[id]!);
    const l = this.last[id]!;
    const idle = now - (Number.isNaN(l) ? this.lastUsedAt[id]! : l);
    return idle <= this.maxGap[id]! ? this.fixed[id]! : ((1 / Math.max(g, idle, 1)) * this.loadMs[id]!) / Math.max(1, this.sizeBytes[id]!);
  }

  add(id: number): void {
    if (this.at[id]! >= 0) return;
    this.at[id] = this.n;
    this.ids[this.n++] = id;
    this.touch(id);
  }

  delete(id: number): void {
    const p = this.at[id]!;
    if (p < 0) return;
    const last = this.ids[--this.n]!;
    this.ids[p] = last;
    this.at[last] = p;
    this.at[id] = -1;
    this.touch(id);
  }

  /**
   * The victims `Selection.lowestScored` gives over the loaded functions scored at `now` (the rate
   * of a function without a learned gap: `once` if `useOnce`, else its popularity × 1e-6), until
   * `needBytes` are freed; their sizes in `sizes`. Undefined when a score is NaN (the plain scan's
   * order is then not total, so the caller scans as it used to).
   *
   * Scored: the functions of `scored`, then whole buckets, lowest key first, each opened while the
   * best function scored and not taken has a key at or above the bucket's. So the next victim, the
   * best so found, has a key below every bucket not opened, hence (the bits of positive doubles
   * order as the doubles do) a lower score than the bound any function there is bucketed by, which
   * is positive and at most its score (`place`).
   */
  lowest(now: number, useOnce: boolean, once: number, needBytes: number): Victim[] | undefined {
    this.settle(now);
    const { sizeBytes, scored, pool, score, taken, head, next } = this;
    let np = 0;
    for (let p = 0; p < this.nScored; p++) {
      const id = scored[p]!;
      const sp = this.scoreAt(id, now, useOnce, once);
      if (Number.isNaN(sp)) return undefined;
      pool[np] = id;
      score[np] = sp;
      taken[np++] = 0;
    }
    const victims: Victim[] = [];
    const sizes = this.sizes;
    // The lowest key of a bucket not opened (-1: none).
    let k = this.nextKey(this.lowKey);
    this.lowKey = k < 0 ? KEYS : k;
    let freed = 0;
    while (!(freed >= needBytes) && victims.length < this.n) {
      let b = -1;
      for (let p = 0; p < np; p++) if (taken[p] === 0 && (b < 0 || this.before(score[p]!, pool[p]!, score[b]!, pool[b]!))) b = p;
      while (k >= 0 && (b < 0 || (score[b]! > 0 && this.keyOf(score[b]!) >= k))) {
        const from = np;
        for (let id = head[k]!; id >= 0; id = next[id]!) {
          pool[np] = id;
          score[np] = this.scoreAt(id, now, useOnce, once);
          taken[np++] = 0;
        }
        for (let p = from; p < np; p++) if (b < 0 || this.before(score[p]!, pool[p]!, score[b]!, pool[b]!)) b = p;
        k = this.nextKey(k + 1);
      }
      const id = pool[b]!;
      taken[b] = 1;
      sizes[victims.length] = sizeBytes[id]!;
      victims.push(this.victims[id]!);
      freed += sizeBytes[id]!;
    }
    return victims;
  }

  /** Function a (score sa) before function b (score sb): `Selection.lowestScored`'s order. */
  private before(sa: number, a: number, sb: number, b: number): boolean {
    if (sa < sb) return true;
    if (sa > sb) return false;
    const la = this.lastUsedAt[a]!;
    const lb = this.lastUsedAt[b]!;
    if (la < lb) return true;
    if (la > lb) return false;
    return this.keys[a]! < this.keys[b]!;
  }

  /** The bucket of a positive score: its exponent and the `SUB_BITS` bits below. */
  private keyOf(x: number): number {
    this.f64[0] = x;
    return this.u32[HI]! >>> (20 - SUB_BITS);
  }

  /** The lowest key at or above `k` of a nonempty bucket, or -1. */
  private nextKey(k: number): number {
    const full = this.full;
    let w = k >>> 5;
    if (w >= full.length) return -1;
    let bits = full[w]! & (-1 << (k & 31));
    while (bits === 0) {
      if (++w >= full.length) return -1;
      bits = full[w]!;
    }
    return (w << 5) + 31 - Math.clz32(bits & -bits);
  }

  /**
   * Puts the functions touched since the last request, and those bucketed whose `until` is past,
   * in their part (`place`).
   */
  private settle(now: number): void {
    const touched = this.touched;
    for (let i = 0; i < this.nTouched; i++) {
      const id = touched[i]!;
      this.dirty[id] = 0;
      if (this.at[id]! < 0) {
        this.unbucket(id);
        this.leaveScored(id);
      } else this.place(id, now);
    }
    this.nTouched = 0;
    while (this.nSoon > 0 && this.until[this.soon[0]!]! < now) this.place(this.soon[0]!, now);
  }

  /**
   * Buckets `id` by its score at a time `until` at or after `now`: within its gap, the time it goes
   * idle (last call + max(gap, 1)), so its fixed score; past it, a step further into its idle time.
   * A score is non-increasing in `now` (`scoreAt`: `now − last` non-decreasing, `1 / max(...)`
   * non-increasing, then × loadMs > 0 and / max(1, sizeBytes), each correctly rounded, so
   * monotone), so until then its score at a request is at least the one it is bucketed by. Without
   * a learned gap, or with a bound not positive and finite, it is scored at each request instead.
   */
  private place(id: number, now: number): void {
    const l0 = this.last[id]!;
    const l = Number.isNaN(l0) ? this.lastUsedAt[id]! : l0;
    if (!Number.isNaN(this.gap[id]!)) {
      let t = l + this.maxGap[id]!;
      if (!(t >= now)) t = now + (now - l) * IDLE_STEP;
      const lb = this.scoreAt(id, t, false, 0);
      if (t >= now && lb > 0 && lb < Infinity) {
        this.leaveScored(id);
        this.until[id] = t;
        this.toBucket(id, this.keyOf(lb));
        return;
      }
    }
    this.unbucket(id);
    this.enterScored(id);
  }

  private enterScored(id: number): void {
    if (this.scoredAt[id]! >= 0) return;
    this.scoredAt[id] = this.nScored;
    this.scored[this.nScored++] = id;
  }

  private leaveScored(id: number): void {
    const p = this.scoredAt[id]!;
    if (p < 0) return;
    const last = this.scored[--this.nScored]!;
    this.scored[p] = last;
    this.scoredAt[last] = p;
    this.scoredAt[id] = -1;
  }

  /** Into bucket `key` (out of its old one) and `soon`, or moved in `soon` to its new `until`. */
  private toBucket(id: number, key: number): void {
    const old = this.bucket[id]!;
    if (old !== key) {
      if (old >= 0) this.unlink(id, old);
      const h = this.head[key]!;
      this.next[id] = h;
      this.prev[id] = -1;
      if (h >= 0) this.prev[h] = id;
      else this.full[key >>> 5]! |= 1 << (key & 31);
      this.head[key] = id;
      this.bucket[id] = key;
      if (key < this.lowKey) this.lowKey = key;
    }
    let q = this.soonAt[id]!;
    if (q < 0) {
      q = this.nSoon++;
      this.soon[q] = id;
      this.soonAt[id] = q;
    }
    this.soonSift(q);
  }

  /** Out of its bucket and `soon`, if there. */
  private unbucket(id: number): void {
    const key = this.bucket[id]!;
    if (key < 0) return;
    this.unlink(id, key);
    const q = this.soonAt[id]!;
    const n = --this.nSoon;
    this.soonAt[id] = -1;
    if (q !== n) {
      const last = this.soon[n]!;
      this.soon[q] = last;
      this.soonAt[last] = q;
      this.soonSift(q);
    }
  }

  private unlink(id: number, key: number): void {
    const p = this.prev[id]!;
    const x = this.next[id]!;
    if (p >= 0) this.next[p] = x;
    else {
      this.head[key] = x;
      if (x < 0) this.full[key >>> 5]! &= ~(1 << (key & 31));
    }
    if (x >= 0) this.prev[x] = p;
    this.bucket[id] = -1;
  }

  /** Moves `soon[p]` up or down to its place. */
  private soonSift(p: number): void {
    const h = this.soon;
    const pos = this.soonAt;
    const t = this.until;
    const id = h[p]!;
    const s = t[id]!;
    const n = this.nSoon;
    while (p > 0) {
      const q = (p - 1) >> 1;
      const qi = h[q]!;
      if (!(s < t[qi]!)) break;
      h[p] = qi;
      pos[qi] = p;
      p = q;
    }
    for (;;) {
      const l = 2 * p + 1;
      if (l >= n) break;
      let c = l;
      let ci = h[l]!;
      if (l + 1 < n && t[h[l + 1]!]! < t[ci]!) {
        c = l + 1;
        ci = h[c]!;
      }
      if (!(t[ci]! < s)) break;
      h[p] = ci;
      pos[ci] = p;
      p = c;
    }
    h[p] = id;
    pos[id] = p;
  }
}
