/**
 * `brulee model` (and `npm run model --`): write a synthetic ONNX model to disk.
 *
 *   brulee model mlp --bytes 5MB --seed 3 --out /tmp/m.onnx
 *   brulee model mlp --input 32 --hidden 64,64 --output 4 --batch 8 --out /tmp/small.onnx
 *   brulee model types --out /tmp/types.onnx
 *   brulee model conv --out /tmp/conv.onnx --check
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
import { parseBytes } from '../config';

const USAGE = `usage: brulee model <mlp|types|conv> [options]
  --out PATH         output file (default: $TMPDIR/brulee-models/<kind>.onnx)
  --check            load the result with onnxruntime-node and print its metadata
mlp options:
  --bytes SIZE       pick layer sizes for a file of about SIZE (e.g. 1MB, 20MB, 512KiB)
  --input N --hidden A,B,.. --output N   explicit layer sizes (default 64 / 128 / 16)
  --seed N           weight seed (default 0)
  --batch N|dynamic  batch dimension (default dynamic)`;

function parseSize(s: string): number {
  const n = parseBytes(s);
  if (!(n > 0)) throw new UsageError(`bad size "${s}" (try 5MB, 512KiB, 1000000)`);
  return n;
}

function parseInt10(name: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n)) throw new UsageError(`--${name}: not an integer: ${s}`);
  return n;
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} KB`;
  return `${n} B`;
}

/** Runs `brulee model ARGS`; resolves with the exit code (errors are printed, not thrown). */
export async function modelCli(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (err) {
    console.error(`brulee model: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof UsageError ? 2 : 1;
  }
}

class UsageError extends Error {}

const OPTIONS = {
  out: { type: 'string' },
  bytes: { type: 'string' },
  seed: { type: 'string' },
  batch: { type: 'string' },
  input: { type: 'string' },
  hidden: { type: 'string' },
  output: { type: 'string' },
  check: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const kind = positionals[0];
  if (values.help || !kind || positionals.length > 1) {
    if (!values.help) throw new UsageError(`give one model kind\n${USAGE}`);
    console.log(USAGE);
    return 0;
  }

  let spec: ModelSpec;
  let summary = kind;
  if (kind === 'mlp') {
    const seed = values.seed !== undefined ? parseInt10('seed', values.seed) : 0;
    let opts: MlpOptions;
    if (values.bytes !== undefined) {
      if (values.input ?? values.hidden ?? values.output) throw new UsageError('--bytes excludes --input/--hidden/--output');
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
      if (values[flag] !== undefined) throw new UsageError(`--${flag} only applies to mlp`);
    }
    spec = kind === 'types' ? typesSpec() : convSpec();
  } else {
    throw new UsageError(`unknown model kind "${kind}"\n${USAGE}`);
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
  return 0;
}
