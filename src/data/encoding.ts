// Text decoding for imported files. Chinese medical data ships in three encodings that can be
// told apart without a statistical detector (chardet and friends): a UTF-8 byte-order mark,
// else bytes that pass a strict UTF-8 decode (real GBK/GB18030 text almost never does, its
// lead bytes 0x81-0xFE are followed by bytes UTF-8 forbids), else GB18030 (a superset of GBK
// and GB2312). GB18030 goes through iconv-lite rather than TextDecoder because Node builds
// with small-icu have no GB18030 decoder.
import fs from 'node:fs';
import iconv from 'iconv-lite';
import { DataError } from './errors.js';

export type TextEncoding = 'utf-8' | 'utf-8-bom' | 'gb18030';
/** Aliases accepted from users (--encoding). */
const ENCODING_ALIASES: Record<string, TextEncoding> = {
  'utf-8': 'utf-8', utf8: 'utf-8', 'utf-8-bom': 'utf-8-bom', 'utf-8-sig': 'utf-8-bom', 'utf8-bom': 'utf-8-bom',
  gb18030: 'gb18030', gbk: 'gb18030', gb2312: 'gb18030', cp936: 'gb18030',
};

export class EncodingError extends DataError {}

/** How many leading bytes detection looks at. */
const DETECT_BYTES = 1 << 16;

export function parseEncoding(name: string): TextEncoding {
  const enc = ENCODING_ALIASES[name.toLowerCase()];
  if (!enc) throw new EncodingError(`unknown encoding "${name}"; expected one of ${Object.keys(ENCODING_ALIASES).join(', ')}`);
  return enc;
}

const hasUtf8Bom = (b: Uint8Array) => b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf;

/**
 * Detects the encoding from the first bytes of a file. `complete` says whether `head` is the
 * whole file; when it is not, a multi-byte character cut at the end of `head` is allowed.
 */
export function detectEncoding(head: Uint8Array, complete: boolean): TextEncoding {
  if (hasUtf8Bom(head)) return 'utf-8-bom';
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) {
    throw new EncodingError('UTF-16 byte-order mark found; convert the file to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)');
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: !complete });
    return 'utf-8';
  } catch {
    return 'gb18030';
  }
}

interface ChunkDecoder {
  write(chunk: Uint8Array): string;
  end(): string;
}

function makeDecoder(enc: TextEncoding, file: string): ChunkDecoder {
  if (enc === 'gb18030') {
    const d = iconv.getDecoder('gb18030');
    return { write: (c) => d.write(Buffer.from(c.buffer, c.byteOffset, c.byteLength)), end: () => d.end() ?? '' };
  }
  // ignoreBOM: false makes TextDecoder strip a leading BOM, so utf-8 and utf-8-bom share it.
  const d = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let offset = 0;
  const fail = (blockBytes: number): never => {
    throw new EncodingError(
      `${file}: invalid UTF-8 between bytes ${offset} and ${offset + blockBytes}, although the start of the file ` +
        `decoded as UTF-8. If the file is GBK/GB18030, pass --encoding gb18030`,
    );
  };
  return {
    write: (c) => {
      try {
        const s = d.decode(c, { stream: true });
        offset += c.length;
        return s;
      } catch {
        return fail(c.length);
      }
    },
    end: () => {
      try {
        return d.decode();
      } catch {
        return fail(0);
      }
    },
  };
}

/** Decodes a whole buffer, detecting the encoding unless one is given. */
export function decodeBytes(bytes: Uint8Array, encoding?: TextEncoding, file = '<buffer>'): { text: string; encoding: TextEncoding } {
  const enc = encoding ?? detectEncoding(bytes, true);
  const d = makeDecoder(enc, file);
  let text = d.write(bytes) + d.end();
  if (enc === 'gb18030' && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return { text, encoding: enc };
}

export interface DecodedStream {
  encoding: TextEncoding;
  chunks: AsyncGenerator<string>;
}

/**
 * Opens a file as a stream of decoded text chunks in bounded memory: reads until it has
 * DETECT_BYTES (or the whole file), detects the encoding on that head, then decodes the head
 * and the rest of the stream chunk by chunk.
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
    enc = encoding ?? detectEncoding(first.subarray(0, DETECT_BYTES), done && first.length <= DETECT_BYTES);
  } catch (err) {
    stream.destroy();
    throw new EncodingError(`${file}: ${(err as Error).message}`);
  }
  async function* chunks(): AsyncGenerator<string> {
    const d = makeDecoder(enc, file);
    let stripBom = enc === 'gb18030'; // iconv-lite keeps a BOM; TextDecoder already drops it
    const emit = (s: string) => {
      if (stripBom && s.length > 0) {
        stripBom = false;
        if (s.charCodeAt(0) === 0xfeff) return s.slice(1);
      }
      return s;
    };
    try {
      if (first.length) yield emit(d.write(first));
      while (!done) {
        const r = await it.next();
        if (r.done) break;
        const s = emit(d.write(r.value));
        if (s) yield s;
      }
      const tail = emit(d.end());
      if (tail) yield tail;
    } finally {
      stream.destroy();
    }
  }
  return { encoding: enc, chunks: chunks() };
}
