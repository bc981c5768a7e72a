// Text decoding for imported files. Chinese medical data ships in UTF-8 (with or without a
// byte-order mark) or GBK/GB18030, which can be told apart without a statistical detector
// (chardet and friends) by counting on the first 64 KiB: real GBK text is mostly invalid
// UTF-8 (its lead bytes 0x81-0xFE are followed by bytes UTF-8 forbids) and valid GB18030,
// while a UTF-8 file with a stray byte or cut mid-character has far more valid multi-byte
// characters than bad sequences, so it stays UTF-8 and only the lines holding the bad bytes
// are reported (their text carries U+FFFD; the importer rejects those rows naming the line).
// Control bytes (NUL and friends) mean binary data, which is refused rather than imported.
// GB18030 goes through iconv-lite rather than TextDecoder because Node builds with small-icu
// have no GB18030 decoder.
import fs from 'node:fs';
import iconv from 'iconv-lite';
import { DataError } from './errors.js';

export type TextEncoding = 'utf-8' | 'utf-8-bom' | 'gb18030';
/** Aliases accepted from users (--encoding). */
const ENCODING_ALIASES: Record<string, TextEncoding> = {
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'utf-8-bom': 'utf-8-bom',
  'utf-8-sig': 'utf-8-bom',
  'utf8-bom': 'utf-8-bom',
  gb18030: 'gb18030',
  gbk: 'gb18030',
  gb2312: 'gb18030',
  cp936: 'gb18030',
};

export class EncodingError extends DataError {}

/** How many leading bytes detection looks at. */
const DETECT_BYTES = 1 << 16;

export function parseEncoding(name: string): TextEncoding {
  const enc = ENCODING_ALIASES[name.toLowerCase()];
  if (!enc) throw new EncodingError(`unknown encoding "${name}"; expected one of ${Object.keys(ENCODING_ALIASES).join(', ')}`);
  return enc;
}

/** Bytes that could not be decoded (they read as U+FFFD), by line (from 1) and byte offset when known. */
export interface InvalidText {
  line: number;
  byte?: number;
}

const hasUtf8Bom = (b: Uint8Array) => b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf;

/**
 * The UTF-8 structure of b[from, to): valid multi-byte characters and where each invalid
 * sequence starts (WHATWG's maximal subparts, so one bad byte is one entry). A sequence cut
 * at `to` counts as invalid; callers keep an incomplete tail back (completeLength).
 */
function scanUtf8(b: Uint8Array, from = 0, to = b.length): { multibyte: number; invalid: number[] } {
  const invalid: number[] = [];
  let multibyte = 0;
  let i = from;
  while (i < to) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    const lead = utf8Lead(c);
    if (!lead) {
      invalid.push(i++);
      continue;
    }
    let { lo, hi } = lead;
    const need = lead.need - 1;
    let j = i + 1,
      got = 0;
    for (; got < need && j < to && b[j] >= lo && b[j] <= hi; got++, j++) {
      lo = 0x80;
      hi = 0xbf;
    }
    if (got === need) multibyte++;
    else invalid.push(i);
    i = j;
  }
  return { multibyte, invalid };
}

/** Bytes a sequence starting with lead c needs in all, and the range of its second byte; null if c is no lead. */
function utf8Lead(c: number): { need: number; lo: number; hi: number } | null {
  if (c >= 0xc2 && c <= 0xdf) return { need: 2, lo: 0x80, hi: 0xbf };
  if (c >= 0xe0 && c <= 0xef) return { need: 3, lo: c === 0xe0 ? 0xa0 : 0x80, hi: c === 0xed ? 0x9f : 0xbf };
  if (c >= 0xf0 && c <= 0xf4) return { need: 4, lo: c === 0xf0 ? 0x90 : 0x80, hi: c === 0xf4 ? 0x8f : 0xbf };
  return null;
}

