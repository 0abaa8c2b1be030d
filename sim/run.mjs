// `npm run sim` and `brulee sim`: sim/cli.ts compiled by esbuild into .build/ (../bundle.mjs),
// then run by plain node; its sweep's worker threads run a bundle of their own (sim/sweep.ts
// `startWorker`). Through tsx the same code pays tsx's start and its per-file transform (keepNames):
// ~6% more CPU for a sweep of every policy (sim/README.md, Speed).
import { pathToFileURL } from 'node:url';
import { bundled } from '../bundle.mjs';

// The sweep workers' bundle too, once here: each worker thread would otherwise build its own when stale.
const [out] = await Promise.all([bundled('sim/cli.ts'), bundled('sim/sweep-worker.ts')]);
if (out) await import(pathToFileURL(out).href);
else {
  // Where .build/ cannot be written, the same CLI through tsx's transform.
  const { register } = await import('tsx/esm/api');
  register();
  await import('./cli.ts');
}
