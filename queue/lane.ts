import type { Redis } from 'ioredis';
import { createRedis } from './connection';
import type { Keys } from './keys';
import type { ReplyTo } from './replies';
import { Script } from './scripts';
import { decodeFrame, encodeFrame, type InvokeJob } from './wire';

/**
 * The hot path of a sync invocation: a Redis list per node, its *lane*, with the reliable-queue
 * pattern (a job is moved, atomically, from the lane to the node's active list when taken, and
 * deleted from it in the script that gives its answer).
 *
 * Why not BullMQ here: a BullMQ job costs at least ~7 round trips and ~50 Redis commands (add; the
 * worker's marker wake-up and ~3 move-to-active calls; move-to-finished; an event-stream XADD in
 * each, which a queue cannot turn off). Measured alone, in one process, that is more than the whole
 * warm-call budget (bench/README.md, "The queue path"). A lane job is one LPUSH, inside a script that queues it once (`pushJob`; pipelined with its input
 * bytes, when they travel apart), one blocking BLMOVE that hands the job over as it arrives, and
 * one LREM inside the answer's script: no extra round trip on the call's path. Async invocations,
 * loads and unloads stay on the node's BullMQ queue (they want status, retention and the /queues
 * view; none is on a caller's critical path).
 *
 * A job is a frame (`encodeFrame`): its JSON (id, data), then its inline input bytes. Failover is
 * the same as for BullMQ jobs: the reaper moves a dead node's lane and active list to live nodes
 * (queue/reaper.ts), and the answer's first-wins script keeps a job run twice to one answer.
 */

/** A sync invocation job as it sits in a lane. */
export interface LaneJob {
  id: string;
  name: string;
  data: InvokeJob & { reply: ReplyTo };
  /** The input bytes that travel in the frame (when `data.inputs` has no key of its own). */
  inline?: Buffer;
  /** The frame itself: what the answer's script removes from the active list. */
  frame: Buffer;
  /** When this node took it (local ms). */
  processedOn: number;
}

export function encodeLaneJob(id: string, name: string, data: LaneJob['data'], inline?: Uint8Array): Buffer {
  return encodeFrame({ id, name, data }, inline);
}

export function decodeLaneJob(frame: Buffer, processedOn = Date.now()): LaneJob {
  const { head, blob } = decodeFrame<Pick<LaneJob, 'id' | 'name' | 'data'>>(frame);
  return { ...head, ...(blob ? { inline: blob } : {}), frame, processedOn };
}

// KEYS: lane, active. ARGV: at most this many. Moves the oldest jobs to the active list; returns them.
const TAKE = new Script(`local out = {}
for i = 1, tonumber(ARGV[1]) do
  local f = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not f then break end
  out[i] = f
end
return out`);

// KEYS: lane, active. Moves every job of the active list back to the lane's taking end, oldest
// taken first; returns how many.
const RECLAIM = new Script(`local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT') do n = n + 1 end
return n`);

// KEYS: from, to[, counts, per node]. ARGV: a frame[, node]. Moves it, if it is still in `from`, to
// the front of `to` (taken next); with the counts' keys, counts the move there (`moveJob`'s `count`).
const MOVE = new Script(`if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  if KEYS[3] then
    redis.call('HINCRBY', KEYS[3], 'jobsRerouted', 1)
    redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
  end
  return 1
end
return 0`);

// KEYS: lane, the call's answered marker (queue/replies.ts). ARGV: a frame, the marker's ttl ms.
// Queues the job once: ioredis sends a command again after a reconnect when the dropped connection
// lost its reply, though Redis had run it, and a plain LPUSH run twice queued the job twice (run
// twice, counted twice). The marker, set here ('q') before the push and to the answer's token by
// the answer's script, says the job was queued or answered already; the admission script (queue/admission.ts)
// knows its call by its place instead.
const PUSH = new Script(`if not redis.call('SET', KEYS[2], 'q', 'NX', 'PX', ARGV[2]) then return 0 end
return redis.call('LPUSH', KEYS[1], ARGV[1])`);

