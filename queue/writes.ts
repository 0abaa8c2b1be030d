/**
 * Writes that go with an answer, as data (`queue/replies.ts`'s `WithAnswer` form) for the
 * Lua scripts that apply them: a node's counts of an invocation (runtime/stats.ts
 * `invocationCommands` writes them here as into an ioredis pipeline), an admission place given
 * back, an input key deleted, a lane job removed: one command and one round trip per invocation,
 * not two and eleven. Per op: its command, the 1-based index of its key in `keys`, then two
 * arguments; `LPUSHN` and `ZREMN` (`merge`'s, for several calls at once) take a count and that
 * many values instead.
 */
export class StatsOps {
  readonly keys: string[] = [];
  readonly args: Array<string | number | Buffer> = [];
  /** How many ops `args` holds. */
  count = 0;
  private readonly index = new Map<string, number>();
  hincrby(key: string, field: string, n: number) { this.op('HINCRBY', key, field, n); }
  hincrbyfloat(key: string, field: string, n: string) { this.op('HINCRBYFLOAT', key, field, n); }
  hset(key: string, field: string, value: number) { this.op('HSET', key, field, value); }
  lpush(key: string, value: string) { this.op('LPUSH', key, value, ''); }
  ltrim(key: string, start: number, stop: number) { this.op('LTRIM', key, start, stop); }
  del(key: string) { this.op('DEL', key, '', ''); }
  ifExists(key: string, write: () => void): void {
    const at = this.args.length;
    const before = this.count;
    this.op('IFEXISTS', key, 0, '');
    write();
    // How many of the ops that follow the script skips when `key` is missing.
    this.args[at + 2] = this.count - before - 1;
  }
  /** Removes one `value` from the list at `key` (a lane job from its node's active list). */
  lrem(key: string, value: Buffer) { this.op('LREM', key, 1, value); }
  /**
   * Goes first: removes `value` (a lane job) from the list at `key` (its node's active list), and
   * when it is not there, no write is applied and no answer given (`deliver`): the job was taken
   * back from a node held dead (queue/dispatcher.ts orphans answered its caller; the reaper moved
   * it to a live node, whose answer counts).
   */
  held(key: string, value: Buffer) {
    this.args.unshift('HELD', this.keyIndex(key), '', value);
    this.count++;
  }
  /**
   * Goes first: when `key` (a BullMQ job's lock, `Keys.jobLock`) no longer holds `token`, this
   * node's, no write is applied and no answer given (`deliver`): the job was taken back from the node
   * while it was held dead (queue/dispatcher.ts takeBackJob answered its caller; the reaper moved it,
   * or answered it), or the node's hold lapsed (a BullMQ stall: whoever takes it next runs it again).
   */
  locked(key: string, token: string) {
    this.args.unshift('LOCKED', this.keyIndex(key), '', token);
    this.count++;
  }
  /** Removes `member` (and the member '', which is never one). */
  zrem(key: string, member: string) { this.op('ZREM', key, member, ''); }
  /** Removes `member` from `set` and, if it was there, its bytes from `total` (queue/admission.ts). */
  giveBack(set: string, member: string, total: string) {
    const i = this.keyIndex(set);
    this.args.push('GIVEBACK', i, member, this.keyIndex(total));
    this.count++;
  }
  private op(cmd: string, key: string, a: string | number | Buffer, b: string | number | Buffer): void {
    this.args.push(cmd, this.keyIndex(key), a, b);
    this.count++;
  }
  private many(cmd: 'LPUSHN' | 'ZREMN', key: string, values: ReadonlyArray<string | number | Buffer>): void {
    this.args.push(cmd, this.keyIndex(key), values.length, ...values);
    this.count++;
  }
  private keyIndex(key: string): number {
    let i = this.index.get(key);
    if (i === undefined) {
      this.keys.push(key);
      this.index.set(key, (i = this.keys.length));
    }
    return i;
  }

