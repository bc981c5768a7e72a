// tokenizer.ggml.* for a GGUF file: the vocabulary in the form llama.cpp tokenizes with, as
// convert_hf_to_gguf.py writes it (gguf-py/gguf/vocab.py and _set_vocab_* there):
//  - `gpt2`: byte-level BPE (ours, Qwen, Llama-3): tokens in the byte-symbol alphabet, merges,
//    and the pre-tokenizer llama.cpp must split with;
//  - `llama`: SentencePiece-style vocabularies (Llama-2, Baichuan): tokens with scores and
//    types, llama.cpp merging the adjacent pair whose concatenation scores highest.
// A tokenizer llama.cpp would tokenize differently is refused, naming what differs.
import type { ChatTemplate } from '../tokenizer/chat-template.js';
import type { HfTokenizerJson, Tokenizer } from '../tokenizer/index.js';
import { GPT2_PATTERN, LLAMA3_PATTERN, QWEN_PATTERN } from '../tokenizer/regex.js';
import { SPM_MODEL_TYPE } from '../tokenizer/spm-proto.js';
import { kv, type GgufMetadata } from './gguf.js';

/** llama_token_type as llama.cpp reads tokenizer.ggml.token_type (SentencePiece's piece types). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

const fail = (what: string): never => {
  throw new Error(`GGUF export: ${what}`);
};

/**
 * llama.cpp's pre-tokenizer names for the split regexes it implements exactly as HF does
 * (llama-bpe also turns on ignore_merges in llama.cpp, as Llama-3's tokenizer.json sets it).
 */
const LLAMA_CPP_PRE = new Map([
  [QWEN_PATTERN, 'qwen2'],
  [LLAMA3_PATTERN, 'llama-bpe'],
  [GPT2_PATTERN, 'gpt-2'],
]);

/**
 * tokenizer.ggml.pre for a byte-level tokenizer's split rule: a Split on a known regex followed
 * by ByteLevel without its own regex (ours, Qwen's), or a plain GPT-2 ByteLevel. Unicode
 * normalisation: llama.cpp has none for BPE, so an NFC tokenizer agrees on NFC text.
 */
function preTokenizerName(json: HfTokenizerJson): string {
  const pre = json.pre_tokenizer as {
    type?: string;
    pretokenizers?: unknown[];
    pattern?: { Regex?: string };
    behavior?: string;
    invert?: boolean;
    use_regex?: boolean;
  } | null;
  const parts = (pre?.type === 'Sequence' ? (pre.pretokenizers ?? []) : [pre]) as (typeof pre)[];
  let regex: string | undefined;
  if (
    parts.length === 2 &&
    parts[0]?.type === 'Split' &&
    parts[0].behavior === 'Isolated' &&
    !parts[0].invert &&
    parts[1]?.type === 'ByteLevel' &&
    parts[1].use_regex === false
  )
    regex = parts[0].pattern?.Regex;
  else if (parts.length === 1 && parts[0]?.type === 'ByteLevel' && parts[0].use_regex !== false) regex = GPT2_PATTERN;
  const name = regex === undefined ? undefined : LLAMA_CPP_PRE.get(regex);
  if (!name)
    fail(
      `the tokenizer's pre_tokenizer ${JSON.stringify(pre)} has no llama.cpp equivalent (supported: the Qwen2 and Llama-3 split regexes, GPT-2 byte level)`,
    );
  if ((json.model.ignore_merges === true) !== (name === 'llama-bpe'))
    fail(`ignore_merges ${json.model.ignore_merges} with the ${name} pre-tokenizer has no llama.cpp equivalent`);
  const norm = json.normalizer as { type?: string } | null;
  if (norm !== null && norm.type !== 'NFC') fail(`the tokenizer's normalizer ${JSON.stringify(norm)} has no llama.cpp equivalent`);
  return name!;
}

/** Tokens and types for `gpt2`: one entry per model row, ids the tokenizer lacks "[PAD<id>]" (unused). */
function bpeVocab(tok: Tokenizer, vocabSize: number): GgufMetadata {
  const json = tok.toJSON();
  const added = new Map(json.added_tokens.map((t) => [t.id, t]));
  const tokens: string[] = [],
    types: number[] = [];
  for (let id = 0; id < vocabSize; id++) {
    const t = tok.idToToken(id);
    const a = added.get(id);
    tokens.push(t ?? `[PAD${id}]`);
    types.push(t === undefined ? TOKEN_TYPE.unused : a ? (a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined) : TOKEN_TYPE.normal);
  }
  const merges = json.model.merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  return new Map([
    ['tokenizer.ggml.model', kv.str('gpt2')],
    ['tokenizer.ggml.pre', kv.str(preTokenizerName(json))],
    ['tokenizer.ggml.tokens', kv.strings(tokens)],
    ['tokenizer.ggml.token_type', kv.i32s(types)],
    ['tokenizer.ggml.merges', kv.strings(merges)],
  ]);
}

