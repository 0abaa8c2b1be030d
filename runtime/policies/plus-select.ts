/**
 * `cremebrulee-plus`'s victims among exactly the loaded functions (the simulator's
 * `selectAmongLoaded` hint, sim/hints.ts), from what its hooks reported, by function number.
 *
 * Its utility of a function with a learned gap is
 *
 *     (1 / max(gap, idle, 1)) × loadMs / max(1, sizeBytes),   idle = now − last call
 *
 * which while `idle <= max(gap, 1)` is `fixed`, the same number whatever `now` (computed at the
 * hooks with the same operations). So the loaded functions are kept in two parts: those still
 * within their gap, in the eviction order of their fixed scores (`order`, a heap; with `soon`, a
 * heap by the time each would go idle), and the rest (`scored`: gone idle, no learned gap, or
 * facts the bound below does not cover), scored at each request with the plain formula. A request
 * first moves the functions whose time has come from the first part to the second, then merges
 * the two in `Selection.lowestScored`'s order (score, then last use at the hook, then key), which
 * is total, so the answer is the plain scan's whatever the order the functions are kept in.
 *
 * Hooks only mark a function (`touch`); it is put in its place at the next request, so runs that
 * never ask (every model fits) pay one flag per hook.
 */
import type { Victim } from './types';

