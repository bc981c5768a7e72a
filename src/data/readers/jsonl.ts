import { splitLines } from './lines.js';
import type { RawRow } from './rows.js';

/** JSON Lines: one value per non-blank line; a line that does not parse is a row error. */
export async function* readJsonlRows(chunks: AsyncIterable<string>): AsyncGenerator<RawRow> {
  for await (const { line, text } of splitLines(chunks)) {
    if (!text.trim()) continue;
    try {
      yield { line, value: JSON.parse(text), raw: text };
    } catch (err) {
      yield { line, error: `malformed JSON: ${(err as Error).message}`, raw: text };
    }
  }
}
