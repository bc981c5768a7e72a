// Byte-level BPE trainer, written here because no npm package trains an HF-compatible BPE
// (the `tokenizers` bindings are native Python/Rust).
//
// Why Chinese needs more than plain byte-pair counting: a CJK character is 3 UTF-8 bytes, and
// plain BPE over bytes spends early merges on byte pairs shared by many characters, or on
// pairs that straddle two characters, yielding tokens that mean nothing and leaving common
// characters split. So training runs in two phases:
//  1. Character seeding: the most frequent non-ASCII characters (by occurrence, until
//     `charCoverage` of all non-ASCII occurrences is covered, within `maxCharShare` of the
//     merge budget) get whole-character tokens first. Each is recorded as ordinary merges
//     along its byte prefix (lead+cont, then +cont ...), so HF's BPE model rebuilds exactly
//     those tokens from bytes: seeded merges have the lowest ranks, and none of them can join
//     bytes of two different characters (their right side is always a continuation byte).
//  2. Pair merges, counted over unique pre-tokens weighted by frequency, with incremental
//     pair-count updates and a lazy max-heap. A pair is only merged when the result is
//     either whole characters or the start of a single character, never a fragment that
//     crosses a character boundary.

import { utf8Into, bytesToSymbols, utf8SequenceLength, isContinuationByte } from './byte-level.js';
import { AddedTokenMatcher } from './added-tokens.js';
import type { Merge } from './bpe.js';
import type { Normalize, PreTokenize } from './pipeline.js';

export interface TrainerSettings {
  /** How many tokens the trainer may add to the 256 byte tokens. */
  newTokens: number;
  minFrequency: number;
  charCoverage: number;
  maxCharShare: number;
  specials: readonly string[];
  normalize: Normalize | null;
  preTokenize: PreTokenize;
}

export interface TrainedVocab {
  /** Bytes of each token id; ids 0-255 are the single bytes. */
  tokens: Uint8Array[];
  merges: Merge[];
  /** How many merges came from character seeding (they come first). */
  seededMerges: number;
}

const KEY = 2 ** 22; // pair key = left * KEY + right; vocabularies stay below 4M ids

/** Token registry with the per-token facts the merge rule needs. */
class Vocab {
  readonly tokens: Uint8Array[] = [];
  readonly merges: Merge[] = [];
  private readonly idOf = new Map<string, number>();
  /** Continuation bytes still missing from the token's last character (0: complete). */
  readonly need: number[] = [];
  /** The token is a lone continuation byte. */
  readonly cont: boolean[] = [];

  constructor() {
    for (let b = 0; b < 256; b++) {
      const bytes = Uint8Array.of(b);
      this.register(bytes, isContinuationByte(b) ? 0 : utf8SequenceLength(b) - 1, isContinuationByte(b));
    }
  }

  private register(bytes: Uint8Array, need: number, cont: boolean): number {
    const id = this.tokens.length;
    this.tokens.push(bytes);
    this.idOf.set(bytesToSymbols(bytes), id);
    this.need.push(need);
    this.cont.push(cont);
    return id;
  }

  get size(): number {
    return this.tokens.length;
  }

  idOfBytes(bytes: Uint8Array): number | undefined {
    return this.idOf.get(bytesToSymbols(bytes));
  }

  /** Whole characters may join whole characters; a partial character only its own next byte. */
  allowed(a: number, b: number): boolean {
    return this.cont[b] ? this.need[a] > 0 : this.need[a] === 0 && !this.cont[a] && this.need[b] === 0;
  }

  /** Records merge (a, b) and returns the id of its result, new or existing. */
  merge(a: number, b: number): number {
    const left = this.tokens[a];
    const right = this.tokens[b];
    const bytes = new Uint8Array(left.length + right.length);
    bytes.set(left);
    bytes.set(right, left.length);
    const result = this.idOfBytes(bytes) ?? this.register(bytes, this.cont[b] ? this.need[a] - 1 : 0, false);
    this.merges.push({ left: a, right: b, result });
    return result;
  }
}

async function countPieces(texts: Iterable<string> | AsyncIterable<string>, s: TrainerSettings): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const addPiece = (p: string) => counts.set(p, (counts.get(p) ?? 0) + 1);
  const addText = (t: string) => s.preTokenize(s.normalize ? s.normalize(t) : t, addPiece, true);
  // Special tokens in the corpus are markup, not text to learn merges from.
  const specials =
    s.specials.length > 0
      ? new AddedTokenMatcher(s.specials.map((content, id) => ({ id, content, lstrip: false, rstrip: false, singleWord: false })))
      : null;
  const ignore = () => {};
  let index = 0;
  for await (const text of texts) {
    if (typeof text !== 'string') throw new Error(`Tokenizer.train: text #${index} is ${typeof text}, expected a string`);
    if (specials) specials.split(text, addText, ignore);
    else addText(text);
    index++;
  }
  return counts;
}

