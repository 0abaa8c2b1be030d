import type { Redis } from 'ioredis';

/**
 * Items of work held to the end of this turn of the event loop (a `setImmediate`) and done
 * together (issue 10 §3): under load, each call's Redis work (its admission, its counts) was a
 * script and a socket write of its own; held to the turn's end, the calls of one turn share one.
 *
 * `add` resolves to the item's own result once its batch has run (`run`'s results, in order; a
 * `run` that throws or rejects fails each of its items). The first item of a turn may go alone at
 * once instead (`atOnce`: its caller knows nothing else is coming, a lone caller, and holding it
 * would gain nothing). Items added while a batch waits join it, whatever `atOnce` says.
 */
export class TurnBatch<T, R> {
  private waiting: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> | undefined;

  /**
   * `run(items)` does a batch's work, in order, and gives each item's result (or a promise of
   * them). `connection`, when given, gives the Redis connection it writes on: the batches of one
   * connection that end in one turn leave in one socket write (`atTurnEnd`).
   */
  constructor(
    private readonly run: (items: T[]) => R[] | Promise<R[]>,
    private readonly connection?: () => Redis,
  ) {}

  add(item: T, atOnce: boolean): Promise<R> {
    if (!this.waiting) {
      if (atOnce) return this.runNow([item]).then((rs) => rs[0]!);
      this.waiting = [];
      atTurnEnd(this.connection?.(), () => this.flush());
    }
    const waiting = this.waiting;
    return new Promise((resolve, reject) => waiting.push({ item, resolve, reject }));
  }

  private runNow(items: T[]): Promise<R[]> {
    try {
      return Promise.resolve(this.run(items));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private flush(): void {
    const batch = this.waiting!;
    this.waiting = undefined;
    const settle = (rs: R[]) => batch.forEach((w, i) => w.resolve(rs[i]!));
    const fail = (e: unknown) => batch.forEach((w) => w.reject(e));
    let out: R[] | Promise<R[]>;
    try {
      out = this.run(batch.map((w) => w.item));
    } catch (e) {
      fail(e);
      return;
    }
    // A batch done at once (its writes handed to the socket) settles its items at once too.
    if (Array.isArray(out)) settle(out);
    else out.then(settle, fail);
  }
}

/** The flushes of each connection's batches waiting for this turn's end (`atTurnEnd`). */
const turnEnds = new WeakMap<Redis, Array<() => void>>();

/**
 * Runs `flush` at the end of this turn (a `setImmediate`), with the other flushes of batches on
 * `connection` that end in the same turn, its socket corked around them all: their commands leave
 * in one write. In ROLE=all a turn's admissions (the gateway's) and counts (the node's) share the
 * process's one connection; each was a `write` syscall of its own, and a read event of Redis's.
 */
function atTurnEnd(connection: Redis | undefined, flush: () => void): void {
  if (!connection) {
    setImmediate(flush);
    return;
  }
  const flushes = turnEnds.get(connection);
  if (flushes) {
    flushes.push(flush);
    return;
  }
  const these = [flush];
  turnEnds.set(connection, these);
  setImmediate(() => {
    turnEnds.delete(connection);
    const stream = these.length > 1 && connection.status === 'ready' ? connection.stream : undefined;
    stream?.cork();
    try {
      for (const f of these) f();
    } finally {
      stream?.uncork();
    }
  });
}
