// A model's own tokenizer, read from its folder and encoding exactly as the reference
// implementations do: an HF tokenizer.json as the Rust `tokenizers` crate runs it (byte-level
// BPE as GPT-2 / Qwen / Llama-3, character BPE with byte fallback as Llama-2; checked against
// @huggingface/tokenizers), or a SentencePiece tokenizer.model as the C++ library runs it
// (Baichuan; checked against the library compiled to wasm). Byte-level BPE is over ten times
// faster than @huggingface/tokenizers on Chinese text (bench/tokenize.ts): BPE over integer ids
// with a pair hash table, and a cache from pre-token to ids.

import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { AddedTokenMatcher, type AddedTokenRule } from './added-tokens.js';
import { BytePairEncoder, type Merge } from './bpe.js';
import { BYTE_TO_CHAR, bytesToSymbols, symbolsToBytes } from './byte-level.js';
import { CharBpe } from './char-bpe.js';
import { readChatTemplate, type ChatTemplate, type TemplateFile } from './chat-template.js';
import { compileDecoder, isByteLevelDecoder } from './decoders.js';
import { fieldError, isObject, parseAddedTokens, tokenName, type HfAddedToken, type HfTokenizerJson, type JsonObject } from './hf-json.js';
import { buildTokenizerJson, CHATML_TEMPLATE, EOS_TOKEN, IM_END, PAD_TOKEN, specialTokenList, type Normalization } from './layout.js';
import {
  compileNormalizer,
  compilePostProcessor,
  compilePreTokenizer,
  type Normalize,
  type PreTokenize,
  type SpecialWrap,
} from './pipeline.js';
import { SentencePiece } from './sentencepiece.js';
import { PIECE_TYPE, readSpmModel } from './spm-proto.js';
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
  /** transformers' clean-up (" ." -> "." ...); default: tokenizer_config.json's clean_up_tokenization_spaces, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface SaveOptions {
  /** The chat template to write (in the form it was read in); default: the tokenizer's own. */
  template?: ChatTemplate;
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

/** Whether DIR holds a tokenizer this class reads (tokenizer.json or tokenizer.model). */
/** The files a tokenizer is read from (what makes two tokenizers the same). */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'chat_template.jinja'];