/** Phase 1: whole-character tokens for the most frequent non-ASCII characters. */
function seedCharacters(vocab: Vocab, counts: Map<string, number>, s: TrainerSettings): void {
  const charCounts = new Map<number, number>();
  let total = 0;
  for (const [piece, c] of counts) {
    for (let i = 0; i < piece.length; i++) {
      const cp = piece.codePointAt(i)!;
      if (cp > 0xffff) i++;
      if (cp < 0x80) continue;
      charCounts.set(cp, (charCounts.get(cp) ?? 0) + c);
      total += c;
    }
  }
  const ranked = [...charCounts].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
  const budget = Math.floor(s.newTokens * s.maxCharShare);
  const buf = new Uint8Array(4);
  let covered = 0;
  for (const [cp, c] of ranked) {
    if (covered >= s.charCoverage * total || c < s.minFrequency) break;
    const n = utf8Into(String.fromCodePoint(cp), 0, cp > 0xffff ? 2 : 1, buf);
    let missing = 0;
    for (let k = 2; k <= n; k++) if (vocab.idOfBytes(buf.subarray(0, k)) === undefined) missing++;
    if (vocab.size - 256 + missing > budget) break;
    let prefix = buf[0];
    for (let k = 2; k <= n; k++) {
      prefix = vocab.idOfBytes(buf.subarray(0, k)) ?? vocab.merge(prefix, buf[k - 1]);
    }
    covered += c;
  }
}

/**
 * Each word as the symbols BPE has produced after the seeded merges: per character, the
 * longest seeded prefix token, then its remaining bytes (seeded prefixes form chains).
 */
function seededWords(vocab: Vocab, pieces: string[]): Int32Array[] {
  const charSymbols = new Map<number, Int32Array>();
  const buf = new Uint8Array(4);
  const symbolsOf = (cp: number): Int32Array => {
    let syms = charSymbols.get(cp);
    if (syms) return syms;
    const n = utf8Into(String.fromCodePoint(cp), 0, cp > 0xffff ? 2 : 1, buf);
    let k = n;
    while (k >= 2 && vocab.idOfBytes(buf.subarray(0, k)) === undefined) k--;
    const head = k >= 2 ? vocab.idOfBytes(buf.subarray(0, k))! : buf[0];
    syms = Int32Array.from([head, ...buf.subarray(Math.max(k, 1), n)]);
    charSymbols.set(cp, syms);
    return syms;
  };
  return pieces.map((piece) => {
    const out: number[] = [];
    for (let i = 0; i < piece.length; i++) {
      const cp = piece.codePointAt(i)!;
      if (cp > 0xffff) i++;
      if (cp < 0x80) out.push(cp);
      else for (const id of symbolsOf(cp)) out.push(id);
    }
    return Int32Array.from(out);
  });
}

/** Max-heap of (count, pair key); ties go to the smaller key, for a deterministic order. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i];
    const cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }

  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    for (let i = this.keys.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  peekCount(): number {
    return this.counts[0];
  }

  peekKey(): number {
    return this.keys[0];
  }

  pop(): void {
    const last = this.keys.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < last && this.above(l, best)) best = l;
      if (r < last && this.above(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
  }
}

export async function trainByteLevelBpe(texts: Iterable<string> | AsyncIterable<string>, s: TrainerSettings): Promise<TrainedVocab> {
  const counts = await countPieces(texts, s);
  const vocab = new Vocab();
  seedCharacters(vocab, counts, s);
  const seededMerges = vocab.merges.length;

  const words = seededWords(vocab, [...counts.keys()]);
  const freq = Float64Array.from(counts.values());
  const lens = Int32Array.from(words, (w) => w.length);
  counts.clear();

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addPair = (a: number, b: number, c: number, w: number) => {
    const key = a * KEY + b;
    pairCount.set(key, (pairCount.get(key) ?? 0) + c);
    if (c > 0) {
      let list = pairWords.get(key);
      if (!list) pairWords.set(key, (list = []));
      if (list[list.length - 1] !== w) list.push(w);
    }
  };
  words.forEach((sym, w) => {
    for (let i = 0; i + 1 < sym.length; i++) if (vocab.allowed(sym[i], sym[i + 1])) addPair(sym[i], sym[i + 1], freq[w], w);
  });
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);

  const visited = new Int32Array(words.length).fill(-1);
  const grown = new Set<number>();
  const limit = 256 + s.newTokens;
  while (vocab.size < limit && heap.size > 0) {
    const count = heap.peekCount();
    const key = heap.peekKey();
    heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== count) {
      // Stale entry: a lower count is re-queued; a higher one is already queued.
      if (current > 0 && current < count) heap.push(current, key);
      continue;
    }
    if (count < s.minFrequency) break;
    const a = Math.floor(key / KEY);
    const b = key - a * KEY;
    const c = vocab.merge(a, b);
    const step = vocab.merges.length;
    grown.clear();
    const inc = (x: number, y: number, f: number, w: number) => {
      if (!vocab.allowed(x, y)) return;
      addPair(x, y, f, w);
      grown.add(x * KEY + y);
    };
    const dec = (x: number, y: number, f: number) => {
      if (vocab.allowed(x, y)) pairCount.set(x * KEY + y, (pairCount.get(x * KEY + y) ?? 0) - f);
    };
    for (const w of pairWords.get(key) ?? []) {
      if (visited[w] === step) continue;
      visited[w] = step;
      const sym = words[w];
      const n = lens[w];
      const f = freq[w];
      let out = 0;
      for (let r = 0; r < n;) {
        if (r + 1 < n && sym[r] === a && sym[r + 1] === b) {
          if (out > 0) {
            dec(sym[out - 1], a, f);
            inc(sym[out - 1], c, f, w);
          }
          if (r + 2 < n) {
            dec(b, sym[r + 2], f);
            inc(c, sym[r + 2], f, w);
          }
          sym[out++] = c;
          r += 2;
        } else {
          sym[out++] = sym[r++];
        }
      }
      lens[w] = out;
    }
    pairCount.delete(key);
    pairWords.delete(key);
    for (const k of grown) {
      const n = pairCount.get(k) ?? 0;
      if (n > 0) heap.push(n, k);
    }
  }
  return { tokens: vocab.tokens, merges: vocab.merges, seededMerges };
}
