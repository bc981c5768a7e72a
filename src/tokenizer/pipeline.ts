// Runs the normalizer, pre-tokenizer and post-processor sections of an HF tokenizer.json with
// the semantics of the Rust `tokenizers` crate. Anything outside what the supported tokenizers
// use (byte-level BPE as GPT-2 / Qwen / Llama-3, SentencePiece-style BPE as Llama-2) is
// rejected with the field that holds it, so a tokenizer is never silently encoded wrong.

import { metaspacePrepends } from './decoders.js';
import { compileOnigurumaPattern, escapeLiteral, GPT2_PATTERN } from './regex.js';
import { fieldError, isObject, type JsonObject } from './hf-json.js';

export type Normalize = (text: string) => string;
/**
 * Calls emit with each pre-token of text, in order; never with an empty string. `first`: the
 * text starts the input (no added token before it), which Metaspace's prepend_scheme "first" needs.
 */
export type PreTokenize = (text: string, emit: (piece: string) => void, first: boolean) => void;

const UNICODE_FORMS: Record<string, string> = { NFC: 'NFC', NFD: 'NFD', NFKC: 'NFKC', NFKD: 'NFKD' };

export function compileNormalizer(cfg: unknown, source: string, field = 'normalizer'): Normalize | null {
  if (cfg === null || cfg === undefined) return null;
  if (!isObject(cfg)) throw fieldError(source, field, 'expected an object or null');
  const type = cfg.type;
  if (typeof type === 'string' && UNICODE_FORMS[type]) {
    const form = UNICODE_FORMS[type];
    return (s) => s.normalize(form);
  }
  if (type === 'Lowercase') return (s) => s.toLowerCase();
  // Prepend: only to non-empty text, as the crate does.
  if (type === 'Prepend') {
    if (typeof cfg.prepend !== 'string') throw fieldError(source, `${field}.prepend`, 'expected a string');
    const prefix = cfg.prepend;
    return (s) => (s ? prefix + s : s);
  }
  if (type === 'Replace') {
    const re = patternRegex(cfg, source, field);
    if (typeof cfg.content !== 'string') throw fieldError(source, `${field}.content`, 'expected a string');
    const content = cfg.content;
    return (s) => s.replace(re, () => content);
  }
  if (type === 'Strip') {
    const left = cfg.strip_left === true,
      right = cfg.strip_right === true;
    return (s) => (left && right ? s.replace(/^\s+|\s+$/gu, '') : left ? s.replace(/^\s+/u, '') : right ? s.replace(/\s+$/u, '') : s);
  }
  if (type === 'Sequence') {
    if (!Array.isArray(cfg.normalizers)) throw fieldError(source, `${field}.normalizers`, 'expected an array');
    const parts = cfg.normalizers
      .map((n, i) => compileNormalizer(n, source, `${field}.normalizers[${i}]`))
      .filter((n): n is Normalize => n !== null);
    if (parts.length === 0) return null;
    if (parts.length === 1) return parts[0];
    return (s) => parts.reduce((acc, n) => n(acc), s);
  }
  throw fieldError(source, `${field}.type`, `unsupported normalizer ${JSON.stringify(type)}`);
}

type Behavior = 'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
const BEHAVIORS = new Set<string>(['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous']);

/** [start, end, isMatch] triples covering text, empty matches skipped. */
function findSpans(text: string, re: RegExp, invert: boolean): number[] {
  const spans: number[] = [];
  let prev = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      re.lastIndex = start + 1;
      continue;
    }
    if (start > prev) spans.push(prev, start, invert ? 1 : 0);
    spans.push(start, end, invert ? 0 : 1);
    prev = end;
  }
  if (prev < text.length) spans.push(prev, text.length, invert ? 1 : 0);
  return spans;
}