  /**
   * The writes of several calls as one set of ops with the same effect as applying each in turn
   * (issue 10 §3: the counts of the calls answered in one turn go to Redis in one script). Ops under
   * the same `ifExists` key go under one check; a hash field's increments are summed (`HINCRBYFLOAT`'s
   * to the 3 decimals every count writes, so the sum is exact), its `HSET` keeps the last value, a
   * list's pushes become one push of them all in order followed by its trim, a set's removals one
   * removal. Other ops (`GIVEBACK`, `DEL`, `LREM`) are kept one by one, in order. Only ops that touch
   * different keys change order, or increments and sets of one hash's fields (which commute).
   */
  static merge(all: readonly StatsOps[]): StatsOps {
    if (all.length === 1) return all[0]!;
    type Slot = { cmd: string; key: string; a: string | number | Buffer; b: string | number | Buffer; sum?: number; values?: Array<string | number | Buffer> };
    const groups = new Map<string, Map<string, Slot>>();
    let kept = 0;
    for (const o of all) {
      let guard = '';
      let guarded = 0;
      for (let at = 0; at < o.args.length; ) {
        const cmd = o.args[at] as string;
        const key = o.keys[(o.args[at + 1] as number) - 1]!;
        const width = cmd === 'LPUSHN' || cmd === 'ZREMN' ? 3 + (o.args[at + 2] as number) : 4;
        const a = o.args[at + 2]!;
        const b = o.args[at + 3]!;
        if (cmd === 'IFEXISTS') {
          guard = key;
          guarded = a as number;
          at += width;
          continue;
        }
        const g = guarded > 0 ? guard : '';
        if (guarded > 0) guarded--;
        let slots = groups.get(g);
        if (!slots) groups.set(g, (slots = new Map()));
        const values = (): Array<string | number | Buffer> => (width === 4 ? [a as string] : o.args.slice(at + 3, at + width));
        let id: string;
        switch (cmd) {
          case 'HINCRBY':
          case 'HINCRBYFLOAT':
          case 'HSET':
            id = `${cmd}\0${key}\0${String(a)}`;
            break;
          case 'LPUSH':
          case 'LPUSHN':
            id = `LPUSHN\0${key}`;
            break;
          case 'ZREM':
          case 'ZREMN':
            id = `ZREMN\0${key}`;
            break;
          case 'LTRIM':
            id = `LTRIM\0${key}\0${String(a)}\0${String(b)}`;
            break;
          default:
            id = `${kept++}`;
        }
        const s = slots.get(id);
        if (!s) {
          const slot: Slot = { cmd, key, a, b: cmd === 'GIVEBACK' ? o.keys[(b as number) - 1]! : b };
          if (cmd === 'HINCRBY' || cmd === 'HINCRBYFLOAT') slot.sum = Number(b);
          if (id.startsWith('LPUSHN') || id.startsWith('ZREMN')) slot.values = values();
          slots.set(id, slot);
        } else if (s.sum !== undefined) s.sum += Number(b);
        else if (s.values) s.values.push(...values());
        else if (cmd === 'HSET') s.b = b;
        at += width;
      }
    }
    const out = new StatsOps();
    const emit = (slots: Map<string, Slot>) => {
      for (const s of slots.values()) {
        if (s.values) out.many(s.cmd === 'LPUSH' || s.cmd === 'LPUSHN' ? 'LPUSHN' : 'ZREMN', s.key, s.values);
        else if (s.cmd === 'HINCRBYFLOAT') out.op(s.cmd, s.key, s.a, s.sum!.toFixed(3));
        else if (s.cmd === 'HINCRBY') out.op(s.cmd, s.key, s.a, s.sum!);
        else if (s.cmd === 'GIVEBACK') out.giveBack(s.key, s.a as string, s.b as string);
        else out.op(s.cmd, s.key, s.a, s.b);
      }
    };
    for (const [g, slots] of groups) {
      if (g === '') emit(slots);
      else out.ifExists(g, () => emit(slots));
    }
    return out;
  }
}
