import type { Redis } from 'ioredis';

/**
 * How long a write is held at most, ms. Node counts a timer from the event loop's time at the start
 * of the current turn: a 0 ms timer set at the end of a cold call's turn (its run and answer, ~1 ms)
 * was already due, and in a trace of 21 cold calls it fired before the server slept in half of
 * them, sending the heartbeat (0.3 ms) ahead of the client. 2 ms is at least ~1 ms after the answer.
 */
export const HOLD_MS = 2;

/**
 * Writes that a call's answer does not need (the heartbeat that publishes a model it loaded), sent
 * on a connection just after the answer rather than just before it.
 *
 * Why: on a small VM a socket write to redis-server wakes it on the writer's core (a sync wake-up
 * over loopback), where it runs at once, ahead of the rest of the call. `perf sched` of a tiny
 * model's cold call: the heartbeat sent just after the answer kept the client, woken onto the same
 * core, waiting ~0.2-0.3 ms (the counts script before the answer costs ~0.35 ms the same way, but
 * must go first: see the end of this comment).
 *
 * A held write goes out once the process has had time to sleep (`HOLD_MS`: the client it answered
 * runs first), or, in order, just before any other command this process sends
 * on the same connection (every command, pipelines' and scripts' too, goes through `sendCommand`),
 * or when its owner calls `flush` (a node does before it holds its thread with a load or a run).
 * So every later command of this process on the connection (a next call's routing read, a `/stats`
 * read) still reaches Redis after it, as when it was sent first; another process may see it up to
 * ~2 ms later than before. So only writes no other
 * process must see as soon as the answer is out are held: a call's counts are not (they give back
 * its admission place, and a read on another connection could pass them: RuntimeNode.countLater).
 */
export class HeldWrites {
  private held: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;

  private constructor(redis: Redis) {
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
      if (this.held.length > 0) this.flush();
      return send(...args);
    }) as Redis['sendCommand'];
  }

  private static readonly byConnection = new WeakMap<Redis, HeldWrites>();

  /** The held writes of `redis` (one per connection, so that each flushes before any command on it). */
  static on(redis: Redis): HeldWrites {
    let h = HeldWrites.byConnection.get(redis);
    if (!h) HeldWrites.byConnection.set(redis, (h = new HeldWrites(redis)));
    return h;
  }

  /**
   * Holds `write` (which must send its commands on this connection when called, before its first
   * await) until the next flush, at most `HOLD_MS`; resolves to its result.
   */
  hold<T>(write: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.held.push(() => {
        try {
          write().then(resolve, reject);
        } catch (e) {
          reject(e);
        }
      });
      this.timer ??= setTimeout(() => this.flush(), HOLD_MS);
    });
  }

  /** Sends every held write now, in the order they were held. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const held = this.held;
    this.held = [];
    for (const w of held) w();
  }
}
