import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Context } from 'hono';
import type { Tensor } from '../../queue/wire';
import { MAX_FLOAT32_JSON_BYTES, writeFloat32Json } from './float32-json';
import { jsonValues, stringifyWithBigInts } from './json-tensors';

/**
 * Invocation answers as HTTP bodies. A small answer is one string or buffer; one whose tensors
 * take more than STREAM_FROM_BYTES is written in pieces as the socket takes them, so the gateway
 * never builds a string or a copy the size of the answer (issue 12 §1): JSON tensor data a few
 * thousand elements at a time, binary outputs as the buffers they arrived in.
 */

/** Answers with more tensor bytes than this are streamed; below it, one string is cheaper. */
export const STREAM_FROM_BYTES = 1024 * 1024;
/** Elements of a tensor written as JSON per piece. */
const ELEMENTS_PER_PIECE = 16_384;
/** Text gathered before it is handed to the socket (small pieces such as `]}` are joined). */
const PIECE_CHARS = 64 * 1024;

/**
 * A tensor's values written where a JSON answer holds them, as `jsonValues` gives them (`bigint`:
 * INT64 past 2^53 as decimal strings, or as bare digits as the Open Inference Protocol wants).
 */
export class JsonData {
  constructor(
    readonly tensor: Tensor,
    readonly bigint: 'string' | 'raw' = 'string',
  ) {}

  /** Bytes the tensor holds (for strings, their UTF-16 length): what decides streaming. */
  get bytes(): number {
    const t = this.tensor;
    return t.type === 'string' ? t.data.reduce((s, x) => s + x.length, 0) : t.data.byteLength;
  }

  /**
   * `[v0,v1,...]`, ELEMENTS_PER_PIECE values at a time, each piece exactly as JSON.stringify writes
   * them. FLOAT32 goes out as bytes written by `writeFloat32Json` (the same text, without a
   * number, a string or an array made per value: 26 -> 10 ms for PP-OCR rec's 79 500 values).
   */
  *pieces(): Generator<string | Uint8Array> {
    const t = this.tensor;
    const n = t.data.length;
    if (t.data instanceof Float32Array) {
      if (n === 0) yield '[]';
      for (let i = 0; i < n; i += ELEMENTS_PER_PIECE) {
        const end = Math.min(n, i + ELEMENTS_PER_PIECE);
        const out = Buffer.allocUnsafe((end - i) * MAX_FLOAT32_JSON_BYTES + 2);
        out[0] = i === 0 ? 91 /* [ */ : 44; /* , */
        let pos = writeFloat32Json(t.data, i, end, out, 1);
        if (end === n) out[pos++] = 93; /* ] */
        yield out.subarray(0, pos);
      }
      return;
    }
    const big = t.data instanceof BigInt64Array || t.data instanceof BigUint64Array;
    yield '[';
    for (let i = 0; i < n; i += ELEMENTS_PER_PIECE) {
      const end = Math.min(n, i + ELEMENTS_PER_PIECE);
      const part = (t.type === 'string' ? { ...t, data: t.data.slice(i, end) } : { ...t, data: t.data.subarray(i, end) }) as Tensor;
      const values = jsonValues(part, { bigint: this.bigint });
      const text = big && this.bigint === 'raw' ? stringifyWithBigInts(values) : JSON.stringify(values);
      yield (i > 0 ? ',' : '') + text.slice(1, -1);
    }
    yield ']';
  }
}

// Marks where a JsonData goes in the answer's skeleton. Random per process and never sent (each
// mark is replaced), so no string in a request can pass for one.
const MARK = `\u0001${randomBytes(8).toString('hex')}:`;
const MARKED = new RegExp(`"\\\\u0001${MARK.slice(1)}(\\d+)"`, 'g');

/**
 * An answer as JSON with its tensors' data (`JsonData`) written late: `text()` is the whole of
 * it, `stream()` the same bytes in pieces; either equals JSON.stringify of the value with each
 * JsonData replaced by its values.
 */
