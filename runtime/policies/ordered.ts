/**
 * The loaded models kept in eviction order by a policy whose scores change only at its hooks
 * (`lru`, `gdsf`), so that a request whose candidates are exactly the loaded models (the
 * simulator's `selectAmongLoaded` hint, sim/hints.ts) is answered from the front of the order
 * instead of by scoring every candidate. The order is `Selection.lowestScored`'s to the last tie:
 * score, then last use, then key (scores must not be NaN). Nothing here reads a clock.
 */
import { grown } from './heap';
import type { EntryFacts, NumberedEntry, Victim } from './types';

/** One loaded model, as its last hook left it. */
export interface OrderedNode {
  readonly key: string;
  /** Its model's number once the order takes numbers (`useNumbers`), else -1. */
  readonly idx: number;
  /** Its score (lowest goes first). */
  score: number;
  /** Its entry's `lastUsedAt` at the hook (the tie-break after the score). */
  lastUsedAt: number;
  /** Its entry at the hook (size, and the facts its reason reads). */
  entry: EntryFacts;
}

/** a before b in `Selection.lowestScored`'s order (equal infinities fall through, as there). */
export function nodeBefore(a: OrderedNode, b: OrderedNode): boolean {
  if (a.score < b.score) return true;
  if (a.score > b.score) return false;
  if (a.lastUsedAt < b.lastUsedAt) return true;
  if (a.lastUsedAt > b.lastUsedAt) return false;
  return a.key < b.key;
}

interface ListNode extends OrderedNode {
  prev: ListNode | null;
  next: ListNode | null;
  linked: boolean;
}

/**
 * A doubly linked list in eviction order, for scores that only grow at a hook (`lru`: the score is
 * the last use): a node whose score is set is put back from the tail, usually at the tail itself.
 */
export class OrderedList {
  private head: ListNode | null = null;
  private tail: ListNode | null = null;
  private readonly nodes = new Map<string, ListNode>();
  /** The nodes by model number, once entries carry it (`useNumbers`); null until then. */
  private byNumber: (ListNode | undefined)[] | null = null;

  /**
   * From now on (before any `set`) every entry carries the caller's model number (`idx`): nodes
   * are found by it, not by key, `removeNumber` takes it, and victims carry it (`NumberedVictim`).
   */
  useNumbers(): void {
    this.byNumber = [];
  }

  /** `entry` was loaded or used: its score is now `score`, its last use `entry.lastUsedAt`. */
  set(entry: EntryFacts, score: number): void {
    const byNumber = this.byNumber;
    let n = byNumber !== null ? byNumber[(entry as NumberedEntry).idx] : this.nodes.get(entry.key);
    if (n === undefined) {
      const idx = byNumber !== null ? (entry as NumberedEntry).idx : -1;
      n = { key: entry.key, idx, score, lastUsedAt: entry.lastUsedAt, entry, prev: null, next: null, linked: false };
      this.nodes.set(entry.key, n);
      if (byNumber !== null) byNumber[idx] = n;
    } else {
      if (n.linked) this.unlink(n);
      n.score = score;
      n.lastUsedAt = entry.lastUsedAt;
      n.entry = entry;
    }
    // From the tail back to the last node before n.
    let at = this.tail;
    while (at !== null && nodeBefore(n, at)) at = at.prev;
    n.prev = at;
    n.next = at === null ? this.head : at.next;
    if (n.next !== null) n.next.prev = n;
    else this.tail = n;
    if (at !== null) at.next = n;
    else this.head = n;
    n.linked = true;
  }

  /** `key` left the cache (no-op if it is not in the order). */
  remove(key: string): void {
    const n = this.nodes.get(key);
    if (n !== undefined && n.linked) this.unlink(n);
  }

  /** Model number i left the cache (after `useNumbers`; no-op if it is not in the order). */
  removeNumber(i: number): void {
    const n = this.byNumber![i];
    if (n !== undefined && n.linked) this.unlink(n);
  }

  /** `key` is gone for good: its node is dropped too. */
  forget(key: string): void {
    this.remove(key);
    const n = this.nodes.get(key);
    if (n !== undefined && this.byNumber !== null) this.byNumber[n.idx] = undefined;
    this.nodes.delete(key);
  }

  /** The first nodes in order until their sizes cover `needBytes` (all of them if they do not). */
  lowest(needBytes: number, reason: ((e: EntryFacts) => string) | null): Victim[] {
    const victims: Victim[] = [];
    let freed = 0;
    for (let n = this.head; n !== null && !(freed >= needBytes); n = n.next) {
      victims.push(victimOf(n, reason));
      freed += n.entry.sizeBytes;
    }
    return victims;
  }

  private unlink(n: ListNode): void {
    if (n.prev !== null) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next !== null) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = null;
    n.next = null;
    n.linked = false;
  }
}

/** The victim naming node n (with its model's number when the order takes numbers). */
function victimOf(n: OrderedNode, reason: ((e: EntryFacts) => string) | null): Victim {
  const why = reason === null ? '' : reason(n.entry);
  return n.idx >= 0 ? ({ key: n.key, reason: why, idx: n.idx } as Victim) : { key: n.key, reason: why };
}

interface HeapNode extends OrderedNode {
  /** Its index in the heap, -1 when not in it. */
  pos: number;
}

/** A binary min-heap in eviction order, for scores that may move either way at a hook (`gdsf`). */
export class OrderedHeap {
  private readonly heap: HeapNode[] = [];
  private readonly nodes = new Map<string, HeapNode>();
  /** The nodes by model number, once entries carry it (`useNumbers`); null until then. */
  private byNumber: (HeapNode | undefined)[] | null = null;
  /** `lowest`'s walk down the heap. */
  private readonly front = new HeapFront((a, b) => nodeBefore(this.heap[a]!, this.heap[b]!));

