// Percentile bootstrap over evaluation items (Efron & Tibshirani 1993, ch. 13): draw the
// item set again with replacement, recompute the metric on each draw, and take the
// (1 - level) / 2 and (1 + level) / 2 quantiles of the recomputed values as the interval.
// A paired bootstrap of a difference draws one index set per resample and applies it to
// both systems' per-item results on the same items, so what the two have in common (the
// hard items) cancels out of the difference.
//
// A metric is given as a function of an index multiset, so corpus-level metrics are
// recomputed per resample from per-item sufficient statistics (BLEU's n-gram match counts,
// NER's true/false positives) instead of by averaging per-item scores.
//
// Written here rather than taken from npm: the bootstrap packages there resample arrays of
// numbers for a mean, with no seeded generator, no shared index sets for paired
// differences and no corpus-level statistics.
import { Rng } from '../engine/rng.js';

export type Interval = [number, number];

/** A metric computed on the items at these indices (repeats count repeatedly). */
export type Statistic = (indices: Int32Array) => number;

export interface BootstrapOptions {
  /** Number of resamples (default 1000). */
  resamples?: number;
  /** Seed of the index draws; the same seed draws the same index sets for every metric. */
  seed?: number;
  /** Coverage of the interval (default 0.95). */
  level?: number;
  /** Explicit index sets (each of length n) instead of seeded draws: for checking the arithmetic by hand. */
  indices?: Int32Array[];
}

/** The index sets of a bootstrap: `resamples` draws of n indices in [0, n), uniform with replacement. */
export function* resampleIndices(n: number, o: BootstrapOptions = {}): Generator<Int32Array> {
  if (o.indices) {
    for (const idx of o.indices) {
      if (idx.length !== n) throw new Error(`bootstrap: an index set has ${idx.length} entries for ${n} items`);
      yield idx;
    }
    return;
  }
  const B = o.resamples ?? 1000;
  if (!(Number.isInteger(B) && B >= 1)) throw new Error(`bootstrap: resamples must be a positive integer, got ${B}`);
  const rng = new Rng(o.seed ?? 0);
  const idx = new Int32Array(n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) idx[i] = rng.int(n);
    yield idx;
  }
}

/** The q-quantile of ascending values by linear interpolation between order statistics (numpy's default, Hyndman & Fan type 7). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) throw new Error('quantile of no values');
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h),
    hi = Math.ceil(h);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** The central `level` interval of a sample of values (non-finite values are dropped). */
export function percentileInterval(values: ArrayLike<number>, level = 0.95): Interval | null {
  if (!(level > 0 && level < 1)) throw new Error(`bootstrap: level must be in (0, 1), got ${level}`);
  const v = Float64Array.from(Array.from(values).filter(Number.isFinite)).sort();
  if (v.length === 0) return null;
  return [quantile(v, (1 - level) / 2), quantile(v, (1 + level) / 2)];
}

const identity = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

export interface Estimate {
  value: number;
  /** null when no resample gave a finite value. */
  ci: Interval | null;
}

/** The metric on all n items, with its percentile bootstrap interval. */
export function bootstrap(stat: Statistic, n: number, o: BootstrapOptions = {}): Estimate {
  if (n < 1) throw new Error('bootstrap: no items');
  const values: number[] = [];
  for (const idx of resampleIndices(n, o)) values.push(stat(idx));
  return { value: stat(identity(n)), ci: percentileInterval(values, o.level) };
}

export interface Difference extends Estimate {
  /** The interval of the difference contains 0: the change cannot be told from resampling noise. */
  within_noise: boolean;
}

/**
 * `a - b` on the same n items (a[i] and b[i] are one item's results under two systems), with
 * the percentile interval of the paired resampled differences.
 */
export function pairedDifference(a: Statistic, b: Statistic, n: number, o: BootstrapOptions = {}): Difference {
  const r = bootstrap((idx) => a(idx) - b(idx), n, o);
  return { ...r, within_noise: r.ci === null || (r.ci[0] <= 0 && r.ci[1] >= 0) };
}
