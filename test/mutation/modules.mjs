// The modules where a wrong line is a wrong answer, and the tests meant to kill their mutants.
// `mutate` globs are Stryker's; `tests` are vitest files (fast ones: no onnxruntime, no Redis).
export const MODULES = {
  errors: {
    mutate: ['errors.ts'],
    tests: ['test/unit/errors.test.ts'],
  },
  signature: {
    mutate: ['functions/signature.ts'],
    tests: ['test/unit/signature.test.ts'],
  },
  // Line ranges: the pure parts of files that also hold Redis code (scripts' Lua source would be
  // mutated as module-level strings Stryker cannot tell apart); move them with the functions.
  queue: {
    mutate: [
      'queue/routing.ts', 'queue/wire.ts', 'queue/tensor.ts',
      'queue/replies.ts:31-41', // encodeAnswer, decodeAnswer
      'queue/lane.ts:40-47', // encodeLaneJob, decodeLaneJob
      'queue/admission.ts:109-117', 'queue/admission.ts:139-152', 'queue/admission.ts:177-180', // ticketOf, size; refusal; releaseWith
    ],
    tests: ['test/unit/routing.test.ts', 'test/unit/wire.test.ts', 'test/unit/tensor-bytes.test.ts', 'test/unit/admission-parts.test.ts'],
  },
  'warm-pool': {
    mutate: ['runtime/warm-pool.ts'],
    tests: ['test/unit/warm-pool.test.ts', 'test/unit/warm-pool-contract.test.ts', 'test/unit/warm-pool-resize.test.ts', 'test/unit/warm-pool-calls.test.ts', 'test/unit/warm-pool-overhead.test.ts', 'test/unit/warm-pool-accounting.test.ts', 'test/unit/prefetch.test.ts'],
  },
  // runtime/policies/ but for its two largest policies, each a module of its own (below). The
  // simulations (fast-selection, lazy-checks, engine tests) are left out: at ~2-12 mutants a minute
  // on the shared machine they did not finish; the *-parts tests drive the policies hook by hook.
  policies: {
    mutate: ['runtime/policies/*.ts', '!runtime/policies/cremebrulee-plus.ts', '!runtime/policies/hybrid-histogram.ts'],
    tests: ['test/sim/policies.test.ts', 'test/unit/prefetch.test.ts', 'test/unit/policies.test.ts', 'test/unit/policy-edges.test.ts', 'test/unit/policy-parts.test.ts', 'test/unit/keepalive-parts.test.ts'],
  },
  'cremebrulee-plus': {
    mutate: ['runtime/policies/cremebrulee-plus.ts'],
    tests: ['test/sim/policies.test.ts', 'test/unit/prefetch.test.ts', 'test/unit/policy-edges.test.ts', 'test/unit/policy-parts.test.ts', 'test/unit/plus-parts.test.ts'],
  },
  'hybrid-histogram': {
    mutate: ['runtime/policies/hybrid-histogram.ts'],
    tests: ['test/sim/policies.test.ts', 'test/unit/prefetch.test.ts', 'test/unit/policy-edges.test.ts', 'test/unit/policy-parts.test.ts', 'test/unit/keepalive-parts.test.ts'],
  },
  engine: {
    mutate: ['sim/engine.ts'],
    // engine-parts drives NodeRun on hand-worked traces in milliseconds. lazy-checks,
    // fast-selection and warm-pool-equivalence are left out as slow under Stryker (lazy-checks,
    // run by hand against each survivor of the engine's loop part, killed none of them).
    tests: ['test/sim/engine-parts.test.ts', 'test/sim/fast-engine.test.ts', 'test/sim/engine.test.ts', 'test/sim/policies.test.ts'],
  },
};
