import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Queue } from 'bullmq';
import { Hono } from 'hono';

export const QUEUES_PATH = '/queues';

/**
 * bull-board, read-only, for the BullMQ view operators know: one queue per live node. The list
 * of queues follows the live nodes (checked at most every 5 s, on requests).
 */
export function queuesApp(queues: () => Promise<Queue[]>): Hono {
  const adapter = new HonoAdapter(serveStatic).setBasePath(QUEUES_PATH);
  const bullBoard = createBullBoard({ queues: [], serverAdapter: adapter, options: { uiConfig: { boardTitle: 'brulee queues' } } });
  let shown = '';
  let checkedAt = 0;
  const app = new Hono();
  app.use('*', async (c, next) => {
    if (Date.now() - checkedAt > 5_000) {
      checkedAt = Date.now();
      const qs = await queues();
      const names = qs.map((q) => q.name).sort().join(',');
      if (names !== shown) {
        shown = names;
        bullBoard.replaceQueues(qs.map((q) => new BullMQAdapter(q, { readOnlyMode: true })));
      }
    }
    await next();
    // The UI links a web font from the internet; without it the page works offline, in system fonts.
    if (c.res.headers.get('content-type')?.startsWith('text/html')) {
      const html = (await c.res.text()).replace(/<link[^>]+fonts\.(googleapis|gstatic)\.com[^>]*>/g, '');
      c.res = new Response(html, { status: c.res.status, headers: c.res.headers });
    }
  });
  // bull-board's Hono app comes from hono's CommonJS build, whose default error handler is not the
  // ESM one brulee's app is built with, so Hono wraps its routes in that handler: it would print
  // every error (a missing static file reaching the app's 404) to stderr and answer a bare 500.
  // Rethrown, errors reach brulee's one error mapping (functions/http/errors.ts) like any route's.
  const routes = adapter.registerPlugin();
  routes.onError((e) => {
    throw e;
  });
  app.route('/', routes);
  return app;
}
