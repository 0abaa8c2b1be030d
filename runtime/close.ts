import type { Logger } from 'pino';

/** One step of shutting something down, and what to do when it takes too long. */
export interface CloseStep {
  name: string;
  run: () => unknown;
  /** Called when `run` has not settled in time (drop a connection instead of quitting it). */
  force?: () => unknown;
  /** This step's own time limit, ms (a step that waits for work in flight gets the drain's). */
  timeoutMs?: number;
}

/**
 * Runs close steps in order, each bounded in time: a step that fails is logged and the next one
 * runs; a step that hangs (a Redis command waiting for a server that is gone) is forced, logged
 * and left behind. So a close always ends, in at most the sum of the steps' limits.
 */
export async function closeInOrder(steps: readonly CloseStep[], log: Logger, defaultTimeoutMs = 3000): Promise<void> {
  for (const s of steps) {
    const ms = s.timeoutMs ?? defaultTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    });
    try {
      const r = await Promise.race([Promise.resolve().then(s.run).then(() => 'done' as const), timedOut]);
      if (r === 'timeout') {
        log.warn({ step: s.name, ms }, 'close step did not finish in time; forcing it');
        // Forcing is bounded too: what still hangs after it is left behind.
        const forced = Promise.resolve().then(s.force).catch((e: unknown) => log.warn({ step: s.name, err: e }, 'forcing a close step failed'));
        await Promise.race([forced, new Promise((r) => setTimeout(r, 1000).unref())]);
      }
    } catch (e) {
      log.warn({ step: s.name, err: e }, 'close step failed');
    } finally {
      clearTimeout(timer);
    }
  }
}