/** The length of b without a trailing, so far valid, but incomplete multi-byte sequence. */
function completeLength(b: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, b.length); back++) {
    const c = b[b.length - back];
    if (c >= 0x80 && c < 0xc0) continue; // a continuation byte: look further back for its lead
    const lead = utf8Lead(c);
    // only a valid prefix is held back: anything else is invalid where it stands
    if (!lead || back >= lead.need) return b.length;
    if (back > 1 && (b[b.length - back + 1] < lead.lo || b[b.length - back + 1] > lead.hi)) return b.length;
    return b.length - back;
  }
  return b.length;
}

/** Bytes no text file of ours holds: C0 controls other than tab, newlines, form feed, ESC and ^Z. */
const isControl = (c: number) =>
  (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c && c !== 0x1b && c !== 0x1a) || c === 0x7f;

/** Refuses binary data: any NUL, or more than 1% control bytes. */
function checkNotBinary(head: Uint8Array): void {
  let controls = 0,
    first = -1;
  const nuls = [0, 0]; // at even and odd offsets
  for (let i = 0; i < head.length; i++) {
    if (!isControl(head[i])) continue;
    if (first < 0) first = i;
    controls++;
    if (head[i] === 0) nuls[i & 1]++;
  }
  const nul = nuls[0] + nuls[1];
  if (!nul && controls <= head.length / 100) return;
  // UTF-16 puts the zero byte of ASCII characters always on the same side
  const utf16 = nul >= 8 && (!nuls[0] || !nuls[1]) ? ' (UTF-16 without a byte-order mark? convert it to UTF-8)' : '';
  throw new EncodingError(
    `binary data, not text: ${controls} control bytes (${nul} NUL) in the first ${head.length} bytes, ` +
      `the first 0x${head[first].toString(16).padStart(2, '0')} at byte ${first}${utf16}`,
  );
}

/** GB18030 sequences that do not decode (iconv-lite writes U+FFFD for each). */
function gb18030Invalid(b: Uint8Array): number {
  const s = iconv.decode(Buffer.from(b.buffer, b.byteOffset, b.byteLength), 'gb18030');
  let n = 0;
  for (let i = s.indexOf('\ufffd'); i >= 0; i = s.indexOf('\ufffd', i + 1)) n++;
  return n;
}

/**
 * UTF-8 or GB18030 for a head already known not to be binary: GB18030 only when UTF-8 fails
 * at least as often as it succeeds and GB18030 fits at least four times better; text that
 * neither fits is refused. A few bad bytes in UTF-8 text stay UTF-8.
 */
function utf8OrGb18030(body: Uint8Array): TextEncoding {
  const { multibyte, invalid } = scanUtf8(body);
  if (!invalid.length || invalid.length < multibyte) return 'utf-8';
  const gb = gb18030Invalid(body);
  if (4 * gb < invalid.length) return 'gb18030';
  if (invalid.length >= 16) {
    throw new EncodingError(
      `neither UTF-8 nor GB18030: the first ${body.length} bytes hold ${invalid.length} invalid UTF-8 sequences ` +
        `(first at byte ${invalid[0]}) and ${gb} invalid GB18030 ones; convert the file to UTF-8 or pass --encoding`,
    );
  }
  return 'utf-8';
}

/**
 * Detects the encoding from the first bytes of a file. `complete` says whether `head` is the
 * whole file; when it is not, a multi-byte character cut at the end of `head` is allowed.
 */
export function detectEncoding(head: Uint8Array, complete: boolean): TextEncoding {
  if (hasUtf8Bom(head)) return 'utf-8-bom';
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) {
    throw new EncodingError('UTF-16 byte-order mark found; convert the file to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)');
  }
  checkNotBinary(head);
  return utf8OrGb18030(complete ? head : head.subarray(0, completeLength(head)));
}

