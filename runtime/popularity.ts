import type { Redis } from 'ioredis';
import type { Keys } from '../queue/keys';

/**
 * Popularity: each function's share of recent invocations, as an exponentially decayed rate.
 * Nodes count invocations per function into one Redis hash; a cron job (once per cluster, under a
 * Redis lock) turns the counts since its last run into rates, and the rates into shares.
 */

/**
 * Popularity remembers about this long: an invocation's weight falls by e^-1 per window. The
 * simulator uses the same window, so `cremebrulee` means the same thing in both.
 */
export const POPULARITY_WINDOW_MS = 10 * 60_000;

export interface RateState {
  /** Invocations per second, decayed. */
  rates: Record<string, number>;
  /** When the rates were last updated (epoch ms). */
  at: number;
}

/**
 * New decayed rates (pure): the old rate weighs exp(-dt / windowMs), the rate of the interval
 * just ended the rest. Functions whose rate decays below `floor` are dropped.
 */
export function decayRates(prev: RateState | undefined, counts: Record<string, number>, now: number, windowMs: number, floor = 1e-6): RateState {
  const dt = prev ? Math.max(1, now - prev.at) : windowMs;
  const keep = prev ? Math.exp(-dt / windowMs) : 0;
  const rates: Record<string, number> = {};
  const names = new Set([...Object.keys(prev?.rates ?? {}), ...Object.keys(counts)]);
  for (const n of names) {
    const r = keep * (prev?.rates[n] ?? 0) + (1 - keep) * (((counts[n] ?? 0) * 1000) / dt);
    if (r >= floor) rates[n] = r;
  }
  return { rates, at: now };
}

/** Rates to shares of the total (pure). */
export function shares(rates: Record<string, number>): Record<string, number> {
  const total = Object.values(rates).reduce((a, b) => a + b, 0);
  const out: Record<string, number> = {};
  if (total > 0) for (const [n, r] of Object.entries(rates)) out[n] = r / total;
  return out;
}

/**
 * One refresh, if this replica wins the cluster-wide lock. Returns the new shares, or undefined
 * when another replica holds the lock.
 */
export async function refreshPopularity(redis: Redis, k: Keys, now: number, windowMs: number, lockMs = 900): Promise<Record<string, number> | undefined> {
  const got = await redis.set(k.popularityLock, String(now), 'PX', lockMs, 'NX');
  if (!got) return undefined;
  // Read and reset the counters atomically, so no invocation is counted twice or lost.
  const res = await redis.multi().hgetall(k.popularityCounts).del(k.popularityCounts).get(k.popularityRates).smembers(k.functions).exec();
  const counts = Object.fromEntries(Object.entries((res?.[0]?.[1] ?? {}) as Record<string, string>).map(([n, c]) => [n, Number(c)]));
  const prevRaw = res?.[2]?.[1] as string | null;
  const next = decayRates(prevRaw ? (JSON.parse(prevRaw) as RateState) : undefined, counts, now, windowMs);
  // A deleted function's rate goes with it, so it does not come back into the shares.
  const registered = new Set((res?.[3]?.[1] ?? []) as string[]);
  for (const n of Object.keys(next.rates)) if (!registered.has(n)) delete next.rates[n];
  const share = shares(next.rates);
  const m = redis.multi().set(k.popularityRates, JSON.stringify(next)).del(k.popularity);
  if (Object.keys(share).length > 0) m.hset(k.popularity, share);
  await m.publish(k.control, JSON.stringify({ type: 'popularity' })).exec();
  return share;
}

export async function readPopularity(redis: Redis, k: Keys): Promise<Map<string, number>> {
  const raw = await redis.hgetall(k.popularity);
  return new Map(Object.entries(raw).map(([n, s]) => [n, Number(s)]));
}
