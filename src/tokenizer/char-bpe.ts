// BPE over characters, as the Rust `tokenizers` crate runs a tokenizer.json whose model is BPE
// without a ByteLevel step (Llama-2 and other SentencePiece conversions): each character is its
// vocab token, or with byte_fallback its UTF-8 bytes as <0xXX> tokens, or the unk token (runs of
// unknown characters fused into one when fuse_unk); then the merges by rank.

import { SymbolMerger, type Merge } from './bpe.js';

export interface CharBpeOptions {
  byteFallback: boolean;
  unkId: number | null;
  fuseUnk: boolean;
  ignoreMerges: boolean;
}

/** "<0x0A>" for byte 10: SentencePiece's and HF's byte-fallback token names. */
export function byteTokenName(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

export class CharBpe {
  private readonly merger: SymbolMerger;
  private readonly byteIds: Int32Array | null;
  private readonly utf8 = new Uint8Array(4);
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    merges: readonly Merge[],
    private readonly opts: CharBpeOptions,
  ) {
    this.merger = new SymbolMerger(merges);
    let byteIds: Int32Array | null = null;
    if (opts.byteFallback) {
      byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) byteIds[b] = vocab.get(byteTokenName(b)) ?? -1;
    }
    this.byteIds = byteIds;
  }

  encode(piece: string): number | Int32Array {
    if (this.opts.ignoreMerges) {
      const whole = this.vocab.get(piece);
      if (whole !== undefined) return whole;
    }
    const sym = this.merger.symbols(piece.length * 4);
    let n = 0;
    let unkPending = false;
    const { unkId, fuseUnk } = this.opts;
    for (const ch of piece) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        if (unkPending) {
          sym[n++] = unkId!;
          unkPending = false;
        }
        sym[n++] = id;
        continue;
      }
      if (this.byteIds) {
        const len = this.encoder.encodeInto(ch, this.utf8).written;
        let all = true;
        for (let i = 0; i < len; i++) if (this.byteIds[this.utf8[i]] < 0) all = false;
        if (all) {
          // The Rust crate adds these before a pending unk; only reachable with partial byte tables.
          for (let i = 0; i < len; i++) sym[n++] = this.byteIds[this.utf8[i]];
          continue;
        }
      }
      if (unkId === null) continue; // no unk token: the crate drops the character
      if (unkPending && !fuseUnk) sym[n++] = unkId;
      unkPending = true;
    }
    if (unkPending) sym[n++] = unkId!;
    if (n === 0) return new Int32Array(0);
    return this.merger.merge(n);
  }
}