export function hasTokenizerFiles(dir: string): boolean {
  return existsSync(path.join(dir, 'tokenizer.json')) || existsSync(path.join(dir, 'tokenizer.model'));
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

/** The parts a tokenizer is assembled from, whichever file it came from. */
interface Parts {
  /** Model vocabulary: id -> token string (byte symbols for byte-level BPE, pieces for SentencePiece). */
  modelTokens: string[];
  added: HfAddedToken[];
  encodePiece: (piece: string) => number | Int32Array;
  normalize: Normalize | null;
  preTokenize: PreTokenize | null;
  wrap: SpecialWrap;
  /** Text of model tokens (special tokens already removed or replaced by their text). */
  decodeRun: (ids: number[]) => string;
  /** Set for byte-level BPE: the bytes each model token stands for. */
  byteLevel: boolean;
  json: HfTokenizerJson | null;
  spm: { bytes: Uint8Array; model: SentencePiece } | null;
}

export class Tokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string;
  readonly padToken: string;
  readonly bosId: number | null;
  readonly eosId: number;
  readonly padId: number;
  /** The unknown token of a SentencePiece-style vocabulary, else null. */
  readonly unkId: number | null;
  /** Ids that end a generation: eos, and <|im_end|> when the vocabulary has it. */
  readonly stopIds: readonly number[];
  /** Contents of the added tokens marked special. */
  readonly specialTokens: readonly string[];
  /** The chat template of the folder it was read from (readChatTemplate), or null. */
  readonly chatTemplate: TemplateFile | null;
  readonly modelMaxLength: number | null;
  /** The SentencePiece model, when the tokenizer came with a tokenizer.model (GGUF export reads its scores). */
  readonly sentencePiece: SentencePiece | null;

  private readonly modelTokens: string[];
  private readonly idToTokenTable: string[];
  private readonly tokenIds = new Map<string, number>();
  private readonly added: HfAddedToken[];
  private readonly specialIds = new Set<number>();
  private readonly json: HfTokenizerJson | null;
  private readonly spmBytes: Uint8Array | null;
  private readonly config: JsonObject | null;
  private readonly cleanUp: boolean;

  private readonly encodePiece: (piece: string) => number | Int32Array;
  private readonly normalize: Normalize | null;
  private readonly preTokenize: PreTokenize | null;
  private readonly wrap: SpecialWrap;
  private readonly decodeRun: (ids: number[]) => string;
  private readonly byteLevel: boolean;
  private readonly matchers = new Map<string, AddedTokenMatcher | null>();
  private readonly cache = new Map<string, number | Int32Array>();
  private readonly tokenBytes: (Uint8Array | undefined)[] = [];
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private sink: number[] = [];

  private constructor(parts: Parts, config: JsonObject | null, chatTemplate: TemplateFile | null, source: string) {
    this.modelTokens = parts.modelTokens;
    this.added = parts.added;
    this.encodePiece = parts.encodePiece;
    this.normalize = parts.normalize;
    this.preTokenize = parts.preTokenize;
    this.wrap = parts.wrap;
    this.decodeRun = parts.decodeRun;
    this.byteLevel = parts.byteLevel;
    this.json = parts.json;
    this.spmBytes = parts.spm?.bytes ?? null;
    this.sentencePiece = parts.spm?.model ?? null;
    this.config = config;
    this.idToTokenTable = this.modelTokens.slice();
    this.modelTokens.forEach((t, id) => this.tokenIds.set(t, id));
    for (const t of this.added) {
      this.idToTokenTable[t.id] = t.content;
      this.tokenIds.set(t.content, t.id);
      if (t.special) this.specialIds.add(t.id);
    }
    this.specialTokens = this.added.filter((t) => t.special).map((t) => t.content);

    const roles = this.resolveRoles(config, source);
    this.bosToken = roles.bos;
    this.eosToken = roles.eos;
    this.padToken = roles.pad;
    this.bosId = roles.bos === null ? null : this.tokenIds.get(roles.bos)!;
    this.eosId = this.tokenIds.get(roles.eos)!;
    this.padId = this.tokenIds.get(roles.pad)!;
    const unk =
      this.sentencePiece?.unkId ??
      (typeof this.json?.model.unk_token === 'string' ? this.tokenIds.get(this.json.model.unk_token) : undefined);
    this.unkId = unk ?? null;
    const imEnd = this.tokenIds.get(IM_END);
    this.stopIds = imEnd === undefined || imEnd === this.eosId ? [this.eosId] : [this.eosId, imEnd];
    this.chatTemplate = chatTemplate;
    const maxLen = config?.model_max_length;
    // HF writes a huge sentinel (1e30) when a model declares no limit.
    this.modelMaxLength = typeof maxLen === 'number' && maxLen < Number.MAX_SAFE_INTEGER ? maxLen : null;
    this.cleanUp = config?.clean_up_tokenization_spaces === true;
  }

  private resolveRoles(config: JsonObject | null, source: string): Roles {
    const known = (name: string | null, field: string): string | null => {
      if (name === null) return null;
      if (!this.tokenIds.has(name)) throw fieldError(source, field, `token ${JSON.stringify(name)} is not in the vocabulary`);
      return name;
    };
    const eos = known(tokenName(config?.eos_token), 'tokenizer_config.eos_token') ?? EOS_CANDIDATES.find((t) => this.tokenIds.has(t));
    if (eos === undefined)
      throw fieldError(source, 'tokenizer_config.eos_token', `missing, and the vocabulary has none of ${EOS_CANDIDATES.join(' ')}`);
    const pad = known(tokenName(config?.pad_token), 'tokenizer_config.pad_token') ?? (this.tokenIds.has(PAD_TOKEN) ? PAD_TOKEN : eos);
    // Without a config, the token the tokenizer puts before every text is its BOS.
    const prefix = this.wrap.prefix.length === 1 ? this.idToTokenTable[this.wrap.prefix[0]] : null;
    const bos = config && 'bos_token' in config ? known(tokenName(config.bos_token), 'tokenizer_config.bos_token') : prefix;
    return { bos, eos, pad };
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
    return Tokenizer.ours(buildTokenizerJson(trained.tokens, trained.merges, specials, normalization), 'Tokenizer.train');
  }

  /** UTF-8 bytes only (ids 0-255 = byte values) plus the special tokens: no training needed. */
  static bytes(opts: { specialTokens?: string[]; reservedTokens?: number; normalization?: Normalization } = {}): Tokenizer {
    const tokens = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    const specials = specialTokenList(opts.reservedTokens ?? 8, opts.specialTokens);
    return Tokenizer.ours(buildTokenizerJson(tokens, [], specials, opts.normalization ?? 'NFC'), 'Tokenizer.bytes');
  }

  /** Tokenizers made here: Qwen's roles (no BOS, <|endoftext|> ends documents) and ChatML. */
  private static ours(json: HfTokenizerJson, source: string): Tokenizer {
    return new Tokenizer(jsonParts(json, source), null, { form: 'config', template: CHATML_TEMPLATE }, source);
  }

  /** From a parsed tokenizer.json (and optionally tokenizer_config.json for roles and template). */
  static fromJSON(obj: unknown, config?: unknown, source = 'tokenizer.json'): Tokenizer {
    if (config !== undefined && config !== null && !isObject(config)) throw new Error(`${source}: tokenizer_config must be a JSON object`);
    const c = (config ?? null) as JsonObject | null;
    return new Tokenizer(jsonParts(obj, source), c, readChatTemplate(null, c), source);
  }

  /** From the bytes of a SentencePiece tokenizer.model (and optionally tokenizer_config.json). */
  static fromSentencePiece(bytes: Uint8Array, config?: JsonObject | null, source = 'tokenizer.model'): Tokenizer {
    const c = config ?? null;
    return new Tokenizer(spmParts(bytes, c, source), c, readChatTemplate(null, c), source);
  }

  static fromFile(tokenizerJsonPath: string): Tokenizer {
    return new Tokenizer(jsonParts(readJson(tokenizerJsonPath), tokenizerJsonPath), null, null, tokenizerJsonPath);
  }

  /**
   * Reads a model folder as transformers does: tokenizer.json (the fast tokenizer) when
   * present, else the SentencePiece tokenizer.model; tokenizer_config.json for the special
   * tokens' roles and settings; the chat template (readChatTemplate). A tokenizer.model next
   * to a tokenizer.json is kept, so both are written back.
   */
  static fromDir(dir: string): Tokenizer {
    const jsonPath = path.join(dir, 'tokenizer.json');
    const modelPath = path.join(dir, 'tokenizer.model');
    const configPath = path.join(dir, 'tokenizer_config.json');
    let config: JsonObject | null = null;
    if (existsSync(configPath)) {
      const c = readJson(configPath);
      if (!isObject(c)) throw new Error(`${configPath}: expected a JSON object`);
      config = c;
    }
    const template = readChatTemplate(dir, config);
    const hasModel = existsSync(modelPath);
    if (existsSync(jsonPath)) {
      const parts = jsonParts(readJson(jsonPath), jsonPath);
      if (hasModel) parts.spm = spmParts(readFileSync(modelPath), config, modelPath).spm;
      return new Tokenizer(parts, config, template, jsonPath);
    }
    if (hasModel) return new Tokenizer(spmParts(readFileSync(modelPath), config, modelPath), config, template, modelPath);
    throw new Error(`${dir}: no tokenizer.json or tokenizer.model`);
  }

  get vocabSize(): number {
    return this.idToTokenTable.length;
  }

  /** The files the tokenizer came from, as save() writes them back. */
  get format(): 'tokenizer.json' | 'tokenizer.model' {
    return this.json ? 'tokenizer.json' : 'tokenizer.model';
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
    let first = true;
    const onRaw = (s: string) => {
      this.onRawText(s, opts.splitSpecialTokens === true, first);
      first = false;
    };
    const onToken = (id: number) => {
      out.push(id);
      first = false;
    };
    if (raw) raw.split(text, onRaw, onToken);
    else this.onRawText(text, opts.splitSpecialTokens === true, true);
    this.sink = [];
    if (addSpecial) out.push(...this.wrap.suffix);
    return out;
  }

  private readonly onToken = (id: number): void => {
    this.sink.push(id);
  };

  /** `first`: the text starts the input. */
  private onRawText(text: string, splitSpecial: boolean, first: boolean): void {
    const normalized = this.normalize ? this.normalize(text) : text;
    const inner = this.matcher(true, splitSpecial);
    if (!inner) return this.onSection(normalized, first);
    let start = true;
    inner.split(
      normalized,
      (s) => {
        this.onSection(s, first && start);
        start = false;
      },
      (id) => {
        this.onToken(id);
        start = false;
      },
    );
  }

  private onSection(text: string, first: boolean): void {
    if (this.preTokenize) this.preTokenize(text, this.onPiece, first);
    else if (text) this.onPiece(text);
  }

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

  /**
   * Text of ids, as transformers decodes: added tokens as their text (special ones dropped
   * with skipSpecialTokens), the rest through the tokenizer's decoder, then the optional
   * clean-up of spaces before punctuation.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const text = this.byteLevel ? this.utf8.decode(this.decodeBytes(ids, opts)) : this.decodeText(ids, opts.skipSpecialTokens === true);
    return (opts.cleanUpTokenizationSpaces ?? this.cleanUp) ? cleanUpTokenization(text) : text;
  }

  private decodeText(ids: ArrayLike<number>, skipSpecial: boolean): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.idToTokenTable[id] === undefined) throw new Error(`decode: id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      if (!(skipSpecial && this.specialIds.has(id))) kept.push(id);
    }
    return this.decodeRun(kept);
  }

  /**
   * The UTF-8 bytes ids stand for; for streaming output through a TextDecoder({stream: true}).
   * Byte-level tokens may end inside a character, so this is exact for them; for other
   * tokenizers it is the UTF-8 of decode().
   */
  decodeBytes(ids: ArrayLike<number>, opts: DecodeOptions = {}): Uint8Array {
    if (!this.byteLevel) return new TextEncoder().encode(this.decode(ids, opts));
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

  /** tokenizer.json; only for tokenizers that came from one (or were made here). */
  toJSON(): HfTokenizerJson {
    if (!this.json) throw new Error('this tokenizer came from a SentencePiece tokenizer.model and has no tokenizer.json form');
    return { ...this.json, added_tokens: this.added.map((t) => ({ ...t })) };
  }

  /**
   * tokenizer_config.json as transformers reads it: the loaded one (every key kept), or for
   * tokenizers made here one written out; the chat template in the form of `file`.
   */
  configJSON(opts: { modelMaxLength?: number; chatTemplate?: TemplateFile | null } = {}): JsonObject {
    const file = opts.chatTemplate === undefined ? this.chatTemplate : opts.chatTemplate;
    const config = this.config ? { ...this.config } : this.ourConfig();
    delete config.chat_template;
    if (file?.form === 'config') config.chat_template = file.template;
    else if (file?.form === 'named')
      config.chat_template = file.list.map((t) => (t.name === file.name ? { name: t.name, template: file.template } : t));
    if (opts.modelMaxLength !== undefined) config.model_max_length = opts.modelMaxLength;
    return config;
  }

  private ourConfig(): JsonObject {
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
      clean_up_tokenization_spaces: false,
      errors: 'replace',
      model_max_length: this.modelMaxLength ?? 4096,
      split_special_tokens: false,
      tokenizer_class: 'PreTrainedTokenizerFast',
    };
  }

  /**
   * Writes the tokenizer in the form it came in: tokenizer.json and/or tokenizer.model,
   * tokenizer_config.json, and chat_template.jinja when the template came in that file. Each
   * file atomically.
   */
  async save(dir: string, opts: SaveOptions = {}): Promise<void> {
    mkdirSync(dir, { recursive: true });
    const file = opts.template?.present ? opts.template.file : this.chatTemplate;
    if (this.json) await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toJSON(), null, 2) + '\n');
    if (this.spmBytes) await writeFileAtomic(path.join(dir, 'tokenizer.model'), this.spmBytes);
    await writeFileAtomic(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify(this.configJSON({ modelMaxLength: opts.modelMaxLength, chatTemplate: file }), null, 2) + '\n',
    );
    const jinja = path.join(dir, 'chat_template.jinja');
    if (file?.form === 'jinja') await writeFileAtomic(jinja, file.template);
    else rmSync(jinja, { force: true }); // it would override the config's template when read back
  }
}

