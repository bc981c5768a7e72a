// Reading any supported file into records: decode (encoding detection), split into rows by
// container (JSONL, JSON array, CSV, plain text), detect the format from the extension and
// the first rows' keys unless --format says, convert and validate each row. Rows that fail go
// to the RejectSink with file, line and reason; the import stops with RejectRateError only
// when the share of rejects passes the configured limit.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { invalidTextReason, openDecoded, type InvalidText, type TextEncoding } from './encoding.js';
import { DataError } from './errors.js';
import { detectFormat, FORMATS, getFormat } from './formats.js';
import { readCsvRows } from './readers/csv.js';
import { isObj, type Format, type FormatName, type ReadContext } from './readers/format.js';
import { readJsonArrayRows } from './readers/jsonarray.js';
import { readJsonlRows } from './readers/jsonl.js';
import { splitLines } from './readers/lines.js';
import { isRowError, type RawRow } from './readers/rows.js';
import { describe, tidyRecord, validateRecord, type RecordKind, type Tagged } from './records.js';
import { RejectRateError, RejectSink } from './rejects.js';

export type Container = 'jsonl' | 'json' | 'csv' | 'tsv' | 'text';

export interface ImportOptions {
  format?: FormatName | 'auto';
  /** A reader made for this file (a LLaMA-Factory dataset_info.json entry); overrides `format`. */
  reader?: Format;
  encoding?: TextEncoding | 'auto';
  /** Source name for the records; default: the record's own `source` field, else the file stem. */
  source?: string;
  textMaxChars?: number;
  kgOutput?: 'text' | 'qa' | 'both';
  rejects?: RejectSink;
  /** Largest tolerated share of rejected rows, 0..1 (default 0.05). */
  maxRejectRate?: number;
  /** Rows seen before the rate is checked mid-file (it is always checked at the end). */
  rejectRateMinRows?: number;
}

export const IMPORT_DEFAULTS = { textMaxChars: 1000, kgOutput: 'both', maxRejectRate: 0.05, rejectRateMinRows: 1000 } as const;

export interface ImportSummary {
  file: string;
  source: string;
  format: FormatName;
  container: Container;
  encoding: TextEncoding;
  bytes: number;
  records: number;
  byKind: Partial<Record<RecordKind, number>>;
  rejects: number;
}

export type ImportedRecord = Tagged & { line: number };

export interface ImportStream extends AsyncIterable<ImportedRecord> {
  /** Filled in as records are read; complete once iteration ends. */
  readonly summary: ImportSummary;
}

const EXT_CONTAINER: Record<string, Container> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.json': 'json',
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.txt': 'text',
  '.text': 'text',
  '.md': 'text',
};

/** Yields `head`, then the rest of `it`; stopping early closes `it` (and so the file). */
async function* prepend<T>(head: T[], it: AsyncIterator<T>): AsyncGenerator<T> {
  try {
    yield* head;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  } finally {
    await it.return?.(undefined);
  }
}

/** Lets the first chunk be inspected without losing it. */
async function peekChunks(chunks: AsyncGenerator<string>): Promise<{ first: string; all: AsyncGenerator<string> }> {
  const r = await chunks.next();
  const first = r.done ? '' : r.value;
  return { first, all: prepend(first ? [first] : [], chunks) };
}

function chooseContainer(file: string, firstChunk: string, format: FormatName | undefined): Container {
  if (format === 'text') return 'text';
  const byExt = EXT_CONTAINER[path.extname(file).toLowerCase()];
  const lead = firstChunk.trimStart()[0];
  // .json files are often JSON Lines (CCKS ships train.json that way)
  if (byExt === 'json') return lead === '[' ? 'json' : 'jsonl';
  if (byExt && !(byExt === 'text' && format)) return byExt;
  if (lead === '[') return 'json';
  if (lead === '{') return 'jsonl';
  return format ? 'csv' : 'text';
}

