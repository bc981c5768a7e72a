// Held-out splits. Two kinds, so that evaluation measures learning rather than recall of the
// exact training strings:
//  - by disease: a stratified sample of diseases never appears in any training record;
//  - by template: for the remaining diseases, some wordings (question phrasings, passage
//    styles, NER sentence frames, dialogue scenarios) are kept out of training.
import type { Rng } from '../engine/rng.js';
import { diseaseNames, type Disease } from './knowledge.js';
import { pick, shuffled, stream } from './sampling.js';
import type { HeldoutKind, Provenance, Split } from './types.js';

/**
 * Diseases whose names and aliases occur in no other disease's text. Only these can be held
 * out: a held-out name inside another disease's symptom or cause would leak into training.
 */
export function holdableDiseases(diseases: readonly Disease[]): Disease[] {
  const texts = diseases.map((d) => JSON.stringify({ ...d, file: undefined }));
  return diseases.filter((d, i) => {
    const names = diseaseNames(d);
    return texts.every((t, j) => j === i || !names.some((n) => t.includes(n)));
  });
}

/**
 * round(fraction * N) holdable diseases, taken round-robin over departments so every
 * department keeps most of its diseases in training and most departments lose one.
 */
export function chooseHeldoutDiseases(
  diseases: readonly Disease[], fraction: number, rng: Rng, exclude: ReadonlySet<Disease> = new Set(),
): Set<Disease> {
  const target = Math.round(diseases.length * fraction);
  const sizes = new Map<string, number>();
  for (const d of diseases) sizes.set(d.department, (sizes.get(d.department) ?? 0) + 1);
  const pools = new Map<string, Disease[]>();
  for (const d of shuffled(rng, holdableDiseases(diseases).filter((d) => !exclude.has(d)))) {
    if (!pools.has(d.department)) pools.set(d.department, []);
    pools.get(d.department)!.push(d);
  }
  // never empty a department's training set, never take much more than its share
  const cap = (dept: string) => Math.min(sizes.get(dept)! - 1, Math.max(1, Math.ceil(sizes.get(dept)! * fraction)));
  const chosen = new Set<Disease>();
  const taken = new Map<string, number>();
  const order = shuffled(rng, [...pools.keys()].sort());
  for (let progress = true; chosen.size < target && progress; ) {
    progress = false;
    for (const dept of order) {
      if (chosen.size >= target) break;
      const pool = pools.get(dept)!;
      const n = taken.get(dept) ?? 0;
      if (!pool.length || n >= cap(dept)) continue;
      chosen.add(pool.pop()!);
      taken.set(dept, n + 1);
      progress = true;
    }
  }
  return chosen;
}

export type Which = 'train' | 'heldout' | 'all';

/** Which template indices of each family are held out; fixed per (seed, family). */
export class TemplateSplit {
  private cache = new Map<string, { n: number; held: Set<number> }>();

  constructor(private readonly seed: number, private readonly fraction: number) {}

  heldout(family: string, n: number): ReadonlySet<number> {
    const hit = this.cache.get(family);
    if (hit) {
      if (hit.n !== n) throw new Error(`template family "${family}" used with ${hit.n} and ${n} templates`);
      return hit.held;
    }
    const count = n < 2 || this.fraction <= 0 ? 0 : Math.min(n - 1, Math.max(1, Math.round(n * this.fraction)));
    const order = shuffled(stream(this.seed, `templates:${family}`), [...Array(n).keys()]);
    const held = new Set(order.slice(0, count));
    this.cache.set(family, { n, held });
    return held;
  }

  indices(family: string, n: number, which: Which): number[] {
    const held = this.heldout(family, n);
    const all = [...Array(n).keys()];
    return which === 'all' ? all : all.filter((i) => held.has(i) === (which === 'heldout'));
  }
}

/** Where a record goes and which templates it may draw its wording from. */
export interface Placement {
  which: Which;
  heldout?: HeldoutKind;
}

const TRAIN: Placement = { which: 'train' };
const UNSEEN_DISEASE: Placement = { which: 'all', heldout: 'unseen_disease' };
const UNSEEN_TEMPLATE: Placement = { which: 'heldout', heldout: 'unseen_template' };

export class Splitter {
  constructor(
    readonly unseen: ReadonlySet<Disease>,
    readonly templates: TemplateSplit,
    readonly fraction: number,
  ) {}

  /**
   * One record slot for `d` in `family`: a held-out disease goes to heldout with any
   * template; otherwise the slot is held out with probability `fraction` (using a held-out
   * template) and goes to training with a training template the rest of the time.
   */
  draw(d: Disease, family: string, n: number, rng: Rng): { t: number; place: Placement } {
    if (this.unseen.has(d)) return { t: rng.int(n), place: UNSEEN_DISEASE };
    const held = this.templates.indices(family, n, 'heldout');
    if (held.length && rng.next() < this.fraction) return { t: pick(rng, held), place: UNSEEN_TEMPLATE };
    return { t: pick(rng, this.templates.indices(family, n, 'train')), place: TRAIN };
  }

  /** Every template of `family` once for `d`, each placed by the same rule without sampling. */
  each(d: Disease, family: string, n: number): { t: number; place: Placement }[] {
    const held = this.templates.heldout(family, n);
    return [...Array(n).keys()].map((t) => ({
      t,
      place: this.unseen.has(d) ? UNSEEN_DISEASE : held.has(t) ? UNSEEN_TEMPLATE : TRAIN,
    }));
  }

  /** A template index for a nested choice (a first turn, a follow-up) within a placed record. */
  choose(family: string, n: number, place: Placement, rng: Rng): number {
    const allowed = this.templates.indices(family, n, place.which);
    return pick(rng, allowed.length ? allowed : this.templates.indices(family, n, 'all'));
  }
}

type Unplaced<T extends Provenance> = Omit<T, 'id' | 'heldout'>;

/** Gathers records into train/heldout and gives them ids after a seeded shuffle. */
export class SplitCollector<T extends Provenance & { id: string }> {
  private train: Unplaced<T>[] = [];
  private heldout: (Unplaced<T> & { heldout: HeldoutKind })[] = [];

  add(place: Placement, record: Unplaced<T>): void {
    if (place.heldout) this.heldout.push({ ...record, heldout: place.heldout });
    else this.train.push(record);
  }

  finish(prefix: string, rng: Rng): Split<T> {
    const ids = <R>(split: string, rs: R[]) =>
      shuffled(rng, rs).map((r, i) => ({ id: `${prefix}-${split}-${String(i).padStart(5, '0')}`, ...r }) as unknown as T);
    return { train: ids('train', this.train), heldout: ids('heldout', this.heldout) };
  }
}
