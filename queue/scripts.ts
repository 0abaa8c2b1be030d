import { createHash } from 'node:crypto';
import { ReplyError, type Redis } from 'ioredis';

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
   * `run` for a write nobody waits for whose order against the connection's later commands
   * matters (`applyWrites`): EVALSHA's fallback on NOSCRIPT would send the script again only once
   * the error is back, after those later commands. So the script is made known on each connection
   * before its first EVALSHA there: a SCRIPT LOAD written just ahead of it (not waited for: Redis
   * runs a connection's commands in order), once per socket. A connection not ready (its commands
   * wait in ioredis's offline queue for a socket not yet made) sends EVAL, as does the rare
   * NOSCRIPT on a connection that had it (SCRIPT FLUSH, or a command resent after a reconnect to a
   * restarted Redis), where the order is lost for that one write but the write is not.
   */
  async runInOrder(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>): Promise<unknown> {
    const socket = redis.status === 'ready' ? redis.stream : undefined;
    if (socket === undefined || this.refusedOn.has(socket)) return redis.eval(this.lua, keys.length, ...keys, ...args);
    if (!this.loadedOn.has(socket)) {
      // Its failure shows as the EVALSHA's (NOSCRIPT, or the connection's error). Refused by Redis
      // itself (an ACL without SCRIPT LOAD), it is not tried again on this socket: EVAL from then on,
      // one command a call and in order, rather than a LOAD, an EVALSHA and an EVAL each time.
      redis.script('LOAD', this.lua).catch((e: unknown) => {
        if (e instanceof ReplyError) this.refusedOn.add(socket);
      });
      this.loadedOn.add(socket);
    }
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      this.loadedOn.delete(socket);
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }

  /** The sockets this script was loaded on (`runInOrder`), each gone with its socket. */
  private readonly loadedOn = new WeakSet<object>();
  /** The sockets whose Redis refused SCRIPT LOAD (`runInOrder`): EVAL there. */
  private readonly refusedOn = new WeakSet<object>();

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

/**
 * Deletes a key only while it still holds `token` (a lock or a claim taken with SET NX PX): one
 * that expired and was taken by someone else since is left to them. KEYS: the key; ARGV: token.
 */
const DELETE_OWN = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`);

/** `DELETE_OWN`: releases `key` if it is still `token`'s. */
export function deleteOwn(redis: Redis, key: string, token: string): Promise<unknown> {
  return DELETE_OWN.run(redis, [key], [token]);
}

/** Extends a key's expiry to ARGV[2] ms only while it still holds `token` (a lease kept alive). KEYS: the key; ARGV: token, ms. */
const EXTEND_OWN = new Script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`);

/** `EXTEND_OWN`: keeps `key` `ms` longer if it is still `token`'s. */
export function extendOwn(redis: Redis, key: string, token: string, ms: number): Promise<unknown> {
  return EXTEND_OWN.run(redis, [key], [token, ms]);
}
