import { parseArgs, type ParseArgsConfig } from 'node:util';

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;
import { TraceError } from './trace';

/**
 * How the simulator's command-line tools (sim/cli.ts, report.ts, tune.ts, synth.ts) report what
 * the operator got wrong: one line naming it, exit 2, never a stack trace; `--help` prints the
 * usage and exits 0 (each tool's main returns 0 for it).
 */

/** A mistake in how a tool was run: a flag, a missing or contradictory argument. */
export class UsageError extends Error {}

type Strict<O extends ParseArgsOptionsConfig> = { args: string[]; options: O; strict: true; allowPositionals: false };

/**
 * A tool's flags (node:util parseArgs, strict, no positionals), with its refusals (an unknown flag,
 * a flag without its value) as UsageError; undefined after printing `help` for --help or -h.
 */
export function parseFlags<const O extends ParseArgsOptionsConfig>(args: string[], options: O, help: string): ReturnType<typeof parseArgs<Strict<O>>>['values'] | undefined {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(help);
    return undefined;
  }
  try {
    return parseArgs<Strict<O>>({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Runs a tool's main and sets the exit code it returns. A UsageError, a TraceError (an input that
 * cannot be read or parsed: a missing file names its path) or a RangeError becomes
 * `<tool>: <message>` on stderr and exit 2; anything else is a bug and keeps its stack trace.
 */
export function runTool(tool: string, main: () => number | Promise<number>): void {
  Promise.resolve()
    .then(main)
    .then(
      (code) => {
        process.exitCode = code;
      },
      (e: unknown) => {
        if (e instanceof UsageError || e instanceof TraceError || e instanceof RangeError) {
          process.stderr.write(`${tool}: ${e.message}\n`);
          if (e instanceof UsageError) process.stderr.write('run with --help for the flags\n');
          process.exitCode = 2;
        } else {
          throw e;
        }
      },
    );
}
