// A byte-level BPE tokenizer that reads and writes HF tokenizer.json and encodes exactly as
// the Rust `tokenizers` crate (checked against @huggingface/tokenizers in the tests), but
// over ten times faster than that package on Chinese text (bench/tokenize.ts): BPE over
// integer ids with a pair hash table, and a cache from pre-token to ids.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { AddedTokenMatcher, type AddedTokenRule } from './added-tokens.js';
import { BytePairEncoder, type Merge } from './bpe.js';
import { BYTE_TO_CHAR, bytesToSymbols, symbolsToBytes } from './byte-level.js';
import {
  fieldError,
  isObject,
  parseAddedTokens,
  tokenName,
  type HfAddedToken,
  type HfTokenizerJson,
  type JsonObject,
} from './hf-json.js';
import {
  buildTokenizerJson,
  CHATML_TEMPLATE,
  bpeModelJson,
  EOS_TOKEN,
  IM_END,
  PAD_TOKEN,
  specialTokenList,
  type Normalization,
} from './layout.js';
import {
  checkDecoder,
  compileNormalizer,
  compilePostProcessor,
  compilePreTokenizer,
  type Normalize,
  type PreTokenize,
  type SpecialWrap,
} from './pipeline.js';
import { trainByteLevelBpe } from './train.js';

export interface TrainOptions {
  /** Total vocabulary size, special tokens included. */
  vocabSize: number;
  /** Extra special tokens, after the built-in ones (<|endoftext|>, ChatML, pad, roles). */
  specialTokens?: string[];
  /** Placeholder special tokens <|reserved_0|>... kept for later use; default 8. */
  reservedTokens?: number;
  /** A pair (or seeded character) must occur this often to be merged; default 2. */
  minFrequency?: number;
  /** Share of non-ASCII character occurrences to cover with whole-character tokens; default 0.9995. */
  charCoverage?: number;
  /** At most this share of the new tokens goes to character seeding; default 0.5. */
  maxCharShare?: number;
  /** Unicode normalisation written into tokenizer.json; default 'NFC'. */
  normalization?: Normalization;
}

