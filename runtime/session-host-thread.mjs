// The thread of a session host (runtime/session-host.ts): holds onnxruntime sessions and creates,
// runs and releases them on request, so that a long create or run stalls this thread, not the
// node's main one. Plain JavaScript, so that the thread starts without a TypeScript loader.
//
// Requests: { id, op: 'create', source, options } | { id, op: 'run', handle, feeds, fetches }
// | { id, op: 'release', handle } | { op: 'exit' } | { op: 'crash', reason }. Answers: { id, ok } or { id, error } (onnxruntime's message).
// A run's answer transfers its output buffers and its input buffers (transferred here by the
// caller) back: nothing of a run stays in this thread's heap.
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';

const ort = createRequire(import.meta.url)('onnxruntime-node');
const sessions = new Map();
let next = 1;

function answer(id, ok, buffers) {
  const transfer = [...new Set(buffers)];
  try {
    parentPort.postMessage({ id, ok }, transfer);
  } catch {
    parentPort.postMessage({ id, ok }); // a buffer that cannot move is copied
  }
}

const ops = {
  async create(m) {
    const s = await ort.InferenceSession.create(m.source, m.options);
    const handle = next++;
    sessions.set(handle, s);
    answer(m.id, { handle, inputs: s.inputMetadata, outputs: s.outputMetadata }, []);
  },
  async run(m) {
    const s = sessions.get(m.handle);
    if (!s) throw new Error(`no session ${m.handle} in this host`);
    const feeds = {};
    const buffers = [];
    for (const [name, t] of Object.entries(m.feeds)) {
      feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      if (!Array.isArray(t.data)) buffers.push(t.data.buffer);
    }
    const r = m.fetches ? await s.run(feeds, m.fetches) : await s.run(feeds);
    const outputs = {};
    for (const [name, t] of Object.entries(r)) {
      outputs[name] = { type: t.type, dims: [...t.dims], data: t.data };
      if (!Array.isArray(t.data)) buffers.push(t.data.buffer);
    }
    answer(m.id, outputs, buffers);
  },
  async exit() {
    for (const s of sessions.values()) await s.release();
    process.exit(0); // this thread only
  },
  async release(m) {
    const s = sessions.get(m.handle);
    sessions.delete(m.handle);
    await s?.release();
    answer(m.id, true, []);
  },
};

parentPort.on('message', (m) => {
  if (m.op === 'crash') throw new Error(m.reason); // SessionHost.crash: dies as a bug would
  const op = ops[m.op];
  if (!op) throw new Error(`session host: unknown request ${m.op}`); // a bug: the thread dies, the host says so
  op(m).catch((e) => parentPort.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) }));
});
