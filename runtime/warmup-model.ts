/**
 * A one-node ONNX model (float32 x[1] -> Identity -> y), built with models/onnx-builder.ts.
 * The profiler loads it first so that onnxruntime's own start-up memory is not charged to the model;
 * a runtime node loads it at start so that its first cold start is not charged onnxruntime's start-up.
 */
export const WARMUP_MODEL_B64 = 'CAcSEmJydWxlZS10ZXN0LW1vZGVscxoBMTpHChwKAXgSAXkaCklkZW50aXR5XzAiCElkZW50aXR5EgVncmFwaFoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0=';