/** 2^-50: see `LoadedFacts.settle`. */
const SLACK = 2 ** -50;

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
   * Within their gap at the last request: `order`, a heap in eviction order of `fixed`; `soon`, a
   * heap of the same functions by `idleAt` (last call + max(gap, 1)); the place of each in both.
   */
  private order = new Int32Array(64);
  private orderAt = new Int32Array(64).fill(-1);
  private soon = new Int32Array(64);
  private soonAt = new Int32Array(64).fill(-1);
  private nOrder = 0;
  private idleAt = new Float64Array(64);
  /**
   * The fixed score and last use each function of `order` had when it was put there: the heap is
   * ordered by these, so that each change is one sift (several changed keys sifted one after the
   * other do not make a heap). At a request, after `settle`, they are the current ones.
   */
  private oScore = new Float64Array(64);
  private oLast = new Float64Array(64);
  /** The other loaded functions (scored at each request), in no order, and each one's place. */
  private scored = new Int32Array(64);
  private scoredAt = new Int32Array(64).fill(-1);
  private nScored = 0;
  /** Scratch per request: the scored functions' scores and taken marks by place, the frontier. */
  private score = new Float64Array(64);
  private taken = new Uint8Array(64);
  private frontier = new Int32Array(64);
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
    this.idleAt = f64(this.idleAt);
    this.oScore = f64(this.oScore);
    this.oLast = f64(this.oLast);
    this.ids = i32(this.ids, 0);
    this.at = i32(this.at, -1);
    this.touched = i32(this.touched, 0);
    const dirty = new Uint8Array(m);
    dirty.set(this.dirty);
    this.dirty = dirty;
    this.order = i32(this.order, 0);
    this.orderAt = i32(this.orderAt, -1);
    this.soon = i32(this.soon, 0);
    this.soonAt = i32(this.soonAt, -1);
    this.scored = i32(this.scored, 0);
    this.scoredAt = i32(this.scoredAt, -1);
    this.score = new Float64Array(m);
    this.taken = new Uint8Array(m);
    this.frontier = new Int32Array(m);
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
   */
  lowest(now: number, useOnce: boolean, once: number, needBytes: number): Victim[] | undefined {
    this.settle(now);
    const { sizeBytes, fixed, scored, score, taken } = this;
    const ns = this.nScored;
    for (let p = 0; p < ns; p++) {
      const sp = this.scoreAt(scored[p]!, now, useOnce, once);
      if (Number.isNaN(sp)) return undefined;
      score[p] = sp;
      taken[p] = 0;
    }
    const victims: Victim[] = [];
    const sizes = this.sizes;
    const order = this.order;
    const fr = this.frontier;
    let nf = 0;
    if (this.nOrder > 0) fr[nf++] = 0;
    // The best scored function not taken yet (-1: none, or to be found again).
    let bs = -1;
    let freed = 0;
    let left = this.n;
    while (!(freed >= needBytes) && left > 0) {
      if (bs < 0) {
        for (let p = 0; p < ns; p++) if (taken[p] === 0 && (bs < 0 || this.before(score[p]!, scored[p]!, score[bs]!, scored[bs]!))) bs = p;
      }
      let id: number;
      if (nf > 0 && (bs < 0 || this.before(fixed[order[fr[0]!]!]!, order[fr[0]!]!, score[bs]!, scored[bs]!))) {
        // The next of `order`: pop the frontier's first, push its children.
        const top = fr[0]!;
        id = order[top]!;
        const x = fr[--nf]!;
        if (nf > 0) nf = this.frontierPut(0, x, nf);
        const c = 2 * top + 1;
        if (c < this.nOrder) nf = this.frontierPut(nf, c, nf + 1);
        if (c + 1 < this.nOrder) nf = this.frontierPut(nf, c + 1, nf + 1);
      } else {
        id = scored[bs]!;
        taken[bs] = 1;
        bs = -1;
      }
      sizes[victims.length] = sizeBytes[id]!;
      victims.push(this.victims[id]!);
      freed += sizeBytes[id]!;
      left--;
    }
    return victims;
  }

  /**
   * Places heap position `x` in the frontier (a heap of `order` positions by `before`) at slot
   * `at`, sifting up when `at` is a new last slot (`at === n - 1`) and down otherwise; returns n.
   */
  private frontierPut(at: number, x: number, n: number): number {
    const fr = this.frontier;
    const order = this.order;
    const xi = order[x]!;
    if (at === n - 1) {
      while (at > 0) {
        const q = (at - 1) >> 1;
        if (!this.orderBefore(xi, order[fr[q]!]!)) break;
        fr[at] = fr[q]!;
        at = q;
      }
    } else {
      for (;;) {
        const l = 2 * at + 1;
        if (l >= n) break;
        const c = l + 1 < n && this.orderBefore(order[fr[l + 1]!]!, order[fr[l]!]!) ? l + 1 : l;
        if (!this.orderBefore(order[fr[c]!]!, xi)) break;
        fr[at] = fr[c]!;
        at = c;
      }
    }
    fr[at] = x;
    return n;
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

  /** `before` for two functions of `order`, by the score and last use they were put there with. */
  private orderBefore(a: number, b: number): boolean {
    const sa = this.oScore[a]!;
    const sb = this.oScore[b]!;
    if (sa < sb) return true;
    if (sa > sb) return false;
    const la = this.oLast[a]!;
    const lb = this.oLast[b]!;
    if (la < lb) return true;
    if (la > lb) return false;
    return this.keys[a]! < this.keys[b]!;
  }

  /**
   * Puts the functions touched since the last request in their part, then moves to `scored` those
   * of `order` that may have gone idle by `now`. A function is kept in `order` only with a learned
   * gap, a score that is not NaN, and a last call `l >= 0`, and only while `idleAt = fl(l + m)`
   * (m = max(gap, 1)) is above `now + now × 2^-50`: then `fl(now − l) <= m`, so its score is
   * `fixed`. (If `fl(now − l) > m` with `0 <= l <= now`: `now − l > m(1 − 2^-53)` and
   * `m < fl(now − l) <= now`, so `l + m < now(1 + 2^-53)` and `fl(l + m) < now(1 + 2^-51)`, below
   * `fl(now + now × 2^-50)`; `l > now` is never idle.) Moving one early only scores it.
   */
  private settle(now: number): void {
    const thr = now >= 0 ? now + now * SLACK : Infinity;
    const touched = this.touched;
    for (let i = 0; i < this.nTouched; i++) {
      const id = touched[i]!;
      this.dirty[id] = 0;
      if (this.at[id]! < 0) {
        this.leaveOrder(id);
        this.leaveScored(id);
        continue;
      }
      const l0 = this.last[id]!;
      const l = Number.isNaN(l0) ? this.lastUsedAt[id]! : l0;
      const k = l + this.maxGap[id]!;
      if (!Number.isNaN(this.gap[id]!) && !Number.isNaN(this.fixed[id]!) && l >= 0 && k > thr) {
        this.leaveScored(id);
        this.idleAt[id] = k;
        this.oScore[id] = this.fixed[id]!;
        this.oLast[id] = this.lastUsedAt[id]!;
        this.enterOrder(id);
      } else {
        this.leaveOrder(id);
        this.enterScored(id);
      }
    }
    this.nTouched = 0;
    while (this.nOrder > 0 && !(this.idleAt[this.soon[0]!]! > thr)) {
      const id = this.soon[0]!;
      this.leaveOrder(id);
      this.enterScored(id);
    }
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

  /** Into both heaps, or moved in both to its new fixed score and idle time. */
  private enterOrder(id: number): void {
    let p = this.orderAt[id]!;
    let q = this.soonAt[id]!;
    if (p < 0) {
      p = q = this.nOrder++;
      this.order[p] = id;
      this.orderAt[id] = p;
      this.soon[q] = id;
      this.soonAt[id] = q;
    }
    this.orderSift(p);
    this.soonSift(q);
  }

  private leaveOrder(id: number): void {
    const p = this.orderAt[id]!;
    if (p < 0) return;
    const q = this.soonAt[id]!;
    const n = --this.nOrder;
    this.orderAt[id] = -1;
    this.soonAt[id] = -1;
    if (p !== n) {
      const last = this.order[n]!;
      this.order[p] = last;
      this.orderAt[last] = p;
      this.orderSift(p);
    }
    if (q !== n) {
      const last = this.soon[n]!;
      this.soon[q] = last;
      this.soonAt[last] = q;
      this.soonSift(q);
    }
  }

  /** Moves `order[p]` up or down to its place. */
  private orderSift(p: number): void {
    const h = this.order;
    const pos = this.orderAt;
    const id = h[p]!;
    const n = this.nOrder;
    while (p > 0) {
      const q = (p - 1) >> 1;
      const qi = h[q]!;
      if (!this.orderBefore(id, qi)) break;
      h[p] = qi;
      pos[qi] = p;
      p = q;
    }
    for (;;) {
      const l = 2 * p + 1;
      if (l >= n) break;
      let c = l;
      let ci = h[l]!;
      if (l + 1 < n && this.orderBefore(h[l + 1]!, ci)) {
        c = l + 1;
        ci = h[c]!;
      }
      if (!this.orderBefore(ci, id)) break;
      h[p] = ci;
      pos[ci] = p;
      p = c;
    }
    h[p] = id;
    pos[id] = p;
  }

  /** Moves `soon[p]` up or down to its place. */
  private soonSift(p: number): void {
    const h = this.soon;
    const pos = this.soonAt;
    const t = this.idleAt;
    const id = h[p]!;
    const s = t[id]!;
    const n = this.nOrder;
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
