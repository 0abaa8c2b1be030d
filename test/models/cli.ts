/**
 * Write a synthetic ONNX model to disk.
 *
 *   npx tsx test/models/cli.ts mlp --bytes 5MB --seed 3 --out /tmp/m.onnx
 *   npx tsx test/models/cli.ts mlp --input 32 --hidden 64,64 --output 4 --batch 8 --out /tmp/small.onnx
 *   npx tsx test/models/cli.ts types --out /tmp/types.onnx
 *   npx tsx test/models/cli.ts conv --out /tmp/conv.onnx --check
 *
 * Sizes: B, KB/MB/GB (powers of 1000) or KiB/MiB/GiB (powers of 1024).
 * Prints the path, the size and the input/output signature; --check also loads
 * the file with onnxruntime-node and prints what it reports.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { convSpec, mlpOptionsForBytes, mlpSpec, typesSpec, writeModel, type MlpOptions } from './generate';
import { encodeModel, formatValueInfo, type ModelSpec } from './onnx-builder';
import { parseBytes } from '../../config';

const USAGE = `usage: tsx test/models/cli.ts <mlp|types|conv> [options]
  --out PATH         output file (default: $TMPDIR/brulee-models/<kind>.onnx)
  --check            load the result with onnxruntime-node and print its metadata
mlp options:
  --bytes SIZE       pick layer sizes for a file of about SIZE (e.g. 1MB, 20MB, 512KiB)
  --input N --hidden A,B,.. --output N   explicit layer sizes (default 64 / 128 / 16)
  --seed N           weight seed (default 0)
  --batch N|dynamic  batch dimension (default dynamic)`;

function parseSize(s: string): number {
  const n = parseBytes(s);
  if (!(n > 0)) throw new Error(`bad size "${s}" (try 5MB, 512KiB, 1000000)`);
  return n;
}

function parseInt10(name: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n)) throw new Error(`--${name}: not an integer: ${s}`);
  return n;
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} KB`;
  return `${n} B`;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      bytes: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      input: { type: 'string' },
      hidden: { type: 'string' },
      output: { type: 'string' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const kind = positionals[0];
  if (values.help || !kind || positionals.length > 1) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 2;
    return;
  }

  let spec: ModelSpec;
  let summary = kind;
  if (kind === 'mlp') {
    const seed = values.seed !== undefined ? parseInt10('seed', values.seed) : 0;
    let opts: MlpOptions;
    if (values.bytes !== undefined) {
      if (values.input ?? values.hidden ?? values.output) throw new Error('--bytes excludes --input/--hidden/--output');
      opts = mlpOptionsForBytes(parseSize(values.bytes), seed);
    } else {
      opts = {
        inputSize: values.input !== undefined ? parseInt10('input', values.input) : 64,
        hidden: (values.hidden ?? '128').split(',').filter((s) => s !== '').map((s) => parseInt10('hidden', s)),
        outputSize: values.output !== undefined ? parseInt10('output', values.output) : 16,
        seed,
      };
    }
    if (values.batch !== undefined && values.batch !== 'dynamic') opts.batch = parseInt10('batch', values.batch);
    spec = mlpSpec(opts);
    const h = opts.hidden;
    const hidden = h.length > 3 && h.every((x) => x === h[0]) ? `${h[0]}x${h.length}` : h.join(',');
    summary = `mlp in=${opts.inputSize} hidden=${hidden} out=${opts.outputSize} seed=${seed}`;
  } else if (kind === 'types' || kind === 'conv') {
    for (const flag of ['bytes', 'seed', 'batch', 'input', 'hidden', 'output'] as const) {
      if (values[flag] !== undefined) throw new Error(`--${flag} only applies to mlp`);
    }
    spec = kind === 'types' ? typesSpec() : convSpec();
  } else {
    throw new Error(`unknown model kind "${kind}"\n${USAGE}`);
  }

  const bytes = encodeModel(spec);
  const path = writeModel(values.out ?? join(tmpdir(), 'brulee-models', `${kind}.onnx`), bytes);
  console.log(path);
  console.log(`  ${summary}, opset ${spec.opset}, ${formatBytes(bytes.length)} (${bytes.length} bytes)`);
  for (const v of spec.inputs) console.log(`  input  ${formatValueInfo(v)}`);
  for (const v of spec.outputs) console.log(`  output ${formatValueInfo(v)}`);

  if (values.check) {
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(path);
    const show = (m: (typeof session.inputMetadata)[number]) =>
      m.isTensor ? `${m.name}: ${m.type}[${m.shape.join(', ')}]` : `${m.name}: (non-tensor)`;
    console.log(`  onnxruntime ${ort.env.versions.common}: loaded`);
    for (const m of session.inputMetadata) console.log(`    input  ${show(m)}`);
    for (const m of session.outputMetadata) console.log(`    output ${show(m)}`);
    await session.release();
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
