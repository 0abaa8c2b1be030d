import { MessageChannel, type MessagePort } from 'node:worker_threads';

/**
 * Frees the memory of JS buffers no one will read again now, not at V8's next garbage collection
 * (issue 12 §4). V8 frees a dead ArrayBuffer's memory only when it collects the object, and it
 * starts a collection for external memory only once some 64 MiB more of it exist than at the last
 * one: in the memory bench a worker's dead tensors (onnxruntime's outputs, answer frames) stood at
 * up to 0.6x its MEMORY_BUDGET at its peak, memory no budget had room for. A buffer posted with its
 * ArrayBuffer in the transfer list of a closed MessagePort is detached at once (its views read as
 * empty) and its memory freed as the message is dropped, within the event loop's turn. Node 20 has
 * no `ArrayBuffer.prototype.transfer`.
 *
 * Only a view that spans its whole ArrayBuffer is freed (a slice of a shared buffer, such as a
 * Redis reply in ioredis's parser pool or Node's Buffer pool, is left alone), and only one of at
 * least `minBytes` (below that, a collection is cheap and the posting costs more than it saves).
 * The caller must hold the only references that will be read again. Returns the bytes freed.
 */
export function freeNow(views: Iterable<unknown>, minBytes = FREE_MIN_BYTES): number {
  let freed = 0;
  const seen = new Set<ArrayBuffer>();
  for (const v of views) {
    if (!ArrayBuffer.isView(v)) continue;
    const ab = v.buffer;
    if (!(ab instanceof ArrayBuffer) || seen.has(ab) || ab.byteLength < minBytes || v.byteOffset !== 0 || v.byteLength !== ab.byteLength) continue;
    seen.add(ab);
    const n = ab.byteLength;
    try {
      sink().postMessage(null, [ab]);
      freed += n;
    } catch {
      // Not transferable (marked so, or already detached): V8 frees it in time.
    }
  }
  return freed;
}

/** Below this many bytes a buffer is left to V8's collector. */
export const FREE_MIN_BYTES = 64 * 1024;

let port: MessagePort | undefined;
/** A port whose other end is closed: what it is sent is dropped, and the transferred memory with it. */
function sink(): MessagePort {
  if (!port) {
    const c = new MessageChannel();
    c.port2.close();
    port = c.port1;
    port.unref();
  }
  return port;
}
