import { describe, expect, it } from 'vitest';
import { BruleeError } from '../../errors';
import { refusal, releaseWith, ticketOf, type AdmissionRequest } from '../../queue/admission';

// Admission's pure parts (queue/admission.ts): the ticket a job carries, the refusal a caller gets,
// and the writes that give a place back. The scripts themselves run against Redis in
// test/integration/admission.test.ts.

const keys = { depth: 'q:fn', bytes: 'q:bytes', bytesTotal: 'q:bytes:total' };
const req = (depth: number, bytes: number, callBytes: number): AdmissionRequest => ({ keys, member: 'id7', limits: { depth, bytes }, bytes: callBytes, holdMs: 1000 });

describe('ticketOf: the places an admitted call holds', () => {
  it('the function set when depth is limited, the bytes set (member:bytes) when bytes are, both or neither', () => {
    expect(ticketOf(req(5, 0, 10))).toStrictEqual({ key: 'q:fn', member: 'id7' });
    expect(ticketOf(req(0, 100, 10))).toStrictEqual({ member: 'id7', bytes: { key: 'q:bytes', total: 'q:bytes:total', member: 'id7:10' } });
    expect(ticketOf(req(1, 1, 10))).toStrictEqual({ key: 'q:fn', member: 'id7', bytes: { key: 'q:bytes', total: 'q:bytes:total', member: 'id7:10' } });
    expect(ticketOf(req(0, 0, 10))).toStrictEqual({ member: 'id7' });
  });
  it('counts whole bytes, rounded up, never fewer than 0', () => {
    expect(ticketOf(req(0, 1, 2.1)).bytes!.member).toBe('id7:3');
    expect(ticketOf(req(0, 1, 0)).bytes!.member).toBe('id7:0');
    expect(ticketOf(req(0, 1, -5)).bytes!.member).toBe('id7:0');
  });
});

describe('refusal: why a call was turned away', () => {
  it('its function at its limit of calls: 429 QUEUE_FULL, with the count and the limit', () => {
    const e = refusal('fn', req(4, 100, 10), { admitted: false, full: 'depth', queued: 4 });
    expect(e).toBeInstanceOf(BruleeError);
    expect([e.code, e.status, e.message, e.details]).toStrictEqual([
      'QUEUE_FULL',
      429,
      'function "fn" already has 4 invocations waiting or running, its limit (MAX_QUEUED_PER_FUNCTION=4); retry after a moment, or raise the limit',
      { retryAfterS: 1, queued: 4, limit: 4 },
    ]);
  });
  it('the queues at their limit of input bytes: 503 OVERLOADED, with the bytes queued, the call\'s and the limit', () => {
    const e = refusal('fn', req(4, 100, 30), { admitted: false, full: 'bytes', queuedBytes: 80 });
    expect([e.code, e.status, e.message, e.details]).toStrictEqual([
      'OVERLOADED',
      503,
      "the queues already hold 80 bytes of inputs waiting to run, and this call's 30 more would pass the limit of 100 (MAX_QUEUED_INPUT_BYTES); retry after a moment",
      { retryAfterS: 1, queuedBytes: 80, bytes: 30, limit: 100 },
    ]);
  });
});

describe('releaseWith: the writes that give a ticket\'s places back', () => {
  const writes = (t: Parameters<typeof releaseWith>[1]) => {
    const w: string[] = [];
    releaseWith({ zrem: (k, m) => w.push(`zrem ${k} ${m}`), giveBack: (s, m, tot) => w.push(`giveBack ${s} ${m} ${tot}`) }, t);
    return w;
  };
  it('removes the member from the function set and gives its bytes back, each only when held', () => {
    expect(writes(ticketOf(req(1, 1, 10)))).toEqual(['zrem q:fn id7', 'giveBack q:bytes id7:10 q:bytes:total']);
    expect(writes(ticketOf(req(1, 0, 10)))).toEqual(['zrem q:fn id7']);
    expect(writes(ticketOf(req(0, 1, 10)))).toEqual(['giveBack q:bytes id7:10 q:bytes:total']);
    expect(writes(ticketOf(req(0, 0, 10)))).toEqual([]);
  });
});
