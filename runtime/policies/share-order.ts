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
 * place. A group's order is a linked list: an eviction (usually near the front) unlinks in O(1),
 * and a called model is put back by a walk in from its group's end (called models are mostly the
 * popular ones, near the top), where a sorted array shifted every member between the place it
 * left and the end, and back (`lfu` at 50%: ~670 moves a request).
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

/** The longest stretch of a group's list a walk passes without an express lane member (`ShareOrder.link`). */
const LANE_GAP = 16;

export class ShareOrder {
  /** By model number: loaded (seen among the candidates, not evicted since). */
  private member = new Uint8Array(0);
  private groupOf = new Int32Array(0);
  /** By model number: its `ShareScoring.bound`. */
  private boundOf = new Uint8Array(0);
  private entry: (NumberedEntry | undefined)[] = [];
  private nMembers = 0;
  /**
   * Each group's members by rate, ascending: a circular doubly linked list through `next` / `prev`
   * (indexed by model number) whose head is node `nModels + g`, holding no model.
   */
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  /**
   * Each group's express lane: some of its members (`onLane` 1), in the list's order, in a second
   * circular list through `laneNext` / `lanePrev` with the same head. A walk in from the end goes
   * down the lane first, then down the list from the lowest lane member of a higher rate (`link`).
   */
  private laneNext = new Int32Array(0);
  private lanePrev = new Int32Array(0);
  private onLane = new Uint8Array(0);
  private nModels = 0;
  private count: number[] = [];
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
    // (At most n groups: each has a model.)
    this.nModels = n;
    this.next = new Int32Array(2 * n);
    this.prev = new Int32Array(2 * n);
    this.laneNext = new Int32Array(2 * n);
    this.lanePrev = new Int32Array(2 * n);
    this.onLane = new Uint8Array(n);
    this.count = [];
    this.taken = new Uint8Array(n);
    this.bound = new Float64Array(n);
    this.score = new Float64Array(n);
    this.seenAt = new Int32Array(n);
    this.nMembers = 0;
    this.active = new Int32Array(n);
    this.nActive = 0;
  }

  /** Model i was evicted. */
  evicted(i: number): void {
    if (this.member[i] === 1) {
      this.member[i] = 0;
      this.nMembers--;
      this.unlink(i);
    }
  }

  /**
   * The victims `selectVictims` would give for `candidates` (exactly the models loaded, each the
   * same entry object while it stays loaded, with the same size and load time at each load), lowest
   * score first until `needBytes` are freed; `reason` null gives empty reasons.
   */
  lowest(candidates: readonly EntryFacts[], view: ShareView, needBytes: number, reason: ((e: EntryFacts) => string) | null): Victim[] {
    const rates = view.rates;
    this.place(view);
    this.join(candidates as readonly NumberedEntry[], rates);
    const { next, taken, entry, scoring, seenAt, bound, score, boundOf, nModels } = this;
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
        const head = nModels + active[a]!;
        for (let i = next[head]!; i !== head; i = next[i]!) {
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

  /**
   * Puts back in place the members whose rate moved against the others' (`view.takeMoved`): each
   * is taken out, then walked in from its group's end (the highest rate), down past the members of
   * a higher rate. The rest are still in order, so the place is the same whichever end the walk
   * starts from; a called model's rate is mostly a popular one's, near the top: at 75%, `lfu`
   * walks past 45 members from the end against 115 from where it was.
   */
  private place(view: ShareView): void {
    const nMoved = view.takeMoved();
    if (nMoved === 0) return;
    const { moved, rates } = view;
    const member = this.member;
    for (let k = 0; k < nMoved; k++) this.unlink(moved[k]!, member);
    for (let k = 0; k < nMoved; k++) {
      const i = moved[k]!;
      if (member[i] === 1) this.link(i, rates);
    }
  }

  /** Adds the candidates that are not members yet (the models loaded since the last request: usually the last ones). */
  private join(candidates: readonly NumberedEntry[], rates: Float64Array): void {
    let missing = candidates.length - this.nMembers;
    if (missing < 0) throw new Error('ShareOrder: a loaded model was evicted unreported');
    const { member, groupOf, entry, nModels, next, prev, laneNext, lanePrev } = this;
    for (let k = candidates.length - 1; missing > 0 && k >= 0; k--) {
      const e = candidates[k]!;
      const i = e.idx;
      if (member[i] === 1) continue;
      member[i] = 1;
      this.nMembers++;
      missing--;
      entry[i] = e;
      let g = groupOf[i]!;
      if (g < 0) {
        g = this.scoring.group(e);
        groupOf[i] = g;
        this.boundOf[i] = this.scoring.bound(e);
        while (this.count.length <= g) {
          const head = nModels + this.count.length;
          next[head] = head;
          prev[head] = head;
          laneNext[head] = head;
          lanePrev[head] = head;
          this.count.push(0);
        }
      }
      this.link(i, rates);
    }
  }

  /**
   * Links model i into its group's list after the members of a lower or equal rate and before
   * those of a higher one, walking in from the end: down the express lane past its members of a
   * higher rate, then down the list from the lowest of them. The members passed on the list are
   * not on the lane (the lane member below them has a rate not higher), so every `LANE_GAP`-th of
   * them is put on it, just below the last one: no stretch walked stays longer than that. (`lfu`
   * at 75%, ~380 loaded: the list alone passed ~45 members to place a called model and ~110 for
   * one loaded; with the lane the run takes 0.79x the CPU, at 50% 0.89x.)
   */
  private link(i: number, rates: Float64Array): void {
    const { next, prev, lanePrev, nModels } = this;
    const g = this.groupOf[i]!;
    const head = nModels + g;
    const x = rates[i]!;
    let above = head;
    for (let a = lanePrev[head]!; a !== head && rates[a]! > x; a = lanePrev[a]!) above = a;
    let h = prev[above]!;
    for (let run = 1; h !== head && rates[h]! > x; run++) {
      if (run === LANE_GAP) {
        this.onLaneBelow(h, above);
        above = h;
        run = 0;
      }
      h = prev[h]!;
    }
    const k = next[h]!;
    next[h] = i;
    prev[i] = h;
    next[i] = k;
    prev[k] = i;
    if (this.count[g]!++ === 0) this.active[this.nActive++] = g;
  }

  /** Puts member h on its group's express lane just below node `above` (a lane member or the head). */
  private onLaneBelow(h: number, above: number): void {
    const { laneNext, lanePrev } = this;
    const b = lanePrev[above]!;
    laneNext[b] = h;
    lanePrev[h] = b;
    laneNext[h] = above;
    lanePrev[above] = h;
    this.onLane[h] = 1;
  }

  /** Takes model i out of its group's list (unless `member[i]` is 0, when given). */
  private unlink(i: number, member?: Uint8Array): void {
    if (member !== undefined && member[i] !== 1) return;
    const { next, prev } = this;
    const p = prev[i]!;
    const k = next[i]!;
    next[p] = k;
    prev[k] = p;
    if (this.onLane[i] === 1) {
      const { laneNext, lanePrev } = this;
      const b = lanePrev[i]!;
      const a = laneNext[i]!;
      laneNext[b] = a;
      lanePrev[a] = b;
      this.onLane[i] = 0;
    }
    const g = this.groupOf[i]!;
    if (--this.count[g]! === 0) {
      const { active } = this;
      let a = 0;
      while (active[a] !== g) a++;
      active[a] = active[--this.nActive]!;
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
