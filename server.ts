import { serve } from '@hono/node-server';
import { join } from 'node:path';
import pino from 'pino';
import { createBrulee } from './brulee';
import { startGrpcServer } from './functions/grpc/server';
import { ConfigError, loadConfig, redactedUrl, type Config } from './config';
import { isBruleeError } from './errors';
import { ensureRedis, type PrivateRedis } from './queue/redis-server';

/** `npm start`: one brulee process (ROLE=all by default), with Redis found or started. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`brulee: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const log = pino({ level: config.logLevel });

  let privateRedis: PrivateRedis | undefined;
  try {
    const r = await ensureRedis({ redisUrl: config.redisUrl, dataDir: config.dataDir });
    config.redisUrl = r.url;
    privateRedis = r.private;
    if (privateRedis) log.info({ url: r.url, dir: join(config.dataDir, 'redis') }, 'no Redis on 127.0.0.1:6379: started a private redis-server (append-only file)');
  } catch (e) {
    console.error(`brulee: no REDIS_URL and nothing on 127.0.0.1:6379, and a private redis-server could not start: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }

  // Never leave a private redis-server behind, however this process ends.
  process.on('exit', () => privateRedis?.kill());

  const b = await createBrulee(config, { log, chargeProcess: true }).catch((e: unknown) => {
    if (!isBruleeError(e) || e.code !== 'REDIS_UNAVAILABLE') throw e;
    // What to fix, and where: not a stack trace.
    console.error(`brulee: ${e.message} (REDIS_URL ${redactedUrl(config.redisUrl!)})`);
    process.exit(1);
  });
  // The KServe v2 gRPC service, beside the HTTP one, wherever calls are taken (not on ROLE=worker).
  const grpc =
    config.role === 'worker'
      ? undefined
      : await startGrpcServer({ dataPlane: b.dataPlane, authorize: b.authorize, log, host: config.host, port: config.grpcPort, maxRequestBytes: config.maxRequestBytes }).catch(
          async (e: unknown) => {
            console.error(`brulee: ${e instanceof Error ? e.message : String(e)}; set GRPC_PORT to a free port`);
            await b.close();
            process.exit(1);
          },
        );
  const server = serve({
    fetch: b.app.fetch,
    port: config.port,
    hostname: config.host,
    // A client that sends its headers or body too slowly gets a 408, and its connection is closed.
    serverOptions: {
      requestTimeout: config.requestReadTimeoutMs,
      headersTimeout: Math.min(config.headersReadTimeoutMs, config.requestReadTimeoutMs),
      connectionsCheckingInterval: 1000,
    },
  }, (info) => {
    const url = `http://127.0.0.1:${info.port}`;
    log.info({ url, grpc: grpc?.port, role: config.role, node: b.node?.id, budget: config.memoryBudget, policy: config.evictionPolicy, redis: redactedUrl(config.redisUrl!) }, 'brulee is ready');
    const open = config.hostDefaulted
      ? `  listening on 127.0.0.1 only, since no key is set: set API_KEY (changes) and INVOKE_API_KEY (reads, invocations) to serve other hosts on 0.0.0.0, or HOST=0.0.0.0 to open it as it is\n`
      : '';
    console.log(`\nbrulee is ready on ${url} (dashboard ${url}/, API docs ${url}/docs)\n${open}  register: curl -X PUT --data-binary @model.onnx -H 'Content-Type: application/octet-stream' ${url}/functions/mymodel\n  invoke:   curl -X POST -H 'Content-Type: application/json' -d '{"inputs": {"x": {"type": "float32", "dims": [1, 4], "data": [1, 2, 3, 4]}}}' ${url}/functions/mymodel/invoke\n  stats:    curl ${url}/stats\n`);
  });


  server.on('error', (e: NodeJS.ErrnoException) => {
    const hint = e.code === 'EADDRINUSE' ? `: port ${config.port} is taken; set PORT to a free one` : '';
    console.error(`brulee: the HTTP server failed (${e.message})${hint}`);
    void b.close().finally(() => process.exit(1));
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const drainMs = config.drainTimeoutMs;
    const t0 = Date.now();
    log.info({ signal, drainMs }, 'draining: new requests get 503; accepted ones finish');
    // Whatever happens below (Redis gone, a step stuck), the process ends: the close steps are
    // bounded, and this is the backstop.
    setTimeout(() => {
      log.error({ ms: Date.now() - t0 }, 'the drain did not end in time; exiting');
      process.exit(1);
    }, drainMs + 30_000).unref();
    // Until everything accepted is done, the app answers new requests (on open keep-alive
    // connections or new ones) 503 SHUTTING_DOWN with Connection: close: a client always gets an
    // answer. Closing the listener first would close idle keep-alive connections at once, and a
    // request already on its way on one would meet a reset.
    await Promise.all([grpc?.close(drainMs), b.close({ drainMs })]);
    server.close();
    if ('closeAllConnections' in server) server.closeAllConnections();
    await privateRedis?.stop();
    log.info({ ms: Date.now() - t0 }, 'drained; exiting');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // Run by an npm script (`npm start`, whose sh execs node, so npm's SIGTERM/SIGINT reach us):
  // if npm itself dies without forwarding (SIGKILL), our parent changes; stop rather than linger.
  if (process.env.npm_lifecycle_event) {
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) void stop('parent exited');
    }, 1000).unref();
  }
}

main().catch((e: unknown) => {
  console.error('brulee: failed to start:', e);
  process.exit(1);
});
