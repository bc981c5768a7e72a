// Byte-level BPE applied to one pre-token: the lowest-ranked merge first, the leftmost one on
// ties, exactly as the Rust `tokenizers` crate (and @huggingface/tokenizers) do. Ids and
// merge ranks live in typed arrays and an open-addressing table keyed by the id pair, so the
// hot loop does no string work and allocates nothing but its result.

import { utf8Into } from './byte-level.js';

/** One merge rule: left id + right id -> result id; its rank is `rank`, else its index. */
export interface Merge {
  left: number;
  right: number;
  result: number;
  rank?: number;
}

function hashPair(a: number, b: number): number {
  return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0;
}

/**
 * Open-addressing hash table from (left, right) to (rank, result). Each slot is four
 * consecutive int32s (left, right, rank, result) so that a probe touches one cache line:
 * the table of a 150k-merge vocabulary is several MB and look-ups are the hot path.
 */
export class MergeTable {
  readonly entries: Int32Array;
  private readonly mask: number;

  constructor(merges: readonly Merge[]) {
    let size = 16;
    while (size < merges.length * 2) size *= 2;
    this.mask = size - 1;
    const e = (this.entries = new Int32Array(size * 4).fill(-1));
    merges.forEach((m, rank) => {
      let slot = (hashPair(m.left, m.right) & this.mask) << 2;
      while (e[slot] !== -1 && !(e[slot] === m.left && e[slot + 1] === m.right)) {
        slot = (slot + 4) & ((this.mask << 2) | 3);
      }
      // A pair listed twice keeps its last rank, as the Rust crate's HashMap insert does.
      e[slot] = m.left;
      e[slot + 1] = m.right;
      e[slot + 2] = m.rank ?? rank;
      e[slot + 3] = m.result;
    });
  }

  /** Offset of the entry for (a, b) in `entries` (rank at +2, result at +3), or -1. */
  find(a: number, b: number): number {
    const e = this.entries;
    const wrap = (this.mask << 2) | 3;
    let slot = (hashPair(a, b) & this.mask) << 2;
    for (;;) {
      const l = e[slot];
      if (l === -1) return -1;
      if (l === a && e[slot + 1] === b) return slot;
      slot = (slot + 4) & wrap;
    }
  }
}

const NO_MERGE = 0x7fffffff;

/** Inserts key into the binary min-heap heap[0, size). */
function heapPush(heap: Float64Array, size: number, key: number): void {
  let i = size;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent] <= key) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = key;
}

/** Removes heap[0] from the min-heap heap[0, size) and returns it. */
function heapPop(heap: Float64Array, size: number): number {
  const top = heap[0];
  const last = heap[size - 1];
  const n = size - 1;
  let i = 0;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap[child + 1] < heap[child]) child++;
    if (heap[child] >= last) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = last;
  return top;
}

/**
 * Which characters may enter BPE as their finished token instead of as UTF-8 bytes, with
 * the result provably unchanged. Character c qualifies when, run alone, its bytes merge
 * into one token T, and
 *  - at every stage before that, no merge with an outside token on its left (right) edge
 *    ranks below the merge the character applies next, so nothing outside touches it
 *    before it is whole; and
 *  - every merge involving T ranks above all of c's own merges, so starting from T does
 *    not let T merge earlier than it could have formed.
 * Then the merges applied outside c come in the same order either way. Vocabularies trained
 * here satisfy this for every seeded character (no merge joins a partial character to
 * anything but its own next byte); Qwen's for a minority, because of byte merges across
 * characters such as "Ġ" + a lead byte.
 */
class AtomicChars {
  private readonly minRankAsLeft: Int32Array;
  private readonly minRankAsRight: Int32Array;
  // Per BMP code point: 0 not yet known, -1 not atomic, else token id + 1.
  private readonly bmp = new Int32Array(0x10000);
  private readonly astral = new Map<number, number>();
  private readonly buf = new Uint8Array(4);

  constructor(
    merges: readonly Merge[],
    private readonly table: MergeTable,
    private readonly byteIds: Int32Array,
  ) {
    let size = 0;
    for (const m of merges) size = Math.max(size, m.left + 1, m.right + 1, m.result + 1);
    for (const id of byteIds) size = Math.max(size, id + 1);
    this.minRankAsLeft = new Int32Array(size).fill(NO_MERGE);
    this.minRankAsRight = new Int32Array(size).fill(NO_MERGE);
    merges.forEach((m, rank) => {
      if (rank < this.minRankAsLeft[m.left]) this.minRankAsLeft[m.left] = rank;
      if (rank < this.minRankAsRight[m.right]) this.minRankAsRight[m.right] = rank;
    });
  }

  /** Token id of code point cp (>= 0x80) when it is atomic, else -1. */
  tokenOf(cp: number): number {
    const known = cp < 0x10000 ? this.bmp[cp] : (this.astral.get(cp) ?? 0);
    if (known !== 0) return known < 0 ? -1 : known - 1;
    const id = this.compute(cp);
    const code = id < 0 ? -1 : id + 1;
    if (cp < 0x10000) this.bmp[cp] = code;
    else this.astral.set(cp, code);
    return id;
  }

