import { DeadlineHeap, NONE } from './heap';
import { Selection } from './select';
import type { EvictionPolicy } from './types';

/**
 * Fixed keep-alive (the default of most serverless platforms, e.g. 10 minutes): a model idle
 * longer than `ttlMs` is dropped even without memory pressure; under pressure, the entry closest
 * to expiry (least recently used) goes first.
 */
export function ttl(ttlMs = 600_000): EvictionPolicy {
  if (!(ttlMs > 0)) throw new RangeError(`ttl: ttlMs must be > 0, got ${ttlMs}`);
  // For `expiryCandidates`: last use of each loaded model, and a heap of their expiry times.
  const lastUse = new Map<string, number>();
  const ends = new DeadlineHeap();
  const used = (key: string, t: number) => {
    lastUse.set(key, t);
    ends.push(t + ttlMs, key);
  };
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'ttl',
    onLoad(e) {
      used(e.key, e.lastUsedAt);
    },
    onAccess(e) {
      used(e.key, e.lastUsedAt);
    },
    onEvict(key) {
      lastUse.delete(key);
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
      return entries
        .filter((e) => now - e.lastUsedAt >= ttlMs)
        .map((e) => ({ key: e.key, reason: `keep-alive of ${ttlMs} ms expired` }));
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    nextCheckAt(): number {
      // expiryCandidates names nothing while the earliest expiry is more than 1 ms away (1 ms more
      // of margin for rounding), and only hooks push new expiries.
      return ends.peekTime() - 2;
    },
    expiryCandidates(now: number): readonly string[] {
      // Loaded models idle for about the keep-alive or longer (1 ms of slack for rounding:
      // `expired` decides exactly). Those still loaded after this check are looked at again.
      if (ends.peekTime() > now + 1) return NONE;
      const out: string[] = [];
      while (ends.peekTime() <= now + 1) {
        const t = ends.peekTime();
        const key = ends.peekKey();
        ends.pop();
        const l = lastUse.get(key);
        if (l !== undefined && l + ttlMs === t) out.push(key);
      }
      for (const key of out) ends.push(lastUse.get(key)! + ttlMs, key);
      return out;
    },
  });
}
