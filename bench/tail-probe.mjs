// Preloaded into a brulee server by bench/tail.ts (`node --import`): records, on the process's
// CLOCK_MONOTONIC in ms (the client's clock too), what its main thread did, and writes it to
// $TAIL_PROBE at exit. Diagnosis only; never loaded by brulee itself.
//   ['req', start, ms, url]           an HTTP request, from its 'request' event to its answer's 'finish'
//   ['gc', start, ms, kind]           a V8 GC pause (kind 1 scavenge, 4 mark-sweep-compact, 8 incremental)
//   ['timer', start, ms, site]        a setTimeout/setInterval callback that ran > 50 µs, where it was set
//   ['stall', start, ms, cpu, wait]   a 1 ms ticker that fired > 2 ms late, and in that gap the main
//                                     thread's CPU time and run-queue wait (/proc/self/task/<pid>/schedstat)
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const out = process.env.TAIL_PROBE;
const mono = () => Number(process.hrtime.bigint()) / 1e6;
const offset = mono() - performance.now();
const ev = [];
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) ev.push(['gc', e.startTime + offset, e.duration, e.detail?.kind]);
}).observe({ entryTypes: ['gc'] });

const site = (err) =>
  (err.stack.split('\n').slice(2).find((l) => !l.includes('tail-probe') && !l.includes('node:internal')) ?? '?').trim().replace(/\(.*\/(node_modules|wt-[^/]+|main)\//, '(').slice(0, 140);
const wrap = (orig) =>
  function (cb, ...rest) {
    if (typeof cb !== 'function') return orig.call(this, cb, ...rest);
    const err = new Error(); // its stack is formatted only if the callback is slow
    return orig.call(
      this,
      function (...a) {
        const t = mono();
        try {
          return cb.apply(this, a);
        } finally {
          const d = mono() - t;
          if (d > 0.05) ev.push(['timer', t, d, site(err)]);
        }
      },
      ...rest,
    );
  };
globalThis.setInterval = wrap(setInterval);
globalThis.setTimeout = wrap(setTimeout);

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (name, req, res) {
  if (name === 'request') {
    const t = mono();
    res.on('finish', () => ev.push(['req', t, mono() - t, req.url]));
  }
  return emit.apply(this, arguments);
};

const sched = () => readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number);
let last = mono();
let lastS = sched();
setInterval(() => {
  const n = mono();
  const s = sched();
  if (n - last > 2) ev.push(['stall', last, n - last, (s[0] - lastS[0]) / 1e6, (s[1] - lastS[1]) / 1e6]);
  last = n;
  lastS = s;
}, 1).unref();

process.on('exit', () => {
  if (out) writeFileSync(out, JSON.stringify(ev));
});
