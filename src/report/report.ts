import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { RunDir } from '../io/run-dir.js';
import { summaryTable, type Row } from './table.js';
import { MetricsLog, type MetricRecord } from '../train/metrics.js';
import { barChart, groupedBarChart, lineChart, type ChartImage } from './charts.js';

interface Section {
  title: string;
  text?: string;
  chart?: { file: string; image: ChartImage; alt: string };
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

/**
 * report.md and report.html for a run directory: the per-stage summary table, loss curves,
 * reward-model validation accuracy (ChiMed-GPT Fig. 3), DPO reward margins, metrics across
 * stages and attitude-scale scores, as PNG (and inline SVG in the HTML) charts.
 */
export async function writeReport(runDir: string): Promise<string> {
  const run = new RunDir(runDir);
  const metrics = new MetricsLog(run.metrics).read();
  const summaryFile = run.summaryJson;
  const rows: Row[] = fs.existsSync(summaryFile) ? JSON.parse(fs.readFileSync(summaryFile, 'utf8')).rows : [];
  const outDir = run.report;
  fs.mkdirSync(outDir, { recursive: true });
  const sections: Section[] = [];
  const add = async (title: string, file: string, alt: string, make: () => Promise<ChartImage>, text?: string) => {
    sections.push({ title, text, chart: { file, image: await make(), alt } });
  };
  if (rows.length) sections.push({ title: 'Measured after each stage', text: summaryTable(rows) });
  const loss = series(metrics, 'loss').filter((s) => s.points.length > 1);
  if (loss.length) await add('Training loss', 'loss.png', 'training loss per stage', () => lineChart({ title: 'Training loss per stage', x: 'step', y: 'loss', series: loss, logY: true }));
  const evalLoss = series(metrics, 'eval_loss').filter((s) => s.points.length > 0);
  if (evalLoss.length) await add('Held-out loss', 'eval_loss.png', 'held-out loss per stage', () => lineChart({ title: 'Held-out loss', x: 'step', y: 'loss', series: evalLoss }));
  const rm = metrics.filter((r) => r.stage === 'rm');
  if (rm.some((r) => num(r, 'eval_accuracy') !== undefined)) {
    const s = [...series(rm, 'eval_accuracy', false), ...series(rm, 'accuracy', false)].map((x) => ({ ...x, name: x.name === 'accuracy' ? 'train' : 'validation' }));
    await add('Reward model accuracy', 'rm_accuracy.png', 'reward model pairwise accuracy', () => lineChart({ title: 'Reward model pairwise accuracy', x: 'step', y: 'accuracy', series: s, yZero: true }));
  }
  const dpo = metrics.filter((r) => r.stage === 'dpo');
  if (dpo.length) {
    const s = ['rewards/margins', 'rewards/accuracies'].flatMap((k) => series(dpo, k, false));
    if (s.length) await add('DPO implicit rewards', 'dpo.png', 'DPO reward margins and accuracies', () => lineChart({ title: 'DPO: reward margin and accuracy', x: 'step', y: 'value', series: s }));
  }
  const unit = ['mcq_acc', 'pref_acc', 'rm_acc'].filter((k) => rows.some((r) => typeof r[k] === 'number'));
  if (unit.length) {
    const withAny = rows.filter((r) => unit.some((k) => typeof r[k] === 'number'));
    await add('Accuracies across stages', 'accuracy.png', 'accuracies per stage', () => groupedBarChart({
      title: 'Accuracies across stages', x: 'metric', y: 'accuracy', categories: unit,
      series: withAny.map((r) => ({ name: String(r.stage), values: unit.map((k) => (typeof r[k] === 'number' ? (r[k] as number) : 0)) })),
    }));
  }
  const ppl = rows.filter((r) => typeof r.ppl === 'number');
  if (ppl.length) await add('Held-out perplexity', 'ppl.png', 'perplexity per stage', () => barChart({ title: 'Held-out perplexity (lower is better)', x: 'stage', y: 'perplexity', bars: ppl.map((r) => ({ label: String(r.stage), value: r.ppl as number })) }));
  const scale = rows.filter((r) => typeof r.scale_total === 'number');
  if (scale.length) await add('Attitude scale', 'scale.png', 'attitude-scale total per stage', () => barChart({ title: 'Attitude scale total (higher = more favourable)', x: 'stage', y: 'total', bars: scale.map((r) => ({ label: String(r.stage), value: r.scale_total as number })) }));

  for (const s of sections) if (s.chart) await writeFileAtomic(path.join(outDir, s.chart.file), s.chart.image.png);
  const title = `chimed run report: ${path.basename(path.resolve(runDir))}`;
  const md = [`# ${title}`, '', ...sections.flatMap((s) => [`## ${s.title}`, '', ...(s.text ? [s.text, ''] : []), ...(s.chart ? [`![${s.chart.alt}](${s.chart.file})`, ''] : [])])].join('\n');
  await writeFileAtomic(path.join(outDir, 'report.md'), md);
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const tableHtml = (t: string) => {
    const lines = t.split('\n').filter((l) => l.startsWith('|') && !/^\|-/.test(l));
    return `<table>${lines.map((l, i) => `<tr>${l.split('|').slice(1, -1).map((c) => (i ? `<td>${esc(c.trim())}</td>` : `<th>${esc(c.trim())}</th>`)).join('')}</tr>`).join('')}</table>`;
  };
  const html = `<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>${esc(title)}</title><style>
body{font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}
figure{margin:1em 0}</style></head><body><h1>${esc(title)}</h1>
${sections.map((s) => `<h2>${esc(s.title)}</h2>${s.text ? tableHtml(s.text) : ''}${s.chart ? `<figure>${s.chart.image.svg}</figure>` : ''}`).join('\n')}
</body></html>\n`;
  await writeFileAtomic(path.join(outDir, 'report.html'), html);
  return outDir;
}
