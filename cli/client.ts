/**
 * The CLI's only way to a server: HTTP. Errors become `CliError`s with the exit code the CLI
 * documents (1: the server refused, 3: no server answered).
 */

export const EXIT = { OK: 0, SERVER_ERROR: 1, USAGE: 2, UNREACHABLE: 3 } as const;

export class CliError extends Error {
  override readonly name = 'CliError';
  /**
   * @param message what went wrong, without the code
   * @param code the server's error code, when it gave one
   */
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code?: string,
  ) {
    super(message);
  }

  /** As a terminal shows it: `CODE: message`. */
  get text(): string {
    return this.code ? `${this.code}: ${this.message}` : this.message;
  }

  /** As `--json` prints it, the server's error form: the server's code, else the exit code's name (SERVER_ERROR, USAGE, UNREACHABLE). */
  toJSON(): { error: { code: string; message: string } } {
    const exit = Object.entries(EXIT).find(([, n]) => n === this.exitCode)?.[0] ?? 'ERROR';
    return { error: { code: this.code ?? exit, message: this.message } };
  }
}

export interface ClientOptions {
  url: string;
  apiKey?: string | undefined;
}

export interface UploadProgress {
  (sent: number, total: number): void;
}

/** A small typed wrapper over fetch for brulee's HTTP API. */
export class Client {
  readonly base: string;

  constructor(private readonly o: ClientOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new CliError(`--url / BRULEE_URL must be a URL like http://127.0.0.1:8080, got "${o.url}"`, EXIT.USAGE);
    }
    this.base = u.href.replace(/\/$/, '');
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {}), ...extra };
  }

  /** Sends a request; a non-2xx answer throws CliError with the server's code and message. */
  async request<T>(method: string, path: string, init: { body?: RequestInit['body']; headers?: Record<string, string>; duplex?: 'half' } = {}): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, { method, ...init, headers: this.headers(init.headers) } as RequestInit);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(
        `no brulee server answered at ${this.base} (${cause?.code ?? cause?.message ?? (e as Error).message}); start one with \`brulee serve\` or set --url / BRULEE_URL`,
        EXIT.UNREACHABLE,
      );
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    if (!res.ok) {
      const err = (body as { error?: { code?: string; message?: string } | string } | undefined)?.error;
      const code = typeof err === 'object' ? err.code : undefined;
      const message = typeof err === 'object' ? err.message : typeof err === 'string' ? err : text || res.statusText;
      const hint =
        res.status === 401 && !this.o.apiKey ? ' (pass --api-key or set BRULEE_API_KEY)' : res.status === 403 ? ' (check --api-key / BRULEE_API_KEY)' : '';
      throw new CliError(`${code ? '' : `HTTP ${res.status}: `}${message}${hint}`, EXIT.SERVER_ERROR, code);
    }
    return body as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** PUTs bytes as a stream, reporting how many were sent; resolves with the server's answer. */
  upload<T>(path: string, bytes: Uint8Array, onProgress?: UploadProgress): Promise<T> {
    const chunk = 64 * 1024;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= bytes.length) {
          controller.close();
          return;
        }
        const part = bytes.subarray(sent, Math.min(bytes.length, sent + chunk));
        sent += part.length;
        controller.enqueue(part);
        onProgress?.(sent, bytes.length);
      },
    });
    return this.request<T>('PUT', path, {
      body,
      duplex: 'half',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
    });
  }
}