function containerRows(container: Container, chunks: AsyncIterable<string>): AsyncIterable<RawRow> {
  switch (container) {
    case 'jsonl':
      return readJsonlRows(chunks);
    case 'json':
      return readJsonArrayRows(chunks);
    case 'csv':
      return readCsvRows(chunks, ',');
    case 'tsv':
      return readCsvRows(chunks, '\t');
    case 'text':
      return (async function* () {
        for await (const { line, text } of splitLines(chunks)) yield { line, value: text, raw: text };
      })();
  }
}

/**
 * Rows holding bytes that did not decode become row errors naming the line and byte (their
 * text carries U+FFFD, never imported as if it were the data); bad bytes outside every row
 * (a CSV header, a blank line) are reported as rows of their own. `invalid` fills as the
 * decoder reads ahead of the rows, so it covers each row's lines when the row arrives. Values
 * nested absurdly deep are row errors too.
 */
async function* checkRows(rows: AsyncIterable<RawRow>, invalid: InvalidText[], encoding: TextEncoding): AsyncGenerator<RawRow> {
  let next = 0;
  const outside = (bad: InvalidText): RawRow => ({
    line: bad.line,
    error: `${invalidTextReason(bad, encoding)} (outside any record)`,
    raw: '',
  });
  for await (const row of rows) {
    const last = row.line + countLines(row.raw);
    while (next < invalid.length && invalid[next].line < row.line) yield outside(invalid[next++]);
    let hit: InvalidText | undefined;
    while (next < invalid.length && invalid[next].line <= last) hit ??= invalid[next++];
    if (hit) yield { line: row.line, error: invalidTextReason(hit, encoding) + (isRowError(row) ? `; ${row.error}` : ''), raw: row.raw };
    else if (!isRowError(row) && nestsDeeper(row.value, MAX_DEPTH))
      yield { line: row.line, error: `JSON nested deeper than ${MAX_DEPTH} levels`, raw: row.raw };
    else yield row;
  }
  while (next < invalid.length) yield outside(invalid[next++]);
}

/** Deeper JSON than any dataset shape needs; beyond it, writing the record back would overflow the stack. */
const MAX_DEPTH = 100;

/** Whether a parsed value nests arrays / objects deeper than `max` (iterative: the value may be deeper than the stack). */
function nestsDeeper(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) return true;
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (typeof x === 'object' && x !== null) stack.push([x, d + 1]);
  }
  return false;
}

function countLines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

const SAMPLE_ROWS = 8;

/** Reads the first rows to pick a format, then replays them ahead of the rest. */
async function detectFromRows(file: string, rows: AsyncIterable<RawRow>): Promise<{ format: Format; rows: AsyncIterable<RawRow> }> {
  const it = rows[Symbol.asyncIterator]();
  const head: RawRow[] = [];
  while (head.filter((r) => !isRowError(r)).length < SAMPLE_ROWS) {
    const r = await it.next();
    if (r.done) break;
    head.push(r.value);
  }
  const values = head.filter((r) => !isRowError(r)).map((r) => (r as { value: unknown }).value);
  const format = detectFormat(values);
  if (!format) {
    const names = FORMATS.map((f) => f.name).join(', ');
    const firstError = head.find(isRowError);
    const what = values.length
      ? isObj(values[0])
        ? `first record keys: ${JSON.stringify(Object.keys(values[0]))}`
        : `first readable row is ${describe(values[0])}, not an object`
      : `no readable rows${firstError ? ` (line ${firstError.line}: ${firstError.error})` : ''}`;
    await it.return?.(undefined); // closes the file
    throw new DataError(`${file}: cannot detect the format; ${what}. Pass --format (one of ${names})`);
  }
  return { format, rows: prepend(head, it) };
}

