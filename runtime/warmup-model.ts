/**
 * A one-node ONNX model (float32 x[1] -> Identity -> y), built with models/onnx-builder.ts.
 * The profiler loads it first so that onnxruntime's own start-up memory is not charged to the model;
 * the session host loads it in its thread at start, and a runtime node where its warm-up (runtime/warmup.ts)
 * cannot run, so that a first cold start is not charged onnxruntime's start-up.
 */
export const WARMUP_MODEL_B64 = 'CAcSEmJydWxlZS10ZXN0LW1vZGVscxoBMTpHChwKAXgSAXkaCklkZW50aXR5XzAiCElkZW50aXR5EgVncmFwaFoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0=';
