import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Hono } from 'hono';

const require = createRequire(import.meta.url);
const dist = dirname(require.resolve('swagger-ui-dist/package.json'));

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>brulee API</title>
  <link rel="icon" href="/ui/favicon.svg">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>`;

const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null, persistAuthorization: true });`;

/** API docs at /docs: Swagger UI from node_modules (no CDN) reading GET /openapi.json. */
export function docsApp(): Hono {
  const app = new Hono();
  const bundle = readFileSync(join(dist, 'swagger-ui-bundle.js'));
  const css = readFileSync(join(dist, 'swagger-ui.css'));
  app.get('/docs', (c) => c.html(PAGE));
  app.get('/docs/', (c) => c.html(PAGE));
  app.get('/docs/init.js', (c) => c.body(INIT, 200, { 'content-type': 'text/javascript; charset=utf-8' }));
  app.get('/docs/swagger-ui-bundle.js', (c) => c.body(new Uint8Array(bundle), 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'max-age=3600' }));
  app.get('/docs/swagger-ui.css', (c) => c.body(new Uint8Array(css), 200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'max-age=3600' }));
  return app;
}