interface SpmVocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Whether each text (the input, and the text after each special token) gets a leading space. */
  addSpacePrefix: boolean;
}

/** From tokenizer.model: the pieces as they are, which llama.cpp's tokenizer is written for. */
function sentencePieceVocab(tok: Tokenizer): SpmVocab {
  const sp = tok.sentencePiece!;
  const { normalizer, trainer } = sp.model;
  if (trainer.modelType !== SPM_MODEL_TYPE.bpe)
    fail('a unigram SentencePiece model has no llama.cpp `llama` tokenizer (only BPE models do)');
  if (normalizer.precompiledCharsmap.length) fail(`tokenizer.model normalizes text (${normalizer.name}), which llama.cpp does not`);
  if (normalizer.removeExtraWhitespaces) fail('tokenizer.model removes extra whitespace, which llama.cpp does not');
  if (!normalizer.escapeWhitespaces || trainer.treatWhitespaceAsSuffix)
    fail('tokenizer.model does not escape whitespace as a prefix "▁", as llama.cpp does');
  return {
    tokens: sp.pieces.map((p) => p.piece),
    scores: sp.pieces.map((p) => p.score),
    types: sp.pieces.map((p) => p.type),
    addSpacePrefix: normalizer.addDummyPrefix,
  };
}

/**
 * From a tokenizer.json BPE with byte fallback (Llama-2 converted by transformers), written as
 * convert_hf_to_gguf.py cannot (its scores are placeholders): a token's score is minus the rank
 * of its first merge, so llama.cpp's highest-score-first merging applies the merges in rank
 * order. That equals BPE when every split of a merged token into two tokens is itself a merge
 * (true of vocabularies converted from SentencePiece), which is checked.
 */
function charBpeVocab(tok: Tokenizer): SpmVocab {
  const json = tok.toJSON();
  const model = json.model;
  if (!model.byte_fallback) fail('a BPE tokenizer.json without byte_fallback has no llama.cpp `llama` tokenizer');
  const spaces = spaceHandling(json);
  const ids = new Map(Object.entries(model.vocab));
  const tokens: string[] = [];
  for (const [t, id] of ids) tokens[id] = t;
  const scores = tokens.map(() => 0);
  const firstRank = new Map<number, number>();
  const pairs = new Set<string>();
  model.merges.forEach((m, rank) => {
    const [l, r] = typeof m === 'string' ? m.split(' ') : m;
    pairs.add(`${l} ${r}`);
    const id = ids.get(l + r)!;
    if (!firstRank.has(id)) firstRank.set(id, rank);
  });
  for (const [id, rank] of firstRank) {
    scores[id] = -rank;
    const chars = [...tokens[id]];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(''),
        r = chars.slice(k).join('');
      if (ids.has(l) && ids.has(r) && !pairs.has(`${l} ${r}`))
        fail(
          `token ${JSON.stringify(tokens[id])} splits into the tokens ${JSON.stringify(l)} + ${JSON.stringify(r)} with no merge: llama.cpp would merge them, BPE does not`,
        );
    }
  }
  const types = tokens.map((t, id) =>
    id === tok.unkId ? TOKEN_TYPE.unknown : /^<0x[0-9A-F]{2}>$/.test(t) ? TOKEN_TYPE.byte : TOKEN_TYPE.normal,
  );
  return { tokens, scores, types, addSpacePrefix: spaces };
}

/**
 * Whether a tokenizer.json writes spaces as llama.cpp's SentencePiece tokenizer does (every
 * space as "▁") and prefixes each text with one: Prepend("▁") + Replace(" ", "▁"), or a
 * Metaspace pre-tokenizer that prepends always (or never) and does not split.
 */
