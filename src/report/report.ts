import fs from 'node:fs';
import path from 'node:path';
import type { BenchmarkName } from '../eval/benchmarks.js';
import type { CaseStudy } from '../eval/cases.js';
import { DEFAULT_TABLE, metricDef } from '../eval/metrics.js';
import { writeFileAtomic } from '../io/atomic.js';
import { MetricsLog, type MetricRecord } from '../train/metrics.js';
import { CASES_CSS, casesHtml, casesMarkdown, escapeHtml, publishedMarkdown } from './cases.js';
import { barChart, groupedBarChart, lineChart, type ChartImage } from './charts.js';
import { changesGrid, gridHtml, gridMarkdown, summaryGrid, tableLegend, type Row } from './table.js';
import { RunDir } from '../io/run-dir.js';

interface Section {
  title: string;
  /** A markdown table or paragraph (rendered to HTML as a table when it is one). */
  text?: string;
  /** HTML replacing `text` in report.html. */
  html?: string;
  chart?: { file: string; image: ChartImage; alt: string };
}

/** What RUN/summary.json holds (pipeline/evaluate.ts writes it). */
export interface RunSummary {
  rows: Row[];
  baselines?: Row[];
  table?: string[];
  bootstrap?: { level: number };
  benchmarks?: Partial<Record<string, BenchmarkName>>;
  cases?: CaseStudy[];
}

const num = (r: MetricRecord, k: string) => (typeof r[k] === 'number' ? (r[k] as number) : undefined);

function series(records: MetricRecord[], key: string, byStage = true) {
  const groups = new Map<string, [number, number][]>();
  for (const r of records) {
    const v = num(r, key);
    if (v === undefined || !Number.isFinite(v) || r.stage.startsWith('eval/')) continue;
    const name = byStage ? r.stage : key;
    groups.set(name, [...(groups.get(name) ?? []), [r.step, v]]);
  }
  return [...groups].map(([name, points]) => ({ name, points }));
}

const value = (r: Row, k: string) => (typeof r[k] === 'number' ? (r[k] as number) : undefined);

function markdownTableHtml(t: string): string {
  const lines = t.split('\n').filter((l) => l.startsWith('|') && !/^\|-/.test(l));
  const cells = (l: string) =>
    l
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim().replace(/\\\|/g, '|'));
  return `<table>${lines
    .map(
      (l, i) =>
        `<tr>${cells(l)
          .map((c) => (i ? `<td>${escapeHtml(c)}</td>` : `<th>${escapeHtml(c)}</th>`))
          .join('')}</tr>`,
    )
    .join('')}</table>`;
}

/** A section's text as HTML: markdown tables as tables, other lines as paragraphs. */
function textHtml(t: string): string {
  return t
    .split('\n\n')
    .map((block) => (block.startsWith('|') ? markdownTableHtml(block) : `<p>${escapeHtml(block)}</p>`))
    .join('\n');
}

/**
 * report.md and report.html for a run directory: the per-stage summary table with intervals,
 * the paired changes between stages, other systems' rows, the papers' published figures
 * when the eval files are tagged, case studies, loss curves, reward-model validation
 * accuracy (ChiMed-GPT Fig. 3), DPO reward margins, metrics across stages with their
 * intervals and attitude-scale scores, as PNG (and inline SVG in the HTML) charts.
 */
