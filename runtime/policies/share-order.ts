/**
 * Victims by popularity share without scoring every candidate (the simulator's
 * `selectAmongLoadedByShare` hint, sim/hints.ts; a speed device that changes no decision): the
 * loaded models are kept in ascending order of the rate their share is a non-decreasing function
 * of, in groups whose members' scores cannot fall as their share rises. A member's score is then
 * at least the policy's lower bound at the share of any member before it in its group, so the
 * walk of a group stops at the first member whose bound is above the best score so far: every one
 * after it scores at least that. Scores are computed exactly as the policy's `selectVictims`
 * computes them, from the very shares its candidates would carry, and compared in its full order
 * (score, then last use, then key), ties included: the same victims in the same order.
 *
 * Between two requests the rates of the models not called change alike (each × the same decay, at
 * each refresh, which leaves their order as it was: x <= y gives x × k <= y × k), so the order
 * needs only the models called since (`ShareView.takeMoved`), and those loaded since, put back in
 * place.
 */
import { tieBefore, type Selection } from './select';
import type { EntryFacts, EvictionRequest, NumberedEntry, Victim } from './types';

/** The popularity shares as the simulator has them, for `ShareOrder` (valid during the call it is passed to). */
export interface ShareView {
  /**
   * By model number: each model's share is a non-decreasing function of its value here, the
   * same function for every model.
   */
  readonly rates: Float64Array;
  /** Model i's popularity now: what its entry's `popularity` would be. */
  share(i: number): number;
  /**
   * The models whose rate may have moved against the others' since the last call (each once, in
   * `moved[0..count)`, read before the view is used again): returns the count. Every other model's
   * rate went through the same operations as all of theirs, which keeps an order by rate.
   */
  takeMoved(): number;
  readonly moved: Int32Array;
}

/**
 * How a policy scores by share: `score(share, e)` is what its `selectVictims` gives entry e when
 * its popularity is `share`; `group(e)` (a small integer) and `bound(e)` are asked once per model.
 * `bound(e)` names what is at most the score of every entry of e's group with a share of at least
 * e's: `SHARE`, e's share; `SCORE`, e's score; `NONE`, nothing (every member of the group is scored).
 */
export interface ShareScoring {
  group(e: EntryFacts): number;
  bound(e: EntryFacts): typeof SHARE | typeof SCORE | typeof NONE;
  score(share: number, e: EntryFacts): number;
}
export const SHARE = 0;
export const SCORE = 1;
export const NONE = 2;

export class ShareOrder {
  /** By model number: loaded (seen among the candidates, not evicted since). */
  private member = new Uint8Array(0);
  private groupOf = new Int32Array(0);
  /** By model number: its `ShareScoring.bound`. */
  private boundOf = new Uint8Array(0);
  private entry: (NumberedEntry | undefined)[] = [];
  /** By model number: its place in its group's list. */
  private pos = new Int32Array(0);
  private nMembers = 0;
  /** Each group's members by rate, ascending (`count[g]` of them). */
  private readonly lists: Int32Array[] = [];
  private readonly count: number[] = [];
  /** The groups with members (nActive of them, in no order). */
  private active = new Int32Array(0);
  private nActive = 0;
  /** By model number: taken as a victim of this request. */
  private taken = new Uint8Array(0);
  /** By model number: its lower bound and score in the request `seenAt` stamps (this one's is `stamp`). */
  private bound = new Float64Array(0);
  private score = new Float64Array(0);
  private seenAt = new Int32Array(0);
  private stamp = 0;

  constructor(private readonly scoring: ShareScoring) {}

  /**
   * The simulator's hints (sim/hints.ts) of a policy whose `selectVictims` is `sel`'s lowest score
   * first with these scores and `reason`: they keep this order and answer from it.
   */
  hints(sel: Selection, reason: (e: EntryFacts) => string) {
    return {
      omitReasons: (): void => sel.omitReasons(),
      numberModels: (keys: readonly string[]): boolean => {
        this.numberModels(keys.length);
        return true;
      },
      onEvictNumber: (i: number): void => this.evicted(i),
      selectAmongLoadedByShare: (req: EvictionRequest, shares: ShareView): Victim[] =>
        this.lowest(req.candidates, shares, req.needBytes, sel.reasons ? reason : null),
    };
  }

  /** Models are numbered 0..n-1 (`numberModels`). */
  numberModels(n: number): void {
    this.member = new Uint8Array(n);
    this.groupOf = new Int32Array(n).fill(-1);
    this.boundOf = new Uint8Array(n);
    this.entry = new Array<NumberedEntry | undefined>(n).fill(undefined);
    this.pos = new Int32Array(n);
    this.taken = new Uint8Array(n);
    this.bound = new Float64Array(n);
    this.score = new Float64Array(n);
    this.seenAt = new Int32Array(n);
    this.nMembers = 0;
    this.active = new Int32Array(n);
    this.nActive = 0;
    this.lists.length = 0;
    this.count.length = 0;
  }

