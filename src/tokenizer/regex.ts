// HF tokenizer.json patterns are written for the Rust crate's Oniguruma engine. JavaScript's
// RegExp differs in ways that change pre-tokens: `\s` (JS adds U+FEFF and misses U+0085),
// `.`, `^`/`$` (Oniguruma's are line anchors), and inline flags `(?i:...)` (absent in Node 20).
// This translates the subset that byte-level BPE tokenizers use (GPT-2, Qwen, Llama 3,
// DeepSeek) and rejects the rest with an error instead of silently splitting differently.
// Kept over the oniguruma-to-es package (4.3.6, tried for issue 13): that splits the shared
// data identically, but its RegExp (flag v, and (?i:...) widened to a whole-pattern i flag)
// pre-tokenises no faster and up to a third slower (bench figures in the closing note).

/** Qwen2/Qwen3's pre-tokenisation: CJK runs are \p{L}+ pieces, digits are single pieces. */
export const QWEN_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Llama-3's: as Qwen's, but numbers in pieces of up to three digits. */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** What HF's ByteLevel pre-tokenizer splits with when use_regex is true (GPT-2). */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Oniguruma's word characters (Unicode mode), as a class body.
const WORD_CHARS = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}';

const ESCAPES_OUTSIDE_CLASS: Record<string, string> = {
  s: '\\p{White_Space}',
  S: '\\P{White_Space}',
  d: '\\p{Nd}',
  D: '\\P{Nd}',
  w: `[${WORD_CHARS}]`,
  W: `[^${WORD_CHARS}]`,
  A: '(?<![\\s\\S])',
  z: '(?![\\s\\S])',
  Z: '(?=\\n?(?![\\s\\S]))',
};
const ESCAPES_IN_CLASS: Record<string, string> = {
  s: '\\p{White_Space}',
  d: '\\p{Nd}',
  w: WORD_CHARS,
};
// Escapes that mean the same in both engines.
const SHARED_ESCAPES = new Set(['n', 'r', 't', 'f', 'v', '0']);
const JS_SYNTAX = new Set('^$\\.*+?()[]{}|/');

function propertyName(name: string): string {
  // Oniguruma accepts bare script names (\p{Han}); JS wants Script=Han.
  try {
    new RegExp(`\\p{${name}}`, 'u');
    return name;
  } catch {
    return `Script=${name}`;
  }
}

function caseVariants(ch: string): string {
  const lo = ch.toLowerCase();
  const up = ch.toUpperCase();
  return lo === up ? ch : `${lo}${up}`;
}

/** s as a RegExp source that matches it literally (in 'u' mode). */
export function escapeLiteral(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/]/g, '\\$&');
}

const isAsciiLetter = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

/**
 * Translates an Oniguruma pattern to a JavaScript RegExp with flags 'gu'.
 * Throws naming the construct and its offset when the pattern uses something not covered.
 */
