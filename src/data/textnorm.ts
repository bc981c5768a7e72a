// Text normalisation and n-gram hashing shared by dedup and decontamination: two records that
// differ only in width (full-width ＡＢＣ vs ABC), case, spacing or punctuation count as the same.

const STRIP = /[\p{P}\p{S}\p{Z}\s]+/gu;

/** NFKC, lower case, whitespace and punctuation removed. */
export function normaliseText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(STRIP, '');
}

/** Murmur3's 32-bit finaliser: spreads every input bit over the whole word. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const BASE = 0x01000193; // odd, so powers never vanish mod 2^32

/**
 * Calls `fn(hash)` for the 32-bit hash of every n-character window of `text` (UTF-16 units),
 * using a rolling polynomial hash (O(1) per window) finished with fmix32. A text shorter than n
 * yields one hash of the whole text; an empty text yields none.
 */
export function forEachNgramHash(text: string, n: number, fn: (h: number) => void): void {
  const len = text.length;
  if (len === 0) return;
  const w = Math.min(n, len);
  let pow = 1; // BASE^(w-1)
  for (let i = 1; i < w; i++) pow = Math.imul(pow, BASE);
  let h = 0;
  for (let i = 0; i < w; i++) h = (Math.imul(h, BASE) + text.charCodeAt(i)) | 0;
  fn(fmix32(h));
  for (let i = w; i < len; i++) {
    h = (Math.imul(h - Math.imul(text.charCodeAt(i - w), pow), BASE) + text.charCodeAt(i)) | 0;
    fn(fmix32(h));
  }
}