export class JsonAnswer {
  private readonly parts: string[];
  private readonly data: JsonData[] = [];

  constructor(value: unknown) {
    const skeleton = JSON.stringify(value, (_k, v: unknown) => (v instanceof JsonData ? `${MARK}${this.data.push(v) - 1}` : v));
    // split with a capturing group: text, index, text, index, ..., text.
    this.parts = skeleton.split(MARKED);
  }

  /** Bytes of tensor data in the answer. */
  get dataBytes(): number {
    return this.data.reduce((s, d) => s + d.bytes, 0);
  }

  *pieces(): Generator<string | Uint8Array> {
    for (let i = 0; i < this.parts.length; i++) {
      if (i % 2 === 0) yield this.parts[i]!;
      else yield* this.data[Number(this.parts[i])]!.pieces();
    }
  }

  /** The whole answer as UTF-8 bytes, with no string of it made on the way. */
  bytes(): Buffer {
    return Buffer.concat([...this.pieces()].map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
  }
}

/** Pieces as a byte stream, pulled as the reader (the socket) takes them: small strings joined, buffers passed as they are. */
export function byteStream(pieces: Iterable<string | Uint8Array>): ReadableStream<Uint8Array> {
  const it = pieces[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      let text = '';
      for (;;) {
        const r = it.next();
        if (r.done) {
          if (text) controller.enqueue(Buffer.from(text));
          controller.close();
          return;
        }
        if (typeof r.value === 'string') {
          text += r.value;
          if (text.length >= PIECE_CHARS) {
            controller.enqueue(Buffer.from(text));
            return;
          }
        } else {
          if (text) controller.enqueue(Buffer.from(text));
          if (r.value.byteLength > 0) controller.enqueue(r.value);
          return;
        }
      }
    },
    cancel() {
      it.return?.();
    },
  });
}

/** A byte stream compressed as it is read (level 1, as the whole-body path compresses). */
export function compressedStream(pieces: Iterable<string | Uint8Array>, enc: 'gzip' | 'deflate'): ReadableStream<Uint8Array> {
  const z = enc === 'gzip' ? zlib.createGzip({ level: 1 }) : zlib.createDeflate({ level: 1 });
  const source = Readable.from(pieces, { objectMode: false });
  source.on('error', (e) => z.destroy(e));
  return Readable.toWeb(source.pipe(z)) as ReadableStream<Uint8Array>;
}

/**
 * Answer bodies still being written after their handler returned (a drain must wait for them), by
 * request. Kept here, not read back from the response: reading a response's `body` makes
 * @hono/node-server build a web Response and pump every answer through a stream reader.
 */
const answerStreams = new WeakMap<Request, ReadableStream<Uint8Array>>();

/** `body`, noted as the streamed answer to `c`'s request (see `whenAnswerSent`). */
export function streamedAnswer(c: Context, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  answerStreams.set(c.req.raw, body);
  return body;
}

/**
 * The streamed answer to `c`'s request (`streamedAnswer`), calling `done` once it has been read to
 * its end, failed or been cancelled; null when the answer was not streamed (sent whole, by then).
 */
export function whenAnswerSent(c: Context, done: () => void): ReadableStream<Uint8Array> | null {
  const body = answerStreams.get(c.req.raw);
  if (!body) return null;
  const reader = body.getReader();
  let ended = false;
  const end = () => {
    if (!ended) {
      ended = true;
      done();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = await reader.read();
        if (r.done) {
          end();
          controller.close();
        } else controller.enqueue(r.value);
      } catch (e) {
        end();
        controller.error(e);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason);
    },
  });
}

/** A JSON answer as a body: one buffer when small, else a stream. */
export function answerBody(answer: JsonAnswer): Buffer | ReadableStream<Uint8Array> {
  return answer.dataBytes > STREAM_FROM_BYTES ? byteStream(answer.pieces()) : answer.bytes();
}
