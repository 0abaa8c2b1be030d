import type { Redis } from 'ioredis';

/**
 * The cluster's one clock: Redis `TIME`. Deadlines and queue times are set by a gateway and
 * checked by a node, often on other machines whose clocks disagree; both read this clock instead
 * of their own `Date.now()`. No round trip per call: each process learns its offset to Redis's
 * clock (half the round trip taken off) and refreshes it now and then; heartbeats refresh it too.
 */
export class RedisClock {
  /** Redis time minus local time, ms. */
  private offsetMs = 0;
  private bestRttMs = Infinity;
  private syncedAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly redis: Redis) {}

  /** Now on Redis's clock (epoch ms), estimated from the local clock and the last offset. */
  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** A time on Redis's clock as this process's `Date.now()` would show it. */
  toLocal(redisMs: number): number {
    return redisMs - this.offsetMs;
  }

  /** A local `Date.now()` time on Redis's clock. */
  fromLocal(localMs: number): number {
    return localMs + this.offsetMs;
  }

  /** Reads Redis `TIME` once and updates the offset (kept if a faster round trip measured it recently). */
  async sync(): Promise<void> {
    const t0 = Date.now();
    const [s, us] = await this.redis.time();
    const t1 = Date.now();
    this.observe(Number(s) * 1000 + Math.floor(Number(us) / 1000), t0, t1);
  }

  /**
   * Takes a Redis time read between local times `t0` and `t1` (a heartbeat's answer, or `TIME`).
   * The sample with the shortest round trip is the most precise; one older than a minute is
   * replaced anyway, so a drifting clock is followed.
   */
  observe(redisMs: number, t0: number, t1: number): void {
    const rtt = t1 - t0;
    if (rtt <= this.bestRttMs || t1 - this.syncedAt > 60_000) {
      this.offsetMs = redisMs - (t0 + rtt / 2);
      this.bestRttMs = rtt;
      this.syncedAt = t1;
    }
  }

  /** Syncs now, then every `everyMs`. Failures keep the last offset (Redis away: nothing runs anyway). */
  async start(everyMs = 10_000): Promise<void> {
    await this.sync().catch(() => undefined);
    this.timer = setInterval(() => void this.sync().catch(() => undefined), everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