/** Groups spans as the Rust crate's SplitDelimiterBehavior does and emits the pieces. */
function emitByBehavior(text: string, spans: number[], behavior: Behavior, emit: (piece: string) => void): void {
  const out: number[] = []; // start, end pairs
  let previousMatch = false;
  const forward = behavior !== 'MergedWithNext';
  const n = spans.length / 3;
  for (let k = 0; k < n; k++) {
    const s = forward ? k : n - 1 - k;
    const start = spans[3 * s];
    const end = spans[3 * s + 1];
    const isMatch = spans[3 * s + 2] === 1;
    const last = out.length - 2;
    if (behavior === 'Removed') {
      if (!isMatch) out.push(start, end);
    } else if (behavior === 'Isolated') {
      out.push(start, end);
    } else if (behavior === 'Contiguous' ? isMatch === previousMatch && last >= 0 : isMatch && !previousMatch && last >= 0) {
      if (forward) out[last + 1] = end;
      else out[last] = start;
    } else {
      out.push(start, end);
    }
    previousMatch = isMatch;
  }
  if (forward) {
    for (let i = 0; i < out.length; i += 2) emit(text.slice(out[i], out[i + 1]));
  } else {
    for (let i = out.length - 2; i >= 0; i -= 2) emit(text.slice(out[i], out[i + 1]));
  }
}

function splitter(re: RegExp, behavior: Behavior, invert: boolean): PreTokenize {
  if (behavior === 'Isolated') {
    // The hot path of every GPT-2/Qwen/Llama-style tokenizer: no span list.
    return (text, emit) => {
      let prev = 0;
      re.lastIndex = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        const start = m.index;
        const len = m[0].length;
        if (len === 0) {
          re.lastIndex = start + 1;
          continue;
        }
        if (start > prev) emit(text.slice(prev, start));
        emit(m[0]);
        prev = start + len;
      }
      if (prev < text.length) emit(text.slice(prev));
    };
  }
  return (text, emit) => emitByBehavior(text, findSpans(text, re, invert), behavior, emit);
}

/** The `pattern` of a Split / Replace section ({Regex} in Oniguruma syntax, or {String}) as a global RegExp. */
function patternRegex(cfg: JsonObject, source: string, field: string): RegExp {
  const pattern = cfg.pattern;
  if (isObject(pattern) && typeof pattern.Regex === 'string') {
    try {
      return compileOnigurumaPattern(pattern.Regex);
    } catch (e) {
      throw fieldError(source, `${field}.pattern.Regex`, (e as Error).message);
    }
  }
  if (isObject(pattern) && typeof pattern.String === 'string') return new RegExp(escapeLiteral(pattern.String), 'gu');
  throw fieldError(source, `${field}.pattern`, 'expected {Regex: string} or {String: string}');
}

function compileSplit(cfg: JsonObject, source: string, field: string): PreTokenize {
  const re = patternRegex(cfg, source, field);
  const behavior = cfg.behavior;
  if (typeof behavior !== 'string' || !BEHAVIORS.has(behavior)) {
    throw fieldError(source, `${field}.behavior`, `unsupported split behavior ${JSON.stringify(behavior)}`);
  }
  return splitter(re, behavior as Behavior, cfg.invert === true);
}

function compileByteLevel(cfg: JsonObject): PreTokenize | null {
  // The byte mapping itself happens in the BPE model; here only the optional splitting.
  const addPrefixSpace = cfg.add_prefix_space === true;
  const split = cfg.use_regex === false ? null : splitter(compileOnigurumaPattern(GPT2_PATTERN), 'Isolated', false);
  if (!addPrefixSpace) return split;
  const prefixed = (text: string) => (text.startsWith(' ') ? text : ' ' + text);
  if (split === null) return (text, emit) => emit(prefixed(text));
  return (text, emit, first) => split(prefixed(text), emit, first);
}

function chain(steps: PreTokenize[]): PreTokenize {
  return steps.reduceRight((next, step) => (text, emit, first) => step(text, (piece) => next(piece, emit, first), first));
}

/**
 * Metaspace: spaces become the replacement character, which is prepended (unless already
 * there) always or only to the text that starts the input; with split, the text is cut before
 * each replacement character (MergedWithNext).
 */
