import { formatTable } from '../data/table.js';
import type { Difference, Interval } from '../eval/bootstrap.js';
import { DEFAULT_TABLE, metricDef, type MetricDef } from '../eval/metrics.js';

/**
 * One evaluated system (a stage, or another system's predictions): metric name -> value at
 * the top level (what the summary table and the charts read), with each metric's bootstrap
 * interval, its item count, and the paired change from the row it is compared with.
 */
export interface Row {
  stage: string;
  /** 'baseline' for another system's predictions. */
  kind?: 'stage' | 'baseline';
  /** The stage whose policy this row's model is (the rm stage evaluates the policy it was given). */
  same_policy_as?: string;
  ci?: Record<string, Interval | null>;
  n?: Record<string, number>;
  /** Paired bootstrap of (this row - row `from`) on the items both were scored on. */
  change?: { from: string; metrics: Record<string, Difference & { n: number }> };
  [metric: string]: unknown;
}

/** How the rows compare; printed under the table. */
export function tableLegend(level: number): string {
  const pct = `${Math.round(level * 100)}%`;
  return (
    `(a–b): ${pct} percentile-bootstrap interval over items. ≈: the change from the row above (a baseline: from the final stage) is within noise — ` +
    `its ${pct} paired-bootstrap interval contains 0.`
  );
}

/** A table cell: the figure, its interval, whether the change it shows or reaches is within noise. */
export interface Cell {
  value: string;
  ci?: string;
  noise?: boolean;
}

export interface Grid {
  head: string[];
  rows: { name: string; cells: (Cell | null)[] }[];
}

const systemName = (r: Row) => (r.kind === 'baseline' ? `${r.stage} (external)` : r.stage);
const used = (columns: readonly string[], has: (m: MetricDef) => boolean) => columns.map(metricDef).filter(has);

/** The summary as a grid: one row per system, the chosen metrics as columns (those nobody measured left out). */
export function summaryGrid(rows: Row[], columns: readonly string[] = DEFAULT_TABLE): Grid {
  const cols = used(columns, (m) => rows.some((r) => typeof r[m.key] === 'number'));
  const cell = (r: Row, m: MetricDef): Cell | null => {
    const v = r[m.key];
    if (typeof v !== 'number') return null;
    const ci = r.ci?.[m.key];
    return {
      value: v.toFixed(m.digits),
      ...(ci ? { ci: `${ci[0].toFixed(m.digits)}–${ci[1].toFixed(m.digits)}` } : {}),
      noise: !!r.change?.metrics[m.key]?.within_noise,
    };
  };
  return {
    head: ['stage', ...cols.map((m) => m.label)],
    rows: rows.map((r) => ({ name: systemName(r), cells: cols.map((m) => cell(r, m)) })),
  };
}

const signed = (x: number, d: number) => (x > 0 ? '+' : x < 0 ? '−' : '') + Math.abs(x).toFixed(d);

/** Each row's paired change from the row it is compared with: difference, interval, within noise. */
export function changesGrid(rows: Row[], columns: readonly string[] = DEFAULT_TABLE): Grid {
  const compared = rows.filter((r) => r.change && Object.keys(r.change.metrics).length);
  const cols = used(columns, (m) => compared.some((r) => r.change!.metrics[m.key]));
  const cell = (r: Row, m: MetricDef): Cell | null => {
    const c = r.change!.metrics[m.key];
    if (!c) return null;
    return {
      value: signed(c.value, m.digits),
      ...(c.ci ? { ci: `${signed(c.ci[0], m.digits)} to ${signed(c.ci[1], m.digits)}` } : {}),
      noise: c.within_noise,
    };
  };
  return {
    head: ['change', ...cols.map((m) => m.label)],
    rows: compared.map((r) => ({ name: `${r.change!.from} → ${systemName(r)}`, cells: cols.map((m) => cell(r, m)) })),
  };
}

export function gridMarkdown(g: Grid): string {
  if (!g.rows.length || g.head.length < 2) return '';
  const text = (c: Cell | null) => (c ? c.value + (c.ci ? ` (${c.ci})` : '') + (c.noise ? ' ≈' : '') : '');
  return formatTable(
    g.head,
    g.rows.map((r) => [r.name, ...r.cells.map(text)]),
    'markdown',
  );
}

const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** The grid as an HTML table, each interval in small type under its figure. */
export function gridHtml(g: Grid): string {
  if (!g.rows.length || g.head.length < 2) return '';
  const td = (c: Cell | null) =>
    c
      ? `<td>${esc(c.value)}${c.noise ? ' <span class="noise" title="within noise">≈</span>' : ''}${c.ci ? `<br><small>${esc(c.ci)}</small>` : ''}</td>`
      : '<td></td>';
  return (
    `<div class="scroll"><table class="metrics"><tr>${g.head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>` +
    g.rows.map((r) => `<tr><th>${esc(r.name)}</th>${r.cells.map(td).join('')}</tr>`).join('') +
    '</table></div>'
  );
}

/** One row per system, the chosen metrics as columns with their intervals and marks (markdown). */
export function summaryTable(rows: Row[], columns: readonly string[] = DEFAULT_TABLE): string {
  return gridMarkdown(summaryGrid(rows, columns));
}
