// Preloaded into a brulee server by bench/event-loop.ts (`node --import`): the main thread's event
// loop delay (perf_hooks.monitorEventLoopDelay at 1 ms resolution: each sample is the interval
// between two ticks of a 1 ms timer, so an idle loop reads ~1 ms). On SIGUSR2 it writes the
// samples since the previous signal to $LOOP_PROBE (JSON, ms) and starts over. The signal is
// handled on the main thread too, so the dump comes once a stall has ended. Not part of brulee.
import { renameSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const out = process.env.LOOP_PROBE;
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
let seq = 0;
process.on('SIGUSR2', () => {
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  const r = { seq: ++seq, n: h.count, max: ms(h.max), p99: ms(h.percentile(99)), p50: ms(h.percentile(50)) };
  h.reset();
  if (!out) return;
  writeFileSync(`${out}.tmp`, JSON.stringify(r));
  renameSync(`${out}.tmp`, out);
});
