import type { ModelSpec } from '../../runtime/warm-pool';

/** A model for the warm pool's unit tests: key = function name, 10 ms load, 1 ms exec unless `extra` says otherwise. */
export const spec = (key: string, sizeBytes: number, extra: Partial<ModelSpec> = {}): ModelSpec => ({ key, fn: key, sizeBytes, loadMs: 10, execMs: 1, ...extra });

/** A promise and its resolve/reject, to hold a load open until the test lets it finish. */
export function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
