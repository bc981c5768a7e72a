import { isRowError } from './rows.js';
import type { Format, ReadContext, ReadItem } from './format.js';

// Where a line longer than a document may be cut: after sentence-ending punctuation.
const SENTENCE_END = /[。！？；!?;]/g;

/** Cuts a line longer than max characters after the last sentence end before max, else at max. */
function splitLong(text: string, max: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > max) {
    let cut = 0;
    SENTENCE_END.lastIndex = 0;
    for (let m = SENTENCE_END.exec(rest); m && m.index < max; m = SENTENCE_END.exec(rest)) cut = m.index + 1;
    if (cut === 0) cut = max;
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  if (rest) out.push(rest);
  return out;
}

/**
 * Plain text (a textbook): lines are packed into documents of at most textMaxChars
 * characters, never splitting a line unless the line alone is longer. Blank lines are
 * paragraph breaks and are not kept. A document's line is the line it starts on.
 */
export const textFormat: Format = {
  name: 'text',
  description: 'plain text, packed into documents of up to --text-max-chars characters at line boundaries',
  async *read(rows, ctx: ReadContext): AsyncGenerator<ReadItem> {
    let parts: string[] = [];
    let size = 0;
    let startLine = 0;
    let n = 0;
    const flush = (): ReadItem => {
      const item: ReadItem = {
        line: startLine,
        tagged: { kind: 'document', record: { id: `${ctx.source}-${n++}`, source: ctx.source, text: parts.join('\n') } },
      };
      parts = [];
      size = 0;
      return item;
    };
    for await (const row of rows) {
      if (isRowError(row)) {
        yield { line: row.line, reject: row.error, raw: row.raw };
        continue;
      }
      const text = String(row.value).trim();
      if (!text) continue;
      for (const piece of splitLong(text, ctx.textMaxChars)) {
        if (parts.length && size + 1 + piece.length > ctx.textMaxChars) yield flush();
        if (!parts.length) startLine = row.line;
        parts.push(piece);
        size += piece.length + (parts.length > 1 ? 1 : 0);
      }
    }
    if (parts.length) yield flush();
  },
};
