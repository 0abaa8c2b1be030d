// `npm run sim`: sim/cli.ts compiled by esbuild (tsx's own) into .build/ (bundle.mjs: reused while
// up to date), then run by plain node, as `npm start` runs the server; its sweep's worker threads
// run their own bundle (sim/sweep.ts, `workerBundle`). `node --import tsx sim/cli.ts` runs the same
// code, but pays tsx's start and per-file transform in this thread and in each worker (~0.5 s of a
// sweep's wall here).
import { pathToFileURL } from 'node:url';
import { bundled } from '../bundle.mjs';

const out = await bundled('sim/cli.ts');
if (out) await import(pathToFileURL(out).href);
else {
  // Where .build/ cannot be written, the same simulator through tsx's transform.
  const { register } = await import('tsx/esm/api');
  register();
  await import('./cli.ts');
}