/** transformers' clean_up_tokenization: no space before . ? ! , and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** The model section kinds of tokenizer.json this reads, each checked field by field. */
function jsonParts(json: unknown, source: string): Parts {
  if (!isObject(json)) throw new Error(`${source}: expected a JSON object`);
  const model = json.model;
  if (!isObject(model)) throw fieldError(source, 'model', 'expected an object');
  if (model.type !== undefined && model.type !== 'BPE')
    throw fieldError(source, 'model.type', `only BPE is supported, got ${JSON.stringify(model.type)}`);
  if (typeof model.dropout === 'number' && model.dropout > 0) throw fieldError(source, 'model.dropout', 'BPE dropout is not supported');
  for (const f of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[f] !== null && model[f] !== undefined && model[f] !== '') throw fieldError(source, `model.${f}`, 'is not supported');
  }
  if (!isObject(model.vocab)) throw fieldError(source, 'model.vocab', 'expected an object');
  const modelTokens: string[] = [];
  const modelIds = new Map<string, number>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0)
      throw fieldError(source, `model.vocab[${JSON.stringify(token)}]`, 'expected a non-negative integer id');
    modelTokens[id as number] = token;
    modelIds.set(token, id as number);
  }
  if (!Array.isArray(model.merges)) throw fieldError(source, 'model.merges', 'expected an array');
  const merges: Merge[] = model.merges.map((entry, i) => {
    const [l, r] = parseMergeEntry(entry, source, i);
    const left = modelIds.get(l);
    const right = modelIds.get(r);
    const result = modelIds.get(l + r);
    if (left === undefined || right === undefined || result === undefined) {
      throw fieldError(source, `model.merges[${i}]`, `${JSON.stringify([l, r])} uses or makes a token missing from model.vocab`);
    }
    return { left, right, result };
  });
  const ignoreMerges = model.ignore_merges === true;
  const preTokenize = compilePreTokenizer(json.pre_tokenizer, source);
  const byteLevel = hasByteLevel(json.pre_tokenizer);
  let encodePiece: Parts['encodePiece'];
  if (byteLevel) {
    if (model.byte_fallback === true)
      throw fieldError(source, 'model.byte_fallback', 'byte_fallback with a ByteLevel pre_tokenizer is not supported');
    if (!isByteLevelDecoder(json.decoder)) throw fieldError(source, 'decoder', 'a ByteLevel pre_tokenizer needs the ByteLevel decoder');
    const byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = modelIds.get(BYTE_TO_CHAR[b]);
      if (id === undefined)
        throw fieldError(
          source,
          'model.vocab',
          `lacks the byte token ${JSON.stringify(BYTE_TO_CHAR[b])} (byte 0x${b.toString(16)}): not a byte-level BPE`,
        );
      byteIds[b] = id;
    }
    const bpe = new BytePairEncoder(merges, byteIds);
    encodePiece = ignoreMerges
      ? (piece) => modelIds.get(bytesToSymbols(new TextEncoder().encode(piece))) ?? bpe.encode(piece)
      : (piece) => bpe.encode(piece);
  } else {
    const unk = model.unk_token;
    if (unk !== null && unk !== undefined && (typeof unk !== 'string' || !modelIds.has(unk)))
      throw fieldError(source, 'model.unk_token', `${JSON.stringify(unk)} is not in model.vocab`);
    const bpe = new CharBpe(modelIds, merges, {
      byteFallback: model.byte_fallback === true,
      unkId: typeof unk === 'string' ? modelIds.get(unk)! : null,
      fuseUnk: model.fuse_unk === true,
      ignoreMerges,
    });
    encodePiece = (piece) => bpe.encode(piece);
  }
  const added = parseAddedTokens(json.added_tokens, source);
  const decoder = byteLevel ? null : compileDecoder(json.decoder, source);
  const tokenOf = modelTokens.slice();
  for (const t of added) tokenOf[t.id] = t.content;
  return {
    modelTokens,
    added,
    encodePiece,
    normalize: compileNormalizer(json.normalizer, source),
    preTokenize,
    wrap: compilePostProcessor(json.post_processor, source),
    decodeRun: (ids) => decoder!(ids.map((id) => tokenOf[id])),
    byteLevel,
    json: {
      version: typeof json.version === 'string' ? json.version : '1.0',
      truncation: json.truncation ?? null,
      padding: json.padding ?? null,
      added_tokens: added,
      normalizer: (json.normalizer ?? null) as JsonObject | null,
      pre_tokenizer: (json.pre_tokenizer ?? null) as JsonObject | null,
      post_processor: (json.post_processor ?? null) as JsonObject | null,
      decoder: (json.decoder ?? null) as JsonObject | null,
      model: model as unknown as HfTokenizerJson['model'],
    },
    spm: null,
  };
}

