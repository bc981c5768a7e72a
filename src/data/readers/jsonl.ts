import { splitLines } from './lines.js';
import type { RawRow } from './rows.js';

/** One JSON Lines line: null when blank; a line that does not parse is a row error. */
export function jsonlRow(line: number, text: string): RawRow | null {
  if (!text.trim()) return null;
  try {
    return { line, value: JSON.parse(text), raw: text };
  } catch (err) {
    return { line, error: `malformed JSON: ${(err as Error).message}`, raw: text };
  }
}

/** JSON Lines: one value per non-blank line. */
export async function* readJsonlRows(chunks: AsyncIterable<string>): AsyncGenerator<RawRow> {
  for await (const { line, text } of splitLines(chunks)) {
    const row = jsonlRow(line, text);
    if (row) yield row;
  }
}
