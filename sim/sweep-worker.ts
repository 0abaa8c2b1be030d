import { parentPort } from 'node:worker_threads';
import { SweepQueue, takeRuns, type SweepWork } from './sweep';

/**
 * A worker of `sweepParallel`: sent the work once, it takes runs from the shared queue until none
 * is left, posting each result (and the runs it covers), then exits.
 */
parentPort!.once('message', ({ trace, models, opts, order, state }: SweepWork) => {
  // Results are reused (sweepParallel passes the threads nothing that watches a run).
  takeRuns(trace, models, opts, new SweepQueue(order, state, true, opts), (d) => parentPort!.postMessage(d));
  parentPort!.close();
});
