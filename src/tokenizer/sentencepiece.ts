// A SentencePiece tokenizer.model run as the C++ library runs it (normalizer.cc, bpe_model.cc,
// unigram_model.cc, sentencepiece_processor.cc in google/sentencepiece), checked against the
// library itself (compiled to wasm in @sctg/sentencepiece-js) in the tests:
//  - normalisation: the precompiled rules, whitespace escaped to U+2581, the dummy prefix,
//    optionally extra whitespace removed; user-defined symbols are left untouched;
//  - BPE: over the whole normalised text, repeatedly merge the adjacent pair whose
//    concatenation is the piece with the highest score (leftmost on ties);
//  - unigram: the Viterbi path of piece scores (unknown characters at min score - 10);
//  - unknown pieces become their UTF-8 bytes with byte_fallback, else one <unk> per run.

import { SymbolMerger, type Merge } from './bpe.js';
import { byteTokenName } from './char-bpe.js';
import { CharsMap } from './charsmap.js';
import { PIECE_TYPE, SPM_MODEL_TYPE, type SpmModel } from './spm-proto.js';

export const SPACE_SYMBOL = '\u2581';
const UNK_PENALTY = 10; // unigram_model.cc kUnkPenalty

type Encoder = (normalized: string) => number[];

export class SentencePiece {
  /** Piece id of every NORMAL, USER_DEFINED and UNUSED piece: what the models may produce. */
  private readonly pieceIds = new Map<string, number>();
  /** Every piece, reserved ones (control, unknown, byte) included. */
  private readonly allIds = new Map<string, number>();
  private readonly userDefined: string[];
  private readonly charsMap: CharsMap | null;
  private readonly byteIds: Int32Array | null;
  readonly unkId: number;
  private readonly encoder: Encoder;
  private readonly utf8 = new TextEncoder();

