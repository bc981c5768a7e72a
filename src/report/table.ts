import { formatTable } from '../data/table.js';

/** One evaluation row per stage: metric name -> value (the summary table and report read these). */
export type Row = Record<string, number | string | null>;

const COLUMNS: [string, string, number][] = [
  ['stage', 'stage', 0], ['ppl', 'ppl ↓', 2], ['mcq_acc', 'MCQ acc', 3], ['bleu4', 'BLEU-4', 2], ['rougeL', 'ROUGE-L', 2],
  ['rm_acc', 'RM acc', 3], ['pref_acc', 'pref acc', 3], ['mean_reward', 'reward', 3], ['scale_total', 'scale', 0],
];

/** One row per stage, measured metrics as columns (markdown). */
export function summaryTable(rows: Row[]): string {
  const cols = COLUMNS.filter(([k]) => rows.some((r) => r[k] !== undefined && r[k] !== null));
  const cell = (r: Row, [k, , d]: [string, string, number]) => {
    const v = r[k];
    return v === undefined || v === null ? '' : typeof v === 'number' ? v.toFixed(d) : String(v);
  };
  return formatTable(cols.map((c) => c[1]), rows.map((r) => cols.map((c) => cell(r, c))), 'markdown');
}
