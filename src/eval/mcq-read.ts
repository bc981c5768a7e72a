// Reads an MCQ evaluation file through the data importer's own readers (the normalised JSONL
// shape, or a CMMLU / C-Eval CSV with columns ,Question,A,B,C,D,Answer), so evaluation sees
// exactly the records the importer would produce. Unlike an import, evaluation must not
// drop items silently: any rejected or invalid row is an error naming file and line.
import path from 'node:path';
import { openDecoded } from '../data/encoding.js';
import { validateRecord, type McqItem } from '../data/records.js';
import { readCsvRows } from '../data/readers/csv.js';
import { readJsonArrayRows } from '../data/readers/jsonarray.js';
import { readJsonlRows } from '../data/readers/jsonl.js';
import { mcqFormat } from '../data/readers/mcq.js';
import type { ReadContext } from '../data/readers/format.js';

/** CMMLU/C-Eval name files dev_anatomy.csv, anatomy_val.csv: the subject is the rest of the stem. */
export function subjectFromFileName(file: string): string {
  const stem = path.basename(file).replace(/\.[^.]+$/, '');
  return stem.replace(/^(dev|val|test)_/, '').replace(/_(dev|val|test)$/, '');
}

export async function readMcqFile(file: string): Promise<McqItem[]> {
  const ext = path.extname(file).toLowerCase();
  const { chunks } = await openDecoded(file);
  const rows = ext === '.csv' ? readCsvRows(chunks) : ext === '.json' ? readJsonArrayRows(chunks) : readJsonlRows(chunks);
  const ctx: ReadContext = {
    file,
    source: path.basename(file).replace(/\.[^.]+$/, ''),
    sourceIsExplicit: false,
    subject: ext === '.csv' ? subjectFromFileName(file) : undefined,
    textMaxChars: 0, // plain-text packing only; unused by the MCQ format
    kgOutput: 'text',
  };
  const items: McqItem[] = [];
  for await (const it of mcqFormat.read(rows, ctx)) {
    if ('reject' in it) throw new Error(`${file}:${it.line}: ${it.reject}`);
    const bad = validateRecord('mcq', it.tagged.record);
    if (bad) throw new Error(`${file}:${it.line}: ${bad}`);
    items.push(it.tagged.record as McqItem);
  }
  if (items.length === 0) throw new Error(`${file}: no multiple-choice items`);
  return items;
}
