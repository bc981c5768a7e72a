import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { barChart, cjkFontFamilies, groupedBarChart, lineChart, svgToPng } from '../src/report/charts.js';
import { tmpDir } from './helpers.js';

/** Width and height from the PNG's IHDR chunk, after checking the signature. */
function pngSize(png: Buffer): [number, number] {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
  return [png.readUInt32BE(16), png.readUInt32BE(20)];
}

function svgSize(svg: string): [number, number] {
  const m = /<svg[^>]*\swidth="(\d+(?:\.\d+)?)"[^>]*\sheight="(\d+(?:\.\d+)?)"/.exec(svg);
  assert.ok(m, 'svg has width and height');
  return [Number(m[1]), Number(m[2])];
}

const out = process.env.CHIMED_CHART_DIR ?? tmpDir('chimed-charts-');

test('line chart: SVG names every series, PNG decodes at twice the SVG size', async () => {
  const steps = Array.from({ length: 30 }, (_, i) => i * 10);
  const c = await lineChart({
    title: '训练损失 (training loss)',
    x: '步数 step',
    y: 'loss',
    series: [
      { name: '预训练 PT', points: steps.map((s) => [s, 8 * Math.exp(-s / 120) + 2]) },
      { name: 'SFT', points: steps.map((s) => [s, 6 * Math.exp(-s / 90) + 1.5]) },
      {
        name: 'diverged',
        points: [
          [0, 5],
          [10, Number.NaN],
          [20, 4],
        ],
      },
    ],
  });
  for (const name of ['预训练 PT', 'SFT', 'diverged', '训练损失 (training loss)', '步数 step']) assert.ok(c.svg.includes(name), name);
  const [w, h] = svgSize(c.svg);
  assert.deepEqual(pngSize(c.png), [Math.round(w * 2), Math.round(h * 2)]);
  fs.writeFileSync(path.join(out, 'line.png'), c.png);
  assert.throws(() => lineChart({ title: 't', x: 'x', y: 'y', series: [] }), /no series/);
  assert.throws(
    () =>
      lineChart({
        title: 't',
        x: 'x',
        y: 'y',
        series: [
          { name: 'a', points: [] },
          { name: 'a', points: [] },
        ],
      }),
    /duplicate name "a"/,
  );
});

test('bar and grouped bar charts', async () => {
  const bar = await barChart(
    {
      title: 'CMExam 准确率',
      x: '模型',
      y: 'accuracy',
      bars: [
        { label: '基座', value: 0.21 },
        { label: 'SFT', value: 0.34 },
        { label: 'DPO', value: 0.36 },
      ],
    },
    { scale: 1 },
  );
  for (const name of ['基座', 'SFT', 'DPO']) assert.ok(bar.svg.includes(name), name);
  assert.deepEqual(pngSize(bar.png), svgSize(bar.svg).map(Math.round));
  fs.writeFileSync(path.join(out, 'bar.png'), bar.png);

  const grouped = await groupedBarChart({
    title: 'BLEU / ROUGE by stage',
    x: 'metric',
    y: 'score',
    categories: ['BLEU-1', 'BLEU-4', 'ROUGE-1', 'ROUGE-L'],
    series: [
      { name: 'pretrain', values: [12.1, 1.3, 20.4, 15.2] },
      { name: 'sft', values: [25.3, 6.8, 33.9, 27.5] },
      { name: 'dpo', values: [26.0, 7.1, 35.2, 28.8] },
    ],
  });
  for (const name of ['pretrain', 'sft', 'dpo', 'BLEU-4', 'ROUGE-L']) assert.ok(grouped.svg.includes(name), name);
  pngSize(grouped.png);
  fs.writeFileSync(path.join(out, 'grouped.png'), grouped.png);
  assert.throws(
    () => groupedBarChart({ title: 'g', x: '', y: '', categories: ['a', 'b'], series: [{ name: 's', values: [1] }] }),
    /series "s" has 1 values for 2 categories/,
  );
});

test('held-out curves one panel per series; bars with interval whiskers', async () => {
  const c = await lineChart({
    title: 'held-out loss',
    x: 'step',
    y: 'loss',
    facet: true,
    series: [
      {
        name: 'pt',
        points: [
          [20, 5.6],
          [40, 4.7],
          [60, 4.2],
        ],
      },
      {
        name: 'rm',
        points: [
          [10, 0.3],
          [20, 0.47],
        ],
      },
      { name: 'dpo', points: [[30, 0.4]] },
    ],
  });
  for (const name of ['pt', 'rm', 'dpo']) assert.ok(c.svg.includes(`>${name}<`), `panel title ${name}`);
  assert.equal((c.svg.match(/role-axis"/g) ?? []).length >= 6, true, 'each panel has its own axes');
  fs.writeFileSync(path.join(out, 'facet.png'), c.png);
  const rules = (svg: string) => (svg.match(/class="mark-rule role-mark/g) ?? []).length;
  const plain = await barChart({
    title: 'ppl',
    x: '',
    y: '',
    bars: [
      { label: 'a', value: 3 },
      { label: 'b', value: 2 },
    ],
  });
  const whiskers = await barChart({
    title: 'ppl',
    x: '',
    y: '',
    bars: [
      { label: 'a', value: 3, ci: [2.5, 3.4] },
      { label: 'b', value: 2, ci: [1.8, 2.1] },
    ],
  });
  assert.ok(rules(whiskers.svg) > rules(plain.svg), 'interval whiskers drawn');
  const grouped = await groupedBarChart({
    title: 'acc',
    x: '',
    y: '',
    categories: ['MCQ acc'],
    series: [
      { name: 'sft', values: [0.4], ci: [[0.3, 0.5]] },
      { name: 'dpo', values: [0.45], ci: [null] },
    ],
  });
  assert.ok(rules(grouped.svg) > 0);
  fs.writeFileSync(path.join(out, 'grouped-ci.png'), grouped.png);
});

test('Chinese labels are drawn', async () => {
  assert.ok(cjkFontFamilies().length > 0, 'no CJK font installed (Debian: apt-get install fonts-wqy-zenhei, as .ci/run does)');
  const c = await barChart({ title: '高血压', x: '', y: '', bars: [{ label: 'a', value: 1 }] });
  assert.ok(c.svg.includes('>高血压<'));
  // with the glyphs removed the picture must change, or nothing was drawn for them
  const without = svgToPng(c.svg.replace('>高血压<', '><'));
  assert.notDeepEqual(without, c.png);
});
