import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BruleeError } from '../errors';
import type { Keys } from '../queue/keys';
import { deleteOwn, extendOwn, LUA_NOW, Script } from '../queue/scripts';

/**
 * Model bytes are shared by content (sha256) between functions, and registrations of different
 * names (different locks) and deletions run at once. A deletion removes the bytes no function's
 * record names; a registration names its bytes only once it is saved, seconds after it stored them
 * (profiling comes between). So a registration marks the bytes it stores first (`storing`, before
 * its first put), and a deletion, before it reads which bytes the records name, takes each sha it
 * may remove (`removing`) only if no registration marks it, in one script: either the registration
 * marked first, and the deletion leaves the bytes, or the deletion took them first, and the
 * registration waits for the removal to end before it stores them again. What the deletion reads
 * after taking them includes every registration saved before, and no other can start storing them
 * meanwhile.
 */

/**
 * How long a registration's name lock and its marks hold unless renewed: a registration renews
 * both every third of it while it runs (`renew`), so one whose process died (killed mid-way, its
 * host gone) holds its name and its bytes this long at most, and a retry of the name registers
 * then. Profiling runs in a child process, so the registering process's event loop is free to renew.
 * The default of `RegistryOptions.leaseMs` (a process's is `REGISTRATION_LEASE_MS` when set; tests shorten it).
 */
export const REGISTRATION_LEASE_MS = 15_000;
/** How long a registration waits for a deletion removing its bytes before it gives up (CONFLICT). */
const MARK_WAIT_MS = 60_000;

/** Runs `renew` every third of a lease of `leaseMs` until the returned function is called (failures wait for the next turn). */
export function keepAlive(renew: () => Promise<unknown>, leaseMs: number): () => void {
  const timer = setInterval(() => void renew().catch(() => undefined), leaseMs / 3);
  timer.unref();
  return () => clearInterval(timer);
}

// KEYS: the sha's storing set, its removing key. ARGV: token, hold ms.
// 1: marked; 0: a deletion is removing the bytes now (wait, then mark again).
const MARK = new Script(`${LUA_NOW}
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`);

// KEYS: the sha's storing set. ARGV: token, hold ms. Holds a mark that is still there `hold` longer.
const RENEW = new Script(`${LUA_NOW}
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 0 then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`);

// KEYS: the sha's storing set, its removing key. ARGV: token, hold ms.
// 1: taken (remove the bytes if no record names them, then `let go`); 0: a registration stores them, or another deletion removes them.
const TAKE = new Script(`${LUA_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`);


export class ModelBytes {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    /**
     * The registration's lease, which its marks on the bytes it stores hold for; a deletion's hold on
     * the bytes it removes is the same lease, renewed the same way while it removes (a large model
     * from a slow S3 may take longer than a lease): one whose process died holds them this long at most.
     */
    private readonly leaseMs = REGISTRATION_LEASE_MS,
  ) {}

  /**
   * Marks `sha256` as being stored by the registration `token` (before its first put): a deletion
   * leaves those bytes until `unmark`. Waits while a deletion removes them (it ends in a moment).
   */
  async mark(sha256: string, token: string): Promise<void> {
    const until = Date.now() + MARK_WAIT_MS;
    while ((await MARK.run(this.redis, [this.keys.storing(sha256), this.keys.removing(sha256)], [token, this.leaseMs])) !== 1) {
      if (Date.now() > until) throw new BruleeError('CONFLICT', `the bytes ${sha256.slice(0, 12)}… are being removed by a deletion that does not end; retry later`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The registration `token` still stores these bytes: its marks hold a lease longer. */
  async renew(sha256s: Iterable<string>, token: string): Promise<void> {
    for (const sha of sha256s) await RENEW.run(this.redis, [this.keys.storing(sha)], [token, this.leaseMs]);
  }

  /** The registration `token` no longer stores these bytes (saved: its record names them; or failed). */
  async unmark(sha256s: Iterable<string>, token: string): Promise<void> {
    for (const sha of sha256s) await this.redis.zrem(this.keys.storing(sha), token);
  }

  /**
   * Removes those of `sha256s` that no function names and no registration is storing:
   * `named()` reads what the records name (after the bytes were taken), `remove` removes one.
   * Resolves to the shas removed; one whose removal failed is left, and told to `failed`. Its hold on each sha is a lease renewed while it runs, and
   * checked (and renewed) just before each removal: one that lapsed (this process stalled past
   * it, or Redis was away) may have let a registration store and name those bytes meanwhile, so
   * they are left. (A stall between that check and the store's own removal is not fenced: a
   * store has no conditional delete to hand a token to.)
   */
  async removeUnused(sha256s: readonly string[], named: () => Promise<Set<string>>, remove: (sha256: string) => Promise<void>, failed: (sha256: string, e: unknown) => void = () => undefined): Promise<string[]> {
    const token = randomUUID();
    const taken: string[] = [];
    const stop = keepAlive(async () => {
      for (const sha of taken) await extendOwn(this.redis, this.keys.removing(sha), token, this.leaseMs);
    }, this.leaseMs);
    try {
      for (const sha of new Set(sha256s)) {
        if ((await TAKE.run(this.redis, [this.keys.storing(sha), this.keys.removing(sha)], [token, this.leaseMs])) === 1) taken.push(sha);
      }
      if (taken.length === 0) return [];
      const needed = await named();
      const removed: string[] = [];
      for (const sha of taken) {
        if (needed.has(sha)) continue;
        if ((await extendOwn(this.redis, this.keys.removing(sha), token, this.leaseMs)) !== 1) continue;
        // One that fails (the store away) stays, unnamed; the others are still removed.
        try {
          await remove(sha);
        } catch (e) {
          failed(sha, e);
          continue;
        }
        removed.push(sha);
      }
      return removed;
    } finally {
      stop();
      for (const sha of taken) await deleteOwn(this.redis, this.keys.removing(sha), token).catch(() => undefined);
    }
  }
}
