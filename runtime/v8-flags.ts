import { setFlagsFromString } from 'node:v8';

/**
 * V8 flags of a brulee server process, set by server.ts before it imports anything else, so that
 * `npm start`, the image and every bench that starts `server.ts` run with them (a flag on node's
 * command line would need each of those to say it, and NODE_OPTIONS does not take this one).
 *
 * `--always-sparkplug`: V8 compiles each function to baseline machine code (Sparkplug) at its first
 * call instead of interpreting its bytecode until it has run often. A cold start's path (the load,
 * the pool's admission, the first run's bookkeeping) runs once per cold call, so it stays in the
 * interpreter for its first tens of calls: with the flag the tiny MLP's cold call took 0.60 ms
 * less in a paired run of 80 rounds (README, "The cold call's server CPU"). It costs ~1.7 MiB
 * more code space in a server that has served calls (2.5 -> 4.2 MiB). Functions compiled before
 * this runs (tsx's own) keep their tier.
 */
export const V8_FLAGS = ['--always-sparkplug'] as const;

for (const f of V8_FLAGS) setFlagsFromString(f);