function spaceHandling(json: HfTokenizerJson): boolean {
  type Step = { type?: string; prepend?: string; pattern?: { String?: string }; content?: string };
  const norm = json.normalizer as (Step & { normalizers?: Step[] }) | null;
  const pre = json.pre_tokenizer as {
    type?: string;
    prepend_scheme?: string;
    add_prefix_space?: boolean;
    split?: boolean;
    replacement?: string;
  } | null;
  const steps: Step[] = norm?.type === 'Sequence' ? (norm.normalizers ?? []) : norm ? [norm] : [];
  const replaces = steps.some((s) => s.type === 'Replace' && s.pattern?.String === ' ' && s.content === '\u2581');
  const prepends = steps.some((s) => s.type === 'Prepend' && s.prepend === '\u2581');
  if (replaces && steps.every((s) => s.type === 'Replace' || s.type === 'Prepend') && pre === null) return prepends;
  if (steps.length === 0 && pre?.type === 'Metaspace' && (pre.replacement ?? '\u2581') === '\u2581' && pre.split === false) {
    const scheme = pre.prepend_scheme ?? (pre.add_prefix_space === false ? 'never' : 'always');
    if (scheme === 'first')
      fail('Metaspace prepend_scheme "first" has no llama.cpp equivalent (llama.cpp prefixes the text after every special token)');
    return scheme === 'always';
  }
  return fail(`the tokenizer's normalizer ${JSON.stringify(norm)} / pre_tokenizer ${JSON.stringify(pre)} has no llama.cpp equivalent`);
}

/** Tokens, scores and types for `llama`, padded to the model's rows; added tokens control / user-defined. */
function llamaVocab(tok: Tokenizer, vocabSize: number): GgufMetadata {
  const v = tok.sentencePiece ? sentencePieceVocab(tok) : charBpeVocab(tok);
  for (let id = 0; id < vocabSize; id++) {
    const t = tok.idToToken(id);
    if (id < v.tokens.length && v.tokens[id] !== undefined && t === v.tokens[id]) continue;
    v.tokens[id] = t ?? `[PAD${id}]`;
    v.scores[id] = t === undefined ? -1000 : 0;
    v.types[id] = t === undefined ? TOKEN_TYPE.unused : tok.isSpecialId(id) ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  // Added tokens of the tokenizer that the vocabulary file lists as plain pieces.
  for (let id = 0; id < v.tokens.length; id++)
    if (tok.isSpecialId(id) && v.types[id] === TOKEN_TYPE.normal) v.types[id] = TOKEN_TYPE.control;
  const meta: GgufMetadata = new Map([
    ['tokenizer.ggml.model', kv.str('llama')],
    ['tokenizer.ggml.tokens', kv.strings(v.tokens.slice(0, vocabSize))],
    ['tokenizer.ggml.scores', kv.f32s(v.scores.slice(0, vocabSize))],
    ['tokenizer.ggml.token_type', kv.i32s(v.types.slice(0, vocabSize))],
    ['tokenizer.ggml.add_space_prefix', kv.bool(v.addSpacePrefix)],
  ]);
  if (tok.unkId !== null) meta.set('tokenizer.ggml.unknown_token_id', kv.u32(tok.unkId));
  return meta;
}

/** Whether llama.cpp's `llama` (SentencePiece) tokenizer is the one for this tokenizer. */
function isSentencePieceStyle(tok: Tokenizer): boolean {
  if (tok.sentencePiece) return true;
  return tok.toJSON().model.byte_fallback === true;
}

/** Every tokenizer.* key: the vocabulary, special tokens, what encode() adds, the chat template. */
export function tokenizerMetadata(tok: Tokenizer, template: ChatTemplate, vocabSize: number): GgufMetadata {
  if (tok.vocabSize > vocabSize) fail(`the tokenizer has ${tok.vocabSize} tokens but the model only ${vocabSize} rows`);
  const meta = isSentencePieceStyle(tok) ? llamaVocab(tok, vocabSize) : bpeVocab(tok, vocabSize);
  // What encode() adds around any text is what llama.cpp must add: BOS and/or EOS flags.
  const wrap = tok.encode('', { addSpecialTokens: true });
  // With no BOS key llama.cpp's BPE default is id 11, an arbitrary token; a tokenizer
  // without BOS (Qwen's convention, ours) names its EOS, as Qwen's GGUFs do, and never adds it.
  meta.set('tokenizer.ggml.bos_token_id', kv.u32(tok.bosId ?? tok.eosId));
  meta.set('tokenizer.ggml.eos_token_id', kv.u32(tok.eosId));
  meta.set('tokenizer.ggml.padding_token_id', kv.u32(tok.padId));
  meta.set('tokenizer.ggml.add_bos_token', kv.bool(tok.bosId !== null && wrap[0] === tok.bosId));
  meta.set('tokenizer.ggml.add_eos_token', kv.bool(wrap.length > 0 && wrap[wrap.length - 1] === tok.eosId));
  // The end-of-turn marker (<|im_end|> for ChatML) ends generation in llama.cpp as EOT.
  const eot = template.stopIds(tok).find((id) => id !== tok.eosId);
  if (eot !== undefined) meta.set('tokenizer.ggml.eot_token_id', kv.u32(eot));
  if (template.present) meta.set('tokenizer.chat_template', kv.str(template.source));
  return meta;
}
