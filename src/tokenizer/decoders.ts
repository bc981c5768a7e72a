// The `decoder` section of an HF tokenizer.json, with the Rust `tokenizers` crate's semantics:
// a chain of steps over token strings, joined at the end. Byte-level tokenizers skip the chain
// (tokenizer.ts maps their symbols straight to bytes); this serves the others, e.g. Llama-2's
// Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0), or the Metaspace decoder.

import { byteTokenName } from './char-bpe.js';
import { escapeLiteral } from './regex.js';
import { fieldError, isObject, type JsonObject } from './hf-json.js';

type Step = (tokens: string[]) => string[];

const BYTE_TOKENS = new Map(Array.from({ length: 256 }, (_, b) => [byteTokenName(b), b]));
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Whether the section is the byte-level decoder (alone or as the only step of a Sequence). */
export function isByteLevelDecoder(cfg: unknown): boolean {
  return (
    isObject(cfg) &&
    (cfg.type === 'ByteLevel' ||
      (cfg.type === 'Sequence' &&
        Array.isArray(cfg.decoders) &&
        cfg.decoders.length === 1 &&
        isObject(cfg.decoders[0]) &&
        cfg.decoders[0].type === 'ByteLevel'))
  );
}

/** The decoder as tokens -> text; null config joins the tokens as they are. */
export function compileDecoder(cfg: unknown, source: string): (tokens: string[]) => string {
  if (cfg === null || cfg === undefined) return (tokens) => tokens.join('');
  const step = compileStep(cfg, source, 'decoder');
  return (tokens) => step(tokens).join('');
}

function compileStep(cfg: unknown, source: string, field: string): Step {
  if (!isObject(cfg)) throw fieldError(source, field, 'expected an object');
  switch (cfg.type) {
    case 'Sequence': {
      if (!Array.isArray(cfg.decoders)) throw fieldError(source, `${field}.decoders`, 'expected an array');
      const steps = cfg.decoders.map((d, i) => compileStep(d, source, `${field}.decoders[${i}]`));
      return (tokens) => steps.reduce((t, s) => s(t), tokens);
    }
    case 'Replace':
      return replaceStep(cfg, source, field);
    case 'ByteFallback':
      return byteFallback;
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Strip':
      return stripStep(cfg, source, field);
    case 'Metaspace':
      return metaspaceStep(cfg, source, field);
    default:
      throw fieldError(source, `${field}.type`, `unsupported decoder ${JSON.stringify(cfg.type)}`);
  }
}

function replaceStep(cfg: JsonObject, source: string, field: string): Step {
  const p = cfg.pattern;
  if (!isObject(p) || typeof p.String !== 'string') throw fieldError(source, `${field}.pattern`, 'expected {String: string}');
  if (typeof cfg.content !== 'string') throw fieldError(source, `${field}.content`, 'expected a string');
  const re = new RegExp(escapeLiteral(p.String), 'gu');
  const content = cfg.content;
  return (tokens) => tokens.map((t) => t.replace(re, () => content));
}

/**
 * Runs of <0xXX> tokens become their UTF-8 text; a run that is not valid UTF-8 becomes one
 * U+FFFD per byte, as the Rust crate does (String::from_utf8 failing on the whole run).
 */
function byteFallback(tokens: string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = () => {
    if (!run.length) return;
    try {
      out.push(utf8.decode(Uint8Array.from(run)));
    } catch {
      for (let i = 0; i < run.length; i++) out.push('\ufffd');
    }
    run = [];
  };
  for (const t of tokens) {
    const b = BYTE_TOKENS.get(t);
    if (b !== undefined) run.push(b);
    else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

/** Removes up to `start` leading and `stop` trailing copies of the one-character `content`. */
function stripStep(cfg: JsonObject, source: string, field: string): Step {
  const content = cfg.content;
  if (typeof content !== 'string' || [...content].length !== 1) throw fieldError(source, `${field}.content`, 'expected one character');
  const start = Number(cfg.start ?? 0),
    stop = Number(cfg.stop ?? 0);
  return (tokens) =>
    tokens.map((t) => {
      const chars = [...t];
      let a = 0,
        b = chars.length;
      while (a < start && a < b && chars[a] === content) a++;
      while (chars.length - b < stop && b > a && chars[b - 1] === content) b--;
      return chars.slice(a, b).join('');
    });
}

/**
 * The replacement character becomes a space, except in the first token when the pre-tokenizer
 * prepends one (prepend_scheme first / always), where every replacement is dropped: the
 * crate's rule, which differs from @huggingface/tokenizers (one leading space only) for a
 * first token of several "▁".
 */
function metaspaceStep(cfg: JsonObject, source: string, field: string): Step {
  const replacement = cfg.replacement ?? '\u2581';
  if (typeof replacement !== 'string' || [...replacement].length !== 1)
    throw fieldError(source, `${field}.replacement`, 'expected one character');
  const prepends = metaspacePrepends(cfg, source, field) !== 'never';
  return (tokens) => tokens.map((t, i) => t.replaceAll(replacement, i === 0 && prepends ? '' : ' '));
}

/** prepend_scheme of a Metaspace section, including the older add_prefix_space form. */
export function metaspacePrepends(cfg: JsonObject, source: string, field: string): 'always' | 'first' | 'never' {
  const scheme = cfg.prepend_scheme ?? (cfg.add_prefix_space === false ? 'never' : 'always');
  if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never')
    throw fieldError(source, `${field}.prepend_scheme`, `unsupported ${JSON.stringify(scheme)}`);
  return scheme;
}
