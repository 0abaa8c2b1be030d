import { Redis, type RedisOptions } from 'ioredis';
import { BruleeError } from '../errors';

/**
 * The one place that builds Redis connections. BullMQ workers and QueueEvents block on Redis,
 * so every connection here takes `maxRetriesPerRequest: null` (bullmq `redis-connection.ts`);
 * request/response commands fail fast instead with `enableOfflineQueue: false` where asked.
 */
export interface ConnectionOptions {
  /** Fail commands at once while disconnected (for the HTTP path: 503, not a hang). @default false */
  failFast?: boolean;
  /** Name shown in `CLIENT LIST`. */
  name?: string;
}

export function createRedis(url: string, opts: ConnectionOptions = {}): Redis {
  const options: RedisOptions = {
    maxRetriesPerRequest: opts.failFast ? 1 : null,
    enableOfflineQueue: !opts.failFast,
    connectionName: opts.name ?? 'brulee',
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  };
  const redis = new Redis(url, options);
  // Connection errors are reported through command failures and /healthz; an unhandled
  // 'error' event would crash the process.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Is this error Redis being unreachable, or refusing work for now (not a bug)? ioredis reports the
 * first as a closed or unwritable connection, a refused connect, or too many retries of one
 * command; Redis the second with an error code of its own: out of memory under maxmemory, a
 * read-only replica (a failover), a replica without its master, still loading its data, busy
 * with a script.
 */
export function isRedisConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return (
    e.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|enableOfflineQueue|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Reached the max retries/.test(e.message) ||
    /^(OOM|READONLY|MASTERDOWN|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN) /.test(e.message)
  );
}

/** Wraps a Redis failure as a 503 with a message that says what to check. */
export function redisUnavailable(e: unknown): BruleeError {
  const msg = e instanceof Error ? e.message : String(e);
  return new BruleeError('REDIS_UNAVAILABLE', `Redis is not answering (${msg}); check REDIS_URL and that redis-server runs`);
}

/** Resolves when `redis` answers PING, or rejects after `timeoutMs`. */
export async function waitForRedis(redis: Redis, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await redis.ping();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw redisUnavailable(e);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Runs a Redis command (or a few) again while Redis is unreachable, with backoff (`baseMs`,
 * doubling), up to `attempts` times: a restart or a failover of a second must not fail the work
 * that was done meanwhile. Other errors are thrown at once.
 */
export async function withRedisRetry<T>(f: () => Promise<T>, opts: { attempts?: number; baseMs?: number } = {}): Promise<T> {
  const attempts = opts.attempts ?? 6;
  const baseMs = opts.baseMs ?? 100;
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= attempts || !isRedisConnectionError(e)) throw e;
      await new Promise((r) => setTimeout(r, baseMs * 2 ** (i - 1)));
    }
  }
}

/**
 * Closes a connection: QUIT when Redis answers (pending replies arrive first), else at once (a
 * QUIT would wait for a server that is not there).
 */
export async function closeRedis(redis: Redis | undefined): Promise<void> {
  if (!redis || redis.status === 'end') return;
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  await redis.quit().catch(() => redis.disconnect());
}
