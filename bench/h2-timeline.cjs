// Preload (`node --require bench/h2-timeline.cjs ...`): where each HTTP/2 server stream's time
// goes, as @grpc/grpc-js drives Node's http2 for a unary call. For every stream, µs from its
// request headers to: `end` (the request's last byte read), `respond` (the answer's headers
// submitted: the handler is done), `write` (the answer's message handed to Node), `sendTrailers`
// (grpc-js sends grpc-status: it waits for the message's write to complete, then Node's
// 'wantTrailers'), `trailers` (Node hands them to nghttp2, one setImmediate later), `close` (the
// stream closed: the trailers went out). On SIGTERM it prints one
// line to stderr: the medians over the streams that got each mark. Used by bench/grpc-cpu.ts
// --timeline. Timing only: it wraps the stream's methods, nothing else changes.
'use strict';
const http2 = require('node:http2');

const MARKS = ['end', 'respond', 'write', 'sendTrailers', 'trailers', 'close'];
const streams = [];
const createServer = http2.createServer;
http2.createServer = function (...args) {
  const server = createServer.apply(this, args);
  server.on('stream', (stream) => {
    const t0 = process.hrtime.bigint();
    const m = {};
    const mark = (k) => {
      if (m[k] === undefined) m[k] = Number(process.hrtime.bigint() - t0) / 1e3;
    };
    stream.once('end', () => mark('end'));
    for (const f of ['respond', 'write', 'sendTrailers']) {
      const orig = stream[f];
      stream[f] = function (...a) {
        mark(f);
        return orig.apply(this, a);
      };
    }
    // Node submits the trailers to nghttp2 one setImmediate after sendTrailers (its handle's
    // trailers()); nghttp2 writes them at Node's next send, and the stream closes as they go.
    const kHandle = Object.getOwnPropertySymbols(stream).find((s) => s.description === 'kHandle');
    const handle = kHandle && stream[kHandle];
    if (handle && typeof handle.trailers === 'function') {
      const trailers = handle.trailers;
      handle.trailers = function (...a) {
        mark('trailers');
        return trailers.apply(this, a);
      };
    }
    stream.once('close', () => {
      mark('close');
      if (streams.length < 100_000) streams.push(m);
    });
  });
  return server;
};

process.prependListener('SIGTERM', () => {
  const median = (k) => {
    const v = streams.map((s) => s[k]).filter((x) => x !== undefined).sort((a, b) => a - b);
    return v.length ? Math.round(v[v.length >> 1]) : null;
  };
  const line = Object.fromEntries(MARKS.map((k) => [k, median(k)]));
  process.stderr.write(`h2 timeline ${process.cwd()} ${JSON.stringify({ streams: streams.length, ...line })}\n`);
});