export interface EncodeOptions {
  /** Add what the post-processor adds (e.g. a BOS of a TemplateProcessing); default true. */
  addSpecialTokens?: boolean;
  /** Treat special tokens written in the text as plain text (for untrusted input); default false. */
  splitSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

export interface SaveOptions {
  /** Jinja chat template for tokenizer_config.json; default: the loaded one, else ChatML. */
  chatTemplate?: string;
  modelMaxLength?: number;
}

interface Roles {
  bos: string | null;
  eos: string;
  pad: string;
}

// A pre-token cache this large holds a corpus's frequent pieces; past it, it starts over.
const CACHE_ENTRIES = 1 << 18;
const CACHE_PIECE_CHARS = 128;
const EOS_CANDIDATES = [EOS_TOKEN, '<|end_of_text|>', '</s>', '<eos>'];

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message}`);
  }
}

function parseMergeEntry(entry: unknown, source: string, i: number): [string, string] {
  if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'string') {
    return [entry[0], entry[1]];
  }
  if (typeof entry === 'string') {
    const space = entry.indexOf(' ');
    if (space > 0 && entry.indexOf(' ', space + 1) < 0) return [entry.slice(0, space), entry.slice(space + 1)];
  }
  throw fieldError(source, `model.merges[${i}]`, 'expected "left right" or [left, right]');
}

export class Tokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string;
  readonly padToken: string;
  readonly bosId: number | null;
  readonly eosId: number;
  readonly padId: number;
  /** Ids that end a generation: eos, and <|im_end|> when the vocabulary has it. */
  readonly stopIds: readonly number[];
  /** Contents of the added tokens marked special. */
  readonly specialTokens: readonly string[];
  readonly chatTemplate: string | null;
  readonly modelMaxLength: number | null;

  private readonly modelTokens: string[] = [];
  private readonly modelIds = new Map<string, number>();
  private readonly idToTokenTable: string[];
  private readonly tokenIds = new Map<string, number>();
  private readonly merges: Merge[];
  private readonly added: HfAddedToken[];
  private readonly specialIds = new Set<number>();
  private readonly ignoreMerges: boolean;
  private readonly components: Pick<HfTokenizerJson, 'normalizer' | 'pre_tokenizer' | 'post_processor' | 'decoder' | 'truncation' | 'padding'>;

  private readonly bpe: BytePairEncoder;
  private readonly normalize: Normalize | null;
  private readonly preTokenize: PreTokenize | null;
  private readonly wrap: SpecialWrap;
  private readonly matchers = new Map<string, AddedTokenMatcher | null>();
  private readonly cache = new Map<string, number | Int32Array>();
  private readonly tokenBytes: (Uint8Array | undefined)[] = [];
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private sink: number[] = [];

  private constructor(json: unknown, config: JsonObject | null, source: string) {
    if (!isObject(json)) throw new Error(`${source}: expected a JSON object`);
    const model = json.model;
    if (!isObject(model)) throw fieldError(source, 'model', 'expected an object');
    if (model.type !== undefined && model.type !== 'BPE') throw fieldError(source, 'model.type', `only BPE is supported, got ${JSON.stringify(model.type)}`);
    if (model.byte_fallback === true) throw fieldError(source, 'model.byte_fallback', 'byte_fallback BPE (SentencePiece style) is not byte-level BPE');
    if (typeof model.dropout === 'number' && model.dropout > 0) throw fieldError(source, 'model.dropout', 'BPE dropout is not supported');
    for (const f of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      if (model[f] !== null && model[f] !== undefined && model[f] !== '') throw fieldError(source, `model.${f}`, 'is not supported by byte-level BPE');
    }
    if (!isObject(model.vocab)) throw fieldError(source, 'model.vocab', 'expected an object');
    for (const [token, id] of Object.entries(model.vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw fieldError(source, `model.vocab[${JSON.stringify(token)}]`, 'expected a non-negative integer id');
      this.modelTokens[id as number] = token;
      this.modelIds.set(token, id as number);
    }
    const byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = this.modelIds.get(BYTE_TO_CHAR[b]);
      if (id === undefined) throw fieldError(source, 'model.vocab', `lacks the byte token ${JSON.stringify(BYTE_TO_CHAR[b])} (byte 0x${b.toString(16)}): not a byte-level BPE`);
      byteIds[b] = id;
    }
    if (!Array.isArray(model.merges)) throw fieldError(source, 'model.merges', 'expected an array');
    this.merges = model.merges.map((entry, i) => {
      const [l, r] = parseMergeEntry(entry, source, i);
      const left = this.modelIds.get(l);
      const right = this.modelIds.get(r);
      const result = this.modelIds.get(l + r);
      if (left === undefined || right === undefined || result === undefined) {
        throw fieldError(source, `model.merges[${i}]`, `${JSON.stringify([l, r])} uses or makes a token missing from model.vocab`);
      }
      return { left, right, result };
    });
    this.ignoreMerges = model.ignore_merges === true;
    this.bpe = new BytePairEncoder(this.merges, byteIds);

    this.normalize = compileNormalizer(json.normalizer, source);
    this.preTokenize = compilePreTokenizer(json.pre_tokenizer, source);
    checkDecoder(json.decoder, source);
    this.added = parseAddedTokens(json.added_tokens, source);
    this.idToTokenTable = this.modelTokens.slice();
    for (const [t, id] of this.modelIds) this.tokenIds.set(t, id);
    for (const t of this.added) {
      this.idToTokenTable[t.id] = t.content;
      this.tokenIds.set(t.content, t.id);
      if (t.special) this.specialIds.add(t.id);
    }
    this.specialTokens = this.added.filter((t) => t.special).map((t) => t.content);
    this.wrap = compilePostProcessor(json.post_processor, source);
    this.components = {
      normalizer: (json.normalizer ?? null) as JsonObject | null,
      pre_tokenizer: (json.pre_tokenizer ?? null) as JsonObject | null,
      post_processor: (json.post_processor ?? null) as JsonObject | null,
      decoder: json.decoder as JsonObject,
      truncation: json.truncation ?? null,
      padding: json.padding ?? null,
    };

    const roles = this.resolveRoles(config, source);
    this.bosToken = roles.bos;
    this.eosToken = roles.eos;
    this.padToken = roles.pad;
    this.bosId = roles.bos === null ? null : this.tokenIds.get(roles.bos)!;
    this.eosId = this.tokenIds.get(roles.eos)!;
    this.padId = this.tokenIds.get(roles.pad)!;
    const imEnd = this.tokenIds.get(IM_END);
    this.stopIds = imEnd === undefined || imEnd === this.eosId ? [this.eosId] : [this.eosId, imEnd];
    this.chatTemplate = config ? chatTemplateOf(config) : null;
    const maxLen = config?.model_max_length;
    // HF writes a huge sentinel (1e30) when a model declares no limit.
    this.modelMaxLength = typeof maxLen === 'number' && maxLen < Number.MAX_SAFE_INTEGER ? maxLen : null;
  }

  private resolveRoles(config: JsonObject | null, source: string): Roles {
    const known = (name: string | null, field: string): string | null => {
      if (name === null) return null;
      if (!this.tokenIds.has(name)) throw fieldError(source, field, `token ${JSON.stringify(name)} is not in the vocabulary`);
      return name;
    };
    const eos = known(tokenName(config?.eos_token), 'tokenizer_config.eos_token') ??
      EOS_CANDIDATES.find((t) => this.tokenIds.has(t));
    if (eos === undefined) throw fieldError(source, 'tokenizer_config.eos_token', `missing, and the vocabulary has none of ${EOS_CANDIDATES.join(' ')}`);
    const pad = known(tokenName(config?.pad_token), 'tokenizer_config.pad_token') ?? (this.tokenIds.has(PAD_TOKEN) ? PAD_TOKEN : eos);
    return { bos: known(tokenName(config?.bos_token), 'tokenizer_config.bos_token'), eos, pad };
  }

  /** Trains a byte-level BPE; see train.ts for how Chinese characters are kept whole. */
  static async train(texts: Iterable<string> | AsyncIterable<string>, opts: TrainOptions): Promise<Tokenizer> {
    const specials = specialTokenList(opts.reservedTokens ?? 8, opts.specialTokens);
    const normalization = opts.normalization ?? 'NFC';
    const newTokens = opts.vocabSize - 256 - specials.length;
    if (!Number.isInteger(opts.vocabSize) || newTokens < 0) {
      throw new Error(`Tokenizer.train: vocabSize ${opts.vocabSize} must be an integer >= 256 + ${specials.length} special tokens`);
    }
    const charCoverage = opts.charCoverage ?? 0.9995;
    const maxCharShare = opts.maxCharShare ?? 0.5;
    if (!(charCoverage >= 0 && charCoverage <= 1)) throw new Error(`Tokenizer.train: charCoverage ${charCoverage} must be in [0, 1]`);
    if (!(maxCharShare >= 0 && maxCharShare <= 1)) throw new Error(`Tokenizer.train: maxCharShare ${maxCharShare} must be in [0, 1]`);
    // Train with the very pipeline the saved tokenizer.json describes.
    const skeleton = Tokenizer.bytes({ specialTokens: opts.specialTokens, reservedTokens: opts.reservedTokens, normalization });
    const trained = await trainByteLevelBpe(texts, {
      newTokens,
      minFrequency: Math.max(1, opts.minFrequency ?? 2),
      charCoverage,
      maxCharShare,
      specials,
      normalize: skeleton.normalize,
      preTokenize: skeleton.preTokenize!,
    });
    return new Tokenizer(buildTokenizerJson(trained.tokens, trained.merges, specials, normalization), ourConfig(), 'Tokenizer.train');
  }

  /** UTF-8 bytes only (ids 0-255 = byte values) plus the special tokens: no training needed. */
  static bytes(opts: { specialTokens?: string[]; reservedTokens?: number; normalization?: Normalization } = {}): Tokenizer {
    const tokens = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    const specials = specialTokenList(opts.reservedTokens ?? 8, opts.specialTokens);
    return new Tokenizer(buildTokenizerJson(tokens, [], specials, opts.normalization ?? 'NFC'), ourConfig(), 'Tokenizer.bytes');
  }

  /** From a parsed tokenizer.json (and optionally tokenizer_config.json for roles and template). */
  static fromJSON(obj: unknown, config?: unknown, source = 'tokenizer.json'): Tokenizer {
    if (config !== undefined && config !== null && !isObject(config)) throw new Error(`${source}: tokenizer_config must be a JSON object`);
    return new Tokenizer(obj, (config ?? null) as JsonObject | null, source);
  }

  static fromFile(tokenizerJsonPath: string): Tokenizer {
    return new Tokenizer(readJson(tokenizerJsonPath), null, tokenizerJsonPath);
  }

  /** Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (and chat_template.jinja). */
  static fromDir(dir: string): Tokenizer {
    const jsonPath = path.join(dir, 'tokenizer.json');
    const configPath = path.join(dir, 'tokenizer_config.json');
    let config: JsonObject | null = null;
    if (existsSync(configPath)) {
      const c = readJson(configPath);
      if (!isObject(c)) throw new Error(`${configPath}: expected a JSON object`);
      config = c;
      const jinja = path.join(dir, 'chat_template.jinja');
      if (config.chat_template === undefined && existsSync(jinja)) config = { ...config, chat_template: readFileSync(jinja, 'utf8') };
    }
    return new Tokenizer(readJson(jsonPath), config, jsonPath);
  }

  get vocabSize(): number {
    return this.idToTokenTable.length;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenIds.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.idToTokenTable[id];
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Token ids of text; special tokens written in it become their single ids. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    const addSpecial = opts.addSpecialTokens ?? true;
    if (addSpecial) out.push(...this.wrap.prefix);
    this.sink = out;
    const raw = this.matcher(false, opts.splitSpecialTokens === true);
    if (raw) raw.split(text, (s) => this.onRawText(s, opts.splitSpecialTokens === true), this.onToken);
    else this.onRawText(text, opts.splitSpecialTokens === true);
    this.sink = [];
    if (addSpecial) out.push(...this.wrap.suffix);
    return out;
  }

  private readonly onToken = (id: number): void => {
    this.sink.push(id);
  };

  private onRawText(text: string, splitSpecial: boolean): void {
    const normalized = this.normalize ? this.normalize(text) : text;
    const inner = this.matcher(true, splitSpecial);
    if (inner) inner.split(normalized, this.onSection, this.onToken);
    else this.onSection(normalized);
  }

  private readonly onSection = (text: string): void => {
    if (this.preTokenize) this.preTokenize(text, this.onPiece);
    else this.onPiece(text);
  };

  private readonly onPiece = (piece: string): void => {
    let ids = this.cache.get(piece);
    if (ids === undefined) {
      ids = this.encodePiece(piece);
      if (piece.length <= CACHE_PIECE_CHARS) {
        if (this.cache.size >= CACHE_ENTRIES) this.cache.clear();
        this.cache.set(piece, ids);
      }
    }
    const sink = this.sink;
    if (typeof ids === 'number') sink.push(ids);
    else for (let i = 0; i < ids.length; i++) sink.push(ids[i]);
  };

  private encodePiece(piece: string): number | Int32Array {
    if (this.ignoreMerges) {
      const whole = this.modelIds.get(bytesToSymbols(new TextEncoder().encode(piece)));
      if (whole !== undefined) return whole;
    }
    return this.bpe.encode(piece);
  }

  /** Added tokens matched on raw text (normalized: false) or on normalized text (true). */
  private matcher(normalized: boolean, splitSpecial: boolean): AddedTokenMatcher | null {
    const key = `${normalized}/${splitSpecial}`;
    let m = this.matchers.get(key);
    if (m === undefined) {
      const rules: AddedTokenRule[] = this.added
        .filter((t) => t.normalized === normalized && !(splitSpecial && t.special))
        .map((t) => ({
          id: t.id,
          content: normalized && this.normalize ? this.normalize(t.content) : t.content,
          lstrip: t.lstrip,
          rstrip: t.rstrip,
          singleWord: t.single_word,
        }));
      m = rules.length > 0 ? new AddedTokenMatcher(rules) : null;
      this.matchers.set(key, m);
    }
    return m;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    return this.utf8.decode(this.decodeBytes(ids, opts));
  }

  /** The UTF-8 bytes ids stand for; for streaming output through a TextDecoder({stream: true}). */
  decodeBytes(ids: ArrayLike<number>, opts: DecodeOptions = {}): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (opts.skipSpecialTokens && this.specialIds.has(id)) continue;
      const bytes = this.bytesOf(id);
      parts.push(bytes);
      total += bytes.length;
    }
    const buf = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    return buf;
  }

  private bytesOf(id: number): Uint8Array {
    let bytes = this.tokenBytes[id];
    if (bytes === undefined) {
      const token = this.idToTokenTable[id];
      if (token === undefined) throw new Error(`decode: id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      // Added tokens decode to their text; a vocab entry outside the byte alphabet to its
      // own UTF-8, as the Rust ByteLevel decoder does.
      const isAdded = this.modelTokens[id] !== token;
      bytes = (isAdded ? null : symbolsToBytes(token)) ?? new TextEncoder().encode(token);
      this.tokenBytes[id] = bytes;
    }
    return bytes;
  }

  toJSON(): HfTokenizerJson {
    const vocab: Record<string, number> = {};
    this.modelTokens.forEach((t, id) => (vocab[t] = id));
    return {
      version: '1.0',
      ...structuredClone(this.components),
      added_tokens: this.added.map((t) => ({ ...t })),
      model: bpeModelJson(vocab, this.merges.map((m) => [this.modelTokens[m.left], this.modelTokens[m.right]]), this.ignoreMerges),
    };
  }

  /** tokenizer_config.json as transformers reads it. */
  configJSON(opts: SaveOptions = {}): JsonObject {
    const decoderTable: JsonObject = {};
    for (const t of this.added) {
      decoderTable[String(t.id)] = {
        content: t.content,
        lstrip: t.lstrip,
        normalized: t.normalized,
        rstrip: t.rstrip,
        single_word: t.single_word,
        special: t.special,
      };
    }
    const roles = new Set([this.bosToken, this.eosToken, this.padToken]);
    return {
      add_bos_token: false,
      add_eos_token: false,
      add_prefix_space: false,
      added_tokens_decoder: decoderTable,
      additional_special_tokens: this.specialTokens.filter((t) => !roles.has(t)),
      bos_token: this.bosToken,
      eos_token: this.eosToken,
      pad_token: this.padToken,
      unk_token: null,
      chat_template: opts.chatTemplate ?? this.chatTemplate ?? CHATML_TEMPLATE,
      clean_up_tokenization_spaces: false,
      errors: 'replace',
      model_max_length: opts.modelMaxLength ?? this.modelMaxLength ?? 4096,
      split_special_tokens: false,
      tokenizer_class: 'PreTrainedTokenizerFast',
    };
  }

  /** Writes DIR/tokenizer.json and DIR/tokenizer_config.json, each atomically. */
  async save(dir: string, opts: SaveOptions = {}): Promise<void> {
    mkdirSync(dir, { recursive: true });
    await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toJSON(), null, 2) + '\n');
    await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(this.configJSON(opts), null, 2) + '\n');
  }
}

/** Roles of the tokenizers made here (Qwen's convention: no BOS, <|endoftext|> ends documents). */
function ourConfig(): JsonObject {
  return { bos_token: null, eos_token: EOS_TOKEN, pad_token: PAD_TOKEN, chat_template: CHATML_TEMPLATE };
}

function chatTemplateOf(config: JsonObject): string | null {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    // Newer configs list named templates; "default" is the one for plain chat.
    const named = t.filter((x): x is { name: string; template: string } => isObject(x) && typeof x.template === 'string');
    return (named.find((x) => x.name === 'default') ?? named[0])?.template ?? null;
  }
  return null;
}