  private compute(cp: number): number {
    const s = String.fromCodePoint(cp);
    const n = utf8Into(s, 0, s.length, this.buf);
    const sym: number[] = [];
    for (let i = 0; i < n; i++) sym.push(this.byteIds[this.buf[i]]);
    const e = this.table.entries;
    let highest = -1;
    while (sym.length > 1) {
      let best = NO_MERGE;
      let at = -1;
      for (let i = 0; i + 1 < sym.length; i++) {
        const slot = this.table.find(sym[i], sym[i + 1]);
        if (slot >= 0 && e[slot + 2] < best) {
          best = e[slot + 2];
          at = i;
        }
      }
      if (at < 0) return -1;
      if (this.minRankAsRight[sym[0]] < best || this.minRankAsLeft[sym[sym.length - 1]] < best) return -1;
      sym.splice(at, 2, e[this.table.find(sym[at], sym[at + 1]) + 3]);
      highest = Math.max(highest, best);
    }
    const t = sym[0];
    return this.minRankAsLeft[t] > highest && this.minRankAsRight[t] > highest ? t : -1;
  }
}

/**
 * Applies merges to a symbol sequence: the lowest rank first, the leftmost on ties. Shared by
 * byte-level BPE, character BPE with byte fallback and SentencePiece BPE (whose piece scores
 * become ranks), so one tested loop does all merging.
 */
export class SymbolMerger {
  readonly table: MergeTable;
  // Scratch space for sequences of up to `capacity` symbols; a heap never holds more than
  // the n - 1 initial pairs plus 2 per merge.
  private sym = new Int32Array(0);
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private heap = new Float64Array(0);

  constructor(merges: readonly Merge[]) {
    this.table = new MergeTable(merges);
    this.reserve(768);
  }

  private reserve(capacity: number): void {
    this.sym = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.heap = new Float64Array(3 * capacity);
  }

  /** A buffer for at least n symbols, to fill and pass to merge(); valid until the next call. */
  symbols(n: number): Int32Array {
    if (n > this.sym.length) this.reserve(Math.max(n, this.sym.length * 2));
    return this.sym;
  }

  /**
   * Merges symbols()[0, n). Heap keys are rank * n + position, so the smallest key is the
   * lowest rank and, among equal ranks, the leftmost pair. Positions are the original
   * index of a pair's left symbol, which merging never reorders. Stale entries (a side
   * already merged away) are recognised on pop by re-looking-up the current pair.
   * Returns a number when one symbol remains, else the symbols in order.
   */
  merge(n: number): number | Int32Array {
    if (n === 1) return this.sym[0];
    const { sym, next, prev, heap, table } = this;
    const entries = table.entries;
    let size = 0;
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
      if (i + 1 < n) {
        const slot = table.find(sym[i], sym[i + 1]);
        if (slot >= 0) heapPush(heap, size++, entries[slot + 2] * n + i);
      }
    }
    let count = n;
    while (size > 0) {
      const top = heapPop(heap, size--);
      let rank = Math.floor(top / n);
      let pos = top - rank * n;
      if (pos < 0) {
        rank--;
        pos += n;
      } else if (pos >= n) {
        rank++;
        pos -= n;
      }
      const right = next[pos];
      if (sym[pos] === MERGED || right < 0) continue;
      const slot = table.find(sym[pos], sym[right]);
      if (slot < 0 || entries[slot + 2] !== rank) continue;
      sym[pos] = entries[slot + 3];
      sym[right] = MERGED;
      const after = next[right];
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      count--;
      const before = prev[pos];
      if (before >= 0) {
        const s = table.find(sym[before], sym[pos]);
        if (s >= 0) heapPush(heap, size++, entries[s + 2] * n + before);
      }
      if (after >= 0) {
        const s = table.find(sym[pos], sym[after]);
        if (s >= 0) heapPush(heap, size++, entries[s + 2] * n + pos);
      }
    }
    if (count === 1) return sym[0];
    const out = new Int32Array(count);
    for (let i = 0, k = 0; i >= 0; i = next[i]) out[k++] = sym[i];
    return out;
  }
}

/** Marks a symbol merged into its left neighbour; symbol ids are >= MERGED + 1 (negative ids are allowed). */
const MERGED = -0x80000000;

/** Byte-level BPE: a pre-token's UTF-8 bytes (as their byte tokens) merged. */
export class BytePairEncoder {
  private readonly merger: SymbolMerger;
  private readonly atomic: AtomicChars;

  /** byteIds[b] is the vocab id of the one-byte token for byte b. */
  constructor(
    merges: readonly Merge[],
    private readonly byteIds: Int32Array,
  ) {
    this.merger = new SymbolMerger(merges);
    this.atomic = new AtomicChars(merges, this.merger.table, byteIds);
  }

  /** The ids of one pre-token: a number when it is a single token, else an Int32Array. */
  encode(piece: string): number | Int32Array {
    const sym = this.merger.symbols(piece.length * 3);
    const byteIds = this.byteIds;
    let n = 0;
    for (let i = 0; i < piece.length; i++) {
      let c = piece.charCodeAt(i);
      if (c < 0x80) {
        sym[n++] = byteIds[c];
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = piece.charCodeAt(i + 1);
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        } else {
          c = 0xfffd; // a lone surrogate encodes as U+FFFD, as TextEncoder does
        }
      }
      const id = this.atomic.tokenOf(c);
      if (id >= 0) {
        sym[n++] = id;
      } else if (c < 0x800) {
        sym[n++] = byteIds[0xc0 | (c >> 6)];
        sym[n++] = byteIds[0x80 | (c & 63)];
      } else if (c < 0x10000) {
        sym[n++] = byteIds[0xe0 | (c >> 12)];
        sym[n++] = byteIds[0x80 | ((c >> 6) & 63)];
        sym[n++] = byteIds[0x80 | (c & 63)];
      } else {
        sym[n++] = byteIds[0xf0 | (c >> 18)];
        sym[n++] = byteIds[0x80 | ((c >> 12) & 63)];
        sym[n++] = byteIds[0x80 | ((c >> 6) & 63)];
        sym[n++] = byteIds[0x80 | (c & 63)];
      }
    }
    return this.merger.merge(n);
  }
}
