/**
 * Per-key state found by candidate position, for policies that look up every candidate of every
 * request (a speed device; it changes no decision): callers pass much the same candidates in much
 * the same order, so what was found for the key at position i last time is used again while that
 * position holds the same key (a string comparison, usually of the very same string, instead of a
 * hash lookup). Only for state objects that stay the key's until the policy `clear`s the memo (a
 * key forgotten for good: its state deleted, and made anew if the key comes back).
 */
export class PositionMemo<V extends object> {
  private readonly keys: (string | undefined)[] = [];
  private readonly found: (V | undefined)[] = [];

  constructor(private readonly lookup: (key: string) => V | undefined) {}

  /** The state of `key`, the candidate at position `i` (what `lookup(key)` gives). */
  at(i: number, key: string): V | undefined {
    if (this.keys[i] === key) return this.found[i];
    const v = this.lookup(key);
    if (v !== undefined) {
      this.keys[i] = key;
      this.found[i] = v;
    }
    return v;
  }

  /** Forgets what was found (a key's state was deleted). */
  clear(): void {
    this.keys.length = 0;
    this.found.length = 0;
  }
}
