import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';
import { createRedis, waitForRedis } from './connection';

export interface PrivateRedis {
  url: string;
  port: number;
  /** The redis-server's process id (INFO server's `process_id` where it answers). */
  pid: number;
  stop(): Promise<void>;
  /** Signals the server to stop, synchronously (for a process 'exit' handler). */
  kill(): void;
}

export const INSTALL_REDIS_HINT =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) or set REDIS_URL to a running Redis.';

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Does something accept TCP connections on host:port? */
export function answers(host: string, port: number, timeoutMs = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('error', () => done(false));
    sock.connect(port, host, () => done(true));
  });
}

/**
 * Starts a private redis-server bound to 127.0.0.1. With `persist`, it keeps an append-only file
 * under `dir`, so what was registered survives a restart, and holds `dir` while it runs (`lockDir`).
 */
export async function startRedisServer(opts: { dir: string; port?: number; persist: boolean; /** Where each attempt's port comes from, without `port`. @default freePort */ pickPort?: () => Promise<number> }): Promise<PrivateRedis> {
  mkdirSync(opts.dir, { recursive: true });
  const lock = opts.persist ? await lockDir(opts.dir) : undefined;
  // A port picked here can be taken by another process before redis-server binds it (it cannot
  // bind port 0 and say which it got): then it exits, and another port is picked.
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await startOn(opts.port ?? (await (opts.pickPort ?? freePort)()), opts);
      if (!lock) return r;
      lock.holds(r.url);
      return { ...r, kill: () => (r.kill(), lock.free()), stop: () => r.stop().finally(() => lock.free()) };
    } catch (e) {
      if (opts.port !== undefined || attempt === 5 || e instanceof Error && e.message === INSTALL_REDIS_HINT) {
        lock?.free();
        throw e;
      }
    }
  }
}

const LOCK = 'brulee.lock';

/**
 * Takes `dir` for this process's redis-server, with an append-only file there: two redis-servers
 * on one directory (two `npm start`s of one DATA_DIR at once) both append to its files, and one's
 * rewrite of them leaves the other's writes out of the files it names. The lock is a directory
 * (made atomically) that holds its process's id, and the URL of its Redis once it answers; a start
 * that finds it waits for that URL and is refused while a Redis of `dir` answers there and the
 * process lives. A Redis that outlived its process (a brulee killed with -9: its redis-server
 * runs on) is shut down (it writes its file) and replaced; a lock whose Redis is gone is taken over.
 */
async function lockDir(dir: string): Promise<{ holds(url: string): void; free(): void }> {
  const lock = join(dir, LOCK);
  const file = (name: string) => join(lock, name);
  const read = (name: string) => {
    try {
      return readFileSync(file(name), 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
  // Not known yet (the lock just made): alive.
  const ownerAlive = () => {
    const pid = Number(read('pid'));
    return !(pid > 0) || alive(pid);
  };
  for (let takeovers = 0; ; ) {
    try {
      mkdirSync(lock);
      const token = randomUUID();
      writeFileSync(file('pid'), String(process.pid));
      writeFileSync(file('token'), token);
      return {
        holds: (url) => writeFileSync(file('url'), url),
        // Only its own (a lock taken over since, its Redis gone, is the other start's).
        free: () => void (read('token') === token && rmSync(lock, { recursive: true, force: true })),
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // Its Redis starting (at most a few tries of 10 s): its URL comes, or the lock goes, or its process.
    const deadline = Date.now() + 30_000;
    while (existsSync(lock) && read('url') === undefined && ownerAlive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(lock)) continue;
    const url = read('url');
    if (url && (await redisOf(url, dir))) {
      if (ownerAlive()) {
        throw new Error(`${dir} holds the data of another process's private redis-server, running at ${url}: give each brulee process its own DATA_DIR, or set REDIS_URL=${url} to share that Redis`);
      }
      await shutDown(url, dir);
    }
    if (++takeovers > 3) throw new Error(`${dir}/${LOCK} cannot be taken; remove it if no brulee runs on this DATA_DIR`);
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Whether process `pid` lives (one of another user's too). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Shuts down the Redis at `url` (with its data in `dir`), waiting until it no longer answers. */
async function shutDown(url: string, dir: string): Promise<void> {
  const c = createRedis(url, { name: 'brulee-probe', failFast: true });
  try {
    await waitForRedis(c, 1000);
    await c.call('SHUTDOWN').catch(() => undefined);
  } catch {
    // Gone meanwhile.
  } finally {
    c.disconnect();
  }
  const deadline = Date.now() + 10_000;
  while (await redisOf(url, dir)) {
    if (Date.now() > deadline) throw new Error(`the redis-server at ${url}, left by a brulee that is gone, does not shut down; stop it (redis-cli -u ${url} shutdown)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether a Redis answers at `url` with its data in `dir`. */
async function redisOf(url: string, dir: string): Promise<boolean> {
  const probe = createRedis(url, { name: 'brulee-probe', failFast: true });
  try {
    await waitForRedis(probe, 1000);
    const [, at] = (await probe.config('GET', 'dir')) as [string, string];
    return at === realpathSync(dir);
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

async function startOn(port: number, opts: { dir: string; persist: boolean }): Promise<PrivateRedis> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', opts.dir, '--save', '', '--daemonize', 'no', '--logfile', 'redis.log'];
  args.push('--appendonly', opts.persist ? 'yes' : 'no');
  const child: ChildProcess = spawn('redis-server', args, { stdio: 'ignore' });
  const exited = new Promise<Error>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ENOENT' ? new Error(INSTALL_REDIS_HINT) : e));
    child.once('exit', (code) => resolve(new Error(`redis-server exited with code ${code}; see ${opts.dir}/redis.log`)));
  });
  const url = `redis://127.0.0.1:${port}`;
  const probe = createRedis(url, { name: 'brulee-probe' });
  try {
    // Ready, and the server answering is this one (not another process's Redis on that port).
    const ready = waitForRedis(probe, 10_000).then(async () => {
      if (!(await probe.info('server')).includes(`process_id:${child.pid}\r\n`)) throw new Error(`port ${port} is another Redis's`);
    });
    const failed = await Promise.race([ready.then(() => undefined), exited]);
    if (failed) throw failed;
  } catch (e) {
    child.kill('SIGTERM');
    throw e;
  } finally {
    probe.disconnect();
  }
  return {
    url,
    port,
    pid: child.pid!,
    kill: () => void child.kill('SIGTERM'),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * The Redis `npm start` uses: REDIS_URL if set; else 127.0.0.1:6379 if something answers there;
 * else a private redis-server with an append-only file under `dataDir/redis`, so registered
 * functions survive a restart. Throws with install instructions when there is no redis-server.
 */
export async function ensureRedis(opts: { redisUrl?: string | undefined; dataDir: string; probe?: { host: string; port: number } }): Promise<{ url: string; private?: PrivateRedis }> {
  if (opts.redisUrl) return { url: opts.redisUrl };
  const probe = opts.probe ?? { host: '127.0.0.1', port: 6379 };
  if (await answers(probe.host, probe.port)) return { url: `redis://${probe.host}:${probe.port}` };
  const server = await startRedisServer({ dir: join(opts.dataDir, 'redis'), persist: true });
  return { url: server.url, private: server };
}
