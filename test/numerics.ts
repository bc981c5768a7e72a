import assert from 'node:assert/strict';

/** max |a - b| over max |b|: the largest error relative to the size of the expected values. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-12);
}

/**
 * Central-difference check of an analytic gradient: loss() recomputes the scalar loss from x,
 * grad holds dloss/dx. Compares a deterministic sample of coordinates by the relative error
 * of the sampled gradient vectors.
 */
export function gradCheck(label: string, loss: () => number, x: Float64Array, grad: Float64Array, samples = 24): void {
  const h = 1e-6;
  const idx = Array.from({ length: Math.min(samples, x.length) }, (_, i) =>
    x.length <= samples ? i : Math.floor(((i + 0.5) * x.length) / samples),
  );
  let diff = 0,
    norm = 0;
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + h;
    const up = loss();
    x[i] = x0 - h;
    const down = loss();
    x[i] = x0;
    const numeric = (up - down) / (2 * h);
    diff += (numeric - grad[i]) ** 2;
    norm += numeric ** 2 + grad[i] ** 2;
  }
  const rel = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
  assert.ok(rel < 1e-6, `${label}: finite-difference relative error ${rel}`);
  assert.ok(norm > 0, `${label}: gradient is identically zero on the sample`);
}
