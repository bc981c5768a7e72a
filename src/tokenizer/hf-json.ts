// The parts of HF's tokenizer.json / tokenizer_config.json that a byte-level BPE uses.
// Component configs stay loosely typed (JsonObject) because tokenizer.json allows many
// component kinds; pipeline.ts checks the ones it runs and names the offending field.

export type JsonObject = { [key: string]: unknown };

export interface HfAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface HfBpeModel {
  type: 'BPE';
  dropout: number | null;
  unk_token: string | null;
  continuing_subword_prefix: string | null;
  end_of_word_suffix: string | null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges: boolean;
  vocab: Record<string, number>;
  merges: [string, string][] | string[];
}

export interface HfTokenizerJson {
  version: string;
  truncation: unknown;
  padding: unknown;
  added_tokens: HfAddedToken[];
  normalizer: JsonObject | null;
  pre_tokenizer: JsonObject | null;
  post_processor: JsonObject | null;
  decoder: JsonObject | null;
  model: HfBpeModel;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Error naming the file (or "tokenizer.json") and the JSON path of the bad field. */
export function fieldError(source: string, field: string, problem: string): Error {
  return new Error(`${source}: field ${field}: ${problem}`);
}

/** Reads a token name from tokenizer_config.json, which writes it as a string or {content}. */
export function tokenName(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

export function parseAddedTokens(v: unknown, source: string): HfAddedToken[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw fieldError(source, 'added_tokens', 'expected an array');
  return v.map((t, i) => {
    const at = `added_tokens[${i}]`;
    if (!isObject(t)) throw fieldError(source, at, 'expected an object');
    if (!Number.isInteger(t.id) || (t.id as number) < 0) throw fieldError(source, `${at}.id`, 'expected a non-negative integer');
    if (typeof t.content !== 'string' || t.content === '') throw fieldError(source, `${at}.content`, 'expected a non-empty string');
    const special = t.special === true;
    return {
      id: t.id as number,
      content: t.content,
      single_word: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      // HF's default: special tokens match the raw text, others the normalized text.
      normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
      special,
    };
  });
}
