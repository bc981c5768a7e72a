// NaN / Inf in loaded weights or optimizer state: found on load and named, instead of a model
// that scores `null` and generates blanks, or a resumed run that diverges at once.

/** Index of the first NaN or ±Infinity in a, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    // x - x is 0 for every finite x and NaN for NaN and ±Infinity
    if (x - x !== 0) return i;
  }
  return -1;
}

export class NonFiniteError extends Error {}

/** Throws naming the first tensor that holds NaN or ±Infinity, where and how many. */
export function checkFiniteTensors(tensors: Map<string, { data: ArrayLike<number> }>, source: string): void {
  for (const [name, t] of tensors) {
    const at = firstNonFinite(t.data);
    if (at < 0) continue;
    let n = 0;
    for (let i = at; i < t.data.length; i++) if (t.data[i] - t.data[i] !== 0) n++;
    throw new NonFiniteError(
      `${source}: tensor ${name} holds ${t.data[at]} at index ${at} (${n} of ${t.data.length} values are NaN or infinite); the weights are corrupt`,
    );
  }
}
