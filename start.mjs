// `npm start`: server.ts compiled by esbuild (tsx's own) into .build/ (bundle.mjs: reused while
// up to date), then run by plain node. `node --import tsx server.ts` runs the same code, but
// through tsx's per-file transform, which wraps every function and class in a `__name` call
// (keepNames) that a loaded server pays on each call (bench/README.md, "The queue path").
import { pathToFileURL } from 'node:url';
import { bundled } from './bundle.mjs';

const out = await bundled('server.ts');
if (out) await import(pathToFileURL(out).href);
else {
  // Where .build/ cannot be written, the same server through tsx's transform, as before.
  const { register } = await import('tsx/esm/api');
  register();
  await import('./server.ts');
}
