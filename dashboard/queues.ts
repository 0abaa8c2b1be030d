import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Queue } from 'bullmq';
import { Hono } from 'hono';
import { BruleeError } from '../errors';

export const QUEUES_PATH = '/queues';

/**
 * bull-board, read-only, for the BullMQ view operators know: one queue per live node. The list
 * of queues follows the live nodes (checked at most every 5 s, on requests).
 */
export function queuesApp(queues: () => Promise<Queue[]>): Hono {
  const adapter = new HonoAdapter(serveStatic).setBasePath(QUEUES_PATH);
  const board = createBullBoard({ queues: [], serverAdapter: adapter, options: { uiConfig: { boardTitle: 'brulee queues' } } });
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
        board.replaceQueues(qs.map((q) => new BullMQAdapter(q, { readOnlyMode: true })));
      }
    }
    await next();
    // bull-board's Hono answers errors (a missing static file reaching the app's 404) as a bare 500.
    if (c.error instanceof BruleeError) c.res = c.json({ error: c.error.toJSON() }, c.error.status as 404);
    // The UI links a web font from the internet; without it the page works offline, in system fonts.
    if (c.res.headers.get('content-type')?.startsWith('text/html')) {
      const html = (await c.res.text()).replace(/<link[^>]+fonts\.(googleapis|gstatic)\.com[^>]*>/g, '');
      c.res = new Response(html, { status: c.res.status, headers: c.res.headers });
    }
  });
  app.route('/', adapter.registerPlugin());
  return app;
}