/** Queues a job on `nodeId`'s lane once, however often the command is sent (`answered`: the call's `Keys.answered`, kept `ttlMs`). */
export async function pushJob(redis: Redis, k: Keys, nodeId: string, frame: Buffer, answered: string, ttlMs: number): Promise<void> {
  await PUSH.run(redis, [k.lane(nodeId), answered], [frame, Math.max(1, Math.ceil(ttlMs))]);
}

/** Takes a job out of a lane before any node took it; false when a node has it (or it was moved). */
export async function takeBack(redis: Redis, k: Keys, nodeId: string, frame: Buffer): Promise<boolean> {
  return (await redis.lrem(k.lane(nodeId), 1, frame)) === 1;
}

/**
 * Takes a job back from the lane of any of `nodeIds` (nodes that are gone), and with `taken` from
 * their active lists too, in one transaction; false when none holds it there (it was answered,
 * moved to a live node, or is in an active list).
 */
export async function takeBackFromGone(redis: Redis, k: Keys, nodeIds: readonly string[], frame: Buffer, taken: boolean): Promise<boolean> {
  const m = redis.multi();
  for (const id of new Set(nodeIds)) {
    m.lrem(k.lane(id), 1, frame);
    if (taken) m.lrem(k.laneActive(id), 1, frame);
  }
  return ((await m.exec()) ?? []).some(([e, n]) => !e && n === 1);
}

/**
 * Moves one job from a list (a dead node's lane or active list) to the front of `to`'s lane; with
 * `count`, the cluster's `jobsRerouted` and the dead node's moves count it in the same script.
 */
export async function moveJob(redis: Redis, from: string, to: string, frame: Buffer, count?: { cluster: string; moved: string; node: string }): Promise<boolean> {
  return (await MOVE.run(redis, count ? [from, to, count.cluster, count.moved] : [from, to], count ? [frame, count.node] : [frame])) === 1;
}

/** How long one blocking wait lasts before the worker looks again, s. */
const BLOCK_S = 5;

export interface LaneWorkerOptions {
  redisUrl: string;
  keys: Keys;
  nodeId: string;
  /** Jobs run at once. */
  concurrency: number;
  /** Runs a job and gives its answer (which removes it from the active list). */
  handle(job: LaneJob): Promise<unknown>;
  onError(e: unknown): void;
}

/**
 * A node's side of its lane: one blocking connection takes jobs as slots free up, several in one
 * script when they are queued, else the next one with a blocking BLMOVE the moment it arrives.
 * Start it once the node holds its id (`claimNodeId`): it first takes back what an earlier
 * process with the same id left in the active list.
 */
export class LaneWorker {
  private readonly conn: Redis;
  private running = true;
  private free: number;
  private wake: (() => void) | undefined;
  /** Jobs off the node's BullMQ queue waiting for a slot (`slot`). */
  private waiting: Array<() => void> = [];
  private readonly active = new Set<Promise<void>>();
  private readonly loop: Promise<void>;

  constructor(private readonly o: LaneWorkerOptions) {
    this.free = o.concurrency;
    this.conn = createRedis(o.redisUrl, { name: `brulee-lane-${o.nodeId}` });
    this.loop = this.run();
  }

  /**
   * Stops taking jobs, then waits for the running ones (unless `force`). A job taken as the
   * connection closed stays in the active list, where the reaper finds it when the node has left.
   */
  async close(force = false): Promise<void> {
    this.running = false;
    this.wake?.();
    for (const f of this.waiting.splice(0)) f();
    this.conn.disconnect();
    await this.loop;
    if (!force) await Promise.allSettled([...this.active]);
  }