/** Checks a head against an encoding the user gave: no binary data, no GB18030 text read as UTF-8. */
function checkGivenEncoding(head: Uint8Array, complete: boolean, enc: TextEncoding): void {
  checkNotBinary(head);
  if (enc === 'gb18030' || hasUtf8Bom(head)) return;
  const body = complete ? head : head.subarray(0, completeLength(head));
  let guess: TextEncoding = 'utf-8';
  try {
    guess = utf8OrGb18030(body);
  } catch {
    // neither fits: the per-line checks report the bad bytes as the user asked for UTF-8
  }
  if (guess === 'gb18030')
    throw new EncodingError(
      `invalid UTF-8 from byte ${scanUtf8(body).invalid[0]} on, and the text reads as GB18030: pass --encoding gb18030 (or auto)`,
    );
}

interface ChunkDecoder {
  write(chunk: Uint8Array): string;
  end(): string;
}

function countNewlines(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = s.indexOf('\n', from); i >= 0 && i < to; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** Records a bad spot, once per line (the first on it). */
function noteInvalid(invalid: InvalidText[], bad: InvalidText): void {
  if (invalid.at(-1)?.line !== bad.line) invalid.push(bad);
}

/**
 * UTF-8: a strict streaming decode (the fast path; it holds a character split between chunks
 * itself); a chunk that fails is scanned for where its bad sequences are and decoded with
 * U+FFFD for them. A character cut by the end of the file is invalid.
 */
function utf8Decoder(invalid: InvalidText[]): ChunkDecoder {
  const options = { fatal: true, ignoreBOM: true };
  let strict = new TextDecoder('utf-8', options);
  const lenient = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  let held: Uint8Array = new Uint8Array(0); // the incomplete character the strict decoder holds
  let fed = 0; // bytes fed so far
  let line = 1; // the line of byte `fed` (held bytes are never newlines)
  let bom = true;
  /** Decodes b (starting at file offset `at`) with U+FFFD for bad sequences, noting their lines. */
  const lenientDecode = (b: Uint8Array, at: number): string => {
    let pos = 0,
      l = line;
    for (const p of scanUtf8(b).invalid) {
      for (let nl = b.indexOf(0x0a, pos); nl >= 0 && nl < p; nl = b.indexOf(0x0a, nl + 1)) {
        l++;
        pos = nl + 1;
      }
      noteInvalid(invalid, { line: l, byte: at + p });
    }
    return lenient.decode(b);
  };
  // a byte-order mark starts the text only
  const strip = (text: string): string => {
    if (!bom || !text.length) return text;
    bom = false;
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  };
  return {
    write(chunk) {
      let text: string;
      try {
        text = strict.decode(chunk, { stream: true });
        held =
          chunk.length >= 4
            ? chunk.subarray(completeLength(chunk))
            : (() => {
                const b = Buffer.concat([held, chunk]);
                return b.subarray(completeLength(b));
              })();
      } catch {
        // a decoder that threw starts over: decode held + chunk here, give it the new incomplete tail
        strict = new TextDecoder('utf-8', options);
        const b = Buffer.concat([held, chunk]);
        const n = completeLength(b);
        text = lenientDecode(b.subarray(0, n), fed - held.length);
        held = b.subarray(n);
        strict.decode(held, { stream: true });
      }
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, nl + 1)) line++;
      fed += chunk.length;
      return strip(text);
    },
    end() {
      try {
        return strip(strict.decode());
      } catch {
        return strip(lenientDecode(held, fed - held.length));
      }
    },
  };
}

/** GB18030 through iconv-lite, which writes U+FFFD for sequences it cannot decode. */
function gb18030Decoder(invalid: InvalidText[]): ChunkDecoder {
  const d = iconv.getDecoder('gb18030');
  let line = 1,
    first = true;
  const note = (s: string): string => {
    let from = 0;
    for (let bad = s.indexOf('\ufffd'); bad >= 0; bad = s.indexOf('\ufffd', bad + 1)) {
      line += countNewlines(s, from, bad);
      from = bad;
      noteInvalid(invalid, { line });
    }
    line += countNewlines(s, from, s.length);
    if (first && s.length) {
      first = false;
      if (s.charCodeAt(0) === 0xfeff) return s.slice(1); // iconv-lite keeps a BOM
    }
    return s;
  };
  return { write: (c) => note(d.write(Buffer.from(c.buffer, c.byteOffset, c.byteLength))), end: () => note(d.end() ?? '') };
}

