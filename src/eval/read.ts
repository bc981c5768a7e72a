// Evaluation files are read by the data importer (src/data/import.ts), so an evaluation sees
// exactly the records an import would produce: the normalised JSONL shapes and the raw
// upstream formats alike (CMMLU/C-Eval CSV with the subject taken from the file name,
// CMeEE's JSON array, CCKS-2019 JSONL). Unlike an import, evaluation tolerates no reject: a
// silently dropped item would change the score, so the first bad row is an error naming file
// and line.
import { DataError } from '../data/errors.js';
import { openImport } from '../data/import.js';
import type { RecordByKind } from '../data/records.js';
import type { FormatName } from '../data/readers/format.js';

export async function readEvalRecords<K extends 'mcq' | 'ner'>(file: string, kind: K, format?: FormatName): Promise<RecordByKind[K][]> {
  const stream = await openImport(file, { format: format ?? (kind === 'mcq' ? 'mcq' : 'auto'), maxRejectRate: 0, rejectRateMinRows: 1 });
  const out: RecordByKind[K][] = [];
  for await (const r of stream) {
    if (r.kind !== kind)
      throw new DataError(`${file}:${r.line}: expected ${kind} records, got a ${r.kind} record (format ${stream.summary.format})`);
    out.push(r.record as RecordByKind[K]);
  }
  if (out.length === 0) throw new DataError(`${file}: no ${kind} records`);
  return out;
}

export const readMcqFile = (file: string) => readEvalRecords(file, 'mcq');
export const readNerFile = (file: string, format?: 'ner' | 'cmeee' | 'ccks') => readEvalRecords(file, 'ner', format);
