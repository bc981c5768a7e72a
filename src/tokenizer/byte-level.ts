// GPT-2's byte-to-unicode table, as used by HF's ByteLevel pre-tokenizer and decoder: every
// byte gets a printable character so that vocab entries and merges are plain JSON strings.
// Printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.

function buildByteToChar(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** BYTE_TO_CHAR[b] is the one-character vocab symbol of byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

// Indexed by char code (all symbols are below U+0144); -1 where a char is no byte symbol.
const CHAR_TO_BYTE = (() => {
  const t = new Int16Array(0x144).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => (t[c.charCodeAt(0)] = b));
  return t;
})();

export function bytesToSymbols(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** The bytes a vocab string stands for, or null when it holds a char that is no byte symbol. */
export function symbolsToBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    if (b < 0) return null;
    out[i] = b;
  }
  return out;
}

/**
 * Writes the UTF-8 bytes of s[start, end) into out (which must hold 3 bytes per UTF-16 unit)
 * and returns the count. Lone surrogates become U+FFFD, as TextEncoder does. Hand-written
 * because TextEncoder.encodeInto on many short substrings costs more than this loop.
 */
export function utf8Into(s: string, start: number, end: number, out: Uint8Array): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
    } else if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < end ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out[n++] = 0xf0 | (c >> 18);
          out[n++] = 0x80 | ((c >> 12) & 63);
          out[n++] = 0x80 | ((c >> 6) & 63);
          out[n++] = 0x80 | (c & 63);
          continue;
        }
        c = 0xfffd;
      }
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 63);
      out[n++] = 0x80 | (c & 63);
    }
  }
  return n;
}

/** How many bytes the UTF-8 sequence led by byte b has (1 for ASCII and stray bytes). */
export function utf8SequenceLength(b: number): number {
  if (b >= 0xf0 && b <= 0xf4) return 4;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  return 1;
}

export function isContinuationByte(b: number): boolean {
  return (b & 0xc0) === 0x80;
}
