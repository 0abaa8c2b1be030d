/** An empty key list to return where nothing is due (no allocation per check). */
export const NONE: readonly string[] = Object.freeze([]);

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
