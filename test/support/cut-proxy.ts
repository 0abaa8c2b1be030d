import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy in front of Redis for one process (its REDIS_URL, or the connection of an object
 * under test) that makes it die, as Redis sees it, right after or right before one given command:
 * every command of every connection through the proxy is forwarded, one whole command at a time,
 * until `at` picks one; that one is forwarded (`at` says 'after') or not ('before'), and from then
 * on nothing more reaches Redis (commands dropped, new connections closed). What Redis holds then
 * is what a process that died at that point left. The test kills the process itself once `cut`
 * resolves (its sockets stay open until `close`).
 *
 * `at` may also answer 'fail': that one command is not forwarded, a command Redis refuses goes in
 * its place (so its caller gets a Redis error, in order with its other replies), and the
 * connection carries on: a command that failed, no death. Or 'hold': that command and every later
 * one of its connection wait (`held` resolves) until `release`, then go on in order: a reply that
 * takes as long as the test wants, the process's other connections going on meanwhile.
 */
export interface CutProxy {
  /** REDIS_URL through the proxy. */
  url: string;
  /** Resolves with the command `at` picked. */
  cut: Promise<string[]>;
  /** Commands failed so far ('fail'). */
  readonly failed: number;
  /** Resolves with the first command held ('hold'). */
  held: Promise<string[]>;
  /** Lets the held connections go on. */
  release(): void;
  close(): void;
}

export async function cutProxy(redisUrl: string, at: (args: string[]) => 'before' | 'after' | 'fail' | 'hold' | undefined): Promise<CutProxy> {
  const target = new URL(redisUrl);
  const sockets = new Set<Socket>();
  let cutAt: string[] | undefined;
  let failed = 0;
  let onCut!: (args: string[]) => void;
  const cut = new Promise<string[]>((r) => (onCut = r));
  let onHeld!: (args: string[]) => void;
  const held = new Promise<string[]>((r) => (onHeld = r));
  /** Connections held ('hold'): each goes on when called. */
  const holding: Array<() => void> = [];
  const server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    if (cutAt) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port || 6379), target.hostname || '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    upstream.on('data', (d) => client.write(d));
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    let pending = Buffer.alloc(0);
    /** Set while this connection is held: the held command, forwarded on release. */
    let heldCmd: { end: number } | undefined;
    const pump = () => {
      for (;;) {
        if (cutAt || heldCmd) return;
        const c = nextCommand(pending);
        if (!c) return;
        const where = at(c.args);
        if (where === 'hold') {
          heldCmd = c;
          onHeld(c.args);
          holding.push(() => {
            upstream.write(pending.subarray(0, c.end));
            pending = pending.subarray(c.end);
            heldCmd = undefined;
            pump();
          });
          return;
        }
        if (where === 'fail') {
          failed++;
          upstream.write(REFUSED);
        } else if (where !== 'before') upstream.write(pending.subarray(0, c.end));
        pending = pending.subarray(c.end);
        if (where !== undefined && where !== 'fail') {
          cutAt = c.args;
          onCut(c.args);
        }
      }
    };
    client.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      pump();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(redisUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return {
    url: url.toString(),
    cut,
    get failed() {
      return failed;
    },
    held,
    release: () => {
      for (const go of holding.splice(0)) go();
    },
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** A command Redis answers with an error (unknown command), in place of one failed on purpose. */
const REFUSED = Buffer.from('*1\r\n$17\r\nBRULEE-TEST-FAULT\r\n');

/** The first whole command in `buf` (RESP: an array of bulk strings, as every client sends), its arguments as latin1 strings; undefined if incomplete. */
export function nextCommand(buf: Buffer): { args: string[]; end: number } | undefined {
  const line = (from: number) => {
    const e = buf.indexOf('\r\n', from);
    return e < 0 ? undefined : { text: buf.toString('latin1', from, e), next: e + 2 };
  };
  const head = line(0);
  if (!head) return undefined;
  if (!head.text.startsWith('*')) return { args: head.text.split(' '), end: head.next }; // an inline command
  const n = Number(head.text.slice(1));
  const args: string[] = [];
  let at = head.next;
  for (let i = 0; i < n; i++) {
    const len = line(at);
    if (!len) return undefined;
    const size = Number(len.text.slice(1));
    if (buf.length < len.next + size + 2) return undefined;
    args.push(buf.toString('latin1', len.next, len.next + size));
    at = len.next + size + 2;
  }
  return { args, end: at };
}
