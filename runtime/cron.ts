import cron from 'node-cron';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Keys } from '../queue/keys';
import { POPULARITY_WINDOW_MS, refreshPopularity } from './popularity';

/**
 * The popularity refresh on `expression` (node-cron, seconds allowed). It fires in every replica;
 * `refreshPopularity` takes a Redis lock, so it runs once per cluster per tick.
 */
export function startPopularityCron(expression: string, redis: Redis, keys: Keys, log: Logger): { stop(): void } {
  const task = cron.schedule(expression, async () => {
    try {
      const share = await refreshPopularity(redis, keys, Date.now(), POPULARITY_WINDOW_MS);
      if (share) log.debug({ functions: Object.keys(share).length }, 'popularity refreshed');
    } catch (e) {
      log.warn({ err: e }, 'popularity refresh failed');
    }
  });
  return { stop: () => void task.stop() };
}
