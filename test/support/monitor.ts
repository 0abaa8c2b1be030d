import { connect } from 'node:net';

/** One command as Redis's MONITOR reports it. */
export interface Monitored {
  /** Seconds since the epoch, as Redis printed them ("1795911649.354476"). */
  time: string;
  /** The client's address, or "lua" for a command a script ran. */
  source: string;
  /** Command and arguments as MONITOR prints them: quotes and backslashes unescaped, any other byte left as Redis escaped it (`\xNN`, `\n`). */
  args: string[];
}

export interface Monitor {
  /** Stops reading and closes the connection; lines still on the way are dropped. */
  stop(): void;
}

/**
 * Runs MONITOR on a connection of its own and calls `onCommand` for every command Redis runs from
 * then on. A plain socket, not ioredis's `monitor()`: ioredis sets its client to "monitoring" a
 * promise turn after MONITOR's +OK, so monitor lines that arrive in the same read as the +OK (a
 * busy Redis, as the test Redis shared by parallel test files is) are taken for replies to
 * commands never sent, and it throws "Command queue state error" from the socket's data handler.
 */
export function monitor(redisUrl: string, onCommand: (c: Monitored) => void): Promise<Monitor> {
  const url = new URL(redisUrl);
  const socket = connect(Number(url.port || 6379), url.hostname || '127.0.0.1');
  let stopped = false;
  const stop = () => {
    stopped = true;
    socket.removeAllListeners('data');
    socket.destroy();
  };
  return new Promise((resolve, reject) => {
    let pending = '';
    let ready = false;
    let oks = 1; // MONITOR's +OK, after AUTH's when there is a password
    socket.once('error', (e) => (ready ? undefined : reject(e)));
    socket.once('close', () => (ready ? undefined : reject(new Error('Redis closed the connection before MONITOR started'))));
    socket.on('error', () => undefined); // after stop(), or a Redis that went away: the test sees what it collected
    socket.on('connect', () => {
      const pass = url.password ? decodeURIComponent(url.password) : '';
      const user = url.username ? decodeURIComponent(url.username) : '';
      if (pass) oks++, socket.write(command(user ? ['AUTH', user, pass] : ['AUTH', pass]));
      socket.write(command(['MONITOR']));
    });
    socket.setEncoding('latin1'); // one char per byte: MONITOR escapes everything that is not printable ASCII anyway
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let end: number;
      while (!stopped && (end = pending.indexOf('\r\n')) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 2);
        if (line.startsWith('-')) {
          stop();
          reject(new Error(`MONITOR refused: ${line.slice(1)}`));
          return;
        }
        if (!ready) {
          if (line === '+OK' && --oks === 0) {
            ready = true;
            resolve({ stop });
          }
          continue;
        }
        const c = parseMonitorLine(line);
        if (c) onCommand(c);
      }
    });
  });
}

/** A command in RESP (arguments of any bytes, spaces included). */
function command(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** `+1795911649.354476 [0 127.0.0.1:37416] "set" "k" "v"` → its parts; undefined for anything else. */
export function parseMonitorLine(line: string): Monitored | undefined {
  const m = /^\+(\d+\.\d+) \[\d+ ([^\]]+)\] /.exec(line);
  if (!m) return undefined;
  const args: string[] = [];
  const s = line.slice(m[0].length);
  let i = 0;
  while (i < s.length) {
    if (s[i] !== '"') return undefined;
    let arg = '';
    for (i++; i < s.length && s[i] !== '"'; i++) {
      if (s[i] === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\')) arg += s[++i];
      else if (s[i] === '\\') arg += s[i++]! + s[i]; // \xNN, \n, …: left as printed
      else arg += s[i];
    }
    args.push(arg);
    i += 2; // the closing quote and the space
  }
  return { time: m[1]!, source: m[2]!, args };
}