function makeDecoder(enc: TextEncoding, invalid: InvalidText[]): ChunkDecoder {
  return enc === 'gb18030' ? gb18030Decoder(invalid) : utf8Decoder(invalid);
}

/** Why text on a line was not used: the invalid bytes and the encoding they were read in. */
export function invalidTextReason(bad: InvalidText, encoding: TextEncoding): string {
  const what =
    encoding === 'gb18030' ? 'invalid GB18030 bytes' : `invalid UTF-8 bytes${bad.byte === undefined ? '' : ` at byte ${bad.byte}`}`;
  const hint = encoding === 'gb18030' ? '' : ' (if the whole file is GBK/GB18030, pass --encoding gb18030)';
  return `${what} on line ${bad.line}, shown as U+FFFD in raw; the file was read as ${encoding}${hint}`;
}

/**
 * Decodes a whole buffer, or its pieces in order as a stream would deliver them, detecting
 * the encoding unless one is given. `invalid` lists the lines whose
 * bytes did not decode (they hold U+FFFD in `text`).
 */
export function decodeBytes(
  bytes: Uint8Array | Uint8Array[],
  encoding?: TextEncoding,
): { text: string; encoding: TextEncoding; invalid: InvalidText[] } {
  const pieces = Array.isArray(bytes) ? bytes : [bytes];
  const all = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
  const head = all.subarray(0, DETECT_BYTES),
    complete = all.length <= DETECT_BYTES;
  if (encoding) checkGivenEncoding(head, complete, encoding);
  const enc = encoding ?? detectEncoding(head, complete);
  const invalid: InvalidText[] = [];
  const d = makeDecoder(enc, invalid);
  return { text: pieces.map((p) => d.write(p)).join('') + d.end(), encoding: enc, invalid };
}

export interface DecodedStream {
  encoding: TextEncoding;
  chunks: AsyncGenerator<string>;
  /** Lines with bytes that did not decode, in file order; filled as chunks are read. */
  invalid: InvalidText[];
}

/**
 * Opens a file as a stream of decoded text chunks in bounded memory: reads until it has
 * DETECT_BYTES (or the whole file), detects the encoding on that head (and refuses binary
 * data even when the encoding is given), then decodes the head and the rest chunk by chunk.
 */
export async function openDecoded(file: string, encoding?: TextEncoding): Promise<DecodedStream> {
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let done = false;
  try {
    while (headBytes < DETECT_BYTES) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      head.push(r.value);
      headBytes += r.value.length;
    }
  } catch (err) {
    stream.destroy();
    throw new EncodingError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const first = Buffer.concat(head);
  let enc: TextEncoding;
  try {
    const sample = first.subarray(0, DETECT_BYTES),
      complete = done && first.length <= DETECT_BYTES;
    if (encoding) checkGivenEncoding(sample, complete, encoding);
    enc = encoding ?? detectEncoding(sample, complete);
  } catch (err) {
    stream.destroy();
    throw new EncodingError(`${file}: ${(err as Error).message}`);
  }
  const invalid: InvalidText[] = [];
  async function* chunks(): AsyncGenerator<string> {
    const d = makeDecoder(enc, invalid);
    try {
      if (first.length) yield d.write(first);
      while (!done) {
        const r = await it.next();
        if (r.done) break;
        const s = d.write(r.value);
        if (s) yield s;
      }
      const tail = d.end();
      if (tail) yield tail;
    } finally {
      stream.destroy();
    }
  }
  return { encoding: enc, chunks: chunks(), invalid };
}
