// CSV with a header row, parsed by csv-parse (RFC 4180: quoted fields spanning lines,
// doubled quotes). Rows become objects keyed by the trimmed header names; a row with the
// wrong number of fields, or one csv-parse cannot read (a stray quote), is a row error naming
// its line instead of ending the file. A quote that is never closed would swallow every line
// after it into one field: that line is rejected, naming it, and the lines after it are read
// again as rows.
import { parse } from 'csv-parse';
import type { RawRow } from './rows.js';

interface Where {
  /** The line the text starts on. */
  line: number;
  header?: string[];
}

type Skipped = { line: number; error: string; raw: string; rest?: string };

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

export function readCsvRows(chunks: AsyncIterable<string>, delimiter = ','): AsyncGenerator<RawRow> {
  return readFrom(chunks, delimiter, { line: 1 });
}

async function* readFrom(chunks: AsyncIterable<string> | Iterable<string>, delimiter: string, at: Where): AsyncGenerator<RawRow> {
  const skipped: Skipped[] = [];
  let header = at.header;
  let newlines = 0; // in the text fed so far: at the end, where an unclosed quote's record starts
  const parser = parse({
    delimiter,
    info: true,
    raw: true,
    relax_column_count: true,
    relax_quotes: true, // a quote inside an unquoted field is text (as Python's csv module reads it)
    skip_empty_lines: true,
    skip_records_with_error: true,
    on_skip: (err, raw) => {
      const text = raw ?? '';
      if (err?.code === 'CSV_QUOTE_NOT_CLOSED') {
        // the record runs from its opening line to the end of the text
        const line = at.line + newlines - countNewlines(text);
        const nl = text.indexOf('\n');
        const first = nl < 0 ? text : text.slice(0, nl);
        skipped.push({
          line,
          raw: first,
          rest: nl < 0 ? '' : text.slice(nl + 1),
          error: `unreadable CSV: the quote opened on line ${line} is never closed`,
        });
        return;
      }
      skipped.push({ line: at.line - 1 + Number(err?.lines ?? 0), error: `unreadable CSV: ${err?.message ?? 'unknown error'}`, raw: text });
    },
  });
  // Feed the parser from the decoded chunks while we consume its records, respecting its
  // back-pressure so memory stays bounded.
  // CRLF is read as LF: csv-parse fixes one record delimiter per file and miscounts lines
  // when CRLF and LF mix (or CRLF sits inside a quoted field)
  let cr = '';
  const feed = (async () => {
    for await (const text of chunks) {
      if (parser.destroyed) return; // the consumer stopped early; leaving the loop closes the file
      let chunk = cr + text;
      cr = chunk.endsWith('\r') ? '\r' : '';
      chunk = (cr ? chunk.slice(0, -1) : chunk).replace(/\r\n/g, '\n');
      newlines += countNewlines(chunk);
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
    if (cr && !parser.destroyed) parser.write(cr);
    parser.end();
  })();
  // a read or decoding error ends the parse with that error
  feed.catch((err) => parser.destroy(err as Error));

  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: { lines: number }; raw: string }>) {
      const { record, info, raw } = item;
      // info.lines is the line the record ends on; count back over its own line breaks.
      const body = raw.endsWith('\n') ? raw.slice(0, -1) : raw;
      const line = at.line - 1 + info.lines - countNewlines(body);
      // rows come out in line order: a skipped row is held until the rows before it are out
      while (skipped.length && skipped[0].line <= line && skipped[0].rest === undefined) yield skipped.shift()!;
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
  for (const s of skipped) {
    const { rest, ...row } = s;
    if (!rest || !header) {
      yield rest && !header ? { ...row, error: `${row.error}, in the header: the file cannot be read`, raw: `${row.raw}\n${rest}` } : row;
      continue;
    }
    yield { ...row, error: `${row.error}; the lines after it are read again as rows` };
    // each re-read starts a line further on, so this ends
    yield* readFrom([rest], delimiter, { line: row.line + 1, header });
  }
}
