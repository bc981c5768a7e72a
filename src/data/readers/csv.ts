// CSV with a header row, parsed by csv-parse (RFC 4180: quoted fields spanning lines,
// doubled quotes). Rows become objects keyed by the trimmed header names; a row with the
// wrong number of fields, or one csv-parse cannot read (a stray quote), is a row error naming
// its line instead of ending the file.
import { parse } from 'csv-parse';
import type { RawRow } from './rows.js';

export async function* readCsvRows(chunks: AsyncIterable<string>, delimiter = ','): AsyncGenerator<RawRow> {
  const skipped: RawRow[] = [];
  const parser = parse({
    delimiter,
    info: true,
    raw: true,
    relax_column_count: true,
    relax_quotes: true, // a quote inside an unquoted field is text (as Python's csv module reads it)
    skip_empty_lines: true,
    skip_records_with_error: true,
    on_skip: (err, raw) => {
      skipped.push({ line: Number(err?.lines ?? 0), error: `unreadable CSV: ${err?.message ?? 'unknown error'}`, raw: raw ?? '' });
    },
  });
  // Feed the parser from the decoded chunks while we consume its records, respecting its
  // back-pressure so memory stays bounded.
  const feed = (async () => {
    for await (const chunk of chunks) {
      if (parser.destroyed) return; // the consumer stopped early; leaving the loop closes the file
      if (!parser.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            parser.off('drain', done);
            parser.off('close', done);
            resolve();
          };
          parser.on('drain', done);
          parser.on('close', done);
        });
      }
    }
    parser.end();
  })();
  // a read or decoding error ends the parse with that error
  feed.catch((err) => parser.destroy(err as Error));

  let header: string[] | undefined;
  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: { lines: number }; raw: string }>) {
      while (skipped.length) yield skipped.shift()!;
      const { record, info, raw } = item;
      // info.lines is the line the record ends on; count back over its own line breaks.
      const body = raw.endsWith('\n') ? raw.slice(0, raw.endsWith('\r\n') ? -2 : -1) : raw;
      let breaks = 0;
      for (let i = body.indexOf('\n'); i >= 0; i = body.indexOf('\n', i + 1)) breaks++;
      const line = info.lines - breaks;
      if (!header) {
        header = record.map((h) => h.trim());
        continue;
      }
      if (record.length !== header.length) {
        yield { line, error: `expected ${header.length} fields (${header.join(',')}), got ${record.length}`, raw: body };
        continue;
      }
      const value: Record<string, string> = {};
      header.forEach((h, i) => (value[h] = record[i]));
      yield { line, value, raw: body };
    }
  } finally {
    parser.destroy();
  }
  await feed;
  while (skipped.length) yield skipped.shift()!;
}