  constructor(
    readonly model: SpmModel,
    private readonly source: string,
  ) {
    const { pieces, trainer, normalizer } = model;
    let unk = -1;
    pieces.forEach((p, id) => {
      if (p.piece === '') throw new Error(`${source}: piece ${id} is empty`);
      if (this.allIds.has(p.piece)) throw new Error(`${source}: piece ${JSON.stringify(p.piece)} is defined twice`);
      this.allIds.set(p.piece, id);
      if (p.type === PIECE_TYPE.normal || p.type === PIECE_TYPE.userDefined || p.type === PIECE_TYPE.unused) this.pieceIds.set(p.piece, id);
      if (p.type === PIECE_TYPE.unknown) unk = id;
    });
    if (unk < 0) throw new Error(`${source}: no unknown piece (<unk>) is defined`);
    this.unkId = unk;
    // Longest first, so the first startsWith hit is the longest match (PrefixMatcher).
    this.userDefined = pieces
      .filter((p) => p.type === PIECE_TYPE.userDefined)
      .map((p) => p.piece)
      .sort((a, b) => b.length - a.length);
    this.charsMap = normalizer.precompiledCharsmap.length ? new CharsMap(normalizer.precompiledCharsmap, source) : null;
    if (model.denormalizer && model.denormalizer.precompiledCharsmap.length)
      throw new Error(`${source}: denormalizer_spec rules are not supported`);
    if (trainer.byteFallback) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) {
        const id = this.allIds.get(byteTokenName(b));
        if (id === undefined || pieces[id].type !== PIECE_TYPE.byte)
          throw new Error(`${source}: byte_fallback is set but piece ${byteTokenName(b)} is missing`);
        this.byteIds[b] = id;
      }
    } else {
      this.byteIds = null;
    }
    if (trainer.modelType === SPM_MODEL_TYPE.bpe) this.encoder = this.bpeEncoder();
    else if (trainer.modelType === SPM_MODEL_TYPE.unigram) this.encoder = this.unigramEncoder();
    else throw new Error(`${source}: SentencePiece model type ${trainer.modelType} (word / char) is not supported; BPE and unigram are`);
  }

  get pieces() {
    return this.model.pieces;
  }

  pieceToId(piece: string): number | undefined {
    return this.allIds.get(piece);
  }

  /** The user-defined symbol starting at text[pos], or ''. */
  private userSymbolAt(text: string, pos: number): string {
    for (const s of this.userDefined) if (text.startsWith(s, pos)) return s;
    return '';
  }

  /** normalizer.cc Normalizer::Normalize, without the offsets. */
  normalize(text: string): string {
    const spec = this.model.normalizer;
    const suffix = this.model.trainer.treatWhitespaceAsSuffix;
    const space = spec.escapeWhitespaces ? SPACE_SYMBOL : ' ';
    const prefixes = this.normalizedPrefixes(text);
    let i = 0;
    if (spec.removeExtraWhitespaces) while (i < prefixes.length && prefixes[i] === ' ') i++;
    if (i === prefixes.length) return '';
    let out = !suffix && spec.addDummyPrefix ? space : '';
    let prevSpace = spec.removeExtraWhitespaces;
    for (; i < prefixes.length; i++) {
      let sp = prefixes[i];
      if (prevSpace) {
        let k = 0;
        while (k < sp.length && sp[k] === ' ') k++;
        sp = sp.slice(k);
      }
      if (sp.length > 0) {
        out += spec.escapeWhitespaces ? sp.replaceAll(' ', SPACE_SYMBOL) : sp;
        prevSpace = sp.endsWith(' ');
      }
      if (!spec.removeExtraWhitespaces) prevSpace = false;
    }
    if (spec.removeExtraWhitespaces) while (out.endsWith(space)) out = out.slice(0, -space.length);
    if (suffix && spec.addDummyPrefix) out += space;
    return out;
  }

  /** The input cut as NormalizePrefix consumes it, each part replaced by its normalised form. */
  private normalizedPrefixes(text: string): string[] {
    const out: string[] = [];
    if (!this.charsMap) {
      for (let i = 0; i < text.length;) {
        const user = this.userDefined.length ? this.userSymbolAt(text, i) : '';
        const cp = text.codePointAt(i)!;
        // A lone surrogate is malformed input: U+FFFD, as the library does for bad UTF-8.
        const ch = user || (cp >= 0xd800 && cp <= 0xdfff ? '\ufffd' : String.fromCodePoint(cp));
        out.push(ch);
        i += user ? user.length : cp > 0xffff ? 2 : 1;
      }
      return out;
    }
    const bytes = this.utf8.encode(text);
    const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
    // pos walks the UTF-8 bytes (the rules match bytes), at the string index `si` (user-defined
    // symbols match the string); every step consumes whole characters, so the two stay aligned.
    for (let pos = 0, si = 0; pos < bytes.length;) {
      const user = this.userDefined.length ? this.userSymbolAt(text, si) : '';
      const m = user ? null : this.charsMap.match(bytes, pos);
      const lead = bytes[pos];
      const n = user ? this.utf8.encode(user).length : m ? m[0] : lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
      const consumed = utf8.decode(bytes.subarray(pos, pos + n));
      out.push(user || (m ? m[1] : consumed));
      pos += n;
      si += consumed.length;
    }
    return out;
  }

  /** Ids of normalised text: the model's pieces, unknown ones as bytes or fused <unk>s. */
  encode(normalized: string): number[] {
    return normalized ? this.encoder(normalized) : [];
  }

  /**
   * Final ids from the model's output, where a string is a piece the vocabulary lacks: its
   * UTF-8 bytes as byte pieces with byte_fallback, else <unk>, one per run of unknown pieces
   * (PopulateSentencePieceText).
   */
  private resolve(pieces: readonly (number | string)[]): number[] {
    const out: number[] = [];
    let prevUnknown = false;
    for (const p of pieces) {
      if (typeof p === 'number') {
        out.push(p);
        prevUnknown = false;
        continue;
      }
      if (this.byteIds) for (const b of this.utf8.encode(p)) out.push(this.byteIds[b]);
      else if (!prevUnknown) out.push(this.unkId);
      prevUnknown = true;
    }
    return out;
  }

  /**
   * SentencePiece BPE as merges: every split of a piece into two pieces is a merge yielding
   * it, ranked by the piece's score (higher first; equal scores share a rank so the leftmost
   * pair wins, as in bpe_model.cc). Characters that are no piece get ids below zero, which
   * no merge involves. User-defined symbols are kept whole and never merged.
   */
  private bpeEncoder(): Encoder {
    const pieces = this.model.pieces;
    if (pieces.some((p) => p.type === PIECE_TYPE.unused)) throw new Error(`${this.source}: UNUSED pieces in a BPE model are not supported`);
    const scores = [...new Set(pieces.filter((p) => p.type === PIECE_TYPE.normal).map((p) => p.score))].sort((a, b) => b - a);
    const rankOf = new Map(scores.map((s, r) => [s, r]));
    const merges: Merge[] = [];
    const user = new Set(this.userDefined);
    pieces.forEach((p, id) => {
      if (p.type !== PIECE_TYPE.normal) return;
      const chars = [...p.piece];
      for (let k = 1; k < chars.length; k++) {
        const l = chars.slice(0, k).join(''),
          r = chars.slice(k).join('');
        const left = this.pieceIds.get(l),
          right = this.pieceIds.get(r);
        if (left === undefined || right === undefined || user.has(l) || user.has(r)) continue;
        merges.push({ left, right, result: id, rank: rankOf.get(p.score)! });
      }
    });
    const merger = new SymbolMerger(merges);
    const unknownChars = new Map<string, number>();
    const unknownIds: string[] = [];
    return (text) => {
      const sym = merger.symbols(text.length);
      let n = 0;
      for (let i = 0; i < text.length;) {
        const u = this.userDefined.length ? this.userSymbolAt(text, i) : '';
        const cp = text.codePointAt(i)!;
        const ch = u || String.fromCodePoint(cp);
        i += ch.length;
        let id = this.pieceIds.get(ch);
        if (id === undefined) {
          id = unknownChars.get(ch);
          if (id === undefined) {
            id = -2 - unknownIds.length;
            unknownChars.set(ch, id);
            unknownIds.push(ch);
          }
        }
        sym[n++] = id;
      }
      const merged = merger.merge(n);
      const ids = typeof merged === 'number' ? [merged] : Array.from(merged);
      return this.resolve(ids.map((id) => (id >= 0 ? id : unknownIds[-2 - id])));
    };
  }

  /** unigram_model.cc Model::EncodeOptimized, in float32 as there. */
  private unigramEncoder(): Encoder {
    const pieces = this.model.pieces;
    const f32 = Math.fround;
    let minScore = Infinity,
      maxScore = -Infinity;
    for (const p of pieces) {
      if (p.type !== PIECE_TYPE.normal) continue;
      minScore = Math.min(minScore, p.score);
      maxScore = Math.max(maxScore, p.score);
    }
    const unkScore = f32(minScore - UNK_PENALTY);
    // A trie over UTF-16 units of every piece the model may produce (UNUSED pieces are skipped).
    interface Node {
      next: Map<number, Node>;
      id: number;
    }
    const root: Node = { next: new Map(), id: -1 };
    const utf8Len = (s: string) => new TextEncoder().encode(s).length;
    const bonus = new Map<number, number>(); // user-defined: length * max_score - 0.1, in double
    for (const [piece, id] of this.pieceIds) {
      const type = pieces[id].type;
      if (type === PIECE_TYPE.unused) continue;
      let node = root;
      for (let i = 0; i < piece.length; i++) {
        const c = piece.charCodeAt(i);
        let nx = node.next.get(c);
        if (!nx) node.next.set(c, (nx = { next: new Map(), id: -1 }));
        node = nx;
      }
      node.id = id;
      if (type === PIECE_TYPE.userDefined) bonus.set(id, f32(utf8Len(piece) * maxScore) - 0.1);
    }
    return (text) => {
      const n = text.length;
      const bestScore = new Float64Array(n + 1);
      const startsAt = new Int32Array(n + 1).fill(-1);
      const bestId = new Int32Array(n + 1);
      const consider = (end: number, start: number, id: number, candidate: number) => {
        if (startsAt[end] === -1 || candidate > bestScore[end]) {
          bestScore[end] = f32(candidate);
          startsAt[end] = start;
          bestId[end] = id;
        }
      };
      for (let start = 0; start < n;) {
        const cp = text.codePointAt(start)!;
        const charLen = cp > 0xffff ? 2 : 1;
        const base = bestScore[start];
        let single = false;
        let node: Node | undefined = root;
        for (let k = start; k < n; k++) {
          node = node.next.get(text.charCodeAt(k));
          if (!node) break;
          if (node.id < 0) continue;
          // C++'s `cond ? double : float` makes the piece score a double, so this sum is not
          // rounded to float (the unknown-piece sum below is); the stored best is.
          const candidate = (bonus.get(node.id) ?? pieces[node.id].score) + base;
          consider(k + 1, start, node.id, candidate);
          if (k + 1 - start === charLen) single = true;
        }
        if (!single) consider(start + charLen, start, -1, f32(unkScore + base));
        start += charLen;
      }
      const path: [number, number, number][] = [];
      for (let end = n; end > 0; end = startsAt[end]) path.push([startsAt[end], end, bestId[end]]);
      const found: (number | string)[] = [];
      for (let i = path.length - 1; i >= 0; i--) {
        const [start, end, id] = path[i];
        found.push(id >= 0 ? id : text.slice(start, end));
      }
      return this.resolve(found);
    };
  }

  /**
   * sentencepiece_processor.cc Decode: pieces with U+2581 as spaces, the leading space of the
   * first piece dropped when the normaliser added one, runs of byte pieces as UTF-8 (each
   * malformed byte U+FFFD), control pieces empty and <unk> as unk_surface.
   */
  decode(ids: ArrayLike<number>): string {
    const { pieces, normalizer, trainer } = this.model;
    const stripFirst = normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces;
    let text = '';
    let bosWs = true;
    let bosWsSeen = false;
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length) text += decodeUtf8Strict(bytes);
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const p = pieces[ids[i]];
      if (!p) throw new Error(`decode: id ${ids[i]} is not in the vocabulary (size ${pieces.length})`);
      if (p.type === PIECE_TYPE.byte) {
        bytes.push(parseInt(p.piece.slice(3, 5), 16));
        continue;
      }
      flush();
      if (bosWsSeen || text.length > 0) bosWs = false;
      let piece = p.piece;
      bosWsSeen = false;
      if (p.type === PIECE_TYPE.control) continue;
      if (p.type === PIECE_TYPE.unknown) {
        text += trainer.unkSurface;
        continue;
      }
      if (bosWs && stripFirst && piece.startsWith(SPACE_SYMBOL)) {
        piece = piece.slice(1);
        bosWsSeen = !normalizer.removeExtraWhitespaces;
      }
      text += piece.replaceAll(SPACE_SYMBOL, ' ');
    }
    flush();
    return text;
  }
}

/** UTF-8 as SentencePiece's IsValidDecodeUTF8 reads it: each byte of a malformed sequence is U+FFFD. */
function decodeUtf8Strict(b: number[]): string {
  let out = '';
  for (let i = 0; i < b.length;) {
    const c = b[i];
    let n = 0,
      cp = 0,
      min = 0;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if ((c & 0xe0) === 0xc0) {
      n = 2;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) === 0xe0) {
      n = 3;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) === 0xf0) {
      n = 4;
      cp = c & 0x07;
      min = 0x10000;
    }
    let ok = n > 0 && i + n <= b.length;
    for (let k = 1; ok && k < n; k++) {
      if ((b[i + k] & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (b[i + k] & 0x3f);
    }
    if (ok && n > 1 && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (ok) {
      out += String.fromCodePoint(cp);
      i += n;
    } else {
      out += '\ufffd';
      i++;
    }
  }
  return out;
}
