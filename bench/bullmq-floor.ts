/**
 * A second baseline for the queue path: BullMQ alone, with no brulee code. One process adds a job
 * (the job options brulee uses), a Worker on the same queue runs the model on a raw onnxruntime
 * session and answers on a reply stream that one blocking XREAD loop reads, as brulee's gateway
 * does; no HTTP, no routing, no stats, no signature checks. What brulee adds on top of this is
 * brulee's; this is what BullMQ's add -> fetch -> finish costs on this machine.
 */
import { Queue, Worker } from 'bullmq';
import type * as ort from 'onnxruntime-node';
import { createRedis } from '../queue/connection';
import { latencies, median, pct, throughput } from './support';

export interface FloorRow {
  warmP50: number;
  warmP99: number;
  tput: number;
  /** Redis commands per call (INFO commandstats, inside scripts counted). */
  cmdTotal: number;
}

export async function commandCount(url: string): Promise<number> {
  const r = createRedis(url);
  try {
    let n = 0;
    for (const line of (await r.info('commandstats')).split('\n')) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
      if (m && m[1] !== 'info') n += Number(m[2]);
    }
    return n;
  } finally {
    r.disconnect();
  }
}

/** A running floor: `call()` is one job added, run and answered. */
export interface Floor {
  call(): Promise<void>;
  stop(): Promise<void>;
}

export async function startFloor(redisUrl: string, session: ort.InferenceSession, feeds: () => Record<string, ort.Tensor>, concurrency: number): Promise<Floor> {
  const conn = createRedis(redisUrl);
  const workerConn = createRedis(redisUrl);
  const replies = createRedis(redisUrl);
  const stream = 'floor:replies';
  const queue = new Queue('floor', { connection: conn, prefix: 'floor', streams: { events: { maxLen: 100 } } });
  const worker = new Worker(
    'floor',
    async (job) => {
      const out = await session.run(feeds());
      const y = Object.values(out)[0]!.data as Float32Array;
      await workerConn.xadd(stream, 'MAXLEN', '~', 10000, '*', 'id', job.id!, 'a', Buffer.from(y.buffer, y.byteOffset, y.byteLength));
    },
    { connection: workerConn, prefix: 'floor', concurrency },
  );
  await worker.waitUntilReady();
  const waiters = new Map<string, () => void>();
  let running = true;
  let lastId = '$';
  const loop = (async () => {
    while (running) {
      const res = (await replies.xreadBuffer('COUNT', 1000, 'BLOCK', 200, 'STREAMS', stream, lastId).catch(() => null)) as Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
      for (const [entryId, fields] of res?.[0]?.[1] ?? []) {
        lastId = entryId.toString();
        const id = fields[1]!.toString();
        waiters.get(id)?.();
        waiters.delete(id);
      }
    }
  })();
  let seq = 0;
  return {
    async call() {
      const id = `j${seq++}`;
      const done = new Promise<void>((r) => waiters.set(id, r));
      await queue.add('run', {}, { jobId: id, removeOnComplete: true, removeOnFail: true, attempts: 1 });
      await done;
    },
    async stop() {
      running = false;
      await loop;
      await worker.close();
      await queue.close();
      for (const c of [conn, workerConn, replies]) c.disconnect();
    },
  };
}

export async function bullmqFloor(redisUrl: string, session: ort.InferenceSession, feeds: () => Record<string, ort.Tensor>, o: { n: number; count: number; concurrency: number; seconds: number }): Promise<FloorRow> {
  const f = await startFloor(redisUrl, session, feeds, o.concurrency);
  try {
    const warm = await latencies(o.n, f.call);
    const before = await commandCount(redisUrl);
    for (let i = 0; i < o.count; i++) await f.call();
    const cmdTotal = ((await commandCount(redisUrl)) - before) / o.count;
    const tput = await throughput(o.concurrency, o.seconds, f.call);
    return { warmP50: median(warm), warmP99: pct(warm, 99), tput, cmdTotal };
  } finally {
    await f.stop();
  }
}
