// The shape of the tokenizers this project makes (trained BPE and the bytes-only fallback):
// Qwen-style components, byte tokens at ids 0-255 (id = byte value), merged tokens after
// them, added tokens last. Kept in one place so the trainer pre-tokenises with exactly the
// pipeline that ends up in tokenizer.json.

import { bytesToSymbols } from './byte-level.js';
import type { HfAddedToken, HfTokenizerJson, JsonObject } from './hf-json.js';
import { QWEN_PATTERN } from './regex.js';
import { BUILTIN_TEMPLATES } from './chat-template.js';

export const EOS_TOKEN = '<|endoftext|>';
export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';
export const PAD_TOKEN = '<|pad|>';
/** Role markers reserved for templates other than ChatML (which spells roles as text). */
export const ROLE_TOKENS = ['<|system|>', '<|user|>', '<|assistant|>'] as const;

/** ChatML, as Qwen uses: the built-in template, so ChatTemplate.fromDir recognises it. */
export const CHATML_TEMPLATE = BUILTIN_TEMPLATES.chatml.template;

export type Normalization = 'NFC' | 'none';

/** Built-in special tokens, then `reserved` placeholders, then the caller's extra ones. */
export function specialTokenList(reserved: number, extra: readonly string[] = []): string[] {
  if (!Number.isInteger(reserved) || reserved < 0) throw new Error(`reservedTokens ${reserved} must be a non-negative integer`);
  const list = [EOS_TOKEN, IM_START, IM_END, PAD_TOKEN, ...ROLE_TOKENS];
  for (let i = 0; i < reserved; i++) list.push(`<|reserved_${i}|>`);
  for (const t of extra) if (!list.includes(t)) list.push(t);
  return list;
}

function normalizerConfig(normalization: Normalization): JsonObject | null {
  return normalization === 'NFC' ? { type: 'NFC' } : null;
}

function preTokenizerConfig(): JsonObject {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: QWEN_PATTERN }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  };
}

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };

/**
 * tokenizer.json for a vocabulary whose id i has the bytes tokens[i] (ids 0-255 must be
 * the single bytes in order) and merges given as id triples, with specials appended.
 */
export function buildTokenizerJson(
  tokens: readonly Uint8Array[],
  merges: readonly { left: number; right: number }[],
  specials: readonly string[],
  normalization: Normalization,
): HfTokenizerJson {
  const symbols = tokens.map((t) => bytesToSymbols(t));
  const vocab: Record<string, number> = {};
  symbols.forEach((s, id) => (vocab[s] = id));
  const added: HfAddedToken[] = specials.map((content, i) => ({
    id: tokens.length + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: normalizerConfig(normalization),
    pre_tokenizer: preTokenizerConfig(),
    post_processor: { ...BYTE_LEVEL },
    decoder: { ...BYTE_LEVEL },
    model: bpeModelJson(
      vocab,
      merges.map((m) => [symbols[m.left], symbols[m.right]]),
      false,
    ),
  };
}

/** The `model` section of a byte-level BPE tokenizer.json, as HF tokenizers writes it. */
export function bpeModelJson(vocab: Record<string, number>, merges: [string, string][], ignoreMerges: boolean) {
  return {
    type: 'BPE' as const,
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: ignoreMerges,
    vocab,
    merges,
  };
}
