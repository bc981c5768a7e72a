// Exact-substring deduplication (Lee et al. 2022, "Deduplicating Training Data Makes Language
// Models Better", ExactSubstr): build a suffix array over the concatenated corpus, find every
// substring of at least N tokens that occurs more than once via the LCP array, and strike it.
// Tokens here are Unicode code points: this pass runs before the tokenizer exists, and for
// Chinese a character is close to a token. Like the paper, the default strikes every copy
// ('none' kept); 'first' keeps the earliest occurrence and strikes the later ones.
//
// The suffix array is built by SA-IS (Nong, Zhang & Chan 2009, induced sorting, O(n)); the
// LCP array by Kasai et al.'s O(n) algorithm, both over Int32Array. Prefix doubling would be
// simpler but took seconds per few MB of text with long duplicates, where SA-IS stays linear.

/** Suffix array of `s`, whose values lie in [0, upper]. */
export function suffixArray(s: Int32Array, upper: number): Int32Array {
  const n = s.length;
  if (n === 0) return new Int32Array(0);
  if (n === 1) return Int32Array.of(0);
  if (n === 2) return s[0] < s[1] ? Int32Array.of(0, 1) : Int32Array.of(1, 0);
  const sa = new Int32Array(n);
  // ls[i] = 1 when suffix i is S-type (smaller than suffix i+1); the last suffix is L-type
  const ls = new Uint8Array(n);
  for (let i = n - 2; i >= 0; i--) ls[i] = s[i] === s[i + 1] ? ls[i + 1] : s[i] < s[i + 1] ? 1 : 0;
  // bucket starts: sumL[c] for L-type suffixes of character c, sumS[c] for S-type ones
  const sumL = new Int32Array(upper + 2);
  const sumS = new Int32Array(upper + 2);
  for (let i = 0; i < n; i++) {
    if (!ls[i]) sumS[s[i]]++;
    else sumL[s[i] + 1]++;
  }
  for (let c = 0; c <= upper; c++) {
    sumS[c] += sumL[c];
    if (c < upper) sumL[c + 1] += sumS[c];
  }
  const buf = new Int32Array(upper + 2);
  const induce = (lms: Int32Array) => {
    sa.fill(-1);
    buf.set(sumS);
    for (const d of lms) sa[buf[s[d]]++] = d;
    buf.set(sumL);
    sa[buf[s[n - 1]]++] = n - 1;
    for (let i = 0; i < n; i++) {
      const v = sa[i];
      if (v >= 1 && !ls[v - 1]) sa[buf[s[v - 1]]++] = v - 1;
    }
    buf.set(sumL);
    for (let i = n - 1; i >= 0; i--) {
      const v = sa[i];
      if (v >= 1 && ls[v - 1]) sa[--buf[s[v - 1] + 1]] = v - 1;
    }
  };
  // LMS positions: S-type with an L-type left neighbour
  const lmsMap = new Int32Array(n + 1).fill(-1);
  let m = 0;
  for (let i = 1; i < n; i++) if (!ls[i - 1] && ls[i]) lmsMap[i] = m++;
  const lms = new Int32Array(m);
  for (let i = 1, k = 0; i < n; i++) if (!ls[i - 1] && ls[i]) lms[k++] = i;
  induce(lms);
  if (m) {
    // name the sorted LMS substrings, sort the reduced string recursively, induce again
    const sortedLms = new Int32Array(m);
    for (let i = 0, k = 0; i < n; i++) if (lmsMap[sa[i]] !== -1) sortedLms[k++] = sa[i];
    const rec = new Int32Array(m);
    let recUpper = 0;
    rec[lmsMap[sortedLms[0]]] = 0;
    for (let i = 1; i < m; i++) {
      let l = sortedLms[i - 1],
        r = sortedLms[i];
      const endL = lmsMap[l] + 1 < m ? lms[lmsMap[l] + 1] : n;
      const endR = lmsMap[r] + 1 < m ? lms[lmsMap[r] + 1] : n;
      let same = endL - l === endR - r;
      if (same) {
        while (l < endL && s[l] === s[r]) {
          l++;
          r++;
        }
        if (l === n || s[l] !== s[r]) same = false;
      }
      if (!same) recUpper++;
      rec[lmsMap[sortedLms[i]]] = recUpper;
    }
    const recSa = suffixArray(rec, recUpper);
    for (let i = 0; i < m; i++) sortedLms[i] = lms[recSa[i]];
    induce(sortedLms);
  }
  return sa;
}

/** lcp[i] = length of the longest common prefix of suffixes sa[i-1] and sa[i]; lcp[0] = 0. */
export function lcpArray(s: Int32Array, sa: Int32Array): Int32Array {
  const n = s.length;
  const rank = new Int32Array(n);
  for (let i = 0; i < n; i++) rank[sa[i]] = i;
  const lcp = new Int32Array(n);
  let h = 0;
  for (let i = 0; i < n; i++) {
    if (rank[i] === 0) {
      h = 0;
      continue;
    }
    const j = sa[rank[i] - 1];
    while (i + h < n && j + h < n && s[i + h] === s[j + h]) h++;
    lcp[rank[i]] = h;
    if (h > 0) h--;
  }
  return lcp;
}

