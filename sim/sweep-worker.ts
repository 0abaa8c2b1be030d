import { parentPort } from 'node:worker_threads';
import { SweepQueue, takeRuns, type SweepWork } from './sweep';

/**
 * A worker of `sweepParallel`: sent the work once, it takes runs from the shared queue until none
 * is left, posting each result (and the runs it covers), then exits.
 */
parentPort!.once('message', ({ trace, models, opts, order, state, reuse }: SweepWork) => {
  takeRuns(trace, models, opts, new SweepQueue(order, state, reuse, opts), (d) => parentPort!.postMessage(d));
  parentPort!.close();
});