function hasByteLevel(pre: unknown): boolean {
  if (!isObject(pre)) return false;
  if (pre.type === 'ByteLevel') return true;
  return pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) && pre.pretokenizers.some(hasByteLevel);
}

/**
 * A SentencePiece model as the slow HF tokenizers (LlamaTokenizer, Baichuan's) run it: its
 * control and unknown pieces are special tokens matched in the text, the text between them
 * goes through SentencePiece, and add_bos_token / add_eos_token (defaults true / false)
 * put BOS / EOS around it.
 */
function spmParts(bytes: Uint8Array, config: JsonObject | null, source: string): Parts {
  const sp = new SentencePiece(readSpmModel(bytes, source), source);
  const modelTokens = sp.pieces.map((p) => p.piece);
  const added: HfAddedToken[] = [];
  sp.pieces.forEach((p, id) => {
    if (p.type === PIECE_TYPE.control || p.type === PIECE_TYPE.unknown) {
      added.push({ id, content: p.piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    }
  });
  const role = (key: string, fallback: string) => {
    const name = config && key in config ? tokenName(config[key]) : fallback;
    return name === null ? undefined : sp.pieceToId(name);
  };
  const bos = role('bos_token', '<s>'),
    eos = role('eos_token', '</s>');
  const wrap: SpecialWrap = { prefix: [], suffix: [] };
  if ((config?.add_bos_token ?? true) === true && bos !== undefined) wrap.prefix.push(bos);
  if (config?.add_eos_token === true && eos !== undefined) wrap.suffix.push(eos);
  const special = new Set(added.map((t) => t.id));
  return {
    modelTokens,
    added,
    encodePiece: (text) => Int32Array.from(sp.encode(text)),
    normalize: (text) => sp.normalize(text),
    preTokenize: null,
    wrap,
    // Special tokens as their text, each run between them decoded by SentencePiece.
    decodeRun: (ids) => {
      let out = '';
      let run: number[] = [];
      for (const id of ids) {
        if (!special.has(id)) {
          run.push(id);
          continue;
        }
        out += sp.decode(run) + modelTokens[id];
        run = [];
      }
      return out + sp.decode(run);
    },
    byteLevel: false,
    json: null,
    spm: { bytes, model: sp },
  };
}