export type KeepPolicy = 'none' | 'first';

/** A half-open range of UTF-16 offsets in one text. */
export type Range = [start: number, end: number];

/** The corpus as one integer sequence: code points ranked after one unique separator per text. */
interface Corpus {
  seq: Int32Array;
  alphabet: number;
  /** Where each text starts in seq. */
  starts: Int32Array;
  /** Code-point index -> UTF-16 offset, only for texts with astral characters. */
  offsets: (Int32Array | undefined)[];
}

function encodeCorpus(texts: string[]): Corpus {
  const present = new Uint8Array(0x110000);
  let total = texts.length;
  const offsets: (Int32Array | undefined)[] = [];
  for (const t of texts) {
    let cps = 0;
    let astral = false;
    for (let i = 0; i < t.length; i++) {
      const cp = t.codePointAt(i)!;
      present[cp] = 1;
      if (cp > 0xffff) {
        astral = true;
        i++;
      }
      cps++;
    }
    total += cps;
    if (astral) {
      const map = new Int32Array(cps + 1);
      let k = 0;
      for (let i = 0; i < t.length; i++) {
        map[k++] = i;
        if (t.codePointAt(i)! > 0xffff) i++;
      }
      map[k] = t.length;
      offsets.push(map);
    } else offsets.push(undefined);
  }
  // separators take ranks 0..texts.length-1, characters the ranks above them
  const rankOf = new Int32Array(0x110000);
  let r = texts.length;
  for (let cp = 0; cp < present.length; cp++) if (present[cp]) rankOf[cp] = r++;
  const seq = new Int32Array(total);
  const starts = new Int32Array(texts.length);
  let p = 0;
  texts.forEach((t, d) => {
    starts[d] = p;
    for (let i = 0; i < t.length; i++) {
      const cp = t.codePointAt(i)!;
      seq[p++] = rankOf[cp];
      if (cp > 0xffff) i++;
    }
    seq[p++] = d;
  });
  return { seq, alphabet: r, starts, offsets };
}

/**
 * For each text, the ranges (UTF-16 offsets, sorted, merged) covered by a substring of at
 * least `minLength` code points that also occurs elsewhere in the corpus (within a text or in
 * another). keep 'first' spares the earliest occurrence in corpus order.
 */
export function repeatedRanges(texts: string[], minLength: number, keep: KeepPolicy = 'none'): Range[][] {
  if (!Number.isInteger(minLength) || minLength < 1) throw new Error(`minLength must be a positive integer, got ${minLength}`);
  const { seq, alphabet, starts, offsets } = encodeCorpus(texts);
  const n = seq.length;
  const sa = suffixArray(seq, alphabet - 1);
  const lcp = lcpArray(seq, sa);
  // Suffixes sharing their first minLength symbols are adjacent in the suffix array, in runs
  // where lcp >= minLength. Separators are unique, so such a prefix never spans two texts.
  // Every member's window [start, start + minLength) is a repeated substring: mark it.
  const cover = new Int32Array(n + 1);
  const mark = (start: number) => {
    cover[start]++;
    cover[start + minLength]--;
  };
  let runStart = 0;
  for (let i = 1; i <= n; i++) {
    if (i < n && lcp[i] >= minLength) continue;
    if (i - runStart >= 2) {
      let first = -1;
      if (keep === 'first') {
        first = sa[runStart];
        for (let j = runStart + 1; j < i; j++) if (sa[j] < first) first = sa[j];
      }
      for (let j = runStart; j < i; j++) if (sa[j] !== first) mark(sa[j]);
    }
    runStart = i;
  }
  const out: Range[][] = texts.map(() => []);
  let depth = 0;
  let d = 0;
  let open = -1;
  for (let i = 0; i < n; i++) {
    depth += cover[i];
    while (d + 1 < texts.length && i >= starts[d + 1]) d++;
    const covered = depth > 0 && seq[i] >= texts.length;
    if (covered && open < 0) open = i;
    if (!covered && open >= 0) {
      const map = offsets[d];
      const [a, b] = [open - starts[d], i - starts[d]];
      out[d].push(map ? [map[a], map[b]] : [a, b]);
      open = -1;
    }
  }
  return out;
}

/** The text with the given sorted, non-overlapping ranges cut out. */
export function removeRanges(text: string, ranges: Range[]): string {
  if (!ranges.length) return text;
  const parts: string[] = [];
  let at = 0;
  for (const [a, b] of ranges) {
    parts.push(text.slice(at, a));
    at = b;
  }
  parts.push(text.slice(at));
  return parts.join('');
}
