// Case studies and the papers' published figures, as markdown and HTML sections of the report.
import { CITATIONS, publishedFigures, BENCHMARKS, type BenchmarkName } from '../eval/benchmarks.js';
import type { CaseStudy } from '../eval/cases.js';

export const escapeHtml = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const mdCell = (t: string) => t.trim().replace(/\|/g, '\\|').replace(/\n/g, '<br>') || '—';

const KIND_TITLES: Record<CaseStudy['kind'], string> = { gen: 'dialogue', mcq: 'multiple choice', ner: 'NER' };
const mark = (a: CaseStudy['answers'][number]) =>
  (a.correct === true ? ' ✓' : a.correct === false ? ' ✗' : '') + (a.note ? ` (${a.note})` : '');

export function casesMarkdown(cases: CaseStudy[]): string {
  return cases
    .map((c, i) =>
      [
        `**Case ${i + 1}** (${KIND_TITLES[c.kind]}, item \`${c.id}\`)`,
        '',
        '| | |',
        '|---|---|',
        `| prompt | ${mdCell(c.prompt)} |`,
        `| reference | ${mdCell(c.reference)} |`,
        ...c.answers.map((a) => `| ${a.system}${mark(a)} | ${mdCell(a.answer)} |`),
      ].join('\n'),
    )
    .join('\n\n');
}

/** Each case as one row of columns: the prompt, the reference, then every system's answer side by side. */
export function casesHtml(cases: CaseStudy[]): string {
  return cases
    .map((c, i) => {
      const cols = [
        { head: 'reference', body: c.reference, cls: 'ref' },
        ...c.answers.map((a) => ({
          head: a.system + mark(a),
          body: a.answer,
          cls: a.correct === false ? 'wrong' : a.correct ? 'right' : '',
        })),
      ];
      return (
        `<div class="case"><h3>Case ${i + 1} <small>${KIND_TITLES[c.kind]} · ${escapeHtml(c.id)}</small></h3>` +
        `<pre class="prompt">${escapeHtml(c.prompt)}</pre><div class="answers">` +
        cols
          .map((x) => `<div class="answer ${x.cls}"><b>${escapeHtml(x.head)}</b><pre>${escapeHtml(x.body.trim() || '—')}</pre></div>`)
          .join('') +
        '</div></div>'
      );
    })
    .join('\n');
}

export const CASES_CSS = `.case{margin:1.2em 0;border-top:1px solid #ddd}.case pre{white-space:pre-wrap;margin:.3em 0;font-family:inherit}
.prompt{background:#f6f6f6;padding:.5em}.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:.5em}
.answer{border:1px solid #ddd;padding:.4em;font-size:.9em}.answer.ref{background:#eef6ee}.answer.wrong{background:#fbeeee}.answer.right{background:#eef3fb}`;

/** The published figures on the benchmarks the run's eval files are tagged with (markdown table and sources). */
export function publishedMarkdown(benchmarks: Partial<Record<string, BenchmarkName>>): string {
  const tagged = Object.entries(benchmarks).filter((e): e is [string, BenchmarkName] => !!e[1]);
  const figures = tagged.flatMap(([file, b]) => publishedFigures(b).map((f) => ({ ...f, file })));
  if (!figures.length) return '';
  const sources = [...new Set(figures.map((f) => f.source))];
  return [
    'For orientation only: larger models, other training data and prompts; accuracies and F1 in percent as the papers print them.',
    '',
    '| eval file | benchmark | model | size | metric | published | source |',
    '|---|---|---|---|---|---|---|',
    ...figures.map(
      (f) =>
        `| ${f.file} | ${BENCHMARKS[f.benchmark].title} | ${f.model} | ${f.size} | ${f.metric} | ${f.value.toFixed(2)} | ${f.source} |`,
    ),
    '',
    ...sources.map((s) => `${s}: ${CITATIONS[s]}.`),
  ].join('\n');
}