  private async run(): Promise<void> {
    const lane = this.o.keys.lane(this.o.nodeId);
    const active = this.o.keys.laneActive(this.o.nodeId);
    // Jobs an earlier process with this node id took and never answered (it died, and came back
    // before the reaper moved them) run again first: node ids are unique while they live, so
    // nothing else can be running them.
    for (let reclaimed = false; !reclaimed && this.running; ) {
      try {
        await RECLAIM.run(this.conn, [lane, active], []);
        reclaimed = true;
      } catch (e) {
        if (!this.running) return;
        this.o.onError(e);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // Whether the lane is likely empty: then the next job is waited for at once (one command per
    // job when calls come one at a time), else taken with the others queued (one per batch).
    let drained = false;
    while (this.running) {
      if (this.free === 0) {
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      if (this.waiting.length > 0) {
        // The node's other jobs take the free slots first (they run once their turn comes).
        await new Promise((r) => setImmediate(r));
        continue;
      }
      let frames: Buffer[] = [];
      // Slots held for the jobs taken (the node's other jobs share them, `slot`).
      let held = 0;
      try {
        if (!drained) {
          // Reserved before the take, so what it takes has its slots.
          const want = this.free;
          this.free = 0;
          held = want;
          frames = (await TAKE.runBuffer(this.conn, [lane, active], [want])) as Buffer[];
          drained = frames.length < want;
          this.release(want - frames.length);
          held = frames.length;
        }
        if (frames.length === 0 && this.running) {
          // The blocking wait holds no slot; the job it hands over waits for one (in the active list).
          const f = await this.conn.blmoveBuffer(lane, active, 'RIGHT', 'LEFT', BLOCK_S);
          if (f) {
            // Calls running beside this one: others may be queued behind it.
            drained = this.active.size === 0;
            // Closing meanwhile: it stays in the active list (the reaper moves it once the node has left).
            if (!(await this.acquire(true))) break;
            held = 1;
            frames = [f];
          }
        }
      } catch (e) {
        this.release(held);
        if (!this.running) break;
        this.o.onError(e);
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const now = Date.now();
      for (const f of frames) {
        let job: LaneJob;
        try {
          job = decodeLaneJob(f, now);
        } catch (e) {
          // Not a job (written by something else): dropped, and said why; the worker goes on.
          this.o.onError(new Error(`a lane entry that is not a job was dropped (${e instanceof Error ? e.message : String(e)})`));
          void this.conn.lrem(active, 1, f).catch(() => undefined);
          this.release(1);
          continue;
        }
        this.start(job);
      }
    }
  }

  /** Runs a job taken from the lane in the slot reserved for it. */
  private start(job: LaneJob): void {
    const p: Promise<void> = this.o
      .handle(job)
      .then(
        () => undefined,
        (e: unknown) => this.o.onError(e),
      )
      .finally(() => {
        this.active.delete(p);
        this.release(1);
      });
    this.active.add(p);
  }

  /** Slots free now (none while a take is under way: it holds them until it knows what it took). */
  get freeSlots(): number {
    return this.free;
  }

  /**
   * Runs `what` in one of the node's slots: the node's other jobs (async calls, loads, unloads, off
   * its BullMQ queue) share the `concurrency` slots with the lane's, so the node runs no more jobs
   * at once than it says.
   */
  async slot<T>(what: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await what();
    } finally {
      this.release(1);
    }
  }

  /** Takes a slot, waiting for one if none is free; with `untilClosed`, false if the worker closes first. */
  private async acquire(untilClosed = false): Promise<boolean> {
    while (this.free === 0) {
      if (untilClosed && !this.running) return false;
      await new Promise<void>((r) => this.waiting.push(r));
    }
    this.free--;
    return true;
  }

  /** Gives `n` slots back, and wakes whoever waits for one. */
  private release(n: number): void {
    if (n <= 0) return;
    this.free += n;
    // Jobs that wait for a slot go first (woken first, they take it first), so a steady stream of
    // sync calls cannot starve the node's other jobs.
    for (const f of this.waiting.splice(0)) f();
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