  /** Model i was evicted. */
  evicted(i: number): void {
    if (this.member[i] === 1) {
      this.member[i] = 0;
      this.nMembers--;
      this.remove(i);
    }
  }

  /**
   * The victims `selectVictims` would give for `candidates` (exactly the models loaded, each the
   * same entry object while it stays loaded, with the same size and load time at each load), lowest
   * score first until `needBytes` are freed; `reason` null gives empty reasons.
   */
  lowest(candidates: readonly EntryFacts[], view: ShareView, needBytes: number, reason: ((e: EntryFacts) => string) | null): Victim[] {
    const rates = view.rates;
    // The members whose rate moved against the others' out, then back in their place.
    const nMoved = view.takeMoved();
    const moved = view.moved;
    const member = this.member;
    for (let j = 0; j < nMoved; j++) if (member[moved[j]!] === 1) this.remove(moved[j]!);
    for (let j = 0; j < nMoved; j++) if (member[moved[j]!] === 1) this.insert(moved[j]!, rates);
    this.join(candidates as readonly NumberedEntry[], rates);
    const { lists, count, taken, entry, scoring, seenAt, bound, score, boundOf } = this;
    const stamp = ++this.stamp;
    const { active, nActive } = this;
    const victims: Victim[] = [];
    const n = this.nMembers;
    let freed = 0;
    while (!(freed >= needBytes) && victims.length < n) {
      let best = -1;
      let bestS = NaN;
      let bestE: EntryFacts | undefined;
      for (let a = 0; a < nActive; a++) {
        const g = active[a]!;
        const list = lists[g]!;
        const c = count[g]!;
        for (let k = 0; k < c; k++) {
          const i = list[k]!;
          if (taken[i] === 1) continue;
          const e = entry[i]!;
          if (seenAt[i] !== stamp) {
            seenAt[i] = stamp;
            const sh = view.share(i);
            const sc = scoring.score(sh, e);
            const b = boundOf[i];
            bound[i] = b === SHARE ? sh : b === SCORE ? sc : -Infinity;
            score[i] = sc;
          }
          if (best >= 0 && bound[i]! > bestS) break;
          const sc = score[i]!;
          if (best < 0 || before(sc, e, bestS, bestE!)) {
            best = i;
            bestS = sc;
            bestE = e;
          }
        }
      }
      taken[best] = 1;
      const e = bestE!;
      // The reason reads the entry's popularity, which is not written on this path: the share it has now.
      victims.push({ key: e.key, reason: reason === null ? '' : reason({ ...e, popularity: view.share(best) }), idx: best } as Victim);
      freed += e.sizeBytes;
    }
    for (const v of victims) taken[(v as Victim & { idx: number }).idx] = 0;
    return victims;
  }

  /** Adds the candidates that are not members yet (the models loaded since the last request: usually the last ones). */
  private join(candidates: readonly NumberedEntry[], rates: Float64Array): void {
    let missing = candidates.length - this.nMembers;
    if (missing < 0) throw new Error('ShareOrder: a loaded model was evicted unreported');
    const { member, groupOf, entry } = this;
    for (let k = candidates.length - 1; missing > 0 && k >= 0; k--) {
      const e = candidates[k]!;
      const i = e.idx;
      if (member[i] === 1) continue;
      member[i] = 1;
      this.nMembers++;
      missing--;
      entry[i] = e;
      if (groupOf[i]! < 0) {
        const g = this.scoring.group(e);
        groupOf[i] = g;
        this.boundOf[i] = this.scoring.bound(e);
        while (this.lists.length <= g) {
          this.lists.push(new Int32Array(member.length));
          this.count.push(0);
        }
      }
      this.insert(i, rates);
    }
  }

  /** Puts model i in its group's list, after those of a lower or equal rate. */
  private insert(i: number, rates: Float64Array): void {
    const g = this.groupOf[i]!;
    const list = this.lists[g]!;
    const pos = this.pos;
    const x = rates[i]!;
    let k = this.count[g]!;
    for (; k > 0 && rates[list[k - 1]!]! > x; k--) {
      const j = list[k - 1]!;
      list[k] = j;
      pos[j] = k;
    }
    list[k] = i;
    pos[i] = k;
    if (this.count[g]!++ === 0) this.active[this.nActive++] = g;
  }

  /** Takes model i out of its group's list. */
  private remove(i: number): void {
    const g = this.groupOf[i]!;
    const list = this.lists[g]!;
    const pos = this.pos;
    const c = --this.count[g]!;
    if (c === 0) {
      const { active } = this;
      let a = 0;
      while (active[a] !== g) a++;
      active[a] = active[--this.nActive]!;
    }
    for (let k = pos[i]!; k < c; k++) {
      const j = list[k + 1]!;
      list[k] = j;
      pos[j] = k;
    }
  }
}

/** Entry a (score sa) before entry b (score sb), as `Selection`'s order has it: score, then last use, then key. */
function before(sa: number, a: EntryFacts, sb: number, b: EntryFacts): boolean {
  const d = sa - sb;
  if (d < 0) return true;
  if (d > 0) return false;
  return tieBefore(a, b);
}
