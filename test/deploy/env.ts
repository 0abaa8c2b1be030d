import { expect } from 'vitest';
import { CONFIG_VARIABLES, loadConfig, type Config } from '../../config';

/**
 * A deployment's environment for one brulee process is checked the way the process would take it:
 * every variable is one brulee reads (a misspelt one would be silently ignored), and the whole
 * environment passes `loadConfig`, the start-up parse (a bad value would stop the process).
 */
export function checkBruleeEnv(where: string, env: Record<string, string>): Config {
  const unknown = Object.keys(env).filter((k) => !CONFIG_VARIABLES.includes(k));
  expect(unknown, `${where}: variables brulee does not read`).toEqual([]);
  try {
    return loadConfig(env);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

const BINARY: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12, '': 1 };

/** A Kubernetes memory quantity (`2240Mi`, `1Gi`, `512M`, `1073741824`) in bytes. */
export function quantityBytes(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$/.exec(String(q));
  if (!m) throw new Error(`not a memory quantity: ${q}`);
  return Number(m[1]) * BINARY[m[2]!]!;
}

/** Docker's memory sizes (`2496m`, `2g`): binary units. */
export function dockerBytes(q: string | number): number {
  const m = /^(\d+)([bkmg]?)$/i.exec(String(q));
  if (!m) throw new Error(`not a docker memory size: ${q}`);
  return Number(m[1]) * ({ '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]!;
}

/**
 * Container memory for a worker (README, "Deploy"): the cache budget, plus the fixed RSS of an idle
 * worker (182 MiB measured with bench/idle-rss.bench.ts, rounded up), plus headroom for inference
 * activations, calls in flight and GC slack.
 */
export const WORKER_FIXED_OVERHEAD = 192 * 1024 ** 2;
export const WORKER_HEADROOM = 256 * 1024 ** 2;
export const workerMemory = (budget: number) => ({ request: budget + WORKER_FIXED_OVERHEAD, limit: budget + WORKER_FIXED_OVERHEAD + WORKER_HEADROOM });

/** The drain after SIGTERM (server.ts: accepted calls get this long to finish). */
export const DRAIN_S = 30;
