import { parentPort, workerData } from 'node:worker_threads';
import { runOne, type SweepJob, type SweepOptions } from './sweep';
import type { SimModel, Trace } from './trace';

/** A worker of `sweepParallel`: runs the jobs it is sent over the trace it was started with. */
const { trace, models, opts } = workerData as { trace: Trace; models: SimModel[]; opts: SweepOptions };
parentPort!.on('message', (job: SweepJob | null) => {
  if (job === null) {
    parentPort!.close();
    return;
  }
  parentPort!.postMessage({ index: job.index, result: runOne(trace, models, opts, job) });
});