  get size(): number {
    return this.heap.length;
  }

  /** As `OrderedList.useNumbers`. */
  useNumbers(): void {
    this.byNumber = [];
  }

  /** `entry` was loaded or used: its score is now `score`, its last use `entry.lastUsedAt`. */
  set(entry: EntryFacts, score: number): void {
    const byNumber = this.byNumber;
    let n = byNumber !== null ? byNumber[(entry as NumberedEntry).idx] : this.nodes.get(entry.key);
    if (n === undefined) {
      const idx = byNumber !== null ? (entry as NumberedEntry).idx : -1;
      n = { key: entry.key, idx, score, lastUsedAt: entry.lastUsedAt, entry, pos: -1 };
      this.nodes.set(entry.key, n);
      if (byNumber !== null) byNumber[idx] = n;
    } else {
      n.score = score;
      n.lastUsedAt = entry.lastUsedAt;
      n.entry = entry;
    }
    if (n.pos < 0) {
      n.pos = this.heap.length;
      this.heap.push(n);
    }
    this.up(n.pos);
    this.down(n.pos);
  }

  /** `key` left the cache (no-op if it is not in the heap). */
  remove(key: string): void {
    this.removeNode(this.nodes.get(key));
  }

  /** Model number i left the cache (after `useNumbers`; no-op if it is not in the heap). */
  removeNumber(i: number): void {
    this.removeNode(this.byNumber![i]);
  }

  private removeNode(n: HeapNode | undefined): void {
    if (n === undefined || n.pos < 0) return;
    const h = this.heap;
    const at = n.pos;
    const last = h.pop()!;
    n.pos = -1;
    if (last !== n) {
      h[at] = last;
      last.pos = at;
      this.up(at);
      this.down(last.pos);
    }
  }

  /** `key` is gone for good: its node is dropped too. */
  forget(key: string): void {
    this.remove(key);
    const n = this.nodes.get(key);
    if (n !== undefined && this.byNumber !== null) this.byNumber[n.idx] = undefined;
    this.nodes.delete(key);
  }

  /**
   * The nodes in order until their sizes cover `needBytes` (all of them if they do not): a walk
   * down the heap that looks only at the children of nodes taken, O(victims × log victims).
   */
  lowest(needBytes: number, reason: ((e: EntryFacts) => string) | null): Victim[] {
    const victims: Victim[] = [];
    const h = this.heap;
    const walk = this.front;
    walk.start(h.length);
    let freed = 0;
    for (let at = walk.next(); at >= 0 && !(freed >= needBytes); at = walk.next()) {
      const n = h[at]!;
      victims.push(victimOf(n, reason));
      freed += n.entry.sizeBytes;
    }
    return victims;
  }

  private up(at: number): void {
    const h = this.heap;
    const n = h[at]!;
    while (at > 0) {
      const p = (at - 1) >> 1;
      if (!nodeBefore(n, h[p]!)) break;
      h[at] = h[p]!;
      h[at]!.pos = at;
      at = p;
    }
    h[at] = n;
    n.pos = at;
  }

  private down(at: number): void {
    const h = this.heap;
    const n = h[at]!;
    const m = h.length;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= m) break;
      const r = l + 1;
      const c = r < m && nodeBefore(h[r]!, h[l]!) ? r : l;
      if (!nodeBefore(h[c]!, n)) break;
      h[at] = h[c]!;
      h[at]!.pos = at;
      at = c;
    }
    h[at] = n;
    n.pos = at;
  }
}

/**
 * The places of a binary heap in its order, from the top, without taking anything out of it: a
 * walk that looks only at the children of the places already given (O(k log k) for the first k).
 * `before(a, b)`: the item at place a comes before the one at place b.
 */
export class HeapFront {
  /**
   * The places still to give whose parents have been given, itself a heap by `before`: `fr[0..m)`.
   * (A typed array and a count: emptying a plain array by `length = 0` at every walk's start was
   * ~2% of a sweep's CPU, in belady, gdsf and cremebrulee-oracle.)
   */
  private fr = new Int32Array(16);
  private m = 0;
  private n = 0;

  constructor(private readonly before: (a: number, b: number) => boolean) {}

  /** Starts a walk of a heap of `n` items. */
  start(n: number): void {
    this.n = n;
    this.m = 0;
    if (n > 0) this.fr[this.m++] = 0;
  }

  /** The next place in order, or -1 when every one has been given. */
  next(): number {
    if (this.m === 0) return -1;
    // Each place given adds at most its two children and takes itself out: room for one more.
    if (this.fr.length < this.m + 2) this.fr = grown(this.fr, 2 * this.fr.length);
    const fr = this.fr;
    const top = fr[0]!;
    const m = --this.m;
    if (m > 0) {
      const last = fr[m]!;
      let at = 0;
      for (;;) {
        const l = 2 * at + 1;
        if (l >= m) break;
        const c = l + 1 < m && this.before(fr[l + 1]!, fr[l]!) ? l + 1 : l;
        if (!this.before(fr[c]!, last)) break;
        fr[at] = fr[c]!;
        at = c;
      }
      fr[at] = last;
    }
    for (let ch = 2 * top + 1; ch <= 2 * top + 2 && ch < this.n; ch++) {
      let at = this.m++;
      while (at > 0) {
        const q = (at - 1) >> 1;
        if (!this.before(ch, fr[q]!)) break;
        fr[at] = fr[q]!;
        at = q;
      }
      fr[at] = ch;
    }
    return top;
  }
}
