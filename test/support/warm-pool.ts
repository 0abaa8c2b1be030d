import type { EvictionPolicy, EvictionRequest, Victim } from '../../runtime/policies';
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

/** A policy that records every hook call and evicts in the order `pick` gives (default: candidates' order). */
export function recorder(pick: (req: EvictionRequest) => Victim[] = (r) => r.candidates.map((c) => ({ key: c.key, reason: `chose ${c.key}` }))) {
  const calls: unknown[] = [];
  const requests: EvictionRequest[] = [];
  const policy: EvictionPolicy = {
    name: 'recorder',
    selectVictims: (req) => {
      requests.push(req);
      return pick(req);
    },
    onLoad: (e, now) => void calls.push(['load', e, now]),
    onAccess: (e, now) => void calls.push(['access', e, now]),
    onEvict: (key, now) => void calls.push(['evict', key, now]),
    forget: (key, cause) => void calls.push(cause === undefined ? ['forget', key] : ['forget', key, cause]),
  };
  return { policy, calls, requests };
}