function compileMetaspace(cfg: JsonObject, source: string, field: string): PreTokenize {
  const rep = cfg.replacement ?? '\u2581';
  if (typeof rep !== 'string' || [...rep].length !== 1) throw fieldError(source, `${field}.replacement`, 'expected one character');
  const scheme = metaspacePrepends(cfg, source, field);
  const split = cfg.split !== false;
  const cut = split ? splitter(new RegExp(escapeLiteral(rep), 'gu'), 'MergedWithNext', false) : null;
  return (text, emit, first) => {
    let t = text.replaceAll(' ', rep);
    if (!t.startsWith(rep) && (scheme === 'always' || (scheme === 'first' && first))) t = rep + t;
    if (cut) cut(t, emit, first);
    else if (t) emit(t);
  };
}

export function compilePreTokenizer(cfg: unknown, source: string, field = 'pre_tokenizer'): PreTokenize | null {
  if (cfg === null || cfg === undefined) return null;
  if (!isObject(cfg)) throw fieldError(source, field, 'expected an object or null');
  switch (cfg.type) {
    case 'Split':
      return compileSplit(cfg, source, field);
    case 'ByteLevel':
      return compileByteLevel(cfg);
    case 'Digits':
      return splitter(/\p{N}/gu, cfg.individual_digits === true ? 'Isolated' : 'Contiguous', false);
    case 'Metaspace':
      return compileMetaspace(cfg, source, field);
    case 'Sequence': {
      if (!Array.isArray(cfg.pretokenizers)) throw fieldError(source, `${field}.pretokenizers`, 'expected an array');
      const steps = cfg.pretokenizers
        .map((p, i) => compilePreTokenizer(p, source, `${field}.pretokenizers[${i}]`))
        .filter((p): p is PreTokenize => p !== null);
      return steps.length === 0 ? null : steps.length === 1 ? steps[0] : chain(steps);
    }
    default:
      throw fieldError(source, `${field}.type`, `unsupported pre_tokenizer ${JSON.stringify(cfg.type)}`);
  }
}

/** Ids the post-processor puts around one sequence when special tokens are added. */
export interface SpecialWrap {
  prefix: number[];
  suffix: number[];
}

export function compilePostProcessor(cfg: unknown, source: string, field = 'post_processor'): SpecialWrap {
  const none: SpecialWrap = { prefix: [], suffix: [] };
  if (cfg === null || cfg === undefined) return none;
  if (!isObject(cfg)) throw fieldError(source, field, 'expected an object or null');
  switch (cfg.type) {
    case 'ByteLevel': // only adjusts offsets, which encode() does not return
      return none;
    case 'Sequence': {
      if (!Array.isArray(cfg.processors)) throw fieldError(source, `${field}.processors`, 'expected an array');
      const parts = cfg.processors.map((p, i) => compilePostProcessor(p, source, `${field}.processors[${i}]`));
      return { prefix: parts.flatMap((p) => p.prefix), suffix: parts.flatMap((p) => p.suffix) };
    }
    case 'TemplateProcessing':
      return templateWrap(cfg, source, field);
    default:
      throw fieldError(source, `${field}.type`, `unsupported post_processor ${JSON.stringify(cfg.type)}`);
  }
}

function templateWrap(cfg: JsonObject, source: string, field: string): SpecialWrap {
  if (!Array.isArray(cfg.single)) throw fieldError(source, `${field}.single`, 'expected an array');
  const specials = isObject(cfg.special_tokens) ? cfg.special_tokens : {};
  const wrap: SpecialWrap = { prefix: [], suffix: [] };
  let seenSequence = false;
  cfg.single.forEach((piece, i) => {
    if (isObject(piece) && isObject(piece.Sequence)) {
      seenSequence = true;
      return;
    }
    const name = isObject(piece) && isObject(piece.SpecialToken) ? piece.SpecialToken.id : undefined;
    const entry = typeof name === 'string' ? specials[name] : undefined;
    if (!isObject(entry) || !Array.isArray(entry.ids) || !entry.ids.every((x) => Number.isInteger(x))) {
      throw fieldError(source, `${field}.single[${i}]`, 'expected {Sequence} or {SpecialToken} listed in special_tokens with ids');
    }
    (seenSequence ? wrap.suffix : wrap.prefix).push(...(entry.ids as number[]));
  });
  if (!seenSequence) throw fieldError(source, `${field}.single`, 'has no $A sequence');
  return wrap;
}
