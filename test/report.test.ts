import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { writeReport, type RunSummary } from '../src/report/report.js';
import { tmpDir } from './helpers.js';

/** The inline SVG of the figure in the report.html section with this title. */
function figure(html: string, title: string): string {
  const at = html.indexOf(`<h2>${title}</h2>`);
  assert.ok(at >= 0, `section ${title}`);
  const svg = /<figure>(.*?)<\/figure>/s.exec(html.slice(at));
  assert.ok(svg, `figure under ${title}`);
  return svg[1];
}

/** Each drawn line of a line chart: its series and how many points the path joins. */
function lines(svg: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of svg.matchAll(
    /aria-label="[^"]*; series: ([^"]+)" role="graphics-symbol" aria-roledescription="line mark" d="([^"]+)"/g,
  )) {
    out.set(m[1], m[2].split(/[ML]/).filter(Boolean).length);
  }
  return out;
}

/** The bars of the report's grouped bar charts (x titled metric) as "series / metric". */
function bars(svg: string): string[] {
  return [...svg.matchAll(/aria-label="metric: ([^;]+); [^;]+: [^;]+; series: ([^"]+)" role="graphics-symbol" aria-roledescription="bar"/g)]
    .map((m) => `${m[2]} / ${m[1]}`)
    .sort();
}

test('report: held-out loss as one line per stage over its own steps; the rm row charts only its own metrics', async () => {
  const dir = tmpDir();
  const rec = (stage: string, step: number, x: Record<string, number>) =>
    JSON.stringify({ stage, step, ...x, time: '2026-01-01T00:00:00.000Z' });
  const log = [
    ...[20, 40, 60].flatMap((s, i) => [
      rec('pt', s, { loss: 6 - i }),
      rec('pt', s, { eval_loss: 5.5 - i * 0.5, eval_ppl: Math.exp(5.5 - i * 0.5) }),
    ]),
    ...[20, 40].flatMap((s, i) => [rec('sft', s, { loss: 4 - i }), rec('sft', s, { eval_loss: 3.9 - i * 0.3 })]),
    ...[10, 20, 30].flatMap((s, i) => [
      rec('rm', s, { loss: 0.6 - i * 0.1 }),
      rec('rm', s, { eval_loss: 0.5 - i * 0.05, eval_accuracy: 0.7 + i * 0.05 }),
    ]),
    // the pipeline's evaluation rows are not training curves
    rec('eval/sft', 0, { eval_loss: 9 }),
  ];
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), log.join('\n') + '\n');
  const summary: RunSummary = {
    rows: [
      { stage: 'pt', mcq_acc: 0.3, ci: { mcq_acc: [0.25, 0.35] } },
      { stage: 'sft', mcq_acc: 0.4, ci: { mcq_acc: [0.35, 0.45] } },
      // the rm stage evaluates the policy it was given: its MCQ accuracy repeats sft's
      { stage: 'rm', same_policy_as: 'sft', mcq_acc: 0.4, rm_acc: 0.8, ci: { mcq_acc: [0.35, 0.45], rm_acc: [0.7, 0.9] } },
    ],
  };
  fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary));
  const out = await writeReport(dir);
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.deepEqual(
    lines(figure(html, 'Held-out loss')),
    new Map([
      ['pt', 3],
      ['sft', 2],
      ['rm', 3],
    ]),
  );
  assert.deepEqual(bars(figure(html, 'Accuracies across stages')), ['pt / MCQ acc', 'rm / RM acc', 'sft / MCQ acc']);
  for (const f of ['eval_loss.png', 'loss.png', 'accuracy.png', 'rm_accuracy.png'])
    assert.ok(fs.statSync(path.join(out, f)).size > 1000, f);
});