export function compileOnigurumaPattern(pattern: string): RegExp {
  let out = '';
  let i = 0;
  let inClass = false;
  // One entry per open group: whether (?i:...) is in force inside it.
  const groups: boolean[] = [];
  const fail = (what: string): never => {
    throw new Error(`unsupported regex construct ${what} at offset ${i} in pattern ${JSON.stringify(pattern)}`);
  };
  const caseless = () => groups.length > 0 && groups[groups.length - 1];

  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '\\') {
      const e = pattern[i + 1];
      if (e === undefined) fail('trailing backslash');
      if (e === 'p' || e === 'P') {
        const close = pattern.indexOf('}', i);
        if (pattern[i + 2] !== '{' || close < 0) fail(`\\${e} without {name}`);
        const name = pattern.slice(i + 3, close);
        const negated = name.startsWith('^'); // Oniguruma's \p{^L} is \P{L}
        const letter = negated ? (e === 'p' ? 'P' : 'p') : e;
        out += `\\${letter}{${propertyName(negated ? name.slice(1) : name)}}`;
        i = close + 1;
        continue;
      }
      if (e === 'x' && pattern[i + 2] === '{') {
        const close = pattern.indexOf('}', i);
        out += `\\u{${pattern.slice(i + 3, close)}}`;
        i = close + 1;
        continue;
      }
      if (e === 'x' || e === 'u') {
        const len = e === 'x' ? 2 : 4;
        const hex = pattern.slice(i + 2, i + 2 + len);
        if (!/^[0-9A-Fa-f]+$/.test(hex) || hex.length !== len) fail(`\\${e}${hex}`);
        out += `\\${e}${hex}`;
        i += 2 + len;
        continue;
      }
      const table = inClass ? ESCAPES_IN_CLASS : ESCAPES_OUTSIDE_CLASS;
      if (table[e] !== undefined) out += table[e];
      else if (SHARED_ESCAPES.has(e)) out += `\\${e}`;
      else if (/[A-Za-z0-9]/.test(e)) fail(`\\${e}${inClass ? ' inside a character class' : ''}`);
      else out += JS_SYNTAX.has(e) || (inClass && e === '-') ? `\\${e}` : e; // identity escape of punctuation
      i += 2;
      continue;
    }
    if (inClass) {
      if (c === '[') fail('nested character class or POSIX bracket');
      if (c === '&' && pattern[i + 1] === '&') fail('character class intersection');
      if (c === ']') {
        inClass = false;
        out += c;
      } else if (caseless() && isAsciiLetter(c)) {
        // A range a-z also gets A-Z; a single letter gets both cases.
        if (pattern[i + 1] === '-' && isAsciiLetter(pattern[i + 2] ?? '')) {
          const hi = pattern[i + 2];
          out += `${c.toLowerCase()}-${hi.toLowerCase()}${c.toUpperCase()}-${hi.toUpperCase()}`;
          i += 3;
          continue;
        }
        out += caseVariants(c);
      } else {
        out += c;
      }
      i++;
      continue;
    }
    switch (c) {
      case '[':
        inClass = true;
        out += '[';
        i++;
        if (pattern[i] === '^') {
          out += '^';
          i++;
        }
        // A ']' right after the opening bracket is a literal in Oniguruma.
        if (pattern[i] === ']') {
          out += '\\]';
          i++;
        }
        continue;
      case '(': {
        const rest = pattern.slice(i);
        if (rest.startsWith('(?i:')) {
          groups.push(true);
          out += '(?:';
          i += 4;
        } else if (rest.startsWith('(?-i:')) {
          groups.push(false);
          out += '(?:';
          i += 5;
        } else if (/^\(\?(?:<[=!]|[:=!])/.test(rest)) {
          const len = rest[2] === '<' ? 4 : 3;
          groups.push(caseless());
          out += rest.slice(0, len);
          i += len;
        } else if (rest.startsWith('(?>')) {
          // An atomic group matches like a plain one for the alternations used in pre-tokenizers.
          groups.push(caseless());
          out += '(?:';
          i += 3;
        } else if (rest.startsWith('(?')) {
          fail(rest.slice(0, 4));
        } else {
          groups.push(caseless());
          out += '(';
          i++;
        }
        continue;
      }
      case ')':
        if (groups.length === 0) fail('unbalanced )');
        groups.pop();
        out += ')';
        i++;
        continue;
      case '.':
        out += '[^\\n]';
        i++;
        continue;
      case '^':
        out += '(?:(?<![\\s\\S])|(?<=\\n))';
        i++;
        continue;
      case '$':
        out += '(?:(?=\\n)|(?![\\s\\S]))';
        i++;
        continue;
      case '+':
      case '*':
      case '?':
      case '}':
        // Oniguruma's possessive (X++) and stacked (X{2}+) quantifiers have no JS spelling.
        if (pattern[i + 1] === '+') fail(`quantifier ${c}+`);
        out += c;
        i++;
        continue;
      default:
        out += caseless() && isAsciiLetter(c) ? `[${caseVariants(c)}]` : c;
        i++;
    }
  }
  if (inClass) fail('unterminated character class');
  if (groups.length > 0) fail('unterminated group');
  return new RegExp(out, 'gu');
}
