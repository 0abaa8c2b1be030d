/**
 * An HTTP client as its own process, for tests whose server is on another "host" (a network
 * namespace the test process cannot reach): reads a plan as JSON on stdin, prints the answers as
 * JSON on stdout. Every wait is bounded.
 *
 *   {"base": "http://198.18.0.4:8080", "steps": [
 *     {"waitReady": {"nodes": 2, "timeoutMs": 60000}},
 *     {"requests": [{"method": "PUT", "path": "/functions/a", "bodyB64": "..."}], "concurrency": 4}
 *   ]}
 *
 * Output: one entry per step: `{"ready": true, "waitedMs": n}` or `[{"status", "body"}]` (body
 * parsed as JSON when it is JSON).
 */
import { text } from 'node:stream/consumers';

interface Req { method: string; path: string; json?: unknown; bodyB64?: string }
type Step = { waitReady: { nodes: number; timeoutMs: number } } | { requests: Req[]; concurrency?: number };

const plan = JSON.parse(await text(process.stdin)) as { base: string; steps: Step[] };
const out: unknown[] = [];

async function call(r: Req): Promise<{ status: number; body: unknown }> {
  const init: RequestInit = { method: r.method, signal: AbortSignal.timeout(60_000) };
  if (r.json !== undefined) init.body = JSON.stringify(r.json), init.headers = { 'content-type': 'application/json' };
  if (r.bodyB64 !== undefined) init.body = Buffer.from(r.bodyB64, 'base64'), init.headers = { 'content-type': 'application/octet-stream' };
  try {
    const res = await fetch(plan.base + r.path, init);
    const t = await res.text();
    let body: unknown = t;
    try {
      body = JSON.parse(t);
    } catch {
      // not JSON: kept as text
    }
    return { status: res.status, body };
  } catch (e) {
    return { status: 0, body: String(e) };
  }
}

for (const step of plan.steps) {
  if ('waitReady' in step) {
    const t0 = Date.now();
    let ready = false;
    // Bounded: until the deadline, one probe every 200 ms.
    while (!ready && Date.now() - t0 < step.waitReady.timeoutMs) {
      const r = await call({ method: 'GET', path: '/stats' });
      ready = r.status === 200 && ((r.body as { nodes?: unknown[] }).nodes?.length ?? 0) >= step.waitReady.nodes;
      if (!ready) await new Promise((res) => setTimeout(res, 200));
    }
    out.push({ ready, waitedMs: Date.now() - t0 });
    if (!ready) break;
  } else {
    const results: Array<{ status: number; body: unknown }> = new Array(step.requests.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.max(1, step.concurrency ?? 1) }, async () => {
        while (next < step.requests.length) {
          const i = next++;
          results[i] = await call(step.requests[i]!);
        }
      }),
    );
    out.push(results);
  }
}
process.stdout.write(JSON.stringify(out));
