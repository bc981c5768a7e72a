import { Rng } from '../engine/rng.js';

/**
 * Sample j of an endless stream of epochs, each a seeded permutation of 0..count-1. Every
 * stage draws its micro-batches through this, so micro-batch m is a pure function of
 * (seed, m) and a resumed run needs no data-loader state.
 */
export class EpochSampler {
  private epoch = -1;
  private perm = new Int32Array(0);

  constructor(
    readonly count: number,
    readonly seed: number,
  ) {
    if (count <= 0) throw new RangeError('EpochSampler: nothing to sample from');
  }

  at(j: number): number {
    const e = Math.floor(j / this.count);
    if (e !== this.epoch) {
      this.perm = Int32Array.from(Rng.derive(this.seed, e).shuffle([...Array(this.count).keys()]));
      this.epoch = e;
    }
    return this.perm[j % this.count];
  }
}
