/**
 * What gRPC's server transport alone costs: three bare servers answering PP-OCR cls's ModelInfer
 * (110 KB in, 8 bytes out, nothing else done), called by grpcio (bench/grpc-load.py) in
 * alternating windows: @grpc/grpc-js's Server (bench:rest's "grpc floor"), node:http2 with gRPC's
 * framing by hand through Node's public API (the answer's trailers in a second socket write), and
 * the same with headers, message and trailers in one write through Node's internals
 * (support.ts startH2GrpcFloor). Per row: p50 and p99 at 1 caller, the server's CPU per call
 * (/proc, over the 1-caller window), calls/s at `--concurrency`.
 *
 *   npx tsx bench/grpc-floors.ts --rounds 6 --seconds 2 [--concurrency 64]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuMsOf, grpcRow, hasGrpcio, median, startGrpcFloor, startH2GrpcFloor, untilIdle } from './support';

const args = parseArgs({ options: { rounds: { type: 'string', default: '6' }, seconds: { type: 'string', default: '2' }, concurrency: { type: 'string', default: '64' } } }).values;

async function main() {
  if (!hasGrpcio()) throw new Error('needs /usr/bin/python3 with grpcio and grpc_tools (Debian: python3-grpcio python3-grpc-tools)');
  const dims = [1, 3, 48, 192];
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) / 2);
  const dir = mkdtempSync(join(tmpdir(), 'brulee-grpc-floors-'));
  const floors = [
    ['@grpc/grpc-js', await startGrpcFloor(8)],
    ['node:http2', await startH2GrpcFloor(8, false)],
    ['node:http2, one write', await startH2GrpcFloor(8, true)],
  ] as const;
  try {
    const rows = floors.map(([name, f]) => ({ name, pid: f.pid, client: grpcRow(dir, name, f.port, 'x', dims, x), p50: [] as number[], p99: [] as number[], us: [] as number[], perS: [] as number[] }));
    const load = [loadavg()[0]!.toFixed(2)];
    for (let r = 0; r < Number(args.rounds); r++) {
      for (const row of rows) {
        await untilIdle(row.pid);
        const c0 = cpuMsOf(row.pid);
        const one = row.client.window(1, Number(args.seconds));
        row.us.push(((cpuMsOf(row.pid) - c0) * 1000) / one.calls);
        await untilIdle(row.pid);
        const many = row.client.window(Number(args.concurrency), Number(args.seconds));
        row.p50.push(one.p50);
        row.p99.push(one.p99);
        row.perS.push(many.perS);
      }
    }
    load.push(loadavg()[0]!.toFixed(2));
    console.log(`PP-OCR cls ModelInfer, grpcio; ${args.rounds} rounds of ${args.seconds} s; medians of the rounds; load average ${load.join(' -> ')}`);
    for (const row of rows) {
      console.log(
        `${row.name.padEnd(22)} p50 ${median(row.p50).toFixed(3)} ms [${row.p50.map((v) => v.toFixed(3)).join(' ')}]  p99 ${median(row.p99).toFixed(2)} ms  server CPU ${median(row.us).toFixed(0)} µs/call  ${median(row.perS).toFixed(0)} calls/s at ${args.concurrency}`,
      );
    }
  } finally {
    for (const [, f] of floors) await f.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
