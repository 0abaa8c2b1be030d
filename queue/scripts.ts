import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run by its sha (EVALSHA), sent in full only when Redis does not know it yet (after
 * a restart, say). Scripts are how a read-then-write is atomic on one Redis, without a lock.
 */
export class Script {
  readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }

  /**
   * `run` with the script's text every time (EVAL), never by its sha: for a write nobody waits for
   * whose order against the connection's later commands matters. EVALSHA's fallback on NOSCRIPT
   * (after a restart) would send it again only once the error is back, after those.
   */
  async runInOrder(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>): Promise<unknown> {
    return redis.eval(this.lua, keys.length, ...keys, ...args);
  }

  /** `run`, with bulk strings in the reply as Buffers. */
  async runBuffer(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>): Promise<unknown> {
    try {
      return await redis.callBuffer('EVALSHA', this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return redis.callBuffer('EVAL', this.lua, keys.length, ...keys, ...args);
    }
  }
}

/** Redis `TIME` in epoch ms, inside a script (Redis 5+ replicates a script's effects, so this is allowed). */
export const LUA_NOW = `local __t = redis.call('TIME'); local now = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)`;