/** Subject from CMMLU/C-Eval file names: dev_anatomy.csv, anatomy_val.csv -> anatomy. */
export function subjectFromFile(file: string): string {
  return path
    .basename(file, path.extname(file))
    .replace(/^(dev|val|test|train)_/, '')
    .replace(/_(dev|val|test|train)$/, '');
}

/** Opens a file for import: decoding and format detection happen here, records on iteration. */
export async function openImport(file: string, opts: ImportOptions = {}): Promise<ImportStream> {
  const fileStat = await stat(file).catch(() => undefined);
  if (!fileStat?.isFile()) throw new DataError(`${file}: no such file`);
  const wanted = opts.reader ?? (opts.format && opts.format !== 'auto' ? getFormat(opts.format) : undefined);
  const decoded = await openDecoded(file, opts.encoding === 'auto' ? undefined : opts.encoding);
  const { first, all } = await peekChunks(decoded.chunks);
  const container = chooseContainer(file, first, wanted?.name);
  let rows: AsyncIterable<RawRow> = checkRows(containerRows(container, all), decoded.invalid, decoded.encoding);
  let format: Format;
  if (wanted) format = wanted;
  else if (container === 'text') format = getFormat('text');
  else ({ format, rows } = await detectFromRows(file, rows));

  const stem = path.basename(file, path.extname(file));
  const ctx: ReadContext = {
    file,
    source: opts.source ?? stem,
    sourceIsExplicit: opts.source !== undefined,
    subject: subjectFromFile(file),
    textMaxChars: opts.textMaxChars ?? IMPORT_DEFAULTS.textMaxChars,
    kgOutput: opts.kgOutput ?? IMPORT_DEFAULTS.kgOutput,
  };
  const summary: ImportSummary = {
    file,
    source: ctx.source,
    format: format.name,
    container,
    encoding: decoded.encoding,
    bytes: fileStat.size,
    records: 0,
    byKind: {},
    rejects: 0,
  };
  const sink = opts.rejects ?? new RejectSink();
  const maxRate = opts.maxRejectRate ?? IMPORT_DEFAULTS.maxRejectRate;
  const minRows = opts.rejectRateMinRows ?? IMPORT_DEFAULTS.rejectRateMinRows;

  const checkRate = (final: boolean) => {
    const total = summary.records + summary.rejects;
    if (summary.rejects === 0 || (!final && total < minRows)) return;
    if (summary.rejects / total <= maxRate) return;
    const ex = sink
      .examplesFor(file)
      .map((r) => `  line ${r.line}: ${r.reason}`)
      .join('\n');
    throw new RejectRateError(
      `${file}: ${summary.rejects} of ${total} rows rejected (${((100 * summary.rejects) / total).toFixed(1)}%), ` +
        `above the limit of ${(100 * maxRate).toFixed(1)}% (format ${format.name}${wanted ? '' : ', auto-detected'}, ` +
        `encoding ${decoded.encoding}).${sink.path ? ` All reasons: ${sink.path}.` : ''} First reasons:\n${ex}`,
    );
  };

  async function* records(): AsyncGenerator<ImportedRecord> {
    for await (const item of format.read(rows, ctx)) {
      let reason: string | undefined;
      let raw = '';
      if ('reject' in item) {
        reason = item.reject;
        raw = item.raw;
      } else {
        item.tagged = tidyRecord(item.tagged);
        reason = validateRecord(item.tagged.kind, item.tagged.record);
        if (reason) raw = JSON.stringify(item.tagged.record);
      }
      if (reason) {
        summary.rejects++;
        await sink.add({ file, line: item.line, reason, raw });
      } else {
        const t = (item as { tagged: Tagged }).tagged;
        summary.records++;
        summary.byKind[t.kind] = (summary.byKind[t.kind] ?? 0) + 1;
        yield { ...t, line: item.line } as ImportedRecord;
      }
      checkRate(false);
    }
    checkRate(true);
  }
  return { summary, [Symbol.asyncIterator]: records };
}
