// Text normalisation and n-gram hashing shared by dedup and decontamination: two records that
// differ only in width (full-width ＡＢＣ vs ABC), case, spacing or punctuation count as the same.

const STRIP = /[\p{P}\p{S}\p{Z}\s]+/gu;

/** NFKC, lower case, whitespace and punctuation removed. */
export function normaliseText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(STRIP, '');
}

/** Murmur3's 32-bit finaliser: spreads every input bit over the whole word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const BASE = 0x01000193; // odd, so powers never vanish mod 2^32

/**
 * The 32-bit hashes of every n-character window of `text` (UTF-16 units), by a rolling
 * polynomial hash (O(1) per window) finished with fmix32, written into `buf` (grown when
 * short) and returned as a view. A text shorter than n gives one hash of the whole text.
 */
export function ngramHashes(text: string, n: number, buf: Uint32Array = new Uint32Array(0)): Uint32Array {
  const len = text.length;
  if (len === 0) return buf.subarray(0, 0);
  const w = Math.min(n, len);
  const count = len - w + 1;
  const out = buf.length >= count ? buf : new Uint32Array(Math.max(count, buf.length * 2));
  let pow = 1; // BASE^(w-1)
  for (let i = 1; i < w; i++) pow = Math.imul(pow, BASE);
  let h = 0;
  for (let i = 0; i < w; i++) h = (Math.imul(h, BASE) + text.charCodeAt(i)) | 0;
  out[0] = fmix32(h);
  for (let i = w; i < len; i++) {
    h = (Math.imul(h - Math.imul(text.charCodeAt(i - w), pow), BASE) + text.charCodeAt(i)) | 0;
    out[i - w + 1] = fmix32(h);
  }
  return out.subarray(0, count);
}

/** The distinct values of a hash array, sorted, as a view of the same buffer. */
export function uniqueSorted(hashes: Uint32Array): Uint32Array {
  if (hashes.length < 2) return hashes;
  hashes.sort();
  let k = 1;
  for (let i = 1; i < hashes.length; i++) if (hashes[i] !== hashes[k - 1]) hashes[k++] = hashes[i];
  return hashes.subarray(0, k);
}
