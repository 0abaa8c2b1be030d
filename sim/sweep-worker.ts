import { parentPort } from 'node:worker_threads';
import { runOne, type SweepWork } from './sweep';

/**
 * A worker of `sweepParallel`: sent the work once, it takes runs from the shared queue until none
 * is left, posting each result, then exits.
 */
parentPort!.once('message', ({ trace, models, opts, order, next }: SweepWork) => {
  for (let k = Atomics.add(next, 0, 1); k < order.length; k = Atomics.add(next, 0, 1)) {
    parentPort!.postMessage({ index: order[k]!.index, result: runOne(trace, models, opts, order[k]!) });
  }
  parentPort!.close();
});