export async function writeReport(runDir: string): Promise<string> {
  const metrics = new MetricsLog(new RunDir(runDir).metrics).read();
  const summaryFile = new RunDir(runDir).summaryJson;
  const summary: RunSummary = fs.existsSync(summaryFile) ? JSON.parse(fs.readFileSync(summaryFile, 'utf8')) : { rows: [] };
  const rows = summary.rows,
    all = [...rows, ...(summary.baselines ?? [])];
  const columns = summary.table ?? DEFAULT_TABLE;
  const outDir = new RunDir(runDir).report;
  fs.mkdirSync(outDir, { recursive: true });
  const sections: Section[] = [];
  const add = async (title: string, file: string, alt: string, make: () => Promise<ChartImage>, text?: string) => {
    sections.push({ title, text, chart: { file, image: await make(), alt } });
  };
  const legend = tableLegend(summary.bootstrap?.level ?? 0.95);
  if (all.length) {
    const g = summaryGrid(all, columns);
    sections.push({
      title: 'Measured after each stage',
      text: `${gridMarkdown(g)}\n\n${legend}`,
      html: `${gridHtml(g)}<p>${escapeHtml(legend)}</p>`,
    });
  }
  const changes = changesGrid(all, columns);
  if (changes.rows.length) {
    const note = 'Each stage against the one before it, on the same items; an external row against the final stage. ≈: within noise.';
    sections.push({
      title: 'Changes between stages (paired bootstrap)',
      text: `${gridMarkdown(changes)}\n\n${note}`,
      html: `${gridHtml(changes)}<p>${escapeHtml(note)}</p>`,
    });
  }
  const published = publishedMarkdown(summary.benchmarks ?? {});
  if (published) sections.push({ title: 'Published figures on the same benchmarks', text: published });
  if (summary.cases?.length) {
    sections.push({ title: 'Case studies', text: casesMarkdown(summary.cases), html: casesHtml(summary.cases) });
  }
  const loss = series(metrics, 'loss').filter((s) => s.points.length > 1);
  if (loss.length)
    await add('Training loss', 'loss.png', 'training loss per stage', () =>
      lineChart({ title: 'Training loss per stage', x: 'step', y: 'loss', series: loss, logY: true }),
    );
  // each stage's own held-out loss (LM loss, RM pairwise loss, DPO loss) over its own steps
  const evalLoss = series(metrics, 'eval_loss').filter((s) => s.points.length > 0);
  if (evalLoss.length)
    await add('Held-out loss', 'eval_loss.png', 'held-out loss per stage', () =>
      lineChart({ title: 'Held-out loss per stage', x: 'step', y: 'loss', series: evalLoss, facet: true }),
    );
  const rm = metrics.filter((r) => r.stage === 'rm');
  if (rm.some((r) => num(r, 'eval_accuracy') !== undefined)) {
    const s = [...series(rm, 'eval_accuracy', false), ...series(rm, 'accuracy', false)].map((x) => ({
      ...x,
      name: x.name === 'accuracy' ? 'train' : 'validation',
    }));
    await add('Reward model accuracy', 'rm_accuracy.png', 'reward model pairwise accuracy', () =>
      lineChart({ title: 'Reward model pairwise accuracy', x: 'step', y: 'accuracy', series: s, yZero: true }),
    );
  }
  const dpo = metrics.filter((r) => r.stage === 'dpo');
  if (dpo.length) {
    const s = ['rewards/margins', 'rewards/accuracies'].flatMap((k) => series(dpo, k, false));
    if (s.length)
      await add('DPO implicit rewards', 'dpo.png', 'DPO reward margins and accuracies', () =>
        lineChart({ title: 'DPO: reward margin and accuracy', x: 'step', y: 'value', series: s }),
      );
  }
  // a row that repeats another stage's policy (rm) shows only its own metrics, not the repeats
  const own = (r: Row, k: string) => {
    const src = r.same_policy_as ? all.find((x) => x.stage === r.same_policy_as) : undefined;
    return src && value(src, k) !== undefined ? undefined : value(r, k);
  };
  const grouped = async (title: string, file: string, y: string, keys: string[]) => {
    const ks = keys.filter((k) => all.some((r) => value(r, k) !== undefined));
    if (!ks.length) return;
    const withAny = all.filter((r) => ks.some((k) => own(r, k) !== undefined));
    await add(title, file, `${title.toLowerCase()} with 95% intervals`, () =>
      groupedBarChart({
        title: `${title} (95% intervals)`,
        x: 'metric',
        y,
        categories: ks.map((k) => metricDef(k).label),
        series: withAny.map((r) => ({
          name: r.kind === 'baseline' ? `${r.stage} (external)` : r.stage,
          values: ks.map((k) => own(r, k) ?? NaN),
          ci: ks.map((k) => r.ci?.[k]),
        })),
      }),
    );
  };
  await grouped('Accuracies across stages', 'accuracy.png', 'accuracy', ['mcq_acc', 'mcq_f1', 'ner_f1', 'rm_acc', 'pref_acc']);
  await grouped('Generation metrics across stages', 'textgen.png', 'score (0-100)', ['bleu1', 'bleu2', 'bleu4', 'rouge1', 'rougeL']);
  const bars = async (key: string, title: string, file: string, y: string) => {
    const rs = rows.filter((r) => value(r, key) !== undefined);
    if (rs.length)
      await add(title.split(' (')[0], file, `${key} per stage`, () =>
        barChart({ title, x: 'stage', y, bars: rs.map((r) => ({ label: r.stage, value: value(r, key)!, ci: r.ci?.[key] })) }),
      );
  };
  await bars('ppl', 'Held-out perplexity (lower is better)', 'ppl.png', 'perplexity');
  await bars('scale_total', 'Attitude scale total (higher = more favourable)', 'scale.png', 'total');

  for (const s of sections) if (s.chart) await writeFileAtomic(path.join(outDir, s.chart.file), s.chart.image.png);
  const title = `chimed run report: ${path.basename(path.resolve(runDir))}`;
  const md = [
    `# ${title}`,
    '',
    ...sections.flatMap((s) => [
      `## ${s.title}`,
      '',
      ...(s.text ? [s.text, ''] : []),
      ...(s.chart ? [`![${s.chart.alt}](${s.chart.file})`, ''] : []),
    ]),
  ].join('\n');
  await writeFileAtomic(path.join(outDir, 'report.md'), md);
  const html = `<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>
body{font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}
table.metrics{font-size:.82em}table.metrics td,table.metrics th{white-space:nowrap;padding:3px 6px}table.metrics small{color:#666}.noise{color:#b06000}
.scroll{overflow-x:auto}
figure{margin:1em 0}${CASES_CSS}</style></head><body><h1>${escapeHtml(title)}</h1>
${sections.map((s) => `<h2>${escapeHtml(s.title)}</h2>${s.html ?? (s.text ? textHtml(s.text) : '')}${s.chart ? `<figure>${s.chart.image.svg}</figure>` : ''}`).join('\n')}
</body></html>\n`;
  await writeFileAtomic(path.join(outDir, 'report.html'), html);
  return outDir;
}
