// Seeded draws for the corpus generators, on top of the engine's xoshiro128** Rng. Each
// generator draws from its own stream named by a label, so adding a draw to one generator
// leaves every other generator's output unchanged.
import { Rng } from '../engine/rng.js';

function labelHash(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** An independent stream for (seed, label). */
export function stream(seed: number, label: string): Rng {
  return Rng.derive(seed, labelHash(label));
}

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  if (!xs.length) throw new Error('pick: empty list');
  return xs[rng.int(xs.length)];
}

/** k distinct elements in random order (all of them when k >= xs.length). */
export function sample<T>(rng: Rng, xs: readonly T[], k: number): T[] {
  const a = xs.slice();
  const n = Math.min(k, a.length);
  for (let i = 0; i < n; i++) {
    const j = i + rng.int(a.length - i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}

export function shuffled<T>(rng: Rng, xs: readonly T[]): T[] {
  return rng.shuffle(xs.slice());
}
